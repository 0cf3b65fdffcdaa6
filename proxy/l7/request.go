package l7

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"time"
	"unsafe"

	"github.com/strait-mesh/strait/proxy/attributes"
	"github.com/strait-mesh/strait/proxy/httpmsg"
	"github.com/strait-mesh/strait/proxy/ratelimit"
	"github.com/strait-mesh/strait/proxy/route"
)

// The request and response as filters see them. Filters and the router reach the downstream
// request and response only through these Stream methods, never through the codec's own types,
// so the codec beneath (net/http's server through an adapter, nethttp.go; proxy/h1 next: issue
// 10) can change without touching them. Header names are case-insensitive; values returned are
// views that must not be kept past the request or modified.

// downstream is the response side of a downstream stream, as a codec provides it: the response
// head (header fields, then the status), the body, trailers sent after it, and the connection
// controls the connection manager needs. Header and Trailer are edited before the head and
// after the body respectively; the codec sends them.
type downstream interface {
	// Header returns the response header fields, sent by WriteHeader.
	Header() *httpmsg.Header
	// Trailer returns the response trailer fields, sent after the body when the head
	// announced them (a Trailer field) and the protocol carries them.
	Trailer() *httpmsg.Header
	// WriteHeader sends the response head (a 1xx status sends an interim response).
	WriteHeader(status int)
	// Write sends body bytes, after WriteHeader(200) if no status was sent.
	Write(p []byte) (int, error)
	// Flush sends what is buffered.
	Flush() error
	// Hijack takes the connection over for a protocol switch; nothing is written on it yet.
	// It returns the bytes the codec read past the request head.
	Hijack() (net.Conn, []byte, error)
	// EnableFullDuplex lets the response stream while the request body is still being read
	// (HTTP/1.1).
	EnableFullDuplex() error
	// SetReadDeadline and SetWriteDeadline bound the stream's body reads and response writes;
	// errors.ErrUnsupported (or net/http's ErrNotSupported) when the codec cannot.
	SetReadDeadline(t time.Time) error
	SetWriteDeadline(t time.Time) error
}

// Method returns the request method.
func (s *Stream) Method() string { return s.method }

// Authority returns the request's authority (HTTP/1.1 Host, HTTP/2 :authority).
func (s *Stream) Authority() string { return s.authority }

// SetAuthority replaces the request's authority.
func (s *Stream) SetAuthority(a string) { s.authority = a }

// Path returns the request's path and query in origin form ("*" for a server-wide OPTIONS).
func (s *Stream) Path() string { return s.path }

// SetPath replaces the request's path and query (origin form); it must parse as one.
func (s *Stream) SetPath(p string) error {
	if _, err := url.ParseRequestURI(p); err != nil {
		return err
	}
	s.path = p
	return nil
}

// Scheme returns the request's scheme: "https" when it came over TLS, else "http".
// Stream is a route.Request: Method, Authority, Path, Scheme and HeaderValues.
func (s *Stream) Scheme() string { return s.scheme }

// HTTP1 reports whether the request came over HTTP/1.x.
func (s *Stream) HTTP1() bool { return s.req.Proto != httpmsg.HTTP2 }

// Context returns the request's context, done when the downstream goes away or the stream's
// timeouts fire. The caller may keep it: the Stream then does not reuse its context object
// (streamCtx) for another request.
func (s *Stream) Context() context.Context {
	s.ctxOut = true
	return s.ctx
}

// Header returns the first value of the request header name, or "".
func (s *Stream) Header(name string) string { return s.req.Header.Get(name) }

// HeaderBytes returns the first value of the request header name, not copied: valid until the
// header changes.
func (s *Stream) HeaderBytes(name string) ([]byte, bool) { return s.req.Header.Value(name) }

// LendHeaderField returns the value of the first request header field named name at index
// from or after, and its index (-1 when none), not copied: the string is valid only until the
// header changes (route matchers and hashes use it at once).
func (s *Stream) LendHeaderField(name string, from int) (string, int) {
	h := &s.req.Header
	i := h.Index(name, from)
	if i < 0 {
		return "", -1
	}
	_, v := h.Field(i)
	return unsafe.String(unsafe.SliceData(v), len(v)), i
}

// HeaderValues returns every value of the request header name (a copy: nil when absent).
func (s *Stream) HeaderValues(name string) []string { return headerValues(&s.req.Header, name) }

// HasHeader reports whether the request has a header name.
func (s *Stream) HasHeader(name string) bool { return s.req.Header.Has(name) }

// SetHeader makes value the only value of the request header name.
func (s *Stream) SetHeader(name, value string) {
	s.noEnvoyFields = false
	s.req.Header.Set(name, value)
}

// AddHeader appends a value to the request header name.
func (s *Stream) AddHeader(name, value string) {
	s.noEnvoyFields = false
	s.req.Header.Add(name, value)
}

// DelHeader removes the request header name.
func (s *Stream) DelHeader(name string) { s.req.Header.Del(name) }

// RangeHeaders calls f for each request header value until f returns false.
func (s *Stream) RangeHeaders(f func(name, value string) bool) { rangeHeader(&s.req.Header, f) }

// ContentLength returns the request body's length: -1 unknown, 0 none.
func (s *Stream) ContentLength() int64 { return s.req.ContentLength }

// Body returns the request body. The caller may keep it: the codec then does not reuse the
// body's objects for another request (bodyHeld).
func (s *Stream) Body() io.ReadCloser {
	s.bodyHeld = true
	return s.body
}

// hasBody reports whether the request may have a body (not known to be empty).
//
// http.NoBody is an empty struct: a body is it when its dynamic type is, which one comparison
// of the interface's type word tells (s.body != http.NoBody also compares the values, with a
// call of runtime.ifaceeq laid out in the callers' lines).
func (s *Stream) hasBody() bool {
	return s.body != nil && ifaceType(&s.body) != noBodyType && s.req.ContentLength != 0
}

// noBodyType is the type word of http.NoBody as an io.ReadCloser (hasBody).
var noBodyType = func() unsafe.Pointer {
	var b io.ReadCloser = http.NoBody
	return ifaceType(&b)
}()

// ifaceType returns the type word (itab) of the interface value *b.
func ifaceType(b *io.ReadCloser) unsafe.Pointer {
	return (*[2]unsafe.Pointer)(unsafe.Pointer(b))[0]
}

// setBody replaces the request body (a filter that read its start puts it back).
func (s *Stream) setBody(b io.ReadCloser) { s.body = b }

// remoteAddr is the downstream peer's address as the codec reports it, for requests without
// the connection's own (ConnInfo.Source).
func (s *Stream) remoteAddr() netip.AddrPort { return s.peer }

// ResponseHeader returns the first value of the response header name, or "".
func (s *Stream) ResponseHeader(name string) string { return s.w.Header().Get(name) }

// SetResponseHeader makes value the only value of the response header name (before the
// response head is written).
func (s *Stream) SetResponseHeader(name, value string) { s.w.Header().Set(name, value) }

// AddResponseHeader appends a value to the response header name.
func (s *Stream) AddResponseHeader(name, value string) { s.w.Header().Add(name, value) }

// DelResponseHeader removes the response header name.
func (s *Stream) DelResponseHeader(name string) { s.w.Header().Del(name) }

// respHeader is the response header fields, for the route package's header operations and the
// router's copy of the upstream response.
func (s *Stream) respHeader() *httpmsg.Header { return s.w.Header() }

// reqHeader is the request header fields, for the route package's header operations and
// ext_authz's edits.
func (s *Stream) reqHeader() *httpmsg.Header {
	s.noEnvoyFields = false // the caller may add fields
	return &s.req.Header
}

// requestHeaders is the stream's request headers as the access log, CEL attributes
// (attributes.Headers) and the tracer (tracing.Headers) read and edit them: Stream's own
// methods under other names. It is pointer-shaped: converting one to an interface takes no
// allocation.
type requestHeaders Stream

func (v *requestHeaders) Values(name string) []string { return (*Stream)(v).HeaderValues(name) }

func (v *requestHeaders) Range(f func(name, value string) bool) { (*Stream)(v).RangeHeaders(f) }

// LendFirst implements attributes.FirstLender: the first value of name, not copied (valid until
// the request's header changes; the access log appends it to its line at once).
func (v *requestHeaders) LendFirst(name string) (string, bool) {
	s, i := (*Stream)(v).LendHeaderField(name, 0)
	return s, i >= 0
}

func (v *requestHeaders) Set(name, value string) { (*Stream)(v).SetHeader(name, value) }

func (v *requestHeaders) Del(name string) { (*Stream)(v).DelHeader(name) }

// sentHeaders and sentTrailers are the response's headers and trailers as sent downstream, for
// the access log and CEL attributes once the response went out: the codec's own writer's
// (filters' wrappers of s.w are detached by then).
func (s *Stream) sentHeaders() attributes.Headers {
	return (*attributes.MessageHeaders)(s.downW.Header())
}

func (s *Stream) sentTrailers() attributes.Headers {
	return (*attributes.MessageHeaders)(s.downW.Trailer())
}

// headerValues returns every value of name in h, copied; nil when absent.
func headerValues(h *httpmsg.Header, name string) []string {
	i := h.Index(name, 0)
	if i < 0 {
		return nil
	}
	var out []string
	for ; i >= 0; i = h.Index(name, i+1) {
		_, v := h.Field(i)
		out = append(out, string(v))
	}
	return out
}

// rangeHeader calls f for each field of h, as strings, until f returns false.
func rangeHeader(h *httpmsg.Header, f func(name, value string) bool) {
	for i := 0; i < h.Len(); i++ {
		n, v := h.Field(i)
		if !f(string(n), string(v)) {
			return
		}
	}
}

// responseHook is a filter's hook on the response head (Envoy's encodeHeaders): it runs once,
// as the head of the final response is written, whether the upstream's or a local reply, and
// edits the response headers. Hooks run innermost filter first, as Envoy's encoder chain.
type responseHook interface {
	encodeHeaders(s *Stream, status int)
}

// pushHook installs hook for the rest of the filter's scope; the filter calls popHook(n) with
// the returned n when its scope ends. The first few hooks take no allocation.
func (s *Stream) pushHook(hook responseHook) int {
	n := len(s.hooks)
	if s.hooks == nil {
		s.hooks = s.hookBuf[:0]
	}
	s.hooks = append(s.hooks, hook)
	return n
}

// popHook removes the hooks installed since pushHook returned n.
func (s *Stream) popHook(n int) {
	clear(s.hooks[n:])
	s.hooks = s.hooks[:n]
}

// runHooks runs the installed hooks for the final response head (status >= 200).
func (s *Stream) runHooks(status int) {
	for i := len(s.hooks) - 1; i >= 0; i-- {
		s.hooks[i].encodeHeaders(s, status)
	}
}

// The route package's request-dependent operations. The route package reads the request
// through route.Request, which Stream implements, and edits headers as httpmsg.Header.

// matchRoute returns the route table's route for the request, or nil.
func (s *Stream) matchRoute() *route.Route { return s.Table.Match(s) }

// pickCluster chooses the forwarding route's cluster for the request.
func (s *Stream) pickCluster() (string, *route.Target) { return s.Route.PickCluster(s) }

// applyRequestOps applies header operations to the request headers.
func (s *Stream) applyRequestOps(ops *route.HeaderOps) {
	s.noEnvoyFields = false
	ops.Apply(&s.req.Header, s, &s.rinfo)
}

// applyResponseOps applies header operations to the response headers.
func (s *Stream) applyResponseOps(ops *route.HeaderOps) { ops.Apply(s.w.Header(), s, &s.rinfo) }

// localRateLimitDescriptors appends the local rate limit filter's descriptors for the request.
func (s *Stream) localRateLimitDescriptors(l *route.LocalRateLimit, d *ratelimit.Descriptors) {
	l.AppendDescriptors(d, s.Route, s, &s.rinfo, s.Cluster)
}

// routeRateLimitDescriptors appends the route's rate limit descriptors of stage.
func (s *Stream) routeRateLimitDescriptors(d *ratelimit.Descriptors, stage uint32) {
	s.Route.AppendRateLimitDescriptors(d, stage, route.VhOverride, s, &s.rinfo, s.Cluster)
}

// faultApplies, faultDelay and faultAbort are the fault filter's decisions for the request.
func (s *Stream) faultApplies(f *route.Fault) bool { return f.Applies(s, s.Cluster) }

func (s *Stream) faultDelay(f *route.Fault) time.Duration { return f.DelayFor(s) }

func (s *Stream) faultAbort(f *route.Fault) (status, grpcStatus int) { return f.AbortFor(s) }

// mirrorCluster returns the cluster the request is mirrored to by m, or "".
func (s *Stream) mirrorCluster(m *route.Mirror) string { return m.ClusterName(s) }
