package upstream

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/strait-mesh/strait/proxy/clock"
	"github.com/strait-mesh/strait/proxy/h1"
	"github.com/strait-mesh/strait/proxy/http1"
	"github.com/strait-mesh/strait/proxy/httpmsg"
)

// clientConn is one pooled upstream connection as the pool drives it: net/http's
// *http.ClientConn (HTTP/2, and TLS connections whose ALPN chooses the protocol) or h1Client
// (HTTP/1.1, plaintext or TLS, on the proxy's own codec).
//
// The pool calls Reserve and InFlight with its lock held: an h1Client's busy state is guarded
// by that lock (see h1Client).
type clientConn interface {
	// Reserve reserves a request slot; RoundTrip uses it.
	Reserve() error
	// Err is non-nil once the connection is closed or broken.
	Err() error
	// InFlight counts reserved and running requests.
	InFlight() int
	// Close closes the connection.
	Close() error
	// RoundTrip sends a request on a reserved slot.
	RoundTrip(req *http.Request) (*http.Response, error)
}

// errConnBusy is a Reserve on an HTTP/1.1 connection that carries a request.
var errConnBusy = errors.New("upstream connection busy")

// errConnClosed is the state of a closed HTTP/1.1 connection.
var errConnClosed = errors.New("upstream connection closed")

// h1Client is an upstream HTTP/1.1 connection on proxy/h1's codec (h1.Conn): the request is
// written from the caller's goroutine (its body from one more while the response is read), and
// the response is read there too; no read or write loop goroutines. The router's requests
// (RoundTripMessage) go out from their httpmsg head and their responses come back as the
// codec's (Response); net/http's types are converted at the boundary for Cluster.RoundTrip.
type h1Client struct {
	conn *h1.Conn
	tls  *tls.ConnectionState // the connection's TLS state, nil for plaintext
	// pc is the pool's connection: its state is brought up to date after each change, never
	// with the pool's lock held: at an exchange's end by the codec's hook (newH1Client, which
	// clears busy under the lock), else by onState. Set before the connection is shared.
	pc *pconn

	// x is the exchange's codec storage, reused: the connection carries one request at a
	// time, and the router is done with a response once it closed its body.
	x h1Exchange

	// busy is set while a request is reserved or running. It is guarded by the pool's lock
	// (p.mu), which every access holds: Reserve and InFlight are called under it, and the
	// exchange's end clears it there (syncStateAndUnlock), so that neither
	// reserving nor releasing the connection needs an atomic read-modify-write of its own.
	busy bool
	// closed is set once the connection is closed or broken (Err is errConnClosed); Close
	// may run on any goroutine.
	closed atomic.Bool
}

// newH1Client wraps nc (connected, TLS handshake done).
func newH1Client(nc net.Conn) *h1Client {
	hc := &h1Client{}
	if tc, ok := nc.(*tls.Conn); ok {
		st := tc.ConnectionState()
		hc.tls = &st
	}
	// h1.Conn's end of an exchange: the pool clears busy and updates the connection's state
	// (pconn.onState's for an h1Client). A closure rather than a method value, whose wrapper
	// would be one more function a request runs through.
	hc.conn = h1.NewConn(nc, http1.Limits{MaxHeaderBytes: maxResponseHeaderBytes}, func(reusable bool) {
		if !reusable {
			hc.closed.Store(true)
		}
		pc := hc.pc
		p := pc.p
		at := clock.Mono()
		p.mu.Lock()
		hc.release()
		pc.syncStateAndUnlock(at)
	})
	return hc
}

// Reserve implements clientConn; the pool's lock is held. It does not run the state hook.
func (hc *h1Client) Reserve() error {
	switch {
	case hc.closed.Load():
		return errConnClosed
	case hc.busy:
		return errConnBusy
	}
	hc.busy = true
	return nil
}

// release ends a reservation (the exchange ended); the pool's lock is held.
func (hc *h1Client) release() { hc.busy = false }

// Err implements clientConn.
func (hc *h1Client) Err() error {
	if hc.closed.Load() {
		return errConnClosed
	}
	return nil
}

// InFlight implements clientConn; the pool's lock is held.
func (hc *h1Client) InFlight() int {
	if hc.busy {
		return 1
	}
	return 0
}

// Close implements clientConn; a request in flight fails. It runs the pool's onState, so the
// caller must not hold the pool's lock.
func (hc *h1Client) Close() error {
	hc.closed.Store(true)
	err := hc.conn.Close()
	hc.pc.onState()
	return err
}

// RoundTrip implements clientConn: the response in net/http's form (Cluster.RoundTrip).
func (hc *h1Client) RoundTrip(req *http.Request) (*http.Response, error) {
	if _, err := hc.roundTrip(req, nil); err != nil {
		return nil, err
	}
	resp := hc.x.httpResponse(req)
	resp.TLS = hc.tls
	return resp, nil
}

// roundTrip sends req, whose header fields and path are head's when head is not nil (see
// Cluster.RoundTripMessage), and returns the response in the exchange's storage: valid until
// its body is closed.
//
// head's header fields are written from head's own storage, not copied: the exchange's
// request header is a shallow copy of head.Header, which the codec only reads, and only while
// it writes the head, within RoundTripWatch. The copy is left until the next exchange replaces
// it: nothing adds to it (fromHTTP builds in the exchange's own storage, hdr), and Reset only
// shortens the copy's slices, without writing to head's storage.
func (hc *h1Client) roundTrip(req *http.Request, head *MessageHead) (*Response, error) {
	x := &hc.x
	r := &x.req
	r.Reset()
	if x.out != nil {
		x.clearOut()
	}
	r.Method = req.Method
	host := req.Host
	if host == "" && req.URL != nil {
		host = req.URL.Host
	}
	ctx := req.Context()
	var wrote func()
	var w h1.Watcher
	if head != nil {
		// A Host field among them is not written (the request's Host is).
		r.SetTargetString(host, head.Path)
		wrote, w = head.WroteHeaders, head.Watcher
		r.Header = *head.Header
	} else {
		wrote = x.fromHTTP(req, host)
	}
	if w == nil {
		w = watcherOf(ctx)
	}
	// The body's fields are chosen first and stored once: one set of stores (and of their
	// write barriers' code) for every kind of body.
	var src io.ReadCloser
	var reqTrailer http.Header
	var cl int64
	var body io.Reader = httpmsg.NoBody
	if b := req.Body; b != nil {
		if bb, ok := b.(*httpmsg.BytesBody); ok && req.ContentLength > 0 {
			// No trailers; written with the head (h1.Conn).
			src, reqTrailer, cl, body = b, req.Trailer, req.ContentLength, bb
		} else {
			src, reqTrailer, cl, body = x.otherBody(req)
		}
	}
	x.src, x.trailer = src, reqTrailer
	r.ContentLength, r.Body = cl, body
	err := hc.conn.RoundTripWatch(ctx, w, r, &x.resp, wrote)
	if err != nil {
		x.failed()
		return nil, err
	}
	te, trailer := hc.conn.ResponseFields()
	return x.response(hc.tls, te, trailer), nil
}

// fromHTTP sets the exchange's request authority (host), path and header fields from req's
// URL and header map (Cluster.RoundTrip), and returns the WroteHeaders hook of the context's
// ClientTrace, if any. Not inlined: it keeps roundTrip's common path (the router's messages)
// short.
//
//go:noinline
func (x *h1Exchange) fromHTTP(req *http.Request, host string) (wrote func()) {
	r := &x.req
	r.SetTargetString(host, req.URL.RequestURI())
	h := &x.hdr
	h.Reset()
	for k, vs := range req.Header {
		if strings.EqualFold(k, "Host") {
			continue
		}
		for _, v := range vs {
			h.Add(k, v)
		}
	}
	r.Header = *h
	if trace := httptrace.ContextClientTrace(req.Context()); trace != nil && trace.WroteHeaders != nil {
		wrote = trace.WroteHeaders
	}
	return wrote
}

// otherBody returns the source, trailers, content length and body of the exchange's request
// when req's body (not nil) is not one in memory with its length: none (http.NoBody), or one
// streamed (h1RequestBody, which reads x.src and adds x.trailer at its end): a body not in
// memory, or of unknown length. Not inlined: it keeps roundTrip's common path (no body, or
// one in memory) short, without the comparison with http.NoBody's call.
//
//go:noinline
func (x *h1Exchange) otherBody(req *http.Request) (io.ReadCloser, http.Header, int64, io.Reader) {
	if req.Body == http.NoBody {
		return nil, nil, 0, httpmsg.NoBody
	}
	cl := req.ContentLength
	if cl == 0 {
		cl = -1 // net/http's rule: 0 with a body is unknown
	}
	return req.Body, req.Trailer, cl, (*h1RequestBody)(x)
}

// clearOut drops Cluster.RoundTrip's last response (httpResponse). Out of roundTrip: the
// router's exchanges have none.
//
//go:noinline
func (x *h1Exchange) clearOut() { x.out = nil }

// failed closes the request body of an exchange that failed, as net/http's client does (at its
// end otherwise: h1RequestBody). Not inlined: a failure path.
//
//go:noinline
func (x *h1Exchange) failed() {
	if x.src != nil {
		x.src.Close()
	}
}

// h1Exchange is one request's codec messages.
type h1Exchange struct {
	req     httpmsg.Request
	hdr     httpmsg.Header // req's header fields' storage for Cluster.RoundTrip (fromHTTP)
	resp    httpmsg.Response
	src     io.ReadCloser // the request body
	trailer http.Header   // the request's trailers, read when its body ends
	msg     Response      // the response for the router (response)
	names   []string      // msg's TrailerNames
	chunked bool          // the response had a Transfer-Encoding field
	acct    h1Body        // msg's Body as the cluster accounts for it (Cluster.roundTrip)
	out     *http.Response
	scratch []byte // the response's header values, for httpResponse
}

// tunnel sets resp's Body, the accounting of a 101 response's body or of an answer to
// CONNECT's: a tunnel's body (writable) is wrapped on its own (wrapBody), the others' by the
// exchange's h1Body (see Cluster.h1Received). Not inlined: a rare path.
//
//go:noinline
func (x *h1Exchange) tunnel(resp *Response, c *Cluster, ep *endpoint) {
	rc := x.resp.Body
	if _, ok := rc.(io.ReadWriteCloser); ok {
		resp.Body = wrapBody(rc, c, ep)
		return
	}
	x.acct = h1Body{ReadCloser: rc, c: c, ep: ep}
	resp.Body = &x.acct
}

// h1Body is body for an HTTP/1.1 exchange's response (Cluster.roundTrip). Its state is plain:
// the codec's response body is read and closed by one owner at a time (h1.Conn's contract:
// Close exactly once, no use after it), and Close hands the connection, with this storage, to
// the next request only after the accounting below was read.
type h1Body struct {
	io.ReadCloser
	c     *Cluster
	ep    *endpoint
	ended bool // the request's accounting ended (at EOF or Close)
}

// Read implements io.Reader.
func (b *h1Body) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && !b.ended {
		b.ended = true
		b.c.finish(b.ep)
	}
	return n, err
}

// Close implements io.Closer. The accounting is read and marked before the body closes:
// closing hands the exchange's storage to the connection's next request.
func (b *h1Body) Close() error {
	c, ep, ended := b.c, b.ep, b.ended
	b.ended = true
	err := b.ReadCloser.Close()
	if !ended {
		c.finish(ep)
	}
	return err
}

// response makes the codec's response head the router's (see Response): Transfer-Encoding
// leaves the header fields (framing is the codec's) and the announced trailers are listed.
// Its Body is left to the caller (Cluster.roundTrip), which wraps x.resp.Body for the
// cluster's accounting.
// te and trailer say whether the head has those fields (h1.Conn.ResponseFields), so that a
// head without them is not searched.
func (x *h1Exchange) response(tls *tls.ConnectionState, te, trailer bool) *Response {
	r := &x.resp
	m := &x.msg
	// Field by field: the pointers the last response left (the caller may have changed them)
	// are stored only when they differ, which spares most of the stores' write barriers.
	if te || trailer {
		x.framing(te, trailer)
	} else {
		x.chunked = false
		x.names = x.names[:0]
		if len(m.TrailerNames) != 0 {
			x.clearTrailerNames()
		}
	}
	m.Status, m.Proto, m.ContentLength = r.Status, r.Proto, r.ContentLength
	if m.Header != &r.Header || m.Trailer != &r.Trailer || m.TLS != tls {
		x.link(tls)
	}
	return m
}

// clearTrailerNames empties the router's response's TrailerNames, which the last response
// (or the caller) left. Not inlined: the store's write barrier stays out of response's common
// path, whose responses announce no trailers after others that announced none.
//
//go:noinline
func (x *h1Exchange) clearTrailerNames() { x.msg.TrailerNames = x.names }

// link points the router's response at the exchange's header and trailer sections and at the
// connection's TLS state. Not inlined: response's common case finds them in place (the
// stores' write barriers stay out of its path).
//
//go:noinline
func (x *h1Exchange) link(tls *tls.ConnectionState) {
	m, r := &x.msg, &x.resp
	m.Header, m.Trailer, m.TLS = &r.Header, &r.Trailer, tls
}

// framing is response's part for a head with a Transfer-Encoding or a Trailer field. Not
// inlined: response's common case has neither.
//
//go:noinline
func (x *h1Exchange) framing(te, trailer bool) {
	r := &x.resp
	x.chunked = te && r.Header.Del("Transfer-Encoding") > 0
	x.names = x.names[:0]
	if trailer {
		x.names = appendTrailerNames(x.names, &r.Header)
	}
	x.msg.TrailerNames = x.names
}

// statusLines holds net/http's Status strings ("200 OK") of the codes it names.
var statusLines = func() (t [600]string) {
	for code := range t {
		if text := http.StatusText(code); text != "" {
			t[code] = strconv.Itoa(code) + " " + text
		}
	}
	return t
}()

// statusLine returns net/http's Status string for code.
func statusLine(code int) string {
	if code >= 0 && code < len(statusLines) && statusLines[code] != "" {
		return statusLines[code]
	}
	return strconv.Itoa(code) + " " + http.StatusText(code)
}

// commonNames maps the lower-case form of header names responses often carry to their
// canonical form, so that converting them takes no allocation.
var commonNames = func() map[string]string {
	m := map[string]string{}
	for _, n := range []string{"Accept-Ranges", "Access-Control-Allow-Origin", "Age", "Cache-Control",
		"Connection", "Content-Encoding", "Content-Language", "Content-Length", "Content-Type", "Date",
		"Etag", "Expires", "Grpc-Message", "Grpc-Status", "Keep-Alive", "Last-Modified", "Location",
		"Server", "Set-Cookie", "Strict-Transport-Security", "Trailer", "Transfer-Encoding", "Vary",
		"Via", "X-Content-Type-Options", "X-Envoy-Upstream-Service-Time", "X-Frame-Options",
		"X-Request-Id"} {
		m[strings.ToLower(n)] = n
	}
	return m
}()

// canonicalName returns net/http's canonical form of the field name k.
func canonicalName(k []byte) string {
	var lower [32]byte
	if len(k) <= len(lower) {
		for i, c := range k {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			lower[i] = c
		}
		if n, ok := commonNames[string(lower[:len(k)])]; ok {
			return n
		}
	}
	return http.CanonicalHeaderKey(string(k))
}

// h1RequestBody is the request body as the codec reads it: at its end, the trailers net/http's
// request carries (filled as the downstream body ended) go into the codec's request.
type h1RequestBody h1Exchange

// Read implements io.Reader.
func (b *h1RequestBody) Read(p []byte) (int, error) {
	n, err := b.src.Read(p)
	if err == io.EOF {
		b.src.Close()
		for k, vs := range b.trailer {
			for _, v := range vs {
				b.req.Trailer.Add(k, v)
			}
		}
	}
	return n, err
}

// httpResponse converts the response head (after response) to net/http's form, for
// Cluster.RoundTrip: the values share one string and one slice array, and common names are
// interned (canonicalName).
func (x *h1Exchange) httpResponse(req *http.Request) *http.Response {
	r := &x.resp
	n := r.Header.Len()
	resp := &http.Response{
		StatusCode:    r.Status,
		Status:        statusLine(r.Status),
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        make(http.Header, n),
		ContentLength: r.ContentLength,
		Request:       req,
	}
	if r.Proto == httpmsg.HTTP10 {
		resp.Proto, resp.ProtoMinor = "HTTP/1.0", 0
	}
	if x.chunked {
		resp.TransferEncoding = []string{"chunked"}
	}
	for _, name := range x.names {
		if resp.Trailer == nil {
			resp.Trailer = http.Header{}
		}
		resp.Trailer[name] = nil
	}
	x.scratch = x.scratch[:0]
	for i := 0; i < n; i++ {
		_, v := r.Header.Field(i)
		x.scratch = append(x.scratch, v...)
	}
	values := string(x.scratch)
	slots := make([]string, n)
	off := 0
	for i := 0; i < n; i++ {
		k, v := r.Header.Field(i)
		value := values[off : off+len(v)]
		off += len(v)
		name := canonicalName(k)
		if vs, ok := resp.Header[name]; ok {
			resp.Header[name] = append(vs, value)
		} else {
			slots[i] = value
			resp.Header[name] = slots[i : i+1 : i+1]
		}
	}
	if rw, ok := r.Body.(io.ReadWriteCloser); ok {
		resp.Body = rw // the tunnel
		return resp
	}
	x.out = resp
	resp.Body = (*h1ResponseBody)(x)
	return resp
}

// h1ResponseBody is the response body as the router reads it: at its end the codec's trailer
// section goes into the response's Trailer, as net/http's client does.
type h1ResponseBody h1Exchange

// Read implements io.Reader.
func (b *h1ResponseBody) Read(p []byte) (int, error) {
	n, err := b.resp.Body.Read(p)
	if err == io.EOF && b.resp.Trailer.Len() > 0 {
		if b.out.Trailer == nil {
			b.out.Trailer = http.Header{}
		}
		for i := 0; i < b.resp.Trailer.Len(); i++ {
			k, v := b.resp.Trailer.Field(i)
			key := http.CanonicalHeaderKey(string(k))
			if vs, ok := b.out.Trailer[key]; ok && vs == nil {
				b.out.Trailer[key] = []string{string(v)}
			} else {
				b.out.Trailer[key] = append(vs, string(v))
			}
		}
	}
	return n, err
}

// Close implements io.Closer.
func (b *h1ResponseBody) Close() error { return b.resp.Body.Close() }
