package h1

import (
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strait-mesh/strait/proxy/http1"
	"github.com/strait-mesh/strait/proxy/httpmsg"
	"github.com/strait-mesh/strait/proxy/stats"
)

// Pool sends requests to one upstream endpoint over keep-alive HTTP/1.1 connections: each
// request is written from the caller's goroutine to an idle connection (or a new one), and
// the connection goes back to the pool when the response body was read to its end, the
// response allows reuse and the body is closed. Idle connections are kept last-in first-out,
// at most MaxIdle of them, and dropped when older than IdleTimeout.
//
// A Pool is safe for concurrent use; the zero Pool needs Dial.
type Pool struct {
	// Dial opens a connection to the endpoint. Required.
	Dial func(ctx context.Context) (net.Conn, error)
	// MaxIdle caps the idle connections kept; 0: DefaultMaxIdle.
	MaxIdle int
	// IdleTimeout drops an idle connection older than this when it would be reused; 0:
	// DefaultIdleTimeout.
	IdleTimeout time.Duration
	// Limits bound response heads and trailer sections; a response beyond them is an error.
	Limits http1.Limits

	mu     sync.Mutex
	idle   []*clientConn
	closed bool
}

// Pool defaults.
const (
	DefaultMaxIdle     = 32
	DefaultIdleTimeout = 60 * time.Second
)

// ErrPoolClosed is a RoundTrip on a closed Pool.
var ErrPoolClosed = errors.New("h1: pool closed")

// ResponseError is an upstream response the client refused: a malformed head or body framing
// (Err is the *http1.Error), as Envoy's upstream protocol error.
type ResponseError struct{ Err *http1.Error }

func (e *ResponseError) Error() string { return "upstream response: " + e.Err.Error() }

// Unwrap returns the parse error.
func (e *ResponseError) Unwrap() error { return e.Err }

// clientConn is one upstream connection.
type clientConn struct {
	pool   *Pool
	nc     net.Conn
	rd     reader
	wr     writer
	rp     http1.ResponseParser
	body   body
	idleAt time.Time
	stop   func() bool // stops the context watch, nil if none
	// watcher is the exchange's Watcher (RoundTripWatch), nil if none. xstate is the
	// exchange's number and phase (gen<<2 | xRunning or xAborting), so that an abort meant
	// for one exchange never reaches the next (Abort, stopWatch): between exchanges it holds
	// the next exchange's number, which no watch was given yet, and xRunning.
	watcher Watcher
	xstate  atomic.Uint64
	reuse   bool // the response allows another request on the connection
	broken  bool // the connection cannot be reused (error, cancellation, early close)
	tunnel  bool
	// Set for a Conn: duplex writes a request body from a goroutine of its own while the
	// response is read (bodyDone reports the end of that write); done ends an exchange.
	duplex       bool
	bodyDone     chan error
	done         func(reusable bool)
	tunnelClosed atomic.Bool
	wroteHead    func() // the exchange's WroteHead hook (Conn.RoundTripTrace), nil if none
	canceled     atomic.Bool
	// validAuth is the last request authority found valid on the connection (checkRequest).
	validAuth []byte
	// deadline is set while the connection may have a deadline (a context's, or the past one
	// a cancellation sets): exchanges without one then clear it, and the others skip that.
	deadline bool
	// fields notes the fields of the last response head (fieldClose...).
	fields uint8
	rbuf   [bufSize]byte
	wbuf   [bufSize]byte
}

func (p *Pool) get() *clientConn {
	max := p.IdleTimeout
	if max <= 0 {
		max = DefaultIdleTimeout
	}
	p.mu.Lock()
	for n := len(p.idle); n > 0; n = len(p.idle) {
		cc := p.idle[n-1]
		p.idle = p.idle[:n-1]
		if time.Since(cc.idleAt) < max {
			p.mu.Unlock()
			return cc
		}
		cc.nc.Close()
	}
	p.mu.Unlock()
	return nil
}

func (p *Pool) put(cc *clientConn) {
	max := p.MaxIdle
	if max <= 0 {
		max = DefaultMaxIdle
	}
	cc.idleAt = time.Now()
	p.mu.Lock()
	if !p.closed && len(p.idle) < max {
		p.idle = append(p.idle, cc)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	cc.nc.Close()
}

// Idle returns the number of idle connections.
func (p *Pool) Idle() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// Close closes the idle connections; connections in use close when their response ends.
func (p *Pool) Close() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, cc := range idle {
		cc.nc.Close()
	}
}

func (p *Pool) dial(ctx context.Context) (*clientConn, error) {
	nc, err := p.Dial(ctx)
	if err != nil {
		return nil, err
	}
	return newClientConn(p, nc, p.Limits), nil
}

func newClientConn(p *Pool, nc net.Conn, lim http1.Limits) *clientConn {
	cc := &clientConn{pool: p, nc: nc, deadline: true}
	cc.rd.src, cc.rd.buf = nc, cc.rbuf[:]
	cc.wr.dst, cc.wr.buf, cc.wr.vec = nc, cc.wbuf[:0], vectorOf(nc)
	cc.rp.Init(lim)
	cc.body.rd, cc.body.owner = &cc.rd, cc
	cc.body.trail.Init(lim, true)
	return cc
}

// Conn is one upstream HTTP/1.1 connection, for a caller that pools connections itself. It
// carries one exchange at a time. Unlike Pool's, a Conn writes a request body from a
// goroutine of its own while it reads the response, so that an upstream may answer (and the
// answer stream back) before the body has been sent; the connection is then reused only if
// the body was sent completely.
type Conn struct{ cc *clientConn }

// NewConn returns a client for the connection nc (already connected, TLS included), with
// Limits for response heads. done runs when an exchange ends: when its response body was
// closed, or when RoundTrip failed; reusable reports whether the connection may carry another
// request (otherwise it was closed).
func NewConn(nc net.Conn, lim http1.Limits, done func(reusable bool)) *Conn {
	cc := newClientConn(nil, nc, lim)
	cc.duplex, cc.done = true, done
	return &Conn{cc: cc}
}

// CountBytes makes the codec read and write through under, the connection beneath the one
// given to NewConn, and under count the bytes it reads and writes into rx and tx, for a caller
// whose connection only counts the bytes it passes to under: each read and write then
// spares the call through it. under must be a connection from DirectConn, which counts
// without a call of its own; CountBytes reports false, changing nothing, for another. The
// given connection still serves deadlines and Close, but no read or write: once CountBytes
// returned true, those go to under only (a tunnel's too), so that no byte is counted twice.
// Call it before the first exchange.
func (c *Conn) CountBytes(under net.Conn, rx, tx *stats.Counter) bool {
	if !countDirect(under, rx, tx) {
		return false
	}
	cc := c.cc
	cc.rd.src = under
	cc.wr.dst, cc.wr.vec = under, vectorOf(under)
	return true
}

// RoundTrip is Pool.RoundTrip on this connection, without its retry of a stale connection.
func (c *Conn) RoundTrip(ctx context.Context, req *httpmsg.Request, resp *httpmsg.Response) error {
	return c.RoundTripTrace(ctx, req, resp, nil)
}

// RoundTripTrace is RoundTrip calling wroteHead (if not nil) once the request head has been
// written to the connection's buffer (as net/http's ClientTrace.WroteHeaders), so that a
// caller can tell a failure before the request went out from one after.
func (c *Conn) RoundTripTrace(ctx context.Context, req *httpmsg.Request, resp *httpmsg.Response, wroteHead func()) error {
	return c.RoundTripWatch(ctx, nil, req, resp, wroteHead)
}

// RoundTripWatch is RoundTripTrace with w (when not nil) as the exchange's cancellation
// instead of ctx's: the exchange registers with w, which must abort it whenever ctx is
// canceled, after ctx reports it (ctx still gives the deadline and the error of a canceled
// exchange). Registering with a
// Watcher costs no allocation, unlike a watch of ctx.
func (c *Conn) RoundTripWatch(ctx context.Context, w Watcher, req *httpmsg.Request, resp *httpmsg.Response, wroteHead func()) error {
	cc := c.cc
	if err := cc.checkRequest(req); err != nil {
		cc.done(true)
		return err
	}
	if wroteHead != nil {
		return cc.roundTripTraced(ctx, w, req, resp, wroteHead)
	}
	_, err := cc.roundTrip(ctx, w, req, resp)
	if err == nil {
		return nil
	}
	return cc.failed(ctx, err)
}

// roundTripTraced is roundTrip with the exchange's wroteHead hook set (writeHead calls it).
// Out of RoundTripWatch's common path: most exchanges have no hook, and leave cc.wroteHead
// nil without storing it.
//
//go:noinline
func (cc *clientConn) roundTripTraced(ctx context.Context, w Watcher, req *httpmsg.Request, resp *httpmsg.Response, wroteHead func()) error {
	cc.wroteHead = wroteHead
	defer cc.clearWroteHead() // even on a panic: the next exchanges, untraced, do not set it
	if _, err := cc.roundTrip(ctx, w, req, resp); err != nil {
		return cc.failed(ctx, err)
	}
	return nil
}

// clearWroteHead ends roundTripTraced's hook.
func (cc *clientConn) clearWroteHead() { cc.wroteHead = nil }

// Close closes the connection; an exchange in progress fails.
func (c *Conn) Close() error { return c.cc.nc.Close() }

// RoundTrip sends req and reads the response head into resp (reset first). The request's
// Authority is sent as Host, its Header fields other than Host and framing fields as they
// are; its body is sent with Content-Length when req.ContentLength > 0 (exactly that many
// bytes), chunked with req.Trailer when it is -1 and Body is not nil. The response's Body
// must be closed; the connection is reused only after it was read to EOF and closed.
//
// A request without a body that fails on a reused connection before any response byte
// arrived (the upstream closed it while idle) is retried once on a new connection. ctx
// cancels the round trip and the body's reads; a cancelable ctx costs an allocation.
//
// The request is written completely before the response is read, so an upstream that answers
// before reading the whole body sees the rest of it; if the write fails, the response is
// still read if it arrives.
func (p *Pool) RoundTrip(ctx context.Context, req *httpmsg.Request, resp *httpmsg.Response) error {
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return ErrPoolClosed
	}
	if err := checkRequest(req); err != nil {
		return err
	}
	cc := p.get()
	reused := cc != nil
	for {
		if cc == nil {
			var err error
			if cc, err = p.dial(ctx); err != nil {
				return err
			}
		}
		gotBytes, err := cc.roundTrip(ctx, nil, req, resp)
		if err == nil {
			return nil
		}
		cc.close()
		if !reused || gotBytes || hasBody(req) || ctx.Err() != nil {
			return err
		}
		if _, ok := err.(*ResponseError); ok {
			return err
		}
		cc, reused = nil, false
	}
}

func hasBody(req *httpmsg.Request) bool { return req.Body != nil && !httpmsg.IsNoBody(req.Body) }

// maxInMemoryWrite bounds the in-memory request bodies a Conn writes from the caller's
// goroutine (see inMemory): a socket's send buffer takes that much without the upstream
// reading it.
const maxInMemoryWrite = 16 << 10

// inMemory reports whether req's body is held in memory (an *httpmsg.BytesBody) and small
// enough that a Conn writes it with the head, in one write when both fit the write buffer,
// instead of from a goroutine of its own while the response is read: reading it cannot
// block, and the upstream need not read it for the write to complete.
func inMemory(req *httpmsg.Request) bool {
	_, ok := req.Body.(*httpmsg.BytesBody)
	return ok && req.ContentLength > 0 && req.ContentLength <= maxInMemoryWrite
}

// checkRequest refuses a request the codec cannot write as a valid request line and Host.
func checkRequest(req *httpmsg.Request) error {
	if err := checkLine(req); err != nil {
		return err
	}
	if !validAuthority(req.Authority()) {
		return ErrInvalidTarget
	}
	return nil
}

// checkRequest is checkRequest, but an authority equal to the last one found valid on the
// connection (a connection mostly carries requests for one host) is not scanned again.
func (cc *clientConn) checkRequest(req *httpmsg.Request) error {
	if err := checkLine(req); err != nil {
		return err
	}
	if !validAuthorityAgain(&cc.validAuth, req.Authority()) {
		return ErrInvalidTarget
	}
	return nil
}

// validAuthorityAgain is validAuthority for a connection's requests: a value equal to the
// last one found valid (*last; a connection mostly carries requests for one host) is not
// scanned again, and a new valid one becomes *last.
func validAuthorityAgain(last *[]byte, auth []byte) bool {
	if string(auth) == string(*last) {
		return true
	}
	if !validAuthority(auth) {
		return false
	}
	*last = append((*last)[:0], auth...)
	return true
}

// checkLine refuses a request whose method and path cannot be written as a request line.
func checkLine(req *httpmsg.Request) error {
	m, path := req.Method, req.Path()
	if len(path) == 0 {
		return ErrInvalidTarget
	}
	if len(m) == 0 {
		return ErrInvalidTarget
	}
	for i := 0; i < len(m); i++ { // a few bytes: less code than a switch over the methods
		if tchar[m[i]] == 0 {
			return ErrInvalidTarget
		}
	}
	for _, c := range path {
		if c <= ' ' || c == 0x7f {
			return ErrInvalidTarget
		}
	}
	return nil
}

// roundTrip runs one exchange, canceled by w when not nil, else by ctx; gotBytes reports
// whether any response byte arrived.
func (cc *clientConn) roundTrip(ctx context.Context, w Watcher, req *httpmsg.Request, resp *httpmsg.Response) (gotBytes bool, err error) {
	// The exchange's number is the one stopWatch left, unless the last exchange's watch was
	// not stopped (or an abort of it is under way): a number of its own then, so that a
	// watch left registered aborts nothing. An exchange without a watch leaves its number
	// to the next.
	st := cc.xstate.Load()
	if cc.watcher != nil || cc.stop != nil || st&3 != xRunning {
		st = cc.newExchange(st)
	}
	gen := st >> 2
	cc.reuse, cc.broken, cc.tunnel = false, false, false
	resp.Reset()
	if d, ok := ctx.Deadline(); ok || cc.deadline {
		cc.setDeadline(d, ok)
	}
	switch {
	case w != nil:
		if !w.Watch(cc, gen) {
			return false, canceled(ctx) // nothing is sent
		}
		cc.watcher = w
	case ctx.Done() != nil:
		cc.watchContext(ctx, gen)
	}
	var werr error
	if cc.duplex && hasBody(req) && req.ContentLength != 0 && !inMemory(req) {
		werr = cc.writeDuplex(req)
	} else {
		werr = cc.writeRequest(req)
		if bb, ok := req.Body.(*httpmsg.BytesBody); ok {
			bb.MarkDone() // written from this goroutine, never read again
		}
	}
	if werr != nil && cc.wr.err == nil {
		// The codec refused the request (an invalid field, a body shorter than its length):
		// nothing valid was sent, so no response is awaited.
		cc.stopWatch()
		return false, werr
	}
	head, connect := req.Method == "HEAD", req.Method == "CONNECT"
	cc.rp.Reset()
	started, err := cc.rd.readResponseHead(&cc.rp)
	if err != nil {
		return cc.headFailed(ctx, started, err, werr)
	}
	if s := cc.rp.Status(); s < 200 && s != 101 {
		if gotBytes, err := cc.skipInterim(ctx, werr, head, connect); err != nil {
			return gotBytes, err
		}
	}
	framing, length, tunnel, err := cc.rp.Body(head, connect)
	if err != nil {
		return true, cc.framingFailed(err)
	}
	resp.Status = cc.rp.Status()
	resp.Proto = httpmsg.HTTP11
	cc.reuse = werr == nil && framing != http1.FramingUntilClose && !tunnel
	cc.copyFields(&resp.Header)
	if cc.fields&fieldClose != 0 {
		cc.reuse = false
	}
	if cc.rp.Minor() == 0 {
		// An HTTP/1.0 connection is kept only with Connection: keep-alive.
		resp.Proto = httpmsg.HTTP10
		if cc.fields&fieldKeepAlive == 0 {
			cc.reuse = false
		}
	}
	resp.ContentLength = length
	if framing == http1.FramingNone {
		resp.ContentLength = 0
	}
	cc.tunnel = tunnel
	if tunnel {
		cc.startTunnel(resp)
		return true, nil
	}
	cc.body.reset(framing, length, &resp.Trailer)
	resp.Body = (*respBody)(cc)
	return true, nil
}

// copyFields copies the response head's fields into h and notes those the client looks at
// (cc.fields). Its own function: a loop in roundTrip had the compiler lay out roundTrip's rare
// blocks just before the loop's body, amid the common path.
func (cc *clientConn) copyFields(h *httpmsg.Header) {
	cc.fields = 0
	for i, n := 0, cc.rp.NumFields(); i < n; i++ {
		name, value := cc.rp.Field(i)
		if notedLens>>(uint(len(name))&63)&1 != 0 {
			cc.noteField(i)
		}
		h.AddValid(name, value) // the parser checked name and value
	}
}

// writeRequest writes the request head and body and flushes.
func (cc *clientConn) writeRequest(req *httpmsg.Request) error {
	wr := &cc.wr
	chunked, err := cc.writeHead(req)
	if err != nil {
		return err
	}
	if hasBody(req) && req.ContentLength != 0 {
		if p := cc.vectorBody(req, chunked); p != nil {
			wr.writeVector(p)
			return wr.err
		}
		if err := cc.writeBody(req, chunked); err != nil {
			return err
		}
	}
	return wr.flush()
}

// vectorBody returns the body of req to write with its head in one vectored write, taken
// from the body (not copied): an in-memory body's Content-Length bytes, large enough and not
// chunked, when the connection has a vectored write; else nil.
func (cc *clientConn) vectorBody(req *httpmsg.Request, chunked bool) []byte {
	if cc.wr.vec == nil || chunked || req.ContentLength < vectorMin {
		return nil
	}
	bb, ok := req.Body.(*httpmsg.BytesBody)
	if !ok {
		return nil
	}
	return bb.Take(req.ContentLength)
}

// writeHead empties the write buffer, writes the request head into it and runs the
// exchange's wroteHead hook; it reports whether the body is chunked.
func (cc *clientConn) writeHead(req *httpmsg.Request) (chunked bool, err error) {
	wr := &cc.wr
	wr.err = nil
	path, auth := req.Path(), req.Authority()
	wr.buf = wr.buf[:0]
	if len(req.Method)+len(path)+len(auth)+len(" HTTP/1.1\r\nhost: \r\n")+1 <= cap(wr.buf) {
		// Appends to a local slice of the emptied buffer, which never grows, and one store
		// of the length.
		b := wr.buf[:0]
		b = append(b, req.Method...)
		b = append(b, ' ')
		b = append(b, path...)
		b = append(b, " HTTP/1.1\r\nhost: "...)
		b = append(b, auth...)
		b = append(b, '\r', '\n')
		wr.buf = wr.buf[:len(b)]
	} else {
		wr.writeLongLine(req.Method, path, auth)
	}
	if err := wr.writeFields(&req.Header, skipFraming|skipHost); err != nil {
		return false, err
	}
	length := req.ContentLength
	if length <= 0 {
		length, chunked = framingWithoutLength(req)
	}
	wr.endHead(length, chunked, "")
	if cc.wroteHead != nil {
		cc.wroteHead()
	}
	return chunked, nil
}

// writeDuplex writes and flushes the request head, then starts the body's writer.
func (cc *clientConn) writeDuplex(req *httpmsg.Request) error {
	wr := &cc.wr
	chunked, err := cc.writeHead(req)
	if err != nil {
		return err
	}
	if err := wr.flush(); err != nil {
		return err
	}
	done := make(chan error, 1)
	cc.bodyDone = done
	go func() {
		err := cc.writeBody(req, chunked)
		if err == nil {
			err = wr.flush()
		}
		done <- err
	}()
	return nil
}

// chunkHead is the room writeChunkedBody reserves for a chunk's hex size and CRLF.
const chunkHead = 18

// writeBody copies the request body through the write buffer: its Content-Length bytes, or
// chunked (writeChunkedBody).
func (cc *clientConn) writeBody(req *httpmsg.Request, chunked bool) error {
	if chunked {
		return cc.writeChunkedBody(req)
	}
	wr := &cc.wr
	sent := int64(0)
	for {
		if cap(wr.buf)-len(wr.buf) < chunkHead+2+512 {
			if wr.flush() != nil {
				return wr.err
			}
		}
		start := len(wr.buf)
		space := wr.buf[start : cap(wr.buf)-2]
		if int64(len(space)) > req.ContentLength-sent {
			space = space[:req.ContentLength-sent]
		}
		n, err := req.Body.Read(space)
		if n > 0 {
			sent += int64(n)
			wr.buf = wr.buf[:start+n]
		}
		if sent == req.ContentLength {
			return nil
		}
		if err == io.EOF {
			return ErrContentLength
		}
		if err != nil {
			return err
		}
	}
}

// writeChunkedBody copies the request body through the write buffer as chunks, then its
// trailer fields.
func (cc *clientConn) writeChunkedBody(req *httpmsg.Request) error {
	wr := &cc.wr
	for {
		if cap(wr.buf)-len(wr.buf) < chunkHead+2+512 {
			if wr.flush() != nil {
				return wr.err
			}
		}
		start := len(wr.buf) + chunkHead
		space := wr.buf[start : cap(wr.buf)-2]
		n, err := req.Body.Read(space)
		if n > 0 {
			wr.writeChunk(space[:n]) // copies down over the reserved head room
		}
		if err == io.EOF {
			return wr.writeLastChunk(&req.Trailer)
		}
		if err != nil {
			return err
		}
	}
}

// Phases of an exchange (clientConn.xstate).
const (
	xRunning  uint64 = iota // the exchange runs (or, between exchanges, the next is to come)
	xAborting               // Abort interrupts the exchange's I/O
)

// Abort implements Aborter: the connection's I/O fails at once while exchange gen runs. An
// abort that comes once the exchange has ended (its watch stopped, and xstate moved on to the
// next exchange's number) does nothing.
func (cc *clientConn) Abort(gen uint64) {
	if !cc.xstate.CompareAndSwap(gen<<2|xRunning, gen<<2|xAborting) {
		return
	}
	cc.nc.SetDeadline(aLongTimeAgo)
	cc.canceled.Store(true)
}

// endAbortedWatch is stopWatch's end of the watched phase for an exchange that an Abort
// reached (xstate was st, its phase xAborting, or made so meanwhile): the Abort has set (or
// is setting) the connection's past deadline, which it waits for so that the next exchange
// sets its own. Out of stopWatch: rare.
//
//go:noinline
func (cc *clientConn) endAbortedWatch(st uint64) {
	next := (st>>2+1)<<2 | xRunning
	for !cc.canceled.Load() {
		runtime.Gosched() // Abort runs now on another goroutine
	}
	cc.canceled.Store(false)
	cc.deadline = true
	cc.xstate.Store(next)
}

var aLongTimeAgo = time.Unix(1, 0)

// stopWatch stops the exchange's watch (its Watcher's or its context's). A watch that fired
// interrupted whatever I/O was under way (which then failed and broke the connection);
// stopWatch waits until it has, so that the connection's deadline can be set again
// (endAbortedWatch).
// An exchange whose response body was read to its end and whose request was sent is
// complete, and a cancellation after that (the caller canceling its context before closing
// the body) does not stop the connection's reuse.
//
// Once the watch is removed, the watched phase of the exchange ends, xstate moving on to the
// next exchange's number (so that the next exchange need not); any later Abort of this
// exchange does nothing.
func (cc *clientConn) stopWatch() {
	switch {
	case cc.watcher != nil:
		cc.watcher.Unwatch(cc)
		cc.watcher = nil
	case cc.stop != nil:
		cc.stop()
		cc.stop = nil
	default:
		return
	}
	st := cc.xstate.Load()
	if st&3 != xRunning || !cc.xstate.CompareAndSwap(st, (st>>2+1)<<2|xRunning) {
		cc.endAbortedWatch(st)
	}
}

func (cc *clientConn) close() {
	cc.stopWatch()
	cc.nc.Close()
}

func (cc *clientConn) bodyStart() {}

func (cc *clientConn) bodyEnd(eof bool) {
	if !eof {
		cc.broken = true
	}
}

// release ends the exchange: the connection goes back to the pool or is closed.
func (cc *clientConn) release() {
	cc.stopWatch()
	if cc.bodyDone != nil {
		cc.endBodyWriter()
	}
	reuse := cc.reuse && !cc.broken && cc.body.done() && cc.rd.r == cc.rd.w
	if !reuse || cc.deadline {
		cc.closeOrClearDeadline(reuse)
	}
	if cc.pool == nil {
		cc.done(reuse)
		return
	}
	if reuse {
		cc.pool.put(cc)
	}
}

// respBody is a response body: the connection's body reader, until Close.
type respBody clientConn

// Read implements io.Reader.
func (b *respBody) Read(p []byte) (int, error) { return b.body.Read(p) }

// Close ends the exchange. A body not read to its end is dropped if it is already buffered,
// else the connection closes. Close must be called exactly once; the body must not be used
// after it.
func (b *respBody) Close() error {
	cc := (*clientConn)(b)
	if !cc.body.done() {
		cc.body.discard(0)
	}
	cc.release()
	return nil
}

// tunnelBody is the connection after a protocol switch: reads return the bytes after the
// head, then the connection's; writes go to the connection.
type tunnelBody clientConn

// Read implements io.Reader.
func (t *tunnelBody) Read(p []byte) (int, error) {
	rd := &t.rd
	if rd.r < rd.w {
		n := copy(p, rd.buffered())
		rd.r += n
		return n, nil
	}
	return t.rd.src.Read(p) // the connection's (or, after CountBytes, the one beneath)
}

// Write implements io.Writer.
func (t *tunnelBody) Write(p []byte) (int, error) { return t.wr.dst.Write(p) }

// CloseWrite half-closes the connection when it supports it.
func (t *tunnelBody) CloseWrite() error {
	if cw, ok := t.nc.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// Close closes the connection (a Conn's exchange ends, not reusable). It may be called more
// than once, from any goroutine.
func (t *tunnelBody) Close() error {
	cc := (*clientConn)(t)
	if cc.tunnelClosed.Swap(true) {
		return nil
	}
	cc.stopWatch()
	err := cc.nc.Close()
	if cc.pool == nil {
		cc.done(false)
	}
	return err
}
