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
	"github.com/strait-mesh/strait/proxy/httpmsg"
)

// originalDstHeader is the header an ORIGINAL_DST cluster with use_http_header reads.
const originalDstHeader = "X-Envoy-Original-Dst-Host"

// pick chooses the endpoint for a request or connection.
func (c *Cluster) pick(ctx context.Context, hdr http.Header, head *MessageHead, lb balance.Context) (*endpoint, error) {
	if c.kind == discoveryOriginalDst {
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
	if err := c.warmed(ctx); err != nil {
		c.st.cxNoneHealthy.Inc()
		return nil, &Error{Flag: FlagNoHealthyUpstream, Err: fmt.Errorf("waiting for the first DNS resolution: %w", err)}
	}
	hs := c.set.Load()
	if hs.panic {
		c.st.lbHealthyPanic.Inc()
	}
	i := hs.lb.Pick(lb)
	if i < 0 {
		c.st.cxNoneHealthy.Inc()
		return nil, &Error{Flag: FlagNoHealthyUpstream, Err: errNoHealthy}
	}
	return hs.eps[i], nil
}

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
func (c *Cluster) RoundTripMessage(req *http.Request, head *MessageHead, lb balance.Context) (*Response, error) {
	_, resp, err := c.roundTrip(req, head, lb)
	return resp, err
}

// roundTrip is RoundTrip (head nil: the response in net/http's form) and RoundTripMessage
// (head set: the response as a Response).
func (c *Cluster) roundTrip(req *http.Request, head *MessageHead, lb balance.Context) (*http.Response, *Response, error) {
	mh := head
	if mh != nil {
		mh.Released = false
	}
	ctx := req.Context()
	c.st.rqTotal.Inc()
	if !c.breaker.rq.acquire() {
		c.st.rqPendingOverflow.Inc()
		return nil, nil, &Error{Flag: FlagOverflow, Err: errRequestOverflow}
	}
	ep, err := c.pick(ctx, req.Header, head, lb)
	if err != nil {
		c.breaker.rq.release()
		return nil, nil, err
	}
	report := hostReportOf(ctx, head)
	report.host(ep)
	ep.active.Add(1)
	c.st.rqActive.Inc()
	p := ep.poolFor(c.poolKind(req, ep))
	if ep.ts.proxyVersion() != 0 {
		// The PROXY header belongs to the connection: connections are not shared between
		// downstream connections (Envoy keys such pools by the downstream addresses too).
		d, _ := downstreamFrom(ctx)
		p = ep.proxiedPool(c.poolKind(req, ep), d)
	}
	out := prepare(req, head, p)
	msg := head != nil
	if p.kind != poolH1 {
		head = nil // out carries it
	}
	for attempt := 0; ; attempt++ {
		pc, reused, err := p.acquire(ctx)
		if err != nil {
			c.finish(ep)
			return nil, nil, c.failure(ctx, ep, err, true)
		}
		if hc := pc.h1; hc != nil && msg {
			// The router's hot path: the codec's response head as it is.
			var resp *Response
			if resp, err = hc.roundTrip(out, head); err == nil {
				c.received(ep, report, resp.Status, resp.TLS)
				resp.Body = hc.x.account(resp.Body, c, ep)
				// The codec reads the request only while hc.roundTrip runs.
				mh.Released = out == req
				return nil, resp, nil
			}
		} else {
			var resp *http.Response
			if resp, err = pc.cc.RoundTrip(out); err == nil {
				c.received(ep, report, resp.StatusCode, resp.TLS)
				resp.Body = wrapBody(resp.Body, c, ep)
				if msg {
					return nil, FromHTTP(resp), nil
				}
				return resp, nil, nil
			}
		}
		// A kept-alive connection the server closed while idle fails on first use; retry a
		// request without a body once on a fresh connection, as net/http's Transport does.
		if reused && attempt == 0 && ctx.Err() == nil && (out.Body == nil || out.Body == http.NoBody) {
			continue
		}
		c.finish(ep)
		return nil, nil, c.failure(ctx, ep, err, false)
	}
}

// received accounts for a response from ep: the host report's peer, status stats, and
// outlier detection.
func (c *Cluster) received(ep *endpoint, report *HostReport, status int, tls *tls.ConnectionState) {
	report.peer(tls)
	c.st.countStatus(status)
	c.report(ep, status)
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
	c.st.rqActive.Dec()
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
		out.Body = io.NopCloser(&bb.Reader)
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
