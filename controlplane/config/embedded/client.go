package embedded

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Client talks to a straitd's store API. The zero value is not usable; use NewClient.
type Client struct {
	base       string
	hc         *http.Client
	adminToken string // sent with write requests (apply, delete); see WithAdminToken
}

// WithAdminToken makes c send straitd's admin token ("Authorization: Bearer") with its write
// requests (apply, delete), which straitd requires. Reads never carry it. It returns c.
func (c *Client) WithAdminToken(token string) *Client {
	c.adminToken = token
	return c
}

// IsUnauthorized reports whether err is straitd refusing a request for a missing or wrong
// admin token (401).
func IsUnauthorized(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == http.StatusUnauthorized
}

// NewClient returns a client for the straitd HTTP address, e.g. "127.0.0.1:15014" or a URL.
func NewClient(addr string) *Client {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	return &Client{base: strings.TrimRight(addr, "/"), hc: &http.Client{}}
}

// APIError carries every error the server returned for a request.
type APIError struct {
	Status int
	Errors []string
}

func (e *APIError) Error() string {
	return strings.Join(e.Errors, "\n")
}

// NotFound reports whether the server answered 404.
func (e *APIError) NotFound() bool { return e.Status == http.StatusNotFound }

// do sends a store API request, with the admin token on writes.
func (c *Client) do(ctx context.Context, method, path string, body any, out any) error {
	var auth string
	if c.adminToken != "" && method != http.MethodGet {
		auth = "Bearer " + c.adminToken
	}
	return c.roundTrip(ctx, method, path, auth, 64<<20, body, out)
}

// roundTrip sends body (nil for none) as JSON with the Authorization header auth ("" for none)
// and decodes an OK answer of at most limit bytes into out. Any other status is an *APIError
// with the errors straitd gave (its ErrorResponse) or, failing those, the status and body.
func (c *Client) roundTrip(ctx context.Context, method, path, auth string, limit int64, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encoding request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return fmt.Errorf("building request: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("contacting straitd at %s (is it running?): %w", c.base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return fmt.Errorf("reading response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var er ErrorResponse
		if json.Unmarshal(data, &er) != nil || len(er.Errors) == 0 {
			er.Errors = []string{fmt.Sprintf("straitd answered %s: %s", resp.Status, bytes.TrimSpace(data))}
		}
		return &APIError{Status: resp.StatusCode, Errors: er.Errors}
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decoding response: %w", err)
	}
	return nil
}

// Apply sends documents for validation and storage.
func (c *Client) Apply(ctx context.Context, docs []Document, dryRun bool) ([]Change, error) {
	var resp ChangesResponse
	err := c.do(ctx, http.MethodPost, "/apis/v1/apply", ApplyRequest{Documents: docs, DryRun: dryRun}, &resp)
	return resp.Changes, err
}

// DeleteDocuments deletes the objects named by the documents.
func (c *Client) DeleteDocuments(ctx context.Context, docs []Document) ([]Change, error) {
	var resp ChangesResponse
	err := c.do(ctx, http.MethodPost, "/apis/v1/delete", ApplyRequest{Documents: docs}, &resp)
	return resp.Changes, err
}

// Delete deletes one object by kind, namespace and name.
func (c *Client) Delete(ctx context.Context, kind, namespace, name string) ([]Change, error) {
	var resp ChangesResponse
	p := "/apis/v1/objects/" + url.PathEscape(kind) + "/" + url.PathEscape(namespace) + "/" + url.PathEscape(name)
	err := c.do(ctx, http.MethodDelete, p, nil, &resp)
	return resp.Changes, err
}

// Get lists objects of a kind as Istio JSON; namespace and name may be empty for all.
func (c *Client) Get(ctx context.Context, kind, namespace, name string) ([]json.RawMessage, error) {
	q := url.Values{"kind": {kind}}
	if namespace != "" {
		q.Set("namespace", namespace)
	}
	if name != "" {
		q.Set("name", name)
	}
	var resp ListResponse
	if err := c.do(ctx, http.MethodGet, "/apis/v1/objects?"+q.Encode(), nil, &resp); err != nil {
		return nil, err
	}
	return resp.Items, nil
}

// IsNotFound reports whether err is a 404 from the server.
func IsNotFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.NotFound()
}
