package extauthz

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/types/known/structpb"
)

// httpRequest builds the HTTP service's check request (see the package doc).
func (c *Config) httpRequest(r *Request) (*http.Request, error) {
	target := c.pathPrefix + r.Path
	if c.pathOverride != "" {
		target = c.pathOverride
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return nil, fmt.Errorf("building the authorization request path %q: %w", target, err)
	}
	hdr := make(http.Header, 4)
	for k, vs := range r.Header {
		name := strings.ToLower(k)
		if forbidden(name) || !c.sendHTTPHeader(name) {
			continue
		}
		v := vs[0]
		if len(vs) > 1 {
			v = strings.Join(vs, ",")
		}
		hdr[k] = []string{v}
	}
	for _, h := range c.headersToAdd {
		hdr[http.CanonicalHeaderKey(h.name)] = []string{h.value}
	}
	if r.BodyBuffered {
		hdr[http.CanonicalHeaderKey(PartialBodyHeader)] = []string{strconv.FormatBool(r.PartialBody)}
	}
	if _, ok := hdr["User-Agent"]; !ok {
		hdr["User-Agent"] = nil // net/http adds none
	}
	out := &http.Request{
		Method:     r.Method,
		URL:        u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     hdr,
		Host:       r.Host,
		Body:       http.NoBody,
	}
	if c.Body != nil && len(r.Body) > 0 {
		body := r.Body
		out.ContentLength = int64(len(body))
		out.Body = io.NopCloser(bytes.NewReader(body))
		out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	return out, nil
}

// sendHTTPHeader says whether a client header (lower case) goes to the HTTP service:
// Authorization always, others when allowed_headers matches, none of them when
// disallowed_headers does.
func (c *Config) sendHTTPHeader(name string) bool {
	if c.disallowed.match(name) {
		return false
	}
	return name == "authorization" || c.allowed.match(name)
}

// fromHTTPResponse interprets the HTTP service's reply (see the package doc).
func (c *Config) fromHTTPResponse(resp *http.Response) *Response {
	code := resp.StatusCode
	switch {
	case code >= 500:
		return errorResponse(fmt.Errorf("the authorization service answered %d", code))
	case code < 200 || code > 599:
		return errorResponse(fmt.Errorf("the authorization service answered with the status %d", code))
	}
	// A deterministic order, so that repeated headers and overlapping lists apply the same way
	// on every request.
	names := make([]string, 0, len(resp.Header))
	for k := range resp.Header {
		names = append(names, k)
	}
	slices.Sort(names)

	res := &Response{Status: StatusOK}
	if code != http.StatusOK {
		body, err := readAtMost(resp.Body, MaxHTTPResponseBytes)
		if err != nil {
			return errorResponse(fmt.Errorf("reading the authorization service's denial: %w", err))
		}
		res.Status, res.Code, res.Body = StatusDenied, code, c.cutBody(string(body))
	} else {
		// The body of an allowing reply means nothing; reading a little of it lets a keep-alive
		// connection be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	}
	var md map[string]*structpb.Value
	for _, k := range names {
		name := strings.ToLower(k)
		vals := resp.Header[k]
		if name == HeadersToRemoveHeader {
			if res.Status == StatusOK {
				for _, v := range vals {
					res.RemoveHeaders = append(res.RemoveHeaders, removals(strings.Split(v, ","))...)
				}
			}
			continue
		}
		if forbidden(name) || !validName(name) {
			continue
		}
		if vals = validValues(vals); len(vals) == 0 {
			continue
		}
		if c.metadataFromHeaders.match(name) {
			if md == nil {
				md = make(map[string]*structpb.Value)
			}
			md[name] = structpb.NewStringValue(sanitize(strings.Join(vals, ",")))
		}
		if res.Status == StatusDenied {
			if c.client == nil || c.client.match(name) {
				res.ResponseHeaders = appendSet(res.ResponseHeaders, name, vals)
			}
			continue
		}
		if c.upstream.match(name) {
			res.RequestHeaders = appendSet(res.RequestHeaders, name, vals)
		}
		if c.upstreamAppend.match(name) {
			for _, v := range vals {
				res.RequestHeaders = append(res.RequestHeaders, HeaderOp{Name: name, Value: v, Action: Add})
			}
		}
		if c.clientOnSuccess.match(name) {
			for _, v := range vals {
				res.ResponseHeaders = append(res.ResponseHeaders, HeaderOp{Name: name, Value: v, Action: Add})
			}
		}
	}
	if md != nil {
		res.Metadata = &structpb.Struct{Fields: md}
	}
	return res
}

// appendSet adds ops that replace a header with all of vals: a Set, then an Add per further
// value (a repeated header such as Set-Cookie keeps every value).
func appendSet(ops []HeaderOp, name string, vals []string) []HeaderOp {
	for i, v := range vals {
		a := Add
		if i == 0 {
			a = Set
		}
		ops = append(ops, HeaderOp{Name: name, Value: v, Action: a})
	}
	return ops
}

// validValues returns vals without the values net/http cannot send (its client parser is more
// lenient than its writer).
func validValues(vals []string) []string {
	for i, v := range vals {
		if !validValue(v) {
			out := append([]string(nil), vals[:i]...)
			for _, w := range vals[i+1:] {
				if validValue(w) {
					out = append(out, w)
				}
			}
			return out
		}
	}
	return vals
}
