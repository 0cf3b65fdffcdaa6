package l7

import (
	"context"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strait-mesh/strait/proxy/h1"
	"github.com/strait-mesh/strait/proxy/route"
	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
)

// connState tracks one downstream connection served by the shared http.Server.
type connState struct {
	info   ConnInfo
	cc     *clockConn  // the connection as the server sees it (timeouts.go)
	handed atomic.Bool // the connection was handed to the server (its first head arrived)
	once   sync.Once
	done   chan struct{}
	// h1 says proxy/h1 serves the connection (h1conn.go); idle that it waits for a request.
	h1   atomic.Bool
	idle atomic.Bool
	// lastCluster is the cluster stats of the connection's last forwarded request
	// (Handler.streamClusterStats).
	lastCluster atomic.Pointer[clusterStats]
	// The virtual host of the connection's last routed request, with its table and authority
	// (Handler.virtualHost); never changed once published, so a hit reads it without a lock.
	vh atomic.Pointer[vhCache]
	// srcText is info.Source's address as text (x-forwarded-for, the external address), made
	// once the first request head arrived, before any request of the connection runs.
	srcText string
	// xfcc is the connection's x-forwarded-client-cert element (Handler.xfccElement).
	xfcc atomic.Pointer[xfccCache]
}

// setSourceText makes srcText; it runs before the connection's first request.
func (cs *connState) setSourceText() {
	if cs.info.Source.IsValid() {
		cs.srcText = cs.info.Source.Addr().Unmap().String()
	}
}

// addrText returns a's address as text, the connection's made text when a is its source.
func (cs *connState) addrText(a netip.AddrPort) string {
	if a == cs.info.Source && cs.srcText != "" {
		return cs.srcText
	}
	return a.Addr().Unmap().String()
}

// virtualHost returns the virtual host of s's table for s's authority: the connection's last
// answer when the table and authority are the same (a keep-alive client's requests mostly
// are), which spares lower-casing and the domain lookups.
func (h *Handler) virtualHost(s *Stream) *route.VirtualHost {
	cs, t := s.cs, s.Table
	if c := cs.vh.Load(); c != nil && c.table == t && t != nil && c.authority == s.authority {
		return c.vh
	}
	vh := t.VirtualHost(s.authority)
	cs.vh.Store(&vhCache{table: t, authority: s.authority, vh: vh})
	return vh
}

// vhCache is a connection's last virtual host answer (connState.vh).
type vhCache struct {
	table     *route.Table
	authority string
	vh        *route.VirtualHost
}

func (cs *connState) finish() { cs.once.Do(func() { close(cs.done) }) }

type connInfoKey struct{}

// ServeConn serves one accepted downstream connection (plain TCP or TLS already terminated by
// the listener) until it is closed, speaking HTTP/1.1, h2 (ALPN "h2") or h2c with prior
// knowledge as codec_type allows. It blocks until the connection is finished (including an
// upgraded connection's tunnel) and closes c. Safe for concurrent use.
func (h *Handler) ServeConn(c net.Conn, info ConnInfo) {
	h.srvOnce.Do(h.startServer)
	h.st.cxTotal.Inc()
	h.st.cxActive.Inc()
	defer h.st.cxActive.Dec()
	cs := &connState{info: info, done: make(chan struct{})}
	if _, isTLS := c.(*tls.Conn); isTLS {
		cs.info.TLS = true
	}
	cs.info.authzPeer = rbacPeer(&cs.info)
	// The server sees every connection as cleartext through a protocol guard: HTTP/1.1, or h2
	// (ALPN "h2" or prior knowledge) behind the HTTP/2 frame guard (guard.go), with the
	// connection clocks net/http lacks (timeouts.go).
	// Plain TCP is read and written without the scheduler's blocking system call path
	// (h1.DirectConn: no sysmon wake-up per request).
	cc := h.newClockConn(h1.DirectConn(c), info.ALPN)
	defer cc.stopTimers()
	cs.cc = cc
	c = cc
	if info.ALPN == "h2" || h.codec == hcmv3.HttpConnectionManager_HTTP2 {
		h.st.cxHTTP2.Inc()
	} else {
		h.st.cxHTTP1.Inc()
	}
	h.conns.Store(c, cs)
	defer h.conns.Delete(c)
	// The first request head is awaited on this goroutine (timeouts.go): the server's
	// per-connection state is spent only on connections that sent one.
	if h.ln.isClosed() || !cc.awaitFirstHead() {
		cc.Close()
		return
	}
	cs.setSourceText()
	cs.handed.Store(true)
	if h.h1Native(info.ALPN, cc) {
		h.serveH1(cc, cs)
		return
	}
	if !h.ln.push(c) {
		c.Close()
		return
	}
	<-cs.done
}

func (h *Handler) startServer() {
	h.ln = newChanListener()
	p := new(http.Protocols)
	switch h.codec {
	case hcmv3.HttpConnectionManager_HTTP1:
		p.SetHTTP1(true)
	case hcmv3.HttpConnectionManager_HTTP2:
		p.SetHTTP2(true)
		p.SetUnencryptedHTTP2(true)
	default:
		p.SetHTTP1(true)
		p.SetHTTP2(true)
		p.SetUnencryptedHTTP2(true)
	}
	// Every connection reaches the server as cleartext (guard.go), TLS included.
	if h.codec != hcmv3.HttpConnectionManager_HTTP1 {
		p.SetUnencryptedHTTP2(true)
	}
	h2 := &http.HTTP2Config{
		MaxConcurrentStreams:          int(h.h2MaxStreams),
		MaxReceiveBufferPerStream:     int(h.h2StreamWindow),
		MaxReceiveBufferPerConnection: int(h.h2ConnWindow),
		MaxReadFrameSize:              h2MaxFrameSize,
		MaxDecoderHeaderTableSize:     h2HeaderTableSize,
		// A connection that accepts no byte of a pending write for stream_idle_timeout is
		// closed, as clockConn.Write does for HTTP/1.1.
		WriteByteTimeout: h.streamIdle,
	}
	h.srv = &http.Server{
		Handler:   http.HandlerFunc(h.serveHTTP),
		Protocols: p,
		HTTP2:     h2,
		// The server reads up to twice the limit so that admit can answer 431 itself, as Envoy
		// does, also over HTTP/2: there net/http would otherwise fail a single oversized header
		// value with a connection-level COMPRESSION_ERROR. Beyond that bound net/http rejects.
		MaxHeaderBytes:    h.serverMaxHeaderBytes(),
		ReadHeaderTimeout: h.headersTimeout,
		IdleTimeout:       h.connIdle,
		ErrorLog:          log.New(io.Discard, "", 0),
		TLSConfig:         &tls.Config{NextProtos: []string{"h2", "http/1.1"}},
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if v, ok := h.conns.Load(c); ok {
				return context.WithValue(ctx, connInfoKey{}, v.(*connState))
			}
			return ctx
		},
		ConnState: func(c net.Conn, s http.ConnState) {
			if cc, ok := c.(*clockConn); ok {
				cc.setState(s) // also tells the HTTP/1.1 guard about a hijack
			}
			if s == http.StateClosed {
				if v, ok := h.conns.Load(c); ok {
					v.(*connState).finish()
				}
			}
		},
	}
	go func() { _ = h.srv.Serve(h.ln) }()
}

// Drain stops keep-alive on open HTTP/1.1 connections, closes idle ones (and those still
// waiting for their first request head), sends GOAWAY on HTTP/2 connections and waits (bounded
// by ctx) for in-flight requests. New ServeConn calls after Drain close their connection at
// once.
func (h *Handler) Drain(ctx context.Context) error {
	h.srvOnce.Do(h.startServer)
	h.draining.Store(true)
	h.ln.Close()
	h.closeAwaiting()
	h.closeIdleH1()
	err := h.srv.Shutdown(ctx)
	if err == nil {
		err = h.awaitH1(ctx)
	}
	// Connections that did not finish in time are closed by the caller's deadline.
	h.conns.Range(func(_, v any) bool {
		if err != nil {
			v.(*connState).finish()
		}
		return true
	})
	return err
}

// Close closes every connection at once.
func (h *Handler) Close() error {
	h.srvOnce.Do(h.startServer)
	h.draining.Store(true)
	h.ln.Close()
	h.closeAwaiting()
	h.conns.Range(func(_, v any) bool {
		if cs := v.(*connState); cs.h1.Load() {
			cs.cc.closeNow()
		}
		return true
	})
	err := h.srv.Close()
	h.conns.Range(func(_, v any) bool {
		v.(*connState).finish()
		return true
	})
	return err
}

// closeAwaiting closes the connections still waiting for their first request head: for the
// server they do not exist yet, and they are idle.
func (h *Handler) closeAwaiting() {
	h.conns.Range(func(_, v any) bool {
		if cs := v.(*connState); !cs.handed.Load() {
			cs.cc.closeNow()
		}
		return true
	})
}

// closeIdleH1 closes the HTTP/1.1 connections of proxy/h1 that wait for a request; busy ones
// close after their response (h1Down.WriteHeader).
func (h *Handler) closeIdleH1() {
	h.conns.Range(func(_, v any) bool {
		if cs := v.(*connState); cs.h1.Load() && cs.idle.Load() {
			cs.cc.closeNow()
		}
		return true
	})
}

// awaitH1 waits (bounded by ctx) until the connections of proxy/h1 have ended, closing those
// that become idle meanwhile.
func (h *Handler) awaitH1(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		open := false
		h.conns.Range(func(_, v any) bool {
			if cs := v.(*connState); cs.h1.Load() {
				open = true
				if cs.idle.Load() {
					cs.cc.closeNow()
				}
			}
			return true
		})
		if !open {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// chanListener hands connections accepted elsewhere to http.Server.Serve.
type chanListener struct {
	ch     chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newChanListener() *chanListener {
	return &chanListener{ch: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *chanListener) push(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.closed:
		return false
	}
}

func (l *chanListener) isClosed() bool {
	select {
	case <-l.closed:
		return true
	default:
		return false
	}
}

// Accept implements net.Listener.
func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener; connections already handed over are not affected.
func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

// Addr implements net.Listener.
func (l *chanListener) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "strait" }
func (pipeAddr) String() string  { return "strait-l7" }

// hijackDone finishes the ServeConn of a hijacked (upgraded) connection once its tunnel ends.
func (h *Handler) hijackDone(s *Stream) {
	if cs := s.cs; cs != nil && cs.done != nil {
		cs.finish()
	}
}
