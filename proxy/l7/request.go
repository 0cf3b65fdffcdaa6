package l7

import (
	"context"
	"io"
	"net/http"
	"net/netip"
	"time"

	"github.com/strait-mesh/strait/proxy/attributes"
	"github.com/strait-mesh/strait/proxy/ratelimit"
	"github.com/strait-mesh/strait/proxy/route"
)

// The request and response as filters see them. Filters and the router reach the downstream
// request and response only through these Stream methods, never through the codec's own types,
// so the codec beneath (net/http today, proxy/h1 and httpmsg next: issue 10) can change without
// touching them. Header names are case-insensitive; values returned are views that must not be
// kept past the request or modified.

// Method returns the request method.
func (s *Stream) Method() string { return s.r.Method }

// Authority returns the request's authority (HTTP/1.1 Host, HTTP/2 :authority).
func (s *Stream) Authority() string { return s.r.Host }

// SetAuthority replaces the request's authority.
func (s *Stream) SetAuthority(a string) { s.r.Host = a }

// Path returns the request's path and query in origin form ("*" for a server-wide OPTIONS).
func (s *Stream) Path() string { return s.r.RequestURI }

// SetPath replaces the request's path and query (origin form).
func (s *Stream) SetPath(p string) error { return setRequestURI(s.r, p) }

// Scheme returns the request's scheme: "https" when it came over TLS, else "http".
// Stream is a route.Request: Method, Authority, Path, Scheme and HeaderValues.
func (s *Stream) Scheme() string {
	if s.r.URL == nil {
		return ""
	}
	return s.r.URL.Scheme
}

// HTTP1 reports whether the request came over HTTP/1.x.
func (s *Stream) HTTP1() bool { return s.r.ProtoMajor == 1 }

// Context returns the request's context, done when the downstream goes away or the stream's
// timeouts fire.
func (s *Stream) Context() context.Context { return s.r.Context() }

// Header returns the first value of the request header name, or "".
func (s *Stream) Header(name string) string { return s.r.Header.Get(name) }

// HeaderValues returns every value of the request header name (a view: do not modify).
func (s *Stream) HeaderValues(name string) []string { return s.r.Header.Values(name) }

// HasHeader reports whether the request has a header name.
func (s *Stream) HasHeader(name string) bool {
	return len(s.r.Header.Values(name)) > 0
}

// SetHeader makes value the only value of the request header name.
func (s *Stream) SetHeader(name, value string) { s.r.Header.Set(name, value) }

// setHeaderShared is SetHeader with a shared single-value slice (hdrTrue...): no allocation.
// name must be in canonical form.
func (s *Stream) setHeaderShared(name string, v []string) { s.r.Header[name] = v }

// AddHeader appends a value to the request header name.
func (s *Stream) AddHeader(name, value string) { s.r.Header.Add(name, value) }

// DelHeader removes the request header name.
func (s *Stream) DelHeader(name string) { s.r.Header.Del(name) }

// RangeHeaders calls f for each request header value until f returns false.
func (s *Stream) RangeHeaders(f func(name, value string) bool) {
	for k, vs := range s.r.Header {
		for _, v := range vs {
			if !f(k, v) {
				return
			}
		}
	}
}

// ContentLength returns the request body's length: -1 unknown, 0 none.
func (s *Stream) ContentLength() int64 { return s.r.ContentLength }

// Body returns the request body.
func (s *Stream) Body() io.ReadCloser { return s.r.Body }

// hasBody reports whether the request may have a body (not known to be empty).
func (s *Stream) hasBody() bool {
	return s.r.Body != nil && s.r.Body != http.NoBody && s.r.ContentLength != 0
}

// setBody replaces the request body (a filter that read its start puts it back).
func (s *Stream) setBody(b io.ReadCloser) { s.r.Body = b }

// remoteAddr is the downstream peer's address as the codec reports it, for requests without
// the connection's own (ConnInfo.Source).
func (s *Stream) remoteAddr() netip.AddrPort {
	ap, _ := netip.ParseAddrPort(s.r.RemoteAddr)
	return ap
}

// ResponseHeader returns the first value of the response header name, or "".
func (s *Stream) ResponseHeader(name string) string { return s.w.Header().Get(name) }

// SetResponseHeader makes value the only value of the response header name (before the
// response head is written).
func (s *Stream) SetResponseHeader(name, value string) { s.w.Header().Set(name, value) }

// AddResponseHeader appends a value to the response header name.
func (s *Stream) AddResponseHeader(name, value string) { s.w.Header().Add(name, value) }

// DelResponseHeader removes the response header name.
func (s *Stream) DelResponseHeader(name string) { s.w.Header().Del(name) }

// respHeader is the codec's response header map, for the route package's header operations
// (which still take net/http's type) and the router's copy of the upstream response.
func (s *Stream) respHeader() http.Header { return s.w.Header() }

// writeBody writes response body bytes downstream.
func (s *Stream) writeBody(p []byte) (int, error) { return s.w.Write(p) }

// reqHeader is the codec's request header map, for the packages that still take net/http's
// type (route's header operations, extauthz, tracing, attributes) until they take httpmsg's.
func (s *Stream) reqHeader() http.Header { return s.r.Header }

// requestHeaders is the stream's request headers as the access log, CEL attributes
// (attributes.Headers) and the tracer (tracing.Headers) read and edit them: Stream's own
// methods under other names. It is pointer-shaped: converting one to an interface takes no
// allocation.
type requestHeaders Stream

func (v *requestHeaders) Values(name string) []string { return (*Stream)(v).HeaderValues(name) }

func (v *requestHeaders) Range(f func(name, value string) bool) { (*Stream)(v).RangeHeaders(f) }

func (v *requestHeaders) Set(name, value string) { (*Stream)(v).SetHeader(name, value) }

func (v *requestHeaders) Del(name string) { (*Stream)(v).DelHeader(name) }

// sentHeaders and sentTrailers are the response's headers and trailers as sent downstream, for
// the access log and CEL attributes once the response went out: the connection's own writer's
// (filters' wrappers of s.w are detached by then).
func (s *Stream) sentHeaders() attributes.Headers { return attributes.HTTPHeaders(s.downW.Header()) }

func (s *Stream) sentTrailers() attributes.Headers {
	return attributes.HTTPTrailers(s.downW.Header())
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
// through route.Request, which Stream implements; its header operations still edit net/http's
// header maps (the next step of issue 10 gives them httpmsg's), so filters call these.

// matchRoute returns the route table's route for the request, or nil.
func (s *Stream) matchRoute() *route.Route { return s.Table.Match(s) }

// pickCluster chooses the forwarding route's cluster for the request.
func (s *Stream) pickCluster() (string, *route.Target) { return s.Route.PickCluster(s) }

// applyRequestOps applies header operations to the request headers.
func (s *Stream) applyRequestOps(ops *route.HeaderOps) { ops.Apply(s.r.Header, s, &s.rinfo) }

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
