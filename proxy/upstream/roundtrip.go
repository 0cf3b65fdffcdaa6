package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/strait-mesh/strait/proxy/balance"
	"github.com/strait-mesh/strait/proxy/h1"
	"github.com/strait-mesh/strait/proxy/httpmsg"
)

// originalDstHeader is the header an ORIGINAL_DST cluster with use_http_header reads.
const originalDstHeader = "X-Envoy-Original-Dst-Host"

// pick chooses the endpoint for a request or connection.
func (c *Cluster) pick(ctx context.Context, hdr http.Header, head *MessageHead, lb balance.Context) (*endpoint, error) {
	if c.kind == discoveryOriginalDst {
		return c.pickOriginalDst(ctx, hdr, head)
	}
	if c.warm != nil {
		if err := c.warmed(ctx); err != nil {
			return nil, c.notWarmed(err)
		}
	}
	if ep := c.pickFromSet(lb); ep != nil {
		return ep, nil
	}
	return nil, c.noHealthy()
}

// pickFromSet is pick's common case: the balancer's choice among the current hosts; nil when
// none is healthy. roundTrip and RoundTripMessage call it without pick.
func (c *Cluster) pickFromSet(lb balance.Context) *endpoint {
	hs := c.set.Load()
	if hs.panic {
		c.st.lbHealthyPanic.Inc()
	}
	if i := hs.lb.Pick(lb); i >= 0 {
		return hs.eps[i]
	}
	return nil
}

// pickOriginalDst is pick for an ORIGINAL_DST cluster: the endpoint of the request's original
// destination. Not inlined: it keeps pick's common path short (instruction-cache lines per
// request).
//
//go:noinline
func (c *Cluster) pickOriginalDst(ctx context.Context, hdr http.Header, head *MessageHead) (*endpoint, error) {
	a, ok := OriginalDst(ctx)
	if head != nil && head.OriginalDst.IsValid() {
		a, ok = head.OriginalDst, true
	}
	if c.origHeader && (hdr != nil || head != nil) {
		v := ""
		if head != nil {
			v = head.Header.Get(originalDstHeader)
		} else {
			v = hdr.Get(originalDstHeader)
		}
		if v != "" {
			if h, err := netip.ParseAddrPort(v); err == nil {
				a, ok = h, true
			}
		}
	}
	if !ok || c.closed.Load() {
		c.st.cxNoneHealthy.Inc()
		return nil, &Error{Flag: FlagNoHealthyUpstream, Err: errNoOriginalDst}
	}
	ep := c.originalDstEndpoint(a)
	ep.lastUsed.Store(time.Now().UnixNano())
	return ep, nil
}

// notWarmed is pick's failure while a DNS cluster waits for its first resolution (UH). Not
// inlined: a failure path, kept out of the request's common path.
//
//go:noinline
func (c *Cluster) notWarmed(err error) error {
	c.st.cxNoneHealthy.Inc()
	return &Error{Flag: FlagNoHealthyUpstream, Err: fmt.Errorf("waiting for the first DNS resolution: %w", err)}
}

// noHealthy is pick's failure when the balancer finds no host (UH). Not inlined: a failure
// path, kept out of the request's common path.
//
//go:noinline
func (c *Cluster) noHealthy() error {
	c.st.cxNoneHealthy.Inc()
	return &Error{Flag: FlagNoHealthyUpstream, Err: errNoHealthy}
}

// poolKind returns the kind of pool a request to ep goes to. Not inlined: clusters mostly
// speak HTTP/1.1 (roundTrip asks only the others), and its copy inlined would lengthen
// roundTrip's common path.
//
//go:noinline
func (c *Cluster) poolKind(req *http.Request, ep *endpoint) poolKind {
	switch c.proto {
	case protoHTTP2:
		return poolH2
	case protoDownstream:
		if req.ProtoMajor == 2 {
			return poolH2
		}
	case protoAuto:
		if ep.ts.tlsConfig() != nil {
			return poolAuto
		}
	}
	return poolH1
}

// RoundTrip sends req to a host of the cluster chosen with lb and returns the response, whose
// Body must be closed (that ends the request for circuit breaking and least-request
// accounting). req may be a server-side request (RequestURI set, URL without scheme/host): it is
// shallow-copied as needed and its Header gains an empty User-Agent entry when it has none, so
// that no default User-Agent is added. A 101 response's Body is an io.ReadWriteCloser (the
// upgraded connection). Failures are *Error with Envoy's response flag: UO (circuit breaker),
// UH (no healthy host), UF (connect failure), UC (connection closed or reset before a
// response), UR (HTTP/2 stream reset by the upstream), UT (deadline of req's context), DC
// (req's context canceled).
func (c *Cluster) RoundTrip(req *http.Request, lb balance.Context) (*http.Response, error) {
	resp, _, err := c.roundTrip(req, nil, lb)
	return resp, err
}

// MessageHead is an outbound request's head as the connection manager keeps it (proxy/httpmsg),
// for RoundTripMessage.
type MessageHead struct {
	// Header holds the header fields (the Host field is the request's Host).
	Header *httpmsg.Header
	// Path is the path and query, in origin form.
	Path string
	// OriginalDst is the downstream connection's original destination, for an ORIGINAL_DST
	// cluster; WithOriginalDst on the request's context, without a context value per request.
	OriginalDst netip.AddrPort
	// Report, when set, receives the upstream host as WithHostReport's does.
	Report *HostReport
	// Watcher, when set, is the h1.Watcher the request's context is and offers under
	// WatcherKey (see WatcherKey), which the HTTP/1.1 pools then watch without looking it up
	// in the context (a context value lookup per request). It must be the request's context
	// itself (req.Context()), set again for each attempt whose request has a context of its
	// own; unset, the pools look it up.
	Watcher h1.Watcher
	// WroteHeaders, when set, is called once the request's head is written, as an
	// httptrace.ClientTrace's WroteHeaders is. The HTTP/1.1 pools call it and do not look up
	// the request context's ClientTrace (a context value lookup per request); the other
	// transports call the context's, so a caller that needs it on every path sets both.
	WroteHeaders func()
	// Released is set by RoundTripMessage when it returned a response and keeps no reference
	// to req (its HTTP/1.1 path; an HTTP/2 or net/http transport may read req after it
	// returned), so that the caller may reuse req for another request.
	Released bool
}

// RoundTripMessage is RoundTrip for a request whose header fields and path are in head, and
// whose response the caller reads as a Response: req.Header and req.URL are not read and may
// be nil, nor is head changed. The HTTP/1.1 pools write head as it is and return their codec's
// response head, without net/http's types (valid until its Body is closed); for the others
// (HTTP/2, ALPN-negotiated) a copy of req gets a header map and URL built from head, and the
// response is converted (FromHTTP). head is not changed but for its Released field.
//
// Its common path (a cluster of HTTP/1.1 hosts from its current set, a pool that exists, no
// PROXY protocol) is this function, kept short: its rare parts are functions of their own,
// not inlined, and every other case is roundTrip's. The code a request runs through, more
// than its loops, is what it costs in instruction-cache lines.
func (c *Cluster) RoundTripMessage(req *http.Request, head *MessageHead, lb balance.Context) (*Response, error) {
	if c.kind == discoveryOriginalDst || c.warm != nil || c.proto != protoHTTP1 {
		return c.roundTripOther(req, head, lb)
	}
	head.Released = false
	c.st.rqTotal.Inc()
	if !c.breaker.rq.acquire() {
		return nil, c.requestOverflow()
	}
	ep := c.pickFromSet(lb)
	if ep == nil {
		return nil, c.unpicked(nil)
	}
	ctx := req.Context()
	report := head.Report
	if report == nil {
		report = hostReportOf(ctx)
	}
	report.host(ep)
	ep.active.Add(1)
	p := ep.pools[poolH1].Load()
	if p == nil || ep.ts.proxyVersion() != 0 {
		return c.sendOther(ctx, req, head, ep, report, 0)
	}
	pc, reused, err := p.acquire(ctx)
	if err != nil {
		return nil, c.failed(ctx, ep, err, true)
	}
	// An HTTP/1.1 pool's connections are h1Clients, and its request is req itself (prepare).
	hc := pc.h1
	resp, err := hc.roundTrip(req, head)
	if err != nil {
		if !retryStale(ctx, req, reused, 0) {
			return nil, c.failed(ctx, ep, err, false)
		}
		return c.sendOther(ctx, req, head, ep, report, 1)
	}
	c.h1Received(hc, resp, ep, report)
	// The codec reads the request only while hc.roundTrip runs.
	head.Released = true
	return resp, nil
}

// roundTripOther is RoundTripMessage for the clusters its common path does not serve. Not
// inlined: it keeps RoundTripMessage short.
//
//go:noinline
func (c *Cluster) roundTripOther(req *http.Request, head *MessageHead, lb balance.Context) (*Response, error) {
	_, resp, err := c.roundTrip(req, head, lb)
	return resp, err
}

// sendOther is RoundTripMessage past its choice of ep (accounted for) when its common path
// does not apply (no pool yet, the PROXY protocol), or for a retry on a fresh connection
// (attempt 1): send's loop. Not inlined: a rare path.
//
//go:noinline
func (c *Cluster) sendOther(ctx context.Context, req *http.Request, head *MessageHead, ep *endpoint, report *HostReport,
	attempt int) (*Response, error) {
	_, resp, err := c.send(ctx, req, head, ep, report, attempt)
	return resp, err
}

// roundTrip is RoundTrip (head nil: the response in net/http's form) and RoundTripMessage
// (head set: the response as a Response) beyond the latter's common path.
func (c *Cluster) roundTrip(req *http.Request, head *MessageHead, lb balance.Context) (*http.Response, *Response, error) {
	msg := head != nil
	if msg {
		head.Released = false
	}
	ctx := req.Context()
	c.st.rqTotal.Inc()
	if !c.breaker.rq.acquire() {
		return nil, nil, c.requestOverflow()
	}
	var ep *endpoint
	if c.kind != discoveryOriginalDst && c.warm == nil {
		if ep = c.pickFromSet(lb); ep == nil {
			return nil, nil, c.unpicked(nil)
		}
	} else {
		var err error
		if ep, err = c.pick(ctx, req.Header, head, lb); err != nil {
			return nil, nil, c.unpicked(err)
		}
	}
	var report *HostReport
	if msg && head.Report != nil {
		report = head.Report
	} else {
		report = hostReportOf(ctx)
	}
	report.host(ep)
	ep.active.Add(1)
	return c.send(ctx, req, head, ep, report, 0)
}

// send is roundTrip past its choice of ep, which is accounted for: the pool, then attempts
// from attempt on (a kept-alive connection that fails on first use is retried once: see
// retryStale).
func (c *Cluster) send(ctx context.Context, req *http.Request, head *MessageHead, ep *endpoint, report *HostReport,
	attempt int) (*http.Response, *Response, error) {
	msg := head != nil
	k := poolH1
	if c.proto != protoHTTP1 {
		k = c.poolKind(req, ep)
	}
	p := ep.pools[k].Load()
	if p == nil || ep.ts.proxyVersion() != 0 {
		p = ep.requestPool(ctx, k)
	}
	out := req
	if !msg || p.kind != poolH1 {
		out = prepare(req, head, p)
	}
	for ; ; attempt++ {
		pc, reused, err := p.acquire(ctx)
		if err != nil {
			return nil, nil, c.failed(ctx, ep, err, true)
		}
		hc := pc.h1
		if hc == nil || !msg {
			hresp, mresp, err := c.roundTripConn(pc, out, ep, report, msg)
			if err == nil {
				return hresp, mresp, nil
			}
			if !retryStale(ctx, out, reused, attempt) {
				return nil, nil, c.failed(ctx, ep, err, false)
			}
			continue
		}
		// The codec's response head as it is. An h1Client belongs to an HTTP/1.1 pool,
		// whose request is req itself (prepare) with head.
		resp, err := hc.roundTrip(out, head)
		if err != nil {
			if !retryStale(ctx, out, reused, attempt) {
				return nil, nil, c.failed(ctx, ep, err, false)
			}
			continue
		}
		c.h1Received(hc, resp, ep, report)
		// The codec reads the request only while hc.roundTrip runs.
		head.Released = out == req
		return nil, resp, nil
	}
}

// h1Received is received for a response of hc's codec to a message (RoundTripMessage), and
// its body's accounting: wrapBody without an allocation, as the exchange's own wrapper serves
// (the connection carries one request at a time, and the router is done with it once it
// closed the body). Only a 101 response or an answer to CONNECT can be a tunnel (h1.Conn,
// http1's ResponseParser.Body), which gets one of its own: the others' bodies are not asked
// for io.ReadWriteCloser, a dynamic type assertion. The wrapper's cluster and endpoint are the
// connection's, set once (pool.dial); its pointer is stored in resp only when it differs,
// which spares the store's write barrier.
func (c *Cluster) h1Received(hc *h1Client, resp *Response, ep *endpoint, report *HostReport) {
	// received, without its call: a plaintext response has no peer to report, and a cluster
	// without outlier detection nothing to report to (receivedRare, out of the way).
	c.st.countStatus(resp.Status)
	if resp.TLS != nil || c.outlier != nil {
		c.receivedRare(ep, report, resp)
	}
	x := &hc.x
	if resp.Status == http.StatusSwitchingProtocols || x.req.Method == http.MethodConnect {
		x.tunnel(resp, c, ep)
		return
	}
	a := &x.acct
	a.ReadCloser, a.ended = x.resp.Body, false
	if resp.Body != io.ReadCloser(a) {
		resp.Body = a
	}
}

// receivedRare is h1Received's part for a response on a TLS connection (the host report's
// peer) or from a cluster with outlier detection. Not inlined: it keeps h1Received's common
// path (plaintext, no outlier detection) short.
//
//go:noinline
func (c *Cluster) receivedRare(ep *endpoint, report *HostReport, resp *Response) {
	if resp.TLS != nil {
		report.peer(resp.TLS)
	}
	if c.outlier != nil {
		c.report(ep, resp.Status)
	}
}

// unpicked is roundTrip's failure to pick an endpoint, pick's err or, when nil, the balancer's
// (noHealthy): the request's circuit-breaker slot is returned. Not inlined: a failure path,
// kept out of roundTrip's common path.
//
//go:noinline
func (c *Cluster) unpicked(err error) error {
	if err == nil {
		err = c.noHealthy()
	}
	c.breaker.rq.release()
	c.st.rqDone.Add(1) // it started (upstream_rq_total): upstream_rq_active
	return err
}

// failed ends the accounting of a request that failed and classifies its error (failure).
// Not inlined: a failure path, kept out of roundTrip's common path.
//
//go:noinline
func (c *Cluster) failed(ctx context.Context, ep *endpoint, err error, connecting bool) error {
	c.finish(ep)
	return c.failure(ctx, ep, err, connecting)
}

// retryStale reports whether a failed attempt is retried once on a fresh connection: a
// kept-alive connection the server closed while idle fails on first use, and a request without
// a body is retried then, as net/http's Transport does. Not inlined: a failure path.
//
//go:noinline
func retryStale(ctx context.Context, out *http.Request, reused bool, attempt int) bool {
	return reused && attempt == 0 && ctx.Err() == nil && (out.Body == nil || out.Body == http.NoBody)
}

// roundTripConn is an attempt of roundTrip on a connection of net/http's client (HTTP/2, ALPN)
// or, for Cluster.RoundTrip, of the HTTP/1.1 codec in net/http's form. Not inlined: it keeps
// roundTrip's common path short.
//
//go:noinline
func (c *Cluster) roundTripConn(pc *pconn, out *http.Request, ep *endpoint, report *HostReport, msg bool) (*http.Response, *Response, error) {
	resp, err := pc.cc.RoundTrip(out)
	if err != nil {
		return nil, nil, err
	}
	c.received(ep, report, resp.StatusCode, resp.TLS)
	resp.Body = wrapBody(resp.Body, c, ep)
	if msg {
		return nil, FromHTTP(resp), nil
	}
	return resp, nil, nil
}

// requestOverflow is roundTrip's failure when the max_requests circuit breaker is open (UO).
// Not inlined: a failure path.
//
//go:noinline
func (c *Cluster) requestOverflow() error {
	c.st.rqPendingOverflow.Inc()
	c.st.rqDone.Add(1) // it started (upstream_rq_total): upstream_rq_active
	return &Error{Flag: FlagOverflow, Err: errRequestOverflow}
}

// requestPool returns the endpoint's pool of kind k for a request whose context is ctx when
// its fast path (an existing pool, no PROXY protocol) does not apply: the pool is created on
// first use, and with the PROXY protocol it is the downstream connection's own. Not inlined: a
// rare path.
//
//go:noinline
func (ep *endpoint) requestPool(ctx context.Context, k poolKind) *pool {
	p := ep.poolFor(k)
	if ep.ts.proxyVersion() != 0 {
		// The PROXY header belongs to the connection: connections are not shared between
		// downstream connections (Envoy keys such pools by the downstream addresses too).
		d, _ := downstreamFrom(ctx)
		return ep.proxiedPool(k, d)
	}
	return p
}

// received accounts for a response from ep: the host report's peer, status stats, and
// outlier detection.
func (c *Cluster) received(ep *endpoint, report *HostReport, status int, tls *tls.ConnectionState) {
	report.peer(tls)
	c.st.countStatus(status)
	if c.outlier != nil {
		c.report(ep, status)
	}
}

// failure classifies an error into Envoy's response flags and reports it to outlier detection.
func (c *Cluster) failure(ctx context.Context, ep *endpoint, err error, connecting bool) error {
	var ue *Error
	switch {
	case errors.As(err, &ue):
		return ue
	case errors.Is(err, errCxOverflow):
		return &Error{Flag: FlagOverflow, Err: err}
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		c.st.rqTimeout.Inc()
		c.reportLocal(ep, true, true)
		return &Error{Flag: FlagUpstreamTimeout, Err: err}
	case ctx.Err() != nil:
		return &Error{Flag: FlagDownstreamCanceled, Err: err}
	case connecting:
		c.reportLocal(ep, true, false)
		return &Error{Flag: FlagConnectFailure, Err: err}
	}
	c.st.rqReset.Inc()
	c.reportLocal(ep, true, false)
	if s := err.Error(); strings.Contains(s, "stream error") || strings.Contains(s, "RST_STREAM") {
		// The HTTP/2 upstream reset this stream; the connection lives on.
		return &Error{Flag: FlagUpstreamReset, Err: err}
	}
	return &Error{Flag: FlagConnectionTerminate, Err: err}
}

// finish ends a request's accounting.
func (c *Cluster) finish(ep *endpoint) {
	ep.active.Add(-1)
	c.st.rqDone.Add(1) // upstream_rq_active
	c.breaker.rq.release()
}

// prepare makes req sendable as a client request on p's connections. With head (see
// RoundTripMessage), an HTTP/1.1 pool's request is req as it is, and the others' a copy
// with head's header fields and path.
func prepare(req *http.Request, head *MessageHead, p *pool) *http.Request {
	if head != nil {
		if p.kind == poolH1 {
			return req
		}
		u, err := url.ParseRequestURI(head.Path)
		if err != nil {
			u = &url.URL{Path: "/"} // not reached: the connection manager validates the path
		}
		r := new(http.Request)
		*r = *req
		r.URL, r.Header = u, httpmsg.HTTPHeader(head.Header)
		req = r
	}
	needURL := req.URL == nil || req.URL.Scheme != p.scheme || req.URL.Host == ""
	out := req
	if req.RequestURI != "" || needURL {
		out = new(http.Request)
		*out = *req
		out.RequestURI = ""
	}
	if needURL {
		u := new(url.URL)
		if req.URL != nil {
			*u = *req.URL
		}
		u.Scheme = p.scheme
		if u.Host == "" {
			u.Host = req.Host
		}
		if u.Host == "" && p.ep.network == "tcp" {
			u.Host = p.ep.dialAddr()
		}
		if u.Host == "" {
			u.Host = "localhost"
		}
		out.URL = u
	}
	if bb, ok := req.Body.(*httpmsg.BytesBody); ok && p.kind != poolH1 {
		// net/http's client writes the head and a body it knows to be in memory (an
		// *bytes.Reader, through io.NopCloser) in one write; other bodies after a flush.
		if out == req {
			out = new(http.Request)
			*out = *req
		}
		out.Body = io.NopCloser(bb.BytesReader())
	}
	if out.Header == nil {
		out.Header = http.Header{}
	}
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = nil
	}
	return out
}

// body ends the request's accounting when the response body is fully read or closed.
type body struct {
	io.ReadCloser
	c    *Cluster
	ep   *endpoint
	done atomic.Bool
}

// rwBody is body for 101 Switching Protocols responses, whose Body is writable.
type rwBody struct {
	*body
	w io.Writer
}

// wrapBody wraps a response body for the request's accounting (body, rwBody). Not inlined:
// the HTTP/1.1 pools' responses use their exchange's own wrapper (account) but for tunnels.
//
//go:noinline
func wrapBody(rc io.ReadCloser, c *Cluster, ep *endpoint) io.ReadCloser {
	b := &body{ReadCloser: rc, c: c, ep: ep}
	if w, ok := rc.(io.ReadWriteCloser); ok {
		return &rwBody{body: b, w: w}
	}
	return b
}

func (b *body) end() {
	if !b.done.Swap(true) {
		b.c.finish(b.ep)
	}
}

// Read implements io.Reader.
func (b *body) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.end()
	}
	return n, err
}

// Close implements io.Closer. The accounting is read before the body closes: closing may
// hand the connection, and with it an h1Exchange's body (account), to the next request.
func (b *body) Close() error {
	c, ep := b.c, b.ep
	ended := b.done.Load() || b.done.Swap(true) // no RMW when Read saw EOF
	err := b.ReadCloser.Close()
	if !ended {
		c.finish(ep)
	}
	return err
}

// Write implements io.Writer on an upgraded connection.
func (b *rwBody) Write(p []byte) (int, error) { return b.w.Write(p) }

// Dial opens a connection to a host of the cluster chosen with lb, for the TCP proxy: within the
// max_connections circuit breaker (UO), the connect timeout (UF), with the endpoint's transport
// socket (TLS handshake included). For ORIGINAL_DST clusters the destination comes from ctx
// (WithOriginalDst). Closing the returned connection releases its accounting.
func (c *Cluster) Dial(ctx context.Context, lb balance.Context) (net.Conn, error) {
	ep, err := c.pick(ctx, nil, nil, lb)
	if err != nil {
		return nil, err
	}
	ep.active.Add(1)
	conn, err := c.dialTCP(ctx, ep)
	if err != nil {
		ep.active.Add(-1)
		return nil, c.failure(ctx, ep, err, true)
	}
	if base := ep.ts.tlsConfig(); base != nil {
		cfg := base.Clone()
		if cfg.ServerName == "" {
			host, _, _ := net.SplitHostPort(ep.dialAddr())
			cfg.ServerName = host
		}
		tc := tls.Client(conn, cfg)
		hctx, cancel := context.WithTimeout(ctx, c.connectTimeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			_ = conn.Close()
			ep.active.Add(-1)
			return nil, c.failure(ctx, ep, err, true)
		}
		conn = tc
	}
	c.reportLocal(ep, false, false)
	d := &dialedConn{Conn: conn, ep: ep}
	if tc, ok := conn.(*tls.Conn); ok {
		if pcs := tc.ConnectionState().PeerCertificates; len(pcs) > 0 {
			d.peer = pcs[0]
		}
	}
	return d, nil
}

// dialedConn is a TCP-proxy upstream connection; Close ends its least-request accounting.
type dialedConn struct {
	net.Conn
	ep     *endpoint
	peer   *x509.Certificate // the host's verified certificate (leaf) on TLS; nil otherwise
	closed atomic.Bool
}

// PeerCertificate returns the verified certificate (leaf) the host presented when the
// connection uses TLS, else nil.
func (d *dialedConn) PeerCertificate() *x509.Certificate { return d.peer }

// Close closes the connection and, once, ends its least-request accounting.
func (d *dialedConn) Close() error {
	if !d.closed.Swap(true) {
		d.ep.active.Add(-1)
	}
	return d.Conn.Close()
}

// CloseWrite half-closes the connection (TCP proxy), when supported.
func (d *dialedConn) CloseWrite() error {
	if cw, ok := d.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return d.Conn.Close()
}
