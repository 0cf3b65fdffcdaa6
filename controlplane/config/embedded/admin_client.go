package embedded

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
)

// maxAdminTokenFileBytes bounds what ReadAdminToken reads.
const maxAdminTokenFileBytes = 4 << 10

// ReadAdminToken reads straitd's admin token file (<data-dir>/admin-token). It refuses a file
// that others than its owner can read or write: such a token may have leaked.
func ReadAdminToken(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("reading straitd's admin token: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("reading straitd's admin token: %w", err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("reading straitd's admin token: %s must be a regular file readable by its owner only (mode %v)", path, fi.Mode())
	}
	b, err := io.ReadAll(io.LimitReader(f, maxAdminTokenFileBytes+1))
	if err != nil {
		return "", fmt.Errorf("reading straitd's admin token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if len(b) > maxAdminTokenFileBytes || tok == "" {
		return "", fmt.Errorf("reading straitd's admin token: %s is empty or too large", path)
	}
	return tok, nil
}

// MintBootstrapToken asks straitd for a bootstrap token, authenticated by adminToken.
func (c *Client) MintBootstrapToken(ctx context.Context, adminToken string, req BootstrapTokenRequest) (BootstrapTokenResponse, error) {
	var out BootstrapTokenResponse
	if err := c.roundTrip(ctx, http.MethodPost, BootstrapTokensPath, "Bearer "+adminToken, 1<<20, req, &out); err != nil {
		return out, err
	}
	if out.Token == "" {
		return out, errors.New("decoding response: no token")
	}
	return out, nil
}
