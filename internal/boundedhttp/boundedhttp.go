// Package boundedhttp fetches a document from a peer the control plane does not trust (a proxy's
// statistics, a JSON Web Key Set) with a bound on what it reads: Get wants a 200 answer and
// reads at most a given number of bytes of its body. The caller's http.Client and context bound
// the time and say whether redirects are followed.
package boundedhttp

import (
	"context"
	"fmt"
	"io"
	"net/http"
)

// Get fetches url with client, asking for the media type accept, and returns the body of a 200
// answer. Another status, or a body of more than maxBody bytes, is an error; so is the client's
// error (returned as the client made it, so that callers can tell a timeout).
func Get(ctx context.Context, client *http.Client, url, accept string, maxBody int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", accept)
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("reading the body: %w", err)
	}
	if int64(len(body)) > maxBody {
		return nil, fmt.Errorf("body larger than %d bytes", maxBody)
	}
	return body, nil
}

// NoRedirects is an http.Client's CheckRedirect that follows no redirect: the client returns
// the redirect itself, which Get then refuses by its status.
func NoRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
