package h1

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/strait-mesh/strait/proxy/clock"
	"github.com/strait-mesh/strait/proxy/http1"
	"github.com/strait-mesh/strait/proxy/httpmsg"
)

// Handler serves one request. The request, its body and the writer are valid until
// ServeHTTP1 returns; the codec reuses them for the connection's next request.
type Handler interface {
	ServeHTTP1(w *ResponseWriter, r *httpmsg.Request)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(w *ResponseWriter, r *httpmsg.Request)

// ServeHTTP1 calls f.
func (f HandlerFunc) ServeHTTP1(w *ResponseWriter, r *httpmsg.Request) { f(w, r) }

// Server serves HTTP/1.1 connections: ServeConn reads requests one after the other (pipelined
// requests are served serially) and calls Handler for each from the connection's goroutine.
type Server struct {
	// Handler serves the requests. Required.
	Handler Handler
	// Limits bound request heads and trailer sections (431 beyond them).
	Limits http1.Limits
	// IdleTimeout bounds the wait for the first byte of a request on a connection (Envoy's
	// idle_timeout between requests); 0: none.
	IdleTimeout time.Duration
	// HeadersTimeout bounds the time from a request's first byte to the end of its head
	// (Envoy's request_headers_timeout); 0: none.
	HeadersTimeout time.Duration
	// MaxDrain bounds how many bytes of a request body the handler did not read are read and
	// dropped to keep the connection alive (rounded up to one 4 KiB read); beyond it the
	// connection is closed. Default 256 KiB.
	MaxDrain int64
	// OnReject, if set, is called with each request rejected by the codec (400, 431, 501),
	// before the answer is written.
	OnReject func(e *http1.Error)
	// CheckBufferedBody makes the codec validate the chunked body bytes that arrived with a
	// request's head before it calls Handler: a request whose framing is broken within what
	// was already read is rejected (400) without reaching the handler, as Envoy's codec
	// rejects it before the stream goes upstream. Without it the handler's body read fails.
	CheckBufferedBody bool
	// OnTimeout, if set, is called when a read deadline ends the connection while it waits for
	// a request head: head reports whether the head had begun (HeadersTimeout, or a deadline
	// the caller set) or not (IdleTimeout).
	OnTimeout func(head bool)
	// WatchDelay is how long a request whose body was read to its end may be in flight (its
	// handler not returned) before the codec watches the connection for the client closing or
	// resetting it (see watch.go); 0: not watched, the close is noticed when the response is
	// written.
	WatchDelay time.Duration
	// OnPeerGone, if set, is called, from another goroutine while the handler runs, when the
	// watch sees the client close or reset the connection. The connection closes after the
	// response.
	OnPeerGone func()
	// OnIdle, if set, is called from the connection's goroutine when a response has been
	// written in full (flushed) and the connection stays open to wait for its next request,
	// no byte of which has been read yet: from then on, until the handler's next call, the
	// connection may be closed without losing a response. Not called before the first
	// request.
	OnIdle func()
}

// Codec errors of a request head, with Envoy's details.
var (
	// ErrMissingHost: an HTTP/1.1 request without a Host field (RFC 9112 section 3.2).
	ErrMissingHost = &http1.Error{Status: 400, Details: "missing_host_header", Reason: "missing Host header"}
	// ErrInvalidAuthority: a Host field or target authority with characters no authority has,
	// or userinfo in an absolute-form target (RFC 9110 section 4.2.4).
	ErrInvalidAuthority = &http1.Error{Status: 400, Details: "http.invalid_authority", Reason: "invalid authority"}
)

// lingerTimeout bounds how long a connection whose request was rejected is drained before it
// closes, so that the client reads the answer instead of a reset (Envoy's
// delayed_close_timeout).
const (
	lingerTimeout = time.Second
	lingerBytes   = 1 << 20
	defaultDrain  = 256 << 10
)

// conn is one served connection's state, pooled between connections.
type conn struct {
	srv  *Server
	c    net.Conn
	rd   reader
	wr   writer
	p    http1.Parser
	req  httpmsg.Request
	body body
	w    ResponseWriter
	pend []byte // response body bytes held until the head is written (see ResponseWriter)
	// The state a request reads and writes beside pend, before the buffers (the cache lines
	// a request touches).
	watch watch
	// validHost is the last Host value found valid (setTarget), method the last request's
	// method (interned): most requests on a connection repeat them. Kept across connections:
	// they are only compared with.
	validHost []byte
	method    string
	expect100 bool // the request expects 100-continue and none was sent yet
	closeConn bool // the connection closes after the current response
	tunnel    bool // the request asks to switch protocols

	rbuf    [bufSize]byte
	wbuf    [bufSize]byte
	pendBuf [bufSize]byte
	scratch []byte
}

var connPool = sync.Pool{New: func() any {
	c := new(conn)
	c.rd.buf = c.rbuf[:]
	c.wr.buf = c.wbuf[:0]
	c.pend = c.pendBuf[:0]
	c.body.rd = &c.rd
	c.body.owner = c
	c.body.trail.Init(http1.Limits{}, true)
	c.w.c = c
	return c
}}

// ServeConn serves the requests of c until it closes, a request asks to close, a request is
// rejected, or the handler hijacks it; c is closed unless hijacked. It returns nil when the
// connection ended cleanly (EOF or idle timeout between requests), the *http1.Error of a
// rejected request, or the I/O error that ended it.
func (s *Server) ServeConn(nc net.Conn) (err error) {
	c := connPool.Get().(*conn)
	c.srv, c.c = s, nc
	c.rd.src, c.wr.dst, c.wr.vec = nc, nc, vectorOf(nc)
	c.rd.r, c.rd.w = 0, 0
	c.wr.buf, c.wr.err = c.wr.buf[:0], nil
	c.p.Init(s.Limits, true)
	c.body.trail.Init(s.Limits, true)
	defer func() {
		// A handler that panics aborts its connection (as net/http's ErrAbortHandler does);
		// the connection's state is dropped, not pooled.
		if v := recover(); v != nil {
			// The watch ends first: a request left in its shard would be read (and taken
			// for the client's close) after ServeConn returned.
			c.stopWatch()
			c.leaveWatch()
			nc.Close()
			err = &PanicError{Value: v}
		}
	}()
	err = c.serve()
	c.leaveWatch()
	hijacked := c.w.hijacked
	c.srv, c.c, c.rd.src, c.wr.dst, c.wr.vec = nil, nil, nil, nil, nil
	c.req.Reset()
	c.w.reset()
	connPool.Put(c)
	if !hijacked {
		nc.Close()
	}
	return err
}

// PanicError is the error ServeConn returns when the handler panicked; the connection was
// closed without completing the response.
type PanicError struct{ Value any }

func (e *PanicError) Error() string { return fmt.Sprintf("h1: handler panicked: %v", e.Value) }

func (c *conn) serve() error {
	s := c.srv
	for {
		if s.IdleTimeout > 0 && c.rd.r == c.rd.w {
			c.c.SetReadDeadline(clock.Now().Add(s.IdleTimeout))
		}
		c.p.Reset()
		var onWait func()
		if s.HeadersTimeout > 0 {
			onWait = c.headWaits
		}
		started, err := c.rd.readHead(&c.p, onWait)
		if s.IdleTimeout > 0 || s.HeadersTimeout > 0 {
			c.c.SetReadDeadline(time.Time{})
		}
		if err != nil {
			return c.headFailed(started, err)
		}
		if e := c.buildRequest(); e != nil {
			return c.reject(e)
		}
		if s.CheckBufferedBody && c.p.Framing() == http1.FramingChunked {
			if e := c.checkBuffered(); e != nil {
				return c.reject(e)
			}
		}
		c.w.reset()
		c.beginWatch()
		s.Handler.ServeHTTP1(&c.w, &c.req)
		if c.w.hijacked {
			return nil
		}
		if c.stopWatch() {
			c.closeConn = true
		}
		if err := c.finishRequest(); err != nil || c.closeConn {
			return err
		}
		if s.OnIdle != nil && c.rd.r == c.rd.w {
			s.OnIdle()
		}
	}
}

// headFailed ends the connection when a request head could not be read (err; started: some
// of it arrived): a rejected head is answered, the end of the connection or the idle timeout
// between requests is a clean end (nil). Out of serve: once a connection.
//
//go:noinline
func (c *conn) headFailed(started bool, err error) error {
	if e, ok := asError(err); ok {
		return c.reject(e)
	}
	s := c.srv
	if s.OnTimeout != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		s.OnTimeout(started)
	}
	if !started && (err == io.EOF || errors.Is(err, os.ErrDeadlineExceeded)) {
		return nil
	}
	return err
}

// headWaits runs when a head that has begun needs another read: the reads from then on are
// bounded by HeadersTimeout from the head's first byte. A head whose bytes all came with its
// first read (most) needs no deadline of its own; for the others the clock starts once the
// bytes of that read were parsed, microseconds after they arrived, rather than with a
// deadline set for every head.
func (c *conn) headWaits() {
	c.c.SetReadDeadline(clock.Now().Add(c.srv.HeadersTimeout))
}

// buildRequest fills c.req from the parsed head and prepares the body.
func (c *conn) buildRequest() *http1.Error {
	p, r := &c.p, &c.req
	r.Reset()
	if m := p.Method(); string(m) != c.method { // most have the last request's method
		c.newMethod(m)
	}
	r.Method = c.method
	r.Proto = httpmsg.HTTP11
	if p.Minor() == 0 {
		r.Proto = httpmsg.HTTP10
	}
	c.closeConn = p.Minor() == 0
	c.expect100 = false
	c.tunnel = p.Upgrade() || p.Connect()
	var host []byte // the Host field's value, if hasHost
	hasHost := false
	for i, n := 0, p.NumFields(); i < n; i++ {
		name, value := p.Field(i)
		// The names the codec looks at have lengths no other of them has.
		switch len(name) {
		case len("host"):
			if httpmsg.EqualFold(name, "host") {
				host, hasHost = value, true
				continue
			}
		case len("connection"), len("expect"):
			if name[0]|0x20 == 'c' || name[0]|0x20 == 'e' { // not User-Agent's
				c.noteField(name, value)
			}
		}
		r.Header.AddValid(name, value) // the parser checked name and value
	}
	if e := c.setTarget(p.Target(), host, hasHost); e != nil {
		return e
	}
	// Inline for the two common heads, a length or no body (most requests in a mesh are GETs);
	// the body stored once (one write barrier's code).
	var body io.Reader = &c.body
	cl := p.ContentLength()
	switch p.Framing() {
	case http1.FramingLength:
	case http1.FramingChunked:
		cl = -1
	default:
		cl, body = 0, httpmsg.NoBody
		c.expect100 = false
	}
	r.ContentLength, r.Body = cl, body
	c.body.reset(p.Framing(), p.ContentLength(), &r.Trailer)
	return nil
}

// newMethod makes the method of the request being built (m) the connection's last one, a
// string of its own when m is not a standard method. Out of buildRequest: most requests on a
// connection have the last one's method.
//
//go:noinline
func (c *conn) newMethod(m []byte) { c.method = httpmsg.Method(m) }

// noteField notes a request field whose name has the length of Connection or Expect. Out of
// buildRequest's loop over the fields: most fields have other lengths.
//
//go:noinline
func (c *conn) noteField(name, value []byte) {
	switch {
	case httpmsg.EqualFold(name, "connection"):
		if httpmsg.HasToken(value, "close") {
			c.closeConn = true
		} else if c.p.Minor() == 0 && httpmsg.HasToken(value, "keep-alive") {
			c.closeConn = false
		}
	case httpmsg.EqualFold(name, "expect"):
		c.expect100 = c.p.Minor() == 1 && httpmsg.EqualFold(value, "100-continue")
	}
}

// checkBuffered validates the buffered bytes of a chunked request body (a dry run: the body
// reader parses them again), with the head parser, no longer needed, for the trailer section.
func (c *conn) checkBuffered() *http1.Error {
	b := c.rd.buffered()
	if c.p.Framing() != http1.FramingChunked || len(b) == 0 {
		return nil
	}
	var ch http1.Chunked
	ch.Reset(&c.p)
	if _, err := ch.Feed(b); err != nil {
		if e, ok := asError(err); ok {
			return e
		}
	}
	return nil
}

// setTarget sets the request's scheme, authority and path from its target and Host field's
// value (hasHost: the request has one).
func (c *conn) setTarget(t, host []byte, hasHost bool) *http1.Error {
	r := &c.req
	if hasHost && !validAuthorityAgain(&c.validHost, host) {
		return ErrInvalidAuthority
	}
	if len(t) > 0 && (t[0] == '/' || t[0] == '*') && !c.p.Connect() {
		if !hasHost && r.Proto == httpmsg.HTTP11 {
			return ErrMissingHost
		}
		if !validEscapes(t) {
			return http1.ErrInvalidURL
		}
		r.SetTarget(host, t)
		return nil
	}
	return c.setOtherTarget(t)
}

// setOtherTarget is setTarget for a CONNECT request's authority-form target, or an
// absolute-form target. Out of setTarget: rare (an origin-form target is most requests').
//
//go:noinline
func (c *conn) setOtherTarget(t []byte) *http1.Error {
	r := &c.req
	if c.p.Connect() {
		if !validAuthority(t) {
			return ErrInvalidAuthority
		}
		r.SetAuthority(t)
		return nil
	}
	// Absolute form: scheme "://" authority [ path-abempty ] [ "?" query ].
	i := 0
	for i < len(t) && t[i] != ':' {
		i++
	}
	scheme := t[:i]
	rest := t[i+3:] // the parser checked "://"
	j := 0
	for j < len(rest) && rest[j] != '/' && rest[j] != '?' {
		j++
	}
	auth, path := rest[:j], rest[j:]
	if !validAuthority(auth) {
		return ErrInvalidAuthority
	}
	if !validEscapes(path) {
		return http1.ErrInvalidURL
	}
	switch {
	case httpmsg.EqualFold(scheme, "http"):
		r.Scheme = "http"
	case httpmsg.EqualFold(scheme, "https"):
		r.Scheme = "https"
	default:
		r.Scheme = strings.ToLower(string(scheme))
	}
	r.SetAuthority(auth)
	if len(path) == 0 || path[0] != '/' {
		c.scratch = append(append(c.scratch[:0], '/'), path...)
		path = c.scratch
	}
	r.SetPath(path)
	return nil
}

// finishRequest completes the response, then reads what is left of the request body (up to
// MaxDrain) so that the next request can be read.
func (c *conn) finishRequest() error {
	w := &c.w
	if c.tunnel {
		c.closeConn = true // an upgrade the handler did not take: Envoy closes too
	}
	if !c.body.done() && (c.expect100 || c.body.err != nil) {
		c.closeConn = true // the client may or may not send the body: the stream is lost
	}
	if err := w.finish(); err != nil {
		return err
	}
	if c.closeConn {
		return nil
	}
	if !c.body.done() {
		limit := c.srv.MaxDrain
		if limit <= 0 {
			limit = defaultDrain
		}
		if !c.body.discard(limit) {
			c.closeConn = true
		}
	}
	return nil
}

// reject answers a rejected request as Envoy does (status, Envoy's reason phrase as the body,
// Connection: close), then drains the connection briefly before it closes.
func (c *conn) reject(e *http1.Error) error {
	if c.srv.OnReject != nil {
		c.srv.OnReject(e)
	}
	wr := &c.wr
	text := statusText(e.Status)
	wr.writeString("HTTP/1.1 ")
	wr.writeInt(int64(e.Status))
	wr.writeString(" ")
	wr.writeString(text)
	wr.writeString("\r\ncontent-length: ")
	wr.writeInt(int64(len(text)))
	wr.writeString("\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n")
	wr.writeString(text)
	if wr.flush() == nil {
		linger(c.c)
	}
	return e
}

// linger half-closes nc and reads and drops what the client still sends, for a while.
func linger(nc net.Conn) {
	if cw, ok := nc.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	if nc.SetReadDeadline(time.Now().Add(lingerTimeout)) != nil {
		return
	}
	var buf [512]byte
	for total := 0; total < lingerBytes; {
		n, err := nc.Read(buf[:])
		total += n
		if err != nil {
			return
		}
	}
}

// bodyStart sends 100 Continue before the request body is first read, if the client waits
// for it.
func (c *conn) bodyStart() {
	if !c.expect100 {
		return
	}
	c.expect100 = false
	if c.w.headSent {
		return
	}
	c.wr.writeString("HTTP/1.1 100 Continue\r\n\r\n")
	c.wr.flush()
}

// bodyEnd arms the watch for the client closing the connection once the body was read to its
// end (eof).
func (c *conn) bodyEnd(eof bool) {
	if eof && c.srv.WatchDelay > 0 && !c.tunnel {
		c.armWatch()
	}
}

// validEscapes reports whether every "%" in the path of target (before any "?") starts a
// percent-encoded octet: "%" HEXDIG HEXDIG. net/http refuses the request otherwise, and what
// a path with a stray "%" decodes to depends on the decoder.
func validEscapes(target []byte) bool {
	for i := 0; i < len(target) && target[i] != '?'; i++ {
		if target[i] == '%' && (i+2 >= len(target) || !isHex(target[i+1]) || !isHex(target[i+2])) {
			return false
		}
	}
	return true
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c|0x20 && c|0x20 <= 'f' }

// validAuthority reports whether b is an authority without userinfo (RFC 3986 section 3.2):
// host [":" *DIGIT], where host is a reg-name (unreserved and sub-delims) or an IPv6 literal
// in brackets; it may be empty. Percent-encoding is refused: no host name needs it, and
// parsers disagree on what it decodes to (net/url refuses most of it).
func validAuthority(b []byte) bool {
	i := 0
	if len(b) > 0 && b[0] == '[' {
		for i = 1; i < len(b) && b[i] != ']'; i++ {
			if c := b[i]; !(c == ':' || c == '.' || '0' <= c && c <= '9' || 'a' <= c|0x20 && c|0x20 <= 'f') {
				return false
			}
		}
		if i == len(b) {
			return false
		}
		i++
	} else {
		// Four bytes a test while they last (most authorities are all reg-name but the port).
		for ; i+4 <= len(b); i += 4 {
			if regName[b[i]]&regName[b[i+1]]&regName[b[i+2]]&regName[b[i+3]] == 0 {
				break
			}
		}
		for i < len(b) && regName[b[i]] != 0 {
			i++
		}
	}
	if i == len(b) {
		return true
	}
	if b[i] != ':' {
		return false
	}
	for i++; i < len(b); i++ {
		if b[i]-'0' > 9 {
			return false
		}
	}
	return true
}

// regName marks unreserved and sub-delims (RFC 3986 section 3.2.2).
var regName = alnumAnd("-._~!$&'()*+,;=")
