package l7

import (
	"bytes"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strait-mesh/strait/proxy/h2guard"
	"github.com/strait-mesh/strait/proxy/http1"
	"github.com/strait-mesh/strait/proxy/stats"
	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
)

// Protocol defaults where Envoy's own default is unbounded; each is overridden by the
// HttpConnectionManager's configuration (docs/security.md lists them with Envoy's names).
const (
	// defaultH2MaxStreams is SETTINGS_MAX_CONCURRENT_STREAMS when http2_protocol_options does not
	// set max_concurrent_streams: Envoy's edge recommendation (Envoy's own default is 2^31-1,
	// which lets one connection hold unbounded stream state).
	defaultH2MaxStreams = 100
	// defaultH2StreamWindow and defaultH2ConnWindow are the initial flow-control windows (Envoy's
	// edge recommendation: 64 KiB per stream, 1 MiB per connection); they bound what one
	// client can make the proxy buffer.
	defaultH2StreamWindow = 64 << 10
	defaultH2ConnWindow   = 1 << 20
	// h2MaxFrameSize is the SETTINGS_MAX_FRAME_SIZE the proxy advertises (the protocol's initial
	// value, as Envoy).
	h2MaxFrameSize = 16384
	// h2HeaderTableSize is the SETTINGS_HEADER_TABLE_SIZE the proxy advertises.
	h2HeaderTableSize = 4096
	// defaultHeadersTimeout is request_headers_timeout when unset: a client must send a whole
	// request head within it (Envoy's own default is none; its edge recommendation is 10 s).
	defaultHeadersTimeout = 10 * time.Second
)

// guardStats are the counters of connections the protocol guards closed.
type guardStats struct {
	store    *stats.Store
	prefix   string
	protoErr *stats.Counter
	mu       sync.Mutex
	h2       map[h2guard.Violation]*stats.Counter
}

func newGuardStats(s *stats.Store, prefix string) *guardStats {
	tag := stats.Tag{Name: "envoy_http_conn_manager_prefix", Value: prefix}
	return &guardStats{
		store:    s,
		prefix:   prefix,
		protoErr: s.Counter("http."+prefix+".downstream_cx_protocol_error", "envoy_http_downstream_cx_protocol_error", tag),
		h2:       map[h2guard.Violation]*stats.Counter{},
	}
}

// h2Violation counts a connection the HTTP/2 guard closed, in Envoy's http2.* names.
func (g *guardStats) h2Violation(v h2guard.Violation) {
	g.protoErr.Inc()
	g.mu.Lock()
	c := g.h2[v]
	if c == nil {
		c = g.store.Counter("http2."+string(v), "envoy_http2_"+string(v))
		g.h2[v] = c
	}
	g.mu.Unlock()
	c.Inc()
}

// protoConn is a downstream connection as the HTTP server reads it: on its first Read it tells
// HTTP/2 with prior knowledge (the client preface) from HTTP/1.1 and from then on reads through
// the matching guard (h2guard.Conn or http1.GuardConn), so that the server only ever sees bytes
// that passed Envoy's checks. Deciding on the first Read keeps the server's own deadlines
// (request_headers_timeout) in force while the first bytes arrive.
type protoConn struct {
	net.Conn // the accepted connection: deadlines and addresses
	h        *Handler
	alpnH2   bool
	inner    atomic.Pointer[net.Conn] // the guard, once decided
}

func (h *Handler) guardConn(c net.Conn, alpn string) *protoConn {
	return &protoConn{Conn: c, h: h, alpnH2: alpn == "h2"}
}

// Read implements net.Conn.
func (p *protoConn) Read(b []byte) (int, error) {
	if in := p.inner.Load(); in != nil {
		return (*in).Read(b)
	}
	in, err := p.decide()
	if in == nil {
		// Later reads must fail the same way, not read the connection again.
		var failed net.Conn = &failedConn{Conn: p.Conn, err: err}
		p.inner.Store(&failed)
		return 0, err
	}
	p.inner.Store(&in)
	return in.Read(b)
}

// failedConn is a connection whose first bytes were refused: reads return err.
type failedConn struct {
	net.Conn
	err error
}

func (f *failedConn) Read([]byte) (int, error) { return 0, f.err }

// decide reads the first bytes and builds the guard that serves the rest.
func (p *protoConn) decide() (net.Conn, error) {
	h := p.h
	h2 := p.alpnH2 || h.codec == hcmv3.HttpConnectionManager_HTTP2
	if h2 || h.codec == hcmv3.HttpConnectionManager_HTTP1 {
		return p.wrap(h2, p.Conn), nil
	}
	// AUTO: the client preface means h2 with prior knowledge, anything else HTTP/1.1.
	if fc, ok := p.Conn.(*firstConn); ok {
		// The first bytes are already in memory (clockConn.awaitFirstHead): decide on them
		// instead of reading them into a second buffer.
		if b := fc.pending; len(b) >= len(h2guard.Preface) || string(b) != h2guard.Preface[:len(b)] {
			h2 = len(b) >= len(h2guard.Preface) && string(b[:len(h2guard.Preface)]) == h2guard.Preface
			if !h2 && !plausibleRequestLine(b) {
				return nil, p.refuse()
			}
			return p.wrap(h2, fc), nil
		}
	}
	bp := firstReadPool.Get().(*[]byte)
	buf := *bp
	n := 0
	for {
		k, err := p.Conn.Read(buf[n:])
		n += k
		m := min(n, len(h2guard.Preface))
		if string(buf[:m]) != h2guard.Preface[:m] {
			break
		}
		if n >= len(h2guard.Preface) {
			h2 = true
			break
		}
		if err != nil {
			if n == 0 {
				firstReadPool.Put(bp)
				return nil, err
			}
			break
		}
	}
	if !h2 && !plausibleRequestLine(buf[:n]) {
		firstReadPool.Put(bp)
		return nil, p.refuse()
	}
	return p.wrap(h2, &replayConn{Conn: p.Conn, pending: buf[:n], buf: bp}), nil
}

// refuse counts a connection whose first bytes are neither HTTP/2 nor HTTP/1.x (for example an
// invalid HTTP/2 preface); it is closed without an HTTP/1.1 answer the client could not read.
func (p *protoConn) refuse() error {
	p.h.guardSt.protoErr.Inc()
	return io.EOF
}

// firstReadBytes is the size of the first read of an AUTO connection: large enough that a
// request written at once is checked whole (head and body) before any of it is delivered.
const firstReadBytes = 4096

var firstReadPool = sync.Pool{New: func() any { b := make([]byte, firstReadBytes); return &b }}

// plausibleRequestLine reports whether the first bytes of a connection can begin an HTTP/1.x
// request: when the first line is complete it must end in " HTTP/1.0" or " HTTP/1.1" (the
// HTTP/1.1 guard checks the rest).
func plausibleRequestLine(b []byte) bool {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return true
	}
	line := bytes.TrimSuffix(b[:i], []byte("\r"))
	return bytes.HasSuffix(line, []byte(" HTTP/1.1")) || bytes.HasSuffix(line, []byte(" HTTP/1.0"))
}

func (p *protoConn) wrap(h2 bool, c net.Conn) net.Conn {
	h := p.h
	if h2 {
		return h2guard.New(c, h2guard.Limits{
			MaxFrameSize:        h2MaxFrameSize,
			HeaderTableSize:     h2HeaderTableSize,
			MaxHeaderBlockBytes: h.serverMaxHeaderBytes(),
			OnViolation: func(v h2guard.Violation) {
				h.log.Debug("closing an HTTP/2 connection", "violation", string(v))
				h.guardSt.h2Violation(v)
			},
		})
	}
	return http1.NewGuardConn(c, http1.Limits{
		// admit answers 431 for what exceeds the configured limits; the guard bounds the head
		// at what the server reads.
		MaxHeaderBytes: h.serverMaxHeaderBytes(),
		MaxHeaderCount: 2*h.maxHeaders + 16,
	})
}

// Write implements net.Conn; the HTTP/2 guard follows the server's frames.
func (p *protoConn) Write(b []byte) (int, error) {
	if in := p.inner.Load(); in != nil {
		return (*in).Write(b)
	}
	return p.Conn.Write(b)
}

// Close implements net.Conn; a guard lingers after a rejected request so that the answer is
// not lost to a reset, and counts the rejection.
func (p *protoConn) Close() error {
	if in := p.inner.Load(); in != nil {
		if g, ok := (*in).(*http1.GuardConn); ok && g.Violation() != nil {
			p.h.guardSt.protoErr.Inc()
		}
		return (*in).Close()
	}
	return p.Conn.Close()
}

// CloseWrite half-closes the connection (net/http uses it to answer 431 before closing).
func (p *protoConn) CloseWrite() error {
	if cw, ok := p.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// hijacked tells the HTTP/1.1 guard that the connection became a tunnel.
func (p *protoConn) hijacked() {
	if in := p.inner.Load(); in != nil {
		if g, ok := (*in).(*http1.GuardConn); ok {
			g.Hijacked()
		}
	}
}

// replayConn returns pending, read from the connection before, then reads on; buf, the pooled
// buffer pending lives in, goes back to the pool once pending is consumed.
type replayConn struct {
	net.Conn
	pending []byte
	buf     *[]byte
}

func (r *replayConn) Read(b []byte) (int, error) {
	if len(r.pending) > 0 {
		n := copy(b, r.pending)
		r.pending = r.pending[n:]
		if len(r.pending) == 0 && r.buf != nil {
			firstReadPool.Put(r.buf)
			r.buf, r.pending = nil, nil
		}
		return n, nil
	}
	return r.Conn.Read(b)
}

// CloseWrite half-closes the connection when it can.
func (r *replayConn) CloseWrite() error {
	if cw, ok := r.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// serverMaxHeaderBytes is the head size the server reads: twice the configured limit, so that
// admit can answer 431 itself, as Envoy does.
func (h *Handler) serverMaxHeaderBytes() int { return 2*h.maxHeaderBytes + 4096 }
