package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/strait-mesh/strait/controlplane/config/embedded"
)

// defaultAdminTokenFile is where `strait up` (default --dir .strait) keeps straitd's admin token,
// relative to the working directory.
var defaultAdminTokenFile = filepath.Join(defaultUpDir, "data", adminTokenFile)

// defaultUpDir is the default --dir of `strait up` and `strait down`.
const defaultUpDir = ".strait"

// adminTokenEnv names the admin token file when --admin-token-file is not given.
const adminTokenEnv = "STRAIT_ADMIN_TOKEN_FILE"

// adminToken is straitd's admin token as the CLI found it, for write requests.
type adminToken struct {
	token string // empty: none found
	path  string // the file it came from, or the default that was tried
}

// loadAdminToken finds straitd's admin token: --admin-token-file, else $STRAIT_ADMIN_TOKEN_FILE,
// else .strait/data/admin-token when that file exists. A named file that cannot be read (or that
// others can read: embedded.ReadAdminToken) is an error; no token at all is not, since straitd
// answers with a clear refusal (see explain).
func (g *globals) loadAdminToken() (adminToken, error) {
	path := g.adminTokenFile
	if path == "" {
		path = os.Getenv(adminTokenEnv)
	}
	if path == "" {
		if _, err := os.Stat(defaultAdminTokenFile); errors.Is(err, fs.ErrNotExist) {
			return adminToken{path: defaultAdminTokenFile}, nil
		}
		path = defaultAdminTokenFile
	}
	tok, err := embedded.ReadAdminToken(path)
	if err != nil {
		return adminToken{}, err
	}
	return adminToken{token: tok, path: path}, nil
}

// explain turns straitd's refusal of a write (401) into what to do about it; other errors pass.
func (a adminToken) explain(command string, err error) error {
	if !embedded.IsUnauthorized(err) {
		return err
	}
	if a.token == "" {
		return fmt.Errorf("%s: straitd requires its admin token (<straitd --data-dir>/admin-token; none at %s and $%s is unset); pass --admin-token-file",
			command, a.path, adminTokenEnv)
	}
	return fmt.Errorf("%s: straitd refused the admin token in %s (another straitd's?); pass --admin-token-file with <straitd --data-dir>/admin-token: %w",
		command, a.path, err)
}
