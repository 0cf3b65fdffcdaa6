package l7

import (
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strait-mesh/strait/proxy/h1"
	"github.com/strait-mesh/strait/proxy/h2guard"
	"github.com/strait-mesh/strait/proxy/stats"
)

// Connection timeouts that net/http does not enforce with Envoy's semantics by itself
// (docs/security.md has the table of every timeout, its Envoy name and default). net/http
// enforces common_http_protocol_options.idle_timeout (http.Server.IdleTimeout; for HTTP/2 it
// sends GOAWAY first). clockConn adds:
//
//   - request_headers_timeout for every request head: the first one from accept
//     (awaitFirstHead, which also keeps a connection that has not sent a whole head away from
//     the server's per-connection state), every later keep-alive head from its first byte
//     (net/http would start its clock at the fourth byte, leaving idle_timeout before it), and
//     HTTP/2 header blocks (h2Heads, timeouts_h2.go; net/http has no clock for them). When
//     request_headers_timeout is disabled, stream_idle_timeout bounds heads instead (headLimit).
//   - the write side of stream_idle_timeout for HTTP/1.1: a connection that accepts no byte of a
//     pending write for that long is closed (HTTP/2 gets the same from net/http's
//     WriteByteTimeout; per-stream HTTP/2 flow-control stalls are the stream stage's,
//     timeouts_stream.go).
//   - common_http_protocol_options.max_connection_duration, with Envoy's drain: responses
//     that begin after it carry "Connection: close" (HTTP/1.1: the connection closes after the
//     response; HTTP/2: net/http sends GOAWAY and closes when its streams end), and the
//     connection is closed drainPeriod later if it is still open.

// drainPeriod is how long a connection past max_connection_duration may finish its streams
// before it is closed: Envoy's drain_timeout default. drain_timeout itself is not accepted (its
// HTTP/2 two-step GOAWAY is not implemented), so the period is fixed.
const drainPeriod = 5 * time.Second

// lingerPeriod bounds how long a connection closed with an unread request body keeps reading
// (and discarding) so that the client sees the answer instead of a reset: Envoy's
// delayed_close_timeout default.
const lingerPeriod = time.Second

// lingerBytes bounds what a lingering close reads.
const lingerBytes = 1 << 20

// errRequestTimeout is the cause of a stream canceled by request_timeout.
var errRequestTimeout = errors.New("request timeout")

// timeoutStats are the http.<stat_prefix>.* counters of the timeouts in this file, with
// Envoy's names.
type timeoutStats struct {
	headerTimeout   *stats.Counter // downstream_rq_header_timeout
	idleTimeout     *stats.Counter // downstream_cx_idle_timeout (HTTP/1.1)
	maxDuration     *stats.Counter // downstream_cx_max_duration_reached
	beforeRqDone    *stats.Counter // downstream_rq_response_before_rq_complete
	writeStall      *stats.Counter // downstream_cx_write_stall_timeout (strait-proxy's own)
	streamIdleReset *stats.Counter // downstream_rq_idle_timeout
}

func newTimeoutStats(s *stats.Store, prefix string) *timeoutStats {
	tag := stats.Tag{Name: "envoy_http_conn_manager_prefix", Value: prefix}
	c := func(name string) *stats.Counter {
		return s.Counter("http."+prefix+"."+name, "envoy_http_"+name, tag)
	}
	return &timeoutStats{
		headerTimeout:   c("downstream_rq_header_timeout"),
		idleTimeout:     c("downstream_cx_idle_timeout"),
		maxDuration:     c("downstream_cx_max_duration_reached"),
		beforeRqDone:    c("downstream_rq_response_before_rq_complete"),
		writeStall:      c("downstream_cx_write_stall_timeout"),
		streamIdleReset: c("downstream_rq_idle_timeout"),
	}
}

// Protocols of a clockConn, once known.
const (
	protoUnknown int32 = iota
	protoH1
	protoH2
)

// clockConn is the connection the HTTP server serves: protoConn (guard.go) plus the clocks
// above. It sees every Read, Write and deadline the server sets, and the server's ConnState
// transitions (setState). Reads and the ConnState hook run on the serving goroutine; Write,
// the deadline methods and the timers may run on others.
type clockConn struct {
	*protoConn
	h *Handler

	mu     sync.Mutex
	rdl    time.Time   // the read deadline the server asked for
	headBy time.Time   // end of request_headers_timeout for the head being received; zero: none
	early  time.Time   // HTTP/1.1: when the background read got the next request's first byte
	life   *time.Timer // max_connection_duration
	drain  *time.Timer // drainPeriod after max_connection_duration

	state    atomic.Int32 // last http.ConnState reported
	proto    atomic.Int32 // protoUnknown, protoH1, protoH2
	awaiting atomic.Bool  // HTTP/1.1: idle, the next request's first byte not yet read
	counted  atomic.Bool  // the read timeout that ends the connection was counted
	wdl      atomic.Int64 // the write deadline the server asked for (unix nanos); 0: none
	first    *firstConn   // under the guards: replays what awaitFirstHead read
	raw      net.Conn     // the accepted connection (h1.DirectConn's, or TLS or peeked bytes over one)
	stallLow atomic.Bool  // the socket beneath raw enforces the write stall limit (h1.SetWriteStall)
	stalled  atomic.Bool  // the write stall was counted (once per connection)
	draining atomic.Bool  // past max_connection_duration
	linger   atomic.Bool  // close by lingering: a request body was left unread
}

// newClockConn wraps an accepted connection for the server: the HTTP/2 header block clock
// under the protocol guard (guard.go), the other clocks over it. The max_connection_duration
// timer starts now.
func (h *Handler) newClockConn(c net.Conn, alpn string) *clockConn {
	cc := &clockConn{h: h, raw: c}
	if h.headLimit() > 0 {
		c = newH2Heads(c, cc)
	}
	cc.first = &firstConn{Conn: c}
	cc.protoConn = h.guardConn(cc.first, alpn)
	if h.maxConnDuration > 0 {
		cc.life = time.AfterFunc(h.maxConnDuration, cc.expire)
	}
	return cc
}

// headLimit is how long a request head may take to arrive: request_headers_timeout or, when
// that is disabled, stream_idle_timeout (Envoy's stream idle timer runs from a stream's first
// byte, before its headers are complete); 0: no limit.
func (h *Handler) headLimit() time.Duration {
	if h.headersTimeout > 0 {
		return h.headersTimeout
	}
	return h.streamIdle
}

// protocol reports protoH1 or protoH2 once the guard is chosen.
func (c *clockConn) protocol() int32 {
	if v := c.proto.Load(); v != protoUnknown {
		return v
	}
	in := c.inner.Load()
	if in == nil {
		return protoUnknown
	}
	v := protoH1
	if _, ok := (*in).(*h2guard.Conn); ok {
		v = protoH2
	}
	c.proto.Store(v)
	return v
}

// Read implements net.Conn, starting the request head clock of a keep-alive request at its
// first byte.
func (c *clockConn) Read(b []byte) (int, error) {
	n, err := c.protoConn.Read(b)
	if n > 0 {
		if c.awaiting.Load() {
			c.headStarted()
		} else if len(b) == 1 && http.ConnState(c.state.Load()) == http.StateActive && c.h.headLimit() > 0 &&
			c.protocol() == protoH1 {
			// net/http's 1-byte background read after a request body: the next request began.
			c.mu.Lock()
			if c.early.IsZero() {
				c.early = time.Now()
			}
			c.mu.Unlock()
		}
	}
	if err != nil && !c.counted.Load() && http.ConnState(c.state.Load()) != http.StateActive && isTimeout(err) {
		c.countTimeout()
	}
	return n, err
}

// awaitMax bounds what awaitFirstHead keeps: a larger head is read on by the server.
const awaitMax = 4 << 10

// awaitFirstHead reads, on the goroutine that accepted the connection, until its first request
// head is complete (HTTP/1.x) or the HTTP/2 client preface has arrived, before the connection
// is handed to the server: a client that sends part of a head and stops costs this goroutine
// and a buffer the size of what it sent, not the server's per-connection state (a second
// goroutine, two 4 KiB buffers, the guards' parsing). It reads below the guards, with as
// shallow a stack as possible (the goroutine's stack is most of what a waiting connection
// costs); the guards then check the bytes as the server reads them. request_headers_timeout
// runs from now until the server has the whole head. It returns false if the connection ended
// first: the timeout (counted) or the client closed.
func (c *clockConn) awaitFirstHead() bool {
	if d := c.h.headLimit(); d > 0 {
		c.mu.Lock()
		c.headBy = time.Now().Add(d)
		c.applyRead()
		c.mu.Unlock()
	}
	buf := make([]byte, 0, 512)
	for {
		n, err := c.first.Conn.Read(buf[len(buf):cap(buf)])
		from := len(buf)
		buf = buf[:len(buf)+n]
		if h2, done := firstBytes(buf, from); done {
			if h2 {
				// The preface arrived; header blocks have their own clock (h2Heads).
				c.clearHeadDeadline()
			}
			break
		}
		if err != nil {
			if isTimeout(err) {
				c.h.tst.headerTimeout.Inc()
			}
			return false
		}
		if n == 0 {
			break // not a byte stream the wait understands: the server reads on
		}
		if len(buf) == cap(buf) {
			if cap(buf) >= awaitMax {
				break
			}
			buf = append(buf[:cap(buf)], make([]byte, cap(buf))...)[:len(buf)]
		}
	}
	if len(buf) > 0 {
		c.first.pending = buf
	}
	return true
}

// firstConn returns the bytes awaitFirstHead read before reading on, and then lets go of them.
type firstConn struct {
	net.Conn
	pending []byte
}

// Read implements net.Conn.
func (f *firstConn) Read(b []byte) (int, error) {
	if f.pending == nil {
		return f.Conn.Read(b)
	}
	n := copy(b, f.pending)
	if f.pending = f.pending[n:]; len(f.pending) == 0 {
		f.pending = nil
	}
	return n, nil
}

// CloseWrite half-closes the connection when it can (the guards use it).
func (f *firstConn) CloseWrite() error {
	if cw, ok := f.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// firstBytes reports whether b, the first bytes of a connection, are enough to hand it to the
// server: the HTTP/2 client preface (h2), a whole HTTP/1.x request head (after the empty lines
// RFC 9112 allows before it), or bytes no request head may hold (TLS, binary, NUL and other
// controls, a bare CR or LF), which the guards then refuse at once. b[:from] was looked at
// before.
func firstBytes(b []byte, from int) (h2, done bool) {
	m := min(len(b), len(h2guard.Preface))
	if string(b[:m]) == h2guard.Preface[:m] {
		return len(b) >= len(h2guard.Preface), len(b) >= len(h2guard.Preface)
	}
	i := 0
	for i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n' {
		i += 2
	}
	if i < len(b) && b[i] != '\r' && !isTokenByte(b[i]) {
		return false, true // not a request line
	}
	for j := max(from, i+1); j < len(b); j++ {
		switch c := b[j]; {
		case c == '\n':
			if b[j-1] != '\r' {
				return false, true
			}
			if j >= i+3 && b[j-2] == '\n' && b[j-3] == '\r' {
				return false, true // the empty line that ends the head
			}
		case b[j-1] == '\r':
			return false, true // CR not followed by LF
		case c < ' ' && c != '\t' && c != '\r' || c == 0x7f:
			return false, true
		}
	}
	return false, false
}

// isTokenByte reports whether c may appear in an HTTP token (a method).
func isTokenByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// headStarted arms request_headers_timeout at the first byte of a keep-alive request.
func (c *clockConn) headStarted() {
	c.mu.Lock()
	if c.awaiting.Swap(false) {
		c.headBy = time.Now().Add(c.h.headLimit())
		c.applyRead()
	}
	c.mu.Unlock()
}

// countTimeout counts the read timeout that ends an HTTP/1.1 connection outside a request
// (inside one, timeouts are the server's own aborts and the stream stage's interruptions).
func (c *clockConn) countTimeout() {
	if c.protocol() == protoH2 {
		return // h2Heads counts its own; idle HTTP/2 connections are closed by net/http
	}
	st := http.ConnState(c.state.Load())
	c.mu.Lock()
	head := !c.headBy.IsZero()
	c.mu.Unlock()
	switch {
	case st == http.StateNew, st == http.StateIdle && head:
		c.h.tst.headerTimeout.Inc()
	case st == http.StateIdle && c.awaiting.Load():
		c.h.tst.idleTimeout.Inc()
	default:
		return
	}
	c.counted.Store(true)
}

// applyRead sets the connection's read deadline: the server's, or the end of the request head
// being received if that is earlier. c.mu is held.
func (c *clockConn) applyRead() error {
	d := c.rdl
	if !c.headBy.IsZero() && (d.IsZero() || c.headBy.Before(d)) {
		d = c.headBy
	}
	return c.protoConn.Conn.SetReadDeadline(d)
}

// setHeadDeadline bounds the reads until clearHeadDeadline (an HTTP/2 header block).
func (c *clockConn) setHeadDeadline(t time.Time) {
	c.mu.Lock()
	c.headBy = t
	c.applyRead()
	c.mu.Unlock()
}

func (c *clockConn) clearHeadDeadline() { c.setHeadDeadline(time.Time{}) }

// SetReadDeadline implements net.Conn; a request head being received keeps its own deadline
// when that is earlier.
func (c *clockConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rdl = t
	return c.applyRead()
}

// SetWriteDeadline implements net.Conn.
func (c *clockConn) SetWriteDeadline(t time.Time) error {
	if t.IsZero() {
		c.wdl.Store(0)
	} else {
		c.wdl.Store(t.UnixNano())
	}
	return c.protoConn.Conn.SetWriteDeadline(t)
}

// SetDeadline implements net.Conn.
func (c *clockConn) SetDeadline(t time.Time) error {
	err := c.SetReadDeadline(t)
	if werr := c.SetWriteDeadline(t); err == nil {
		err = werr
	}
	return err
}

// Write implements net.Conn. On HTTP/1.1 a write that makes no progress for
// stream_idle_timeout fails, which closes the connection: a client that does not read cannot
// hold it (and the response it does not read) for longer. Progress extends the wait, and a
// deadline the server set itself (http.ResponseController) still applies. Over TLS a write
// that times out part way leaves the connection unusable, so there the limit is on the whole
// write (at most one TLS record of the server's). When the socket enforces the limit itself
// (stallLow: h1.SetWriteStall on the DirectConn of a connection served by proxy/h1, beneath
// TLS and peeked bytes too), a write the socket takes at once sets no deadline at all, and
// over TLS too the limit is on the peer's progress at the socket, not on whole records.
func (c *clockConn) Write(b []byte) (int, error) {
	stall := c.h.streamIdle
	if stall <= 0 || c.protocol() != protoH1 {
		return c.protoConn.Write(b)
	}
	if c.stallLow.Load() {
		n, err := c.protoConn.Write(b)
		if err != nil && errors.Is(err, h1.ErrWriteStall) {
			c.countStall()
		}
		return n, err
	}
	written := 0
	for {
		d := time.Now().Add(stall)
		user := c.wdl.Load()
		if user != 0 && user < d.UnixNano() {
			d = time.Unix(0, user)
		}
		c.protoConn.Conn.SetWriteDeadline(d)
		n, err := c.protoConn.Write(b[written:])
		written += n
		if err == nil || !isTimeout(err) {
			return written, err
		}
		if user = c.wdl.Load(); user != 0 && time.Now().UnixNano() >= user {
			return written, err // the server's own deadline
		}
		if n == 0 {
			c.countStall()
			return written, err
		}
	}
}

// countStall counts the connection's write stall, once: after a stall over TLS every later
// write fails with the same error.
func (c *clockConn) countStall() {
	if !c.stalled.Swap(true) {
		c.h.tst.writeStall.Inc()
	}
}

// Close implements net.Conn; a connection closed with an unread request body lingers.
func (c *clockConn) Close() error {
	c.stopTimers()
	if c.linger.Load() {
		return c.lingerClose()
	}
	return c.protoConn.Close()
}

// lingerClose half-closes the connection and reads (and discards) what the client still sends
// for up to lingerPeriod before closing, so that unread request bytes do not turn the answer
// into a reset (Envoy's delayed close).
func (c *clockConn) lingerClose() error {
	raw := c.protoConn.Conn
	if c.protoConn.CloseWrite() != nil || raw.SetReadDeadline(time.Now().Add(lingerPeriod)) != nil {
		return c.protoConn.Close()
	}
	go func() {
		var buf [512]byte
		for total := 0; total < lingerBytes; {
			n, err := raw.Read(buf[:])
			total += n
			if err != nil {
				break
			}
		}
		c.protoConn.Close()
	}()
	return nil
}

// setState follows the server's ConnState transitions (the http.Server hook).
func (c *clockConn) setState(s http.ConnState) {
	c.state.Store(int32(s))
	h1 := c.protocol() != protoH2
	switch s {
	case http.StateActive:
		if h1 {
			// The request head is complete: the server's own deadlines apply again.
			c.mu.Lock()
			c.awaiting.Store(false)
			c.headBy, c.early = time.Time{}, time.Time{}
			c.applyRead()
			c.mu.Unlock()
		}
	case http.StateIdle:
		if h1 && c.h.headLimit() > 0 {
			c.mu.Lock()
			if !c.early.IsZero() {
				c.headBy, c.early = c.early.Add(c.h.headLimit()), time.Time{}
			} else {
				c.awaiting.Store(true)
			}
			c.applyRead()
			c.mu.Unlock()
		}
	case http.StateHijacked:
		c.mu.Lock()
		c.awaiting.Store(false)
		c.headBy, c.early = time.Time{}, time.Time{}
		c.applyRead()
		c.mu.Unlock()
		c.protoConn.hijacked()
	case http.StateClosed:
		c.stopTimers()
	}
}

// expire runs at max_connection_duration. As in Envoy's connection manager the connection
// drains: every response that begins from now on carries "Connection: close" (HTTP/1.1 closes
// after it, HTTP/2 gets GOAWAY and closes once its streams end), and whatever is still open
// after the drain period, busy or idle, is closed. Waiting out the drain period on an idle
// connection, rather than closing it at once, lets a request the client sends meanwhile get
// its answer instead of a closed connection.
func (c *clockConn) expire() {
	c.h.tst.maxDuration.Inc()
	c.draining.Store(true)
	c.mu.Lock()
	c.drain = time.AfterFunc(c.h.drainTimeout, c.closeNow)
	c.mu.Unlock()
}

// closeNow closes the connection under the server, which then finishes it.
func (c *clockConn) closeNow() { c.protoConn.Conn.Close() }

func (c *clockConn) stopTimers() {
	c.mu.Lock()
	if c.life != nil {
		c.life.Stop()
	}
	if c.drain != nil {
		c.drain.Stop()
	}
	c.mu.Unlock()
}

func isTimeout(err error) bool {
	if ne, ok := err.(net.Error); ok {
		return ne.Timeout()
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
