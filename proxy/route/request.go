package route

import (
	"net/http"

	"github.com/strait-mesh/strait/proxy/httpmsg"
)

// Request is what routing sees of a request: matchers, hash policies, header formatters, rate
// limit actions, faults and redirects read it only through these methods, so the proxy's
// codec beneath can change without touching them (l7.Stream implements it). Header names are
// case-insensitive and given in canonical form; returned values are views not to be kept or
// modified.
type Request interface {
	// Method returns the request method.
	Method() string
	// Authority returns the Host / :authority.
	Authority() string
	// Path returns the path and query in origin form ("*" for a server-wide OPTIONS).
	Path() string
	// Scheme returns "http" or "https".
	Scheme() string
	// HeaderValues returns every value of header name.
	HeaderValues(name string) []string
}

// HTTPRequest adapts a net/http request to Request (for tests and callers outside the proxy's
// connection manager); the conversion does not allocate.
func HTTPRequest(r *http.Request) Request { return httpRequest{r} }

// httpRequest is pointer-shaped: in an interface it takes no allocation.
type httpRequest struct{ r *http.Request }

func (h httpRequest) Method() string    { return h.r.Method }
func (h httpRequest) Authority() string { return h.r.Host }

func (h httpRequest) Path() string {
	if r := h.r; r.RequestURI != "" && r.RequestURI[0] == '/' {
		return r.RequestURI
	}
	return h.r.URL.RequestURI()
}

func (h httpRequest) Scheme() string {
	if h.r.URL.Scheme != "" {
		return h.r.URL.Scheme
	}
	if h.r.TLS != nil {
		return "https"
	}
	return "http"
}

func (h httpRequest) HeaderValues(name string) []string { return h.r.Header[name] }

// headerOnly is a Request of response headers alone (retriable_headers match responses).
type headerOnly struct{ h *httpmsg.Header }

func (headerOnly) Method() string    { return "" }
func (headerOnly) Authority() string { return "" }
func (headerOnly) Path() string      { return "" }
func (headerOnly) Scheme() string    { return "" }

// HeaderValues returns copies of the values of the fields named name (any case), in order.
func (h headerOnly) HeaderValues(name string) []string {
	var vs []string
	for i := h.h.Index(name, 0); i >= 0; i = h.h.Index(name, i+1) {
		_, v := h.h.Field(i)
		vs = append(vs, string(v))
	}
	return vs
}

// headerGetter is implemented by requests that return a header's first value without copying
// every value (the connection manager's stream).
type headerGetter interface{ Header(name string) string }

// headerLender is implemented by requests that lend header values without copying them (the
// connection manager's stream). LendHeaderField returns the value of the first field named
// name (any case) at index from or after, and that field's index: -1 when there is none. The
// string is valid only until the request's header changes: the caller uses it at once and
// keeps nothing of it.
type headerLender interface {
	LendHeaderField(name string, from int) (string, int)
}

// headerBytes is implemented by requests that lend a header's first value without a copy; the
// bytes are valid until the request's header changes.
type headerBytes interface {
	HeaderBytes(name string) ([]byte, bool)
}

// firstValue returns the first value of header name, or "".
func firstValue(r Request, name string) string {
	if g, ok := r.(headerGetter); ok {
		return g.Header(name)
	}
	if vs := r.HeaderValues(name); len(vs) > 0 {
		return vs[0]
	}
	return ""
}

// rawQuery returns the query of an origin-form path (after "?", before any "#").
func rawQuery(path string) string {
	_, q := stripQuery(path)
	return q
}
