package h1

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/strait-mesh/strait/proxy/http1"
	"github.com/strait-mesh/strait/proxy/httpmsg"
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
	resp   *httpmsg.Response
	idleAt time.Time
	stop   func() bool // stops the context watch, nil if none
	reuse  bool        // the response allows another request on the connection
	broken bool        // the connection cannot be reused (error, cancellation, early close)
	tunnel bool
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
	cc := &clientConn{pool: p, nc: nc}
	cc.rd.src, cc.rd.buf = nc, cc.rbuf[:]
	cc.wr.dst, cc.wr.buf = nc, cc.wbuf[:0]
	cc.rp.Init(p.Limits)
	cc.body.rd, cc.body.owner = &cc.rd, cc
	cc.body.trail.Init(p.Limits, true)
	return cc, nil
}

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
		gotBytes, err := cc.roundTrip(ctx, req, resp)
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

func hasBody(req *httpmsg.Request) bool { return req.Body != nil && req.Body != httpmsg.NoBody }

// checkRequest refuses a request the codec cannot write as a valid request line and Host.
func checkRequest(req *httpmsg.Request) error {
	m, path := req.Method, req.Path()
	if len(m) == 0 || len(path) == 0 {
		return ErrInvalidTarget
	}
	for i := 0; i < len(m); i++ {
		if tchar[m[i]] == 0 {
			return ErrInvalidTarget
		}
	}
	for _, c := range path {
		if c <= ' ' || c == 0x7f {
			return ErrInvalidTarget
		}
	}
	if !validAuthority(req.Authority()) {
		return ErrInvalidTarget
	}
	return nil
}

// roundTrip runs one exchange; gotBytes reports whether any response byte arrived.
func (cc *clientConn) roundTrip(ctx context.Context, req *httpmsg.Request, resp *httpmsg.Response) (gotBytes bool, err error) {
	cc.resp, cc.reuse, cc.broken, cc.tunnel, cc.stop = resp, false, false, false, nil
	resp.Reset()
	if d, ok := ctx.Deadline(); ok {
		cc.nc.SetDeadline(d)
	} else {
		cc.nc.SetDeadline(time.Time{})
	}
	if ctx.Done() != nil {
		cc.stop = context.AfterFunc(ctx, cc.cancel)
	}
	werr := cc.writeRequest(req)
	if werr != nil && cc.wr.err == nil {
		// The codec refused the request (an invalid field, a body shorter than its length):
		// nothing valid was sent, so no response is awaited.
		cc.stopWatch()
		return false, werr
	}
	connect := req.Method == "CONNECT"
	head := req.Method == "HEAD"
	for {
		cc.rp.Reset()
		started, err := cc.rd.readHead(&cc.rp, nil)
		gotBytes = gotBytes || started
		if err != nil {
			cc.stopWatch()
			if e, ok := asError(err); ok {
				return true, &ResponseError{Err: e}
			}
			if werr != nil {
				return gotBytes, werr
			}
			if ctx.Err() != nil {
				return gotBytes, ctx.Err()
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return gotBytes, err
		}
		if s := cc.rp.Status(); s >= 200 || s == 101 {
			break
		}
		// An interim response (100 Continue, 103 Early Hints): the final one follows.
		if _, _, _, err := cc.rp.Body(head, connect); err != nil {
			cc.stopWatch()
			return true, &ResponseError{Err: err.(*http1.Error)}
		}
	}
	framing, length, tunnel, err := cc.rp.Body(head, connect)
	if err != nil {
		cc.stopWatch()
		return true, &ResponseError{Err: err.(*http1.Error)}
	}
	resp.Status = cc.rp.Status()
	resp.Proto = httpmsg.HTTP11
	if cc.rp.Minor() == 0 {
		resp.Proto = httpmsg.HTTP10
	}
	cc.reuse = werr == nil && framing != http1.FramingUntilClose && !tunnel
	keepAlive := false // an HTTP/1.0 connection is kept only with Connection: keep-alive
	for i := 0; i < cc.rp.NumFields(); i++ {
		name, value := cc.rp.Field(i)
		if httpmsg.EqualFold(name, "connection") {
			if httpmsg.HasToken(value, "close") {
				cc.reuse = false
			}
			keepAlive = keepAlive || httpmsg.HasToken(value, "keep-alive")
		}
		resp.Header.AddBytes(name, value)
	}
	if resp.Proto == httpmsg.HTTP10 && !keepAlive {
		cc.reuse = false
	}
	resp.ContentLength = length
	if framing == http1.FramingNone {
		resp.ContentLength = 0
	}
	cc.tunnel = tunnel
	switch {
	case tunnel:
		cc.reuse = false
		resp.Body = (*tunnelBody)(cc)
	default:
		cc.body.reset(framing, length, &resp.Trailer)
		resp.Body = (*respBody)(cc)
	}
	return true, nil
}

// writeRequest writes the request head and body and flushes.
func (cc *clientConn) writeRequest(req *httpmsg.Request) error {
	wr := &cc.wr
	wr.err = nil
	wr.buf = wr.buf[:0]
	wr.writeString(req.Method)
	wr.writeString(" ")
	wr.write(req.Path())
	wr.writeString(" HTTP/1.1\r\nhost: ")
	wr.write(req.Authority())
	wr.writeString("\r\n")
	if err := wr.writeFields(&req.Header, skipFraming|skipHost); err != nil {
		return err
	}
	chunked := false
	switch {
	case req.ContentLength > 0:
		wr.writeString("content-length: ")
		wr.writeInt(req.ContentLength)
		wr.writeString("\r\n")
	case hasBody(req) && req.ContentLength < 0:
		chunked = true
		wr.writeString("transfer-encoding: chunked\r\n")
	case req.Method == "POST" || req.Method == "PUT" || req.Method == "PATCH":
		wr.writeString("content-length: 0\r\n")
	}
	wr.writeString("\r\n")
	if hasBody(req) && req.ContentLength != 0 {
		if err := cc.writeBody(req, chunked); err != nil {
			return err
		}
	}
	return wr.flush()
}

// writeBody copies the request body through the write buffer.
func (cc *clientConn) writeBody(req *httpmsg.Request, chunked bool) error {
	wr := &cc.wr
	const chunkHead = 18 // hex size and CRLF
	sent := int64(0)
	for {
		if cap(wr.buf)-len(wr.buf) < chunkHead+2+512 {
			if wr.flush() != nil {
				return wr.err
			}
		}
		start := len(wr.buf)
		if chunked {
			start += chunkHead
		}
		space := wr.buf[start : cap(wr.buf)-2]
		if !chunked && int64(len(space)) > req.ContentLength-sent {
			space = space[:req.ContentLength-sent]
		}
		n, err := req.Body.Read(space)
		if n > 0 {
			sent += int64(n)
			if chunked {
				wr.writeChunk(space[:n]) // copies down over the reserved head room
			} else {
				wr.buf = wr.buf[:start+n]
			}
		}
		if !chunked && sent == req.ContentLength {
			return nil
		}
		if err == io.EOF {
			if chunked {
				return wr.writeLastChunk(&req.Trailer)
			}
			return ErrContentLength
		}
		if err != nil {
			return err
		}
	}
}

func (cc *clientConn) cancel() {
	cc.nc.SetDeadline(aLongTimeAgo)
}

var aLongTimeAgo = time.Unix(1, 0)

// stopWatch stops the context watch; a watch that already fired broke the connection.
func (cc *clientConn) stopWatch() {
	if cc.stop != nil {
		if !cc.stop() {
			cc.broken = true
		}
		cc.stop = nil
	}
}

func (cc *clientConn) close() {
	cc.stopWatch()
	cc.nc.Close()
}

func (cc *clientConn) bodyStart() {}

func (cc *clientConn) bodyEnd(err error) {
	if err != io.EOF {
		cc.broken = true
	}
}

// release ends the exchange: the connection goes back to the pool or is closed.
func (cc *clientConn) release() {
	cc.stopWatch()
	cc.resp = nil
	if cc.reuse && !cc.broken && cc.body.done() && cc.rd.r == cc.rd.w {
		cc.nc.SetDeadline(time.Time{})
		cc.pool.put(cc)
		return
	}
	cc.nc.Close()
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
	return t.nc.Read(p)
}

// Write implements io.Writer.
func (t *tunnelBody) Write(p []byte) (int, error) { return t.nc.Write(p) }

// CloseWrite half-closes the connection when it supports it.
func (t *tunnelBody) CloseWrite() error {
	if cw, ok := t.nc.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// Close closes the connection.
func (t *tunnelBody) Close() error {
	cc := (*clientConn)(t)
	cc.stopWatch()
	return cc.nc.Close()
}
