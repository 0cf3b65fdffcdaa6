package bookstore

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// maxUpstreamBody bounds the size of an upstream answer that a service reads.
const maxUpstreamBody = 1 << 20

// upstream makes the calls of one service to the others: each call carries the propagated
// headers of the request being served and is bounded by timeout. It is safe for concurrent use.
type upstream struct {
	client  *http.Client
	timeout time.Duration
}

// newUpstream returns an upstream whose calls time out after timeout. Its transport is
// net/http's default one (keep-alive pools, HTTP_PROXY/NO_PROXY from the environment, which
// never apply to loopback addresses) with more idle connections per host; a non-nil proxy
// replaces the environment's: every call goes through it, in absolute form
// ("GET http://reviews:9080/reviews/0"), which keeps the upstream's mesh name as the Host.
func newUpstream(timeout time.Duration, proxy *url.URL) *upstream {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 32
	if proxy != nil {
		t.Proxy = http.ProxyURL(proxy)
	}
	return &upstream{client: &http.Client{Transport: t}, timeout: timeout}
}

// StatusError is the error of an upstream call answered with a status other than 200.
type StatusError struct {
	URL  string
	Code int
	Msg  string // the answer's "error" field, if any
}

func (e *StatusError) Error() string {
	if e.Msg != "" {
		return fmt.Sprintf("GET %s: %d %s: %s", e.URL, e.Code, http.StatusText(e.Code), e.Msg)
	}
	return fmt.Sprintf("GET %s: %d %s", e.URL, e.Code, http.StatusText(e.Code))
}

// getJSON sends GET base+path on behalf of the inbound request in, with in's propagated headers
// (and any set in extra), and decodes a 200 answer's JSON body into out. Any other status is a
// *StatusError. The call ends after u.timeout or when in's context is done.
func (u *upstream) getJSON(in *http.Request, extra http.Header, base, path string, out any) error {
	ctx, cancel := context.WithTimeout(in.Context(), u.timeout)
	defer cancel()
	target := strings.TrimSuffix(base, "/") + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", target, err)
	}
	propagate(in, req)
	for k, v := range extra {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "application/json")
	resp, err := u.client.Do(req)
	if err != nil {
		return err // *url.Error names the method and URL
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxUpstreamBody))
	if err != nil {
		return fmt.Errorf("GET %s: reading answer: %w", target, err)
	}
	if resp.StatusCode != http.StatusOK {
		var eb errorBody
		_ = json.Unmarshal(body, &eb) // best effort: a proxy's 503 is plain text
		return &StatusError{URL: target, Code: resp.StatusCode, Msg: eb.Error}
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("GET %s: decoding answer: %w", target, err)
	}
	return nil
}
