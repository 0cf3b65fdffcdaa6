package l7

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strait-mesh/strait/proxy/h1"
	"github.com/strait-mesh/strait/proxy/h2guard"
	"github.com/strait-mesh/strait/proxy/http1"
	"github.com/strait-mesh/strait/proxy/httpmsg"
	"github.com/strait-mesh/strait/proxy/sniff"
	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
)

// HTTP/1.1 connections are served by the proxy's own codec (proxy/h1) on the goroutine that
// accepted them: one goroutine per connection, request heads parsed into reused storage, no
// background read. HTTP/2 (ALPN "h2" or prior knowledge) stays with net/http's server
// (conn.go). The codec parses with proxy/http1's strict rules, so no protocol guard sits in
// front of it; the connection clocks (clockConn: max_connection_duration, the write stall
// limit, lingering close) are the same as for net/http's connections, and the codec's own
// IdleTimeout and HeadersTimeout are idle_timeout and request_headers_timeout.

// errBodyDetached is what a request body read returns once its request has ended: an
// abandoned upstream attempt may still hold the body, and the codec reads the next request
// from the same buffer.
var errBodyDetached = errors.New("request body read after the request ended")

// h1WatchDelay is how long an HTTP/1.1 request, its body received, may be in flight before the
// codec watches its connection for the client going away (h1.Server.WatchDelay): requests
// answered sooner cost no watch. A watch costs a timer goroutine, a read and two deadline
// changes (a few µs): at 2 ms it started for the requests queued behind others at full load
// (about 1.4 % of the proxy's CPU at maximum throughput, perf); at 20 ms it is a small share
// of any request it starts for, and a client that went away is still noticed (and its
// upstream request reset) within 20 ms of its body's end plus the close's arrival.
const h1WatchDelay = 20 * time.Millisecond

// h1Conn is one HTTP/1.1 connection served by proxy/h1.
type h1Conn struct {
	h    *Handler
	cs   *connState
	cc   *clockConn
	net  *h1Net // what the codec reads and writes
	ctx  context.Context
	peer netip.AddrPort
	tls  bool
	srv  h1.Server
	d    h1Down
	body *h1Body // the current request's body, nil between requests
	// spare is the connection's request body object, reused from one request with a body to
	// the next (body is the same while it serves one): dropped when something may still read
	// it after its request (bodyHeld).
	spare    *h1Body
	bodyHeld bool
	// stream is the Stream the connection serves its requests with, one after the other
	// (Stream.kept): from its first request until it ends (endStream).
	stream *Stream
	// The last request's authority and path as strings, for the next request that has the
	// same (a keep-alive client mostly does): strings never change, so sharing them is safe.
	authority, path string

	// date is the Date value (http.TimeFormat) of the second dateSec, formatted once for the
	// connection's responses within that second (dateNow).
	date    [len(http.TimeFormat)]byte
	dateSec int64

	// The reqCancel of the connection's requests, which the client going away cancels
	// (peerLink), and whether it went away.
	linked atomic.Pointer[reqCancel]
	gone   atomic.Bool
}

var _ peerLink = (*h1Conn)(nil)

// link implements peerLink: a Stream mostly keeps its reqCancel from one request to the next,
// and storing it again is skipped then.
func (c *h1Conn) link(rc *reqCancel) bool {
	if c.linked.Load() != rc {
		c.linked.Store(rc)
	}
	return !c.gone.Load()
}

// peerGone cancels the current request's upstream exchange: the client went away.
func (c *h1Conn) peerGone() {
	c.gone.Store(true)
	if rc := c.linked.Load(); rc != nil {
		rc.peerCancel(c) // a no-op unless rc serves a request of c's
	}
}

// h1Down is the downstream of a request served by proxy/h1.
type h1Down struct {
	w *h1.ResponseWriter
	c *h1Conn
	// The stream stage's HTTP/1.1 work for a request with a body (streamStage, whose
	// streamEnd does the same on other connections): body is the request body to watch for
	// a response that begins before its end (watchBody; nil: none), started that the
	// response began. Handler goroutine only; reset for each request (ServeHTTP1).
	body    *h1Body
	started bool
}

// watchBody has the response that begins before the end of the request's body (c.body)
// carry "Connection: close" (WriteHeader) and the body not be waited for after the response
// (bodyEnd), as the stream stage does (streamEnd.respond, end).
func (d *h1Down) watchBody() { d.body = d.c.body }

// bodyEnd runs after the pipeline returned for a request whose body watchBody watched: the
// rest of a body not read to its end is not waited for, and the connection closes after the
// response, lingering so that the client reads it (streamEnd.end).
func (d *h1Down) bodyEnd(s *Stream) {
	if d.body == nil || d.body.eof.Load() {
		return
	}
	d.bodyLeft(s)
}

// bodyLeft is bodyEnd for a body not read to its end. Out of the common path (see
// routerControls).
//
//go:noinline
func (d *h1Down) bodyLeft(s *Stream) {
	var cc *clockConn
	if s.cs != nil {
		cc = s.cs.cc
	}
	leaveBody(d, d.started, cc)
}

// responseBegins is the stream stage's part of a response's first status of 200 or more
// (streamEnd.respond) for a watched body (watchBody) not read to its end: a response that
// begins before the end of the request body is counted, and closes the connection. Out of
// WriteHeader's common path.
//
//go:noinline
func (d *h1Down) responseBegins() {
	d.c.h.tst.beforeRqDone.Inc()
	d.w.Header().Set("Connection", "close")
}

// h1Body is a request body as the connection manager holds it: reads after the request
// ended fail (errBodyDetached) instead of reading the connection under the codec.
type h1Body struct {
	mu     sync.Mutex
	r      io.Reader
	closed bool
	// trailer, when the request declared trailers, is the map the upstream request sends
	// them from; it is filled from req's trailer section at the end of the body.
	req     *httpmsg.Request
	trailer http.Header
	eof     atomic.Bool // a read returned io.EOF (h1Down.watchBody)
}

// Read implements io.Reader.
func (b *h1Body) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, errBodyDetached
	}
	n, err := b.r.Read(p)
	if err == io.EOF {
		b.eof.Store(true)
		if b.trailer != nil {
			b.fillTrailer()
		}
	}
	return n, err
}

// fillTrailer fills the trailer map the upstream request sends from the request's trailer
// section, at the end of the body (b.mu held). Out of Read's common path: a request that
// declares trailers is rare.
//
//go:noinline
func (b *h1Body) fillTrailer() {
	t := &b.req.Trailer
	for i := 0; i < t.Len(); i++ {
		k, v := t.Field(i)
		b.trailer.Add(string(k), string(v))
	}
	b.trailer = nil
}

// declaredTrailers returns a map with the trailer names r's Trailer field declares (nil
// values), or nil when it declares none or the body is not chunked.
func declaredTrailers(r *httpmsg.Request) http.Header {
	if r.ContentLength >= 0 || !r.Header.Has("Trailer") {
		return nil
	}
	m := http.Header{}
	for _, v := range headerValues(&r.Header, "Trailer") {
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				m[http.CanonicalHeaderKey(f)] = nil
			}
		}
	}
	return m
}

// Close implements io.Closer; the codec drains or drops what was not read.
func (b *h1Body) Close() error { return nil }

// detach ends the body's reads; a read in progress finishes first.
func (b *h1Body) detach() {
	b.mu.Lock()
	b.closed, b.r, b.req, b.trailer = true, nil, nil, nil
	b.mu.Unlock()
}

// h1Native reports whether the connection is HTTP/1.x for proxy/h1 to serve: not negotiated
// as h2, the codec allows HTTP/1.1, and its first bytes are not the HTTP/2 client preface.
func (h *Handler) h1Native(alpn string, cc *clockConn) bool {
	if alpn == "h2" || h.codec == hcmv3.HttpConnectionManager_HTTP2 {
		return false
	}
	b := cc.first.pending
	if len(b) == 0 {
		return false // not seen yet: net/http's server and the guards decide
	}
	m := min(len(b), len(h2guard.Preface))
	return string(b[:m]) != h2guard.Preface[:m]
}

// serveH1 serves an HTTP/1.x connection with proxy/h1 until it ends.
func (h *Handler) serveH1(cc *clockConn, cs *connState) {
	if h.codec != hcmv3.HttpConnectionManager_HTTP1 && !plausibleRequestLine(cc.first.pending) {
		// Neither HTTP/2 nor HTTP/1.x: closed without an answer the client could not read,
		// as the protocol guard does (guard.go).
		h.guardSt.protoErr.Inc()
		cc.Close()
		return
	}
	// The codec reads the connection itself (no guard), and counts its own timeouts.
	var raw net.Conn = cc.first
	cc.inner.Store(&raw)
	cc.counted.Store(true)
	ctx, cancel := context.WithCancel(context.Background()) // no deadline (streamStart.baseNoDL)
	defer cancel()
	c := &h1Conn{h: h, cs: cs, cc: cc, ctx: ctx, tls: cs.info.TLS}
	if ra := cc.RemoteAddr(); ra != nil {
		c.peer, _ = netip.ParseAddrPort(ra.String())
	}
	c.d.c = c
	c.srv = h1.Server{
		Handler: c,
		Limits: http1.Limits{
			// admit answers 431 for what exceeds the configured limits; the codec bounds the
			// head at twice them.
			MaxHeaderBytes: h.serverMaxHeaderBytes(),
			MaxHeaderCount: 2*h.maxHeaders + 16,
		},
		IdleTimeout:       h.connIdle,
		CheckBufferedBody: true,
		HeadersTimeout:    h.headLimit(),
		OnReject:          func(*http1.Error) { h.guardSt.protoErr.Inc() },
		OnTimeout: func(head bool) {
			if head {
				h.tst.headerTimeout.Inc()
			} else {
				h.tst.idleTimeout.Inc()
			}
		},
		WatchDelay: h1WatchDelay,
		// The client closed or reset the connection while its request was in flight: the
		// stream's context (the connection's: one stream at a time) ends, which resets the
		// upstream request and logs DC, as Envoy does.
		OnPeerGone: func() { cancel(); c.peerGone() },
		OnIdle:     func() { cs.idle.Store(true) },
	}
	if h.streamIdle > 0 && h1.SetWriteStall(cc.raw, h.streamIdle) {
		// The socket keeps the write stall limit, armed only when a write must wait; beneath
		// TLS and the listener's peeked bytes too (SetWriteStall finds the DirectConn).
		cc.stallLow.Store(true)
	}
	cs.h1.Store(true)
	cs.idle.Store(false)
	if h.draining.Load() {
		cc.Close()
		return
	}
	c.net = &h1Net{clockConn: cc, raw: cc.raw}
	_ = c.srv.ServeConn(c.net)
	if c.stream != nil {
		c.endStream()
	}
}

// newStream gives the connection its Stream (stream), from streamPool, at its first request.
// Out of ServeHTTP1's common path.
//
//go:noinline
func (c *h1Conn) newStream() *Stream {
	s := getStream()
	s.kept = true
	c.stream = s
	return s
}

// endStream returns the connection's Stream to streamPool when the connection has ended, or
// after a request with a large body (ServeHTTP1): its last request released it (finish), so
// nothing of the request reaches it any more. A Stream whose request did not get there (a
// panic before release) is left to the collector. Out of ServeHTTP1's common path.
//
//go:noinline
func (c *h1Conn) endStream() {
	s := c.stream
	c.stream = nil
	if s.req == nil {
		s.kept = false
		s.toPool()
	}
}

// h1Net is the connection proxy/h1 serves: the clockConn, with its reads, writes and read
// deadlines taken straight to the accepted connection beneath it (cc.raw) instead of through
// the layers net/http's connections need (protoConn's guard choice, the first bytes' replay,
// the HTTP/2 header block clock, clockConn's own read and deadline bookkeeping), none of which
// has anything to do on a connection the codec serves: the codec parses strictly itself and
// counts its own timeouts (serveH1), and HTTP/2 header blocks never reach it. What stays with
// the clockConn: the first request head's clock (awaitFirstHead's request_headers_timeout,
// until the first request is served), writes without the socket's own stall limit (stallLow
// false), write deadlines, and Close (max_connection_duration, lingering close).
type h1Net struct {
	*clockConn
	raw net.Conn
	// direct is set once the first request head's clock has ended (ServeHTTP1): from then on
	// read deadlines are the codec's alone and go to raw.
	direct atomic.Bool
	vec    h1.VectorWriter // the socket's vectored write, once Vector found one
}

// Read implements net.Conn.
func (n *h1Net) Read(b []byte) (int, error) {
	if n.first.pending != nil {
		return n.first.Read(b) // what awaitFirstHead read
	}
	return n.raw.Read(b)
}

// Write implements net.Conn: with the socket enforcing the write stall limit (stallLow) or
// none configured, straight to raw; else through clockConn.Write's deadline loop.
func (n *h1Net) Write(b []byte) (int, error) {
	if n.h.streamIdle > 0 && !n.stallLow.Load() {
		return n.clockConn.Write(b)
	}
	k, err := n.raw.Write(b)
	if err != nil && n.stallLow.Load() && errors.Is(err, h1.ErrWriteStall) {
		n.countStall()
	}
	return k, err
}

// Vector returns n's vectored write (h1.VectorWriter) when its writes go straight to a socket
// that has one (see Write), else nil.
func (n *h1Net) Vector() h1.VectorWriter {
	if n.h.streamIdle > 0 && !n.stallLow.Load() {
		return nil
	}
	w := n.raw
	if sc, ok := w.(*sniff.Conn); ok {
		w = sc.NetConn() // the listener's peeked bytes: its writes are the socket's
	}
	if vw, ok := w.(h1.VectorWriter); ok {
		n.vec = vw
		return n
	}
	return nil
}

// WriteVector implements h1.VectorWriter (see Vector), counting a write stall as Write does.
func (n *h1Net) WriteVector(a, b []byte) (int, error) {
	k, err := n.vec.WriteVector(a, b)
	if err != nil && n.stallLow.Load() && errors.Is(err, h1.ErrWriteStall) {
		n.countStall()
	}
	return k, err
}

// SetReadDeadline implements net.Conn.
func (n *h1Net) SetReadDeadline(t time.Time) error {
	if !n.direct.Load() {
		return n.clockConn.SetReadDeadline(t)
	}
	return n.raw.SetReadDeadline(t)
}

// ServeHTTP1 implements h1.Handler: one request through the connection manager.
func (c *h1Conn) ServeHTTP1(w *h1.ResponseWriter, r *httpmsg.Request) {
	c.cs.idle.Store(false)
	// One deferred call ends what the request started (see forwardDone): the body's objects
	// and the writer. The connection is idle again (cs.idle) only once the codec has flushed
	// the response (h1.Server.OnIdle): a drain that closed it as soon as the handler returned
	// could cut the response's last bytes off, and the client would retry its request on a
	// new connection to a listener that is gone.
	defer func() {
		if c.body != nil {
			c.body.detach()
			if c.bodyHeld {
				c.spare = nil // a reader may still hold it: left to it
			}
			c.body = nil
		}
		c.d.w = nil
	}()
	if !c.net.direct.Load() {
		c.goDirect()
	}
	c.d.w, c.d.body, c.d.started = w, nil, false
	var body io.ReadCloser = http.NoBody
	var trailer http.Header
	large := false // a body the Stream may keep a large buffer of (see below)
	if r.Body != httpmsg.NoBody && r.Body != nil {
		// Unknown (-1) too.
		large = uint64(r.ContentLength) > keptStreamBody
		if r.ContentLength < 0 { // a body of known length has no trailers (declaredTrailers)
			trailer = declaredTrailers(r)
		}
		b := c.spare
		if b == nil {
			b = c.newSpare()
		}
		// A spare body is one no reader holds any more (the last request's stream said so
		// after detach, which left its mutex unlocked): nothing else reaches b until it is
		// handed out below, so its fields are set without the lock.
		b.r, b.req, b.trailer, b.closed = r.Body, r, trailer, false
		b.eof.Store(false)
		c.body = b
		body = b
	}
	c.bodyHeld = true // until the stream says otherwise (a panic: not known)
	s := c.stream
	if s == nil {
		s = c.newStream()
	}
	c.h.serve(s, &streamStart{
		d: &c.d, req: r, body: body, ctx: c.ctx, baseNoDL: true, plink: c, cs: c.cs, peer: c.peer,
		method: r.Method, authority: c.intern(&c.authority, r.Authority()), path: c.intern(&c.path, r.Path()), tls: c.tls,
		reqTrailer: trailer, heldOut: &c.bodyHeld,
	})
	if large {
		// The Stream may keep the body's buffer (up to maxKeptBodyBuf) for its next request:
		// an idle keep-alive connection does not hold that, the pool has it instead.
		c.endStream()
	}
}

// keptStreamBody is the largest request body after which an HTTP/1.1 connection keeps its
// Stream (and so the body buffer the Stream may keep) for its next request.
const keptStreamBody = 4 << 10

// newSpare gives the connection its request body object (spare): at its first request with a
// body, or after a reader kept the last one. Out of ServeHTTP1's common path.
//
//go:noinline
func (c *h1Conn) newSpare() *h1Body {
	c.spare = new(h1Body)
	return c.spare
}

// goDirect ends the first head's clock and has the codec use the connection directly (h1Net),
// at the connection's first request. Out of ServeHTTP1's common path (see routerControls).
//
//go:noinline
func (c *h1Conn) goDirect() {
	cc := c.cc
	cc.mu.Lock()
	if !cc.headBy.IsZero() {
		// The first head arrived within request_headers_timeout (awaitFirstHead): its
		// clock no longer applies.
		cc.headBy = time.Time{}
		cc.applyRead()
	}
	cc.mu.Unlock()
	c.net.direct.Store(true)
}

// intern returns b as a string: *last when it is the same, else a new one, kept in *last.
func (c *h1Conn) intern(last *string, b []byte) string {
	if string(b) != *last {
		internNew(last, b)
	}
	return *last
}

// internNew keeps a new string of b in *last: intern's rare part (a connection's requests
// mostly share their authority and path), out of the line of its two inlined copies.
//
//go:noinline
func internNew(last *string, b []byte) { *last = string(b) }

// Header implements downstream.
func (d *h1Down) Header() *httpmsg.Header { return d.w.Header() }

// dateNow returns the current time as a Date value (http.TimeFormat), formatted once per second
// for the connection (formatting costs about a thousand instructions). The bytes are the
// connection's, valid until its next call.
func (c *h1Conn) dateNow() []byte {
	now := time.Now()
	if sec := now.Unix(); sec != c.dateSec || sec == 0 {
		return c.newDate(now, sec)
	}
	return c.date[:]
}

// newDate formats now, of the second sec, as dateNow returns it: once per second, out of the
// line of dateNow's inlined copy.
//
//go:noinline
func (c *h1Conn) newDate(now time.Time, sec int64) []byte {
	b := now.UTC().AppendFormat(c.date[:0], http.TimeFormat)
	if len(b) != len(c.date) {
		return b // not of the usual length (a year past 9999): not kept
	}
	c.dateSec = sec
	return c.date[:]
}

// Trailer implements downstream.
func (d *h1Down) Trailer() *httpmsg.Header { return d.w.Trailer() }

// WriteHeader implements downstream: a draining connection (the listener drains, or
// max_connection_duration passed) closes after the response, and so does every connection
// while the overload manager disables keep-alive.
func (d *h1Down) WriteHeader(status int) {
	h := d.c.h
	if status >= 200 && !d.started {
		d.started = true
		if d.body != nil && !d.body.eof.Load() {
			d.responseBegins()
		}
	}
	if status >= 200 && (h.draining.Load() || d.c.cc.draining.Load() || h.overload.keepaliveOff.Load()) {
		d.closeAfter()
	}
	if status >= 200 && !d.w.Header().Has("Date") {
		// As net/http's server did (RFC 9110 section 6.6.1: an origin with a clock sends it).
		d.w.Header().SetBytes("Date", d.c.dateNow())
	}
	d.w.WriteHeader(status)
}

// closeAfter has the response close the connection (Connection: close): the proxy or the
// connection drains, or the overload manager disables keep-alive. Out of WriteHeader's common
// path.
//
//go:noinline
func (d *h1Down) closeAfter() { d.w.Header().Set("Connection", "close") }

// Write implements downstream.
func (d *h1Down) Write(p []byte) (int, error) {
	if d.w.Status() == 0 {
		d.WriteHeader(http.StatusOK)
	}
	return d.w.Write(p)
}

// Flush implements downstream.
func (d *h1Down) Flush() error {
	if d.w.Status() == 0 {
		d.WriteHeader(http.StatusOK)
	}
	return d.w.Flush()
}

// Hijack implements downstream: the connection's clocks stop applying to it, but for the
// write stall limit and max_connection_duration.
func (d *h1Down) Hijack() (net.Conn, []byte, error) {
	conn, rest, err := d.w.Hijack()
	if err != nil {
		return nil, nil, err
	}
	d.c.cc.setState(http.StateHijacked)
	return conn, rest, nil
}

// EnableFullDuplex implements downstream: the codec always is.
func (d *h1Down) EnableFullDuplex() error { return nil }

// SetReadDeadline implements downstream: on the connection the codec reads (h1Net), which went
// direct before the connection's first request was served (ServeHTTP1), so the deadline goes
// straight to the accepted connection, as the codec's own deadlines do, without the clockConn's
// bookkeeping (its read deadline is the server's of net/http's connections).
func (d *h1Down) SetReadDeadline(t time.Time) error { return d.c.net.SetReadDeadline(t) }

// SetWriteDeadline implements downstream.
func (d *h1Down) SetWriteDeadline(t time.Time) error { return d.c.cc.SetWriteDeadline(t) }
