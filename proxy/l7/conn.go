package l7

import (
	"context"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"sync"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
)

// connState tracks one downstream connection served by the shared http.Server.
type connState struct {
	info ConnInfo
	once sync.Once
	done chan struct{}
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
	// The server sees every connection as cleartext through a protocol guard: HTTP/1.1, or h2
	// (ALPN "h2" or prior knowledge) behind the HTTP/2 frame guard (guard.go).
	c = h.guardConn(c, info.ALPN)
	if info.ALPN == "h2" || h.codec == hcmv3.HttpConnectionManager_HTTP2 {
		h.st.cxHTTP2.Inc()
	} else {
		h.st.cxHTTP1.Inc()
	}
	h.conns.Store(c, cs)
	defer h.conns.Delete(c)
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
			if s == http.StateHijacked {
				if pc, ok := c.(*protoConn); ok {
					pc.hijacked()
				}
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

// Drain stops keep-alive on open HTTP/1.1 connections, closes idle ones, sends GOAWAY on HTTP/2
// connections and waits (bounded by ctx) for in-flight requests. New ServeConn calls after
// Drain close their connection at once.
func (h *Handler) Drain(ctx context.Context) error {
	h.srvOnce.Do(h.startServer)
	h.ln.Close()
	err := h.srv.Shutdown(ctx)
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
	h.ln.Close()
	err := h.srv.Close()
	h.conns.Range(func(_, v any) bool {
		v.(*connState).finish()
		return true
	})
	return err
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
func (h *Handler) hijackDone(r *http.Request) {
	if cs, ok := r.Context().Value(connInfoKey{}).(*connState); ok {
		cs.finish()
	}
}
