package http1

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// h2Preface starts an HTTP/2 connection with prior knowledge (h2c).
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// Guard modes.
const (
	gStart   uint8 = iota // nothing parsed yet: the first bytes may be the h2 preface
	gHead                 // in a request head (or between requests)
	gLength               // in a Content-Length body
	gChunked              // in a chunked body
	gTunnel               // after an Upgrade or CONNECT request: waiting for Hijacked
	gPass                 // pass-through: h2 prior knowledge, or a hijacked (tunnelled) connection
	gPoison               // delivering a poison request, then io.EOF
	gEOF                  // io.EOF from now on
	gFailed               // the violation from now on (a bad body of a delivered head)
)

// Poison requests. Each makes net/http's server answer with the status and
// "Connection: close", then close the connection, whether net/http is at the start of a
// request or inside a head whose beginning it already received (a "continuation"); see
// GuardConn. The 400 poison has a NUL in the request line and again in a header line: a
// request line, a header name or a header value containing NUL is malformed, and a line
// without a colon is too, before net/http looks at any framing header.
const (
	poison400      = "\x00\r\n\x00\r\n\r\n"
	poison501      = "GET / HTTP/1.1\r\nHost: poison\r\nTransfer-Encoding: bogus\r\n\r\n"
	poison501Cont  = "Transfer-Encoding: bogus\r\n\r\n" // only ever after a complete field line
	poison431      = "GET /"                            // then 'a' until net/http's header limit
	maxPoisonBytes = 64 << 20                           // bound on the 431 poison
)

// smallRead: reads shorter than this (net/http's 1-byte background read) go through an
// internal buffer of this size; the first read of a connection (net/http's 14-byte h2
// preface peek) goes through a pooled buffer of startRead bytes, so that a request sent in one
// piece is judged in one piece.
const (
	smallRead = 64
	startRead = 4096
)

var startBufs = sync.Pool{New: func() any { b := make([]byte, startRead); return &b }}

// lingerTimeout bounds how long a connection whose request was rejected keeps reading (and
// discarding) after the server closed it, so that the client sees the answer instead of a
// reset; Envoy's delayed_close_timeout defaults to one second too.
const lingerTimeout = time.Second

// GuardConn is a net.Conn whose Read only returns bytes of HTTP/1.1 requests that pass
// Parser's and Chunked's checks. It sits between an accepted downstream connection and
// net/http's server, which reads requests through it; Write, deadlines and addresses go to
// the wrapped connection unchanged.
//
// Read contract:
//
//   - Read reads once from the wrapped connection, validates everything it got, and only then
//     returns the bytes that validated: a request whose violation is in the same read as its
//     start is never returned at all. Bytes that cannot be judged yet are held (at most the
//     first 23 bytes of a possible h2 preface, or the CR that may end a head); Read never
//     holds more than one read of the wrapped connection. Reads shorter than 64 bytes (such as
//     net/http's 1-byte background read) are served from a 64-byte internal buffer, except
//     the first read of the connection, which reads up to 4 KiB into a pooled buffer.
//   - When a request fails, Read returns the bytes before it (earlier pipelined requests are
//     answered in order), then instead of it a poison request that makes net/http answer and
//     close: a malformed request line (400), "Transfer-Encoding: bogus" (501), or a header
//     too large for net/http's MaxHeaderBytes (431), then io.EOF. If net/http already
//     received the start of the failing head (a slow client), the poison continues that head
//     so that net/http fails it the same way. Violation reports the reason with Envoy's
//     status and details.
//   - When the chunked body of a request whose whole head net/http already received fails, Read
//     returns the bytes that validated, then the *Error (not a net.Error), so that net/http
//     fails the body read; further requests are never read.
//   - The first bytes "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" (h2 with prior knowledge) switch to
//     pass-through: framing is then HTTP/2's.
//   - After an Upgrade or CONNECT request (and its body), Read returns 0, nil without reading
//     until Hijacked is called: a tunnel's bytes are never parsed as requests, and if the
//     server does not switch protocols, net/http's next read of a request fails (bufio's
//     io.ErrNoProgress) and it closes the connection, as Envoy does after a rejected upgrade.
//     The server must call Hijacked when it hijacks the connection (http.Server's ConnState
//     hook sees http.StateHijacked before Hijack returns); Read then returns the held bytes
//     and passes everything through.
//   - Errors of the wrapped connection are returned as they are (deadline timeouts stay
//     net.Errors, so net/http's abort of its background read works), after the bytes read
//     with them.
//
// Read must not be called concurrently with itself (net/http never does); Write, Hijacked,
// Close and the deadline methods may be called from other goroutines.
type GuardConn struct {
	net.Conn

	mode     uint8
	inReq    bool  // the current request began (its first byte was parsed)
	upgrade  bool  // the current request switches protocols after its body
	nheld    uint8 // bytes held in held
	reqStart int   // during process: offset of the current request's start, -1 if earlier
	headEnd  int   // during process: offset just after the current head, -1 if not in this buffer
	remain   int64 // Content-Length bytes left
	p        Parser
	ch       Chunked
	out      []byte  // validated bytes not yet returned (in scratch, start or stash)
	start    *[]byte // pooled buffer of the first read, until out is drained
	stash    []byte  // bytes after an Upgrade/CONNECT request, for the tunnel
	poison   string
	poff     int
	endless  bool  // the poison goes on with 'a'
	rerr     error // error of the wrapped connection, returned after the bytes read with it
	viol     atomic.Pointer[Error]
	valid    int64 // bytes of the wrapped connection returned by Read (not counting poison)
	held     [len(h2Preface) - 1]byte
	scratch  [smallRead]byte
	hijacked atomic.Bool
	closed   atomic.Bool
}

// NewGuardConn wraps c, an accepted downstream connection about to be served as HTTP/1.1 (or
// h2 with prior knowledge), with request limits lim.
func NewGuardConn(c net.Conn, lim Limits) *GuardConn {
	g := &GuardConn{Conn: c}
	g.p.Init(lim, false)
	return g
}

// Violation returns the reason the connection's requests stopped being delivered, or nil.
// Call it from the goroutine that reads (or after Read returned).
func (g *GuardConn) Violation() *Error { return g.viol.Load() }

// Validated returns how many bytes of the wrapped connection Read returned so far.
func (g *GuardConn) Validated() int64 { return g.valid }

// Hijacked tells g that the server hijacked the connection (an Upgrade or CONNECT request
// succeeded): from now on Read passes bytes through unparsed, after what it held, unless a
// request was already rejected. Call it before the hijacker reads, e.g. from http.Server's
// ConnState hook on http.StateHijacked.
func (g *GuardConn) Hijacked() { g.hijacked.Store(true) }

// CloseWrite half-closes the wrapped connection when it supports it (net/http uses it to
// answer 431 before closing).
func (g *GuardConn) CloseWrite() error {
	if cw, ok := g.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// Close closes the connection. When a request was rejected, the wrapped connection is
// half-closed and drained for up to a second first (in the background), so that unread
// request bytes do not turn the answer net/http wrote into a connection reset.
func (g *GuardConn) Close() error {
	if g.closed.Swap(true) {
		return nil
	}
	// The pooled first-read buffer is not returned here: a Read may still be using it.
	if g.viol.Load() == nil || g.hijacked.Load() {
		return g.Conn.Close()
	}
	_ = g.CloseWrite()
	if err := g.Conn.SetReadDeadline(time.Now().Add(lingerTimeout)); err != nil {
		return g.Conn.Close()
	}
	go func(c net.Conn) {
		var buf [512]byte
		for total := 0; total < 1<<20; {
			n, err := c.Read(buf[:])
			total += n
			if err != nil {
				break
			}
		}
		c.Close()
	}(g.Conn)
	return nil
}

// Read implements net.Conn; see GuardConn for its contract.
func (g *GuardConn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	for {
		if len(g.out) > 0 {
			n := copy(b, g.out)
			g.out = g.out[n:]
			if len(g.out) == 0 {
				g.drained()
			}
			return n, nil
		}
		if g.mode < gPass && g.hijacked.Load() {
			g.pass()
			continue
		}
		switch g.mode {
		case gPass:
			if g.rerr != nil {
				return 0, g.rerr
			}
			n, err := g.Conn.Read(b)
			g.valid += int64(n)
			return n, err
		case gPoison:
			return g.readPoison(b)
		case gEOF:
			return 0, io.EOF
		case gFailed:
			return 0, g.viol.Load()
		case gTunnel:
			return 0, nil // until Hijacked
		}
		if g.rerr != nil {
			return 0, g.rerr
		}
		n, again, err := g.fill(b)
		if !again {
			return n, err
		}
		// Bytes were read but none can be returned yet (held bytes, or a poison or error to
		// return instead): go on.
	}
}

// drained releases the buffers behind out once it is empty.
func (g *GuardConn) drained() {
	if g.start != nil {
		startBufs.Put(g.start)
		g.start = nil
	}
	if g.mode == gPass {
		g.stash = nil
	}
}

// pass switches to pass-through after the connection was hijacked; held bytes come first.
func (g *GuardConn) pass() {
	if g.nheld > 0 {
		g.stash = append(g.held[:g.nheld:g.nheld], g.stash...)
		g.nheld = 0
	}
	g.out = g.stash
	g.valid += int64(len(g.out))
	g.mode = gPass
}

// fill reads once from the wrapped connection into b (or scratch for a short b), validates
// what it got and returns how many bytes of b may be returned; again reports that bytes were
// read but none may be returned yet.
func (g *GuardConn) fill(b []byte) (n int, again bool, err error) {
	wb := b
	small := len(b) < smallRead
	if small {
		wb = g.scratch[:]
		if g.mode == gStart {
			if g.start == nil {
				g.start = startBufs.Get().(*[]byte)
			}
			wb = *g.start
		}
	}
	h := copy(wb, g.held[:g.nheld])
	n, err = g.Conn.Read(wb[h:])
	if n == 0 {
		return 0, false, err
	}
	if err != nil {
		if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
			g.rerr = err
		}
	}
	g.nheld = 0
	d := g.process(wb[:h+n], h)
	g.valid += int64(d)
	if g.mode == gPoison || g.mode == gFailed {
		g.rerr = nil // the poison ends with io.EOF; a failed body reports the violation
	}
	if small {
		g.out = wb[:d]
		d = copy(b, g.out)
		if g.out = g.out[d:]; len(g.out) == 0 {
			g.drained()
		}
	}
	return d, d == 0, nil
}

// process validates buf, whose first from bytes were held from the previous read, and returns
// how many of its leading bytes may be delivered. It holds a suffix in g.held when needed and
// switches g.mode on a violation, an upgrade or the h2 preface.
func (g *GuardConn) process(buf []byte, from int) int {
	i := from
	g.reqStart, g.headEnd = -1, -1
	if g.mode == gStart {
		// All of buf[:from] is an unparsed prefix of the preface.
		m := 0
		for m < len(buf) && m < len(h2Preface) && buf[m] == h2Preface[m] {
			m++
		}
		switch {
		case m == len(h2Preface):
			g.mode = gPass
			return len(buf)
		case m == len(buf):
			g.nheld = uint8(copy(g.held[:], buf))
			return 0
		}
		g.mode, i = gHead, 0
	}
	for i < len(buf) {
		switch g.mode {
		case gHead:
			if !g.inReq {
				g.inReq, g.reqStart = true, i
			}
			n, err := g.p.Feed(buf[i:])
			if err != nil {
				at := i + n
				if g.p.EndError() {
					at-- // the empty line's CR is part of the error
				}
				return g.violate(at, err.(*Error))
			}
			i += n
			if !g.p.Done() {
				if g.p.st == sHeadLF {
					// The CR that may end the head is the last byte: whether the head is
					// good is known only with the LF, so hold it.
					g.held[0], g.nheld = '\r', 1
					return len(buf) - 1
				}
				return len(buf)
			}
			g.headEnd = i
			g.upgrade = g.p.Upgrade() || g.p.Connect()
			switch g.p.Framing() {
			case FramingLength:
				g.mode, g.remain = gLength, g.p.ContentLength()
			case FramingChunked:
				g.mode = gChunked
				g.ch.Reset(&g.p)
			default:
				g.endRequest()
			}
		case gLength:
			k := int64(len(buf) - i)
			if k > g.remain {
				k = g.remain
			}
			i += int(k)
			if g.remain -= k; g.remain == 0 {
				g.endRequest()
			}
		case gChunked:
			n, err := g.ch.Feed(buf[i:])
			if err != nil {
				return g.violate(i+n, err.(*Error))
			}
			i += n
			if g.ch.Done() {
				g.endRequest()
			}
		case gTunnel:
			g.stash = append(g.stash, buf[i:]...)
			return i
		default: // gPass
			return len(buf)
		}
	}
	return len(buf)
}

// endRequest moves on after a complete request.
func (g *GuardConn) endRequest() {
	g.inReq = false
	g.p.Reset()
	if g.upgrade {
		g.mode = gTunnel
		return
	}
	g.mode = gHead
}

// violate records err, found at offset at of the buffer being processed, and returns how
// many bytes of the buffer may still be delivered.
func (g *GuardConn) violate(at int, err *Error) int {
	g.viol.Store(err)
	switch {
	case g.reqStart >= 0:
		// Nothing of the bad request was delivered: replace all of it.
		g.setPoison(err.Status, true)
		return g.reqStart
	case g.mode == gHead:
		// net/http has the start of this head: continue it into a poison.
		g.setPoison(err.Status, false)
		return at
	case g.headEnd >= 0:
		// A bad body whose head ends in this buffer: net/http does not have the whole head yet,
		// so continue it into a poison after its last complete field line (before the empty
		// line's CRLF).
		g.setPoison(err.Status, false)
		return g.headEnd - 2
	}
	// A body whose head net/http already has: fail its read.
	g.mode = gFailed
	return at
}

func (g *GuardConn) setPoison(status int, whole bool) {
	g.mode, g.poff, g.endless = gPoison, 0, false
	switch status {
	case 501:
		g.poison = poison501Cont
		if whole {
			g.poison = poison501
		}
	case 431:
		g.poison, g.endless = "", true
		if whole {
			g.poison = poison431
		}
	default:
		g.poison = poison400
	}
}

func (g *GuardConn) readPoison(b []byte) (int, error) {
	n := 0
	if g.poff < len(g.poison) {
		n = copy(b, g.poison[g.poff:])
		g.poff += n
	}
	if g.endless {
		for ; n < len(b) && g.poff < maxPoisonBytes; n++ {
			b[n] = 'a'
			g.poff++
		}
	}
	if g.poff >= len(g.poison) && (!g.endless || g.poff >= maxPoisonBytes) {
		g.mode = gEOF
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// IsViolation reports whether err (from a Read of a GuardConn, possibly wrapped) is a
// rejected request, and returns it.
func IsViolation(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}
