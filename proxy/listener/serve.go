package listener

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strait-mesh/strait/proxy/h1"
	"github.com/strait-mesh/strait/proxy/sniff"
	"github.com/strait-mesh/strait/proxy/tlsx"
)

// ErrClosed is returned by Serve when the listener is draining or closed.
var ErrClosed = errors.New("listener closed")

// Listen binds the listener's address with its socket options (transparent, freebind,
// enable_reuse_port). An
// IPv4 address binds IPv4 only and an IPv6 address IPv6 only, as Envoy does, except the IPv6
// wildcard with ipv4_compat, which binds dual-stack.
func (l *Listener) Listen(ctx context.Context) (net.Listener, error) {
	network := "tcp4"
	if l.addr.Addr().Is6() {
		network = "tcp6"
		if l.ipv4Compat && l.addr.Addr().IsUnspecified() {
			network = "tcp"
		}
	}
	lc := net.ListenConfig{Control: socketControl(l.transparent, l.freebind, l.reusePort, l.addr.Addr().Is6())}
	ln, err := lc.Listen(ctx, network, l.addr.String())
	if err != nil {
		return nil, fmt.Errorf("binding listener %q on %s: %w", l.name, l.addr, err)
	}
	return ln, nil
}

// Serve accepts connections on ln and serves each in its own goroutine until ln is closed or the
// listener drains or closes (then it returns nil). ln is closed by Drain and Close.
func (l *Listener) Serve(ln net.Listener) error {
	l.mu.Lock()
	if l.draining {
		l.mu.Unlock()
		ln.Close()
		return ErrClosed
	}
	l.lns = append(l.lns, ln)
	l.mu.Unlock()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			l.mu.Lock()
			stopped := l.draining
			l.mu.Unlock()
			if stopped || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				// EMFILE and friends: back off instead of spinning.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("accepting on %s: %w", l.addr, err)
		}
		backoff = 0
		global, ok := l.admit()
		if !ok {
			c.Close()
			continue
		}
		// Track before handing over, so that a Drain starting now waits for this connection.
		tc := l.track(c)
		if tc == nil {
			if global {
				l.adm.ReleaseConnection()
			}
			c.Close()
			continue
		}
		go l.accepted(c, tc, global)
	}
}

// admit applies the connection limits to a newly accepted connection, in Envoy's order: the
// overload manager's stop_accepting_connections, the global downstream connection limit, then
// the listener's own limit. A refused connection is counted and must be closed at once
// (ok false). global reports that a slot of the global limit was taken, to be released when
// the connection ends.
func (l *Listener) admit() (global, ok bool) {
	if l.adm != nil {
		if !l.adm.AcceptingConnections() {
			l.st.overloadReject.Inc()
			return false, false
		}
		if !l.ignoreGlobal {
			if !l.adm.AcquireConnection() {
				l.st.globalOverflow.Inc()
				return false, false
			}
			global = true
		}
	}
	if m := l.maxConns.Load(); m > 0 && l.active.Load() >= m {
		l.st.overflow.Inc()
		if global {
			l.adm.ReleaseConnection()
		}
		return false, false
	}
	return global, true
}

func isTemporary(err error) bool {
	t, ok := err.(interface{ Temporary() bool })
	return ok && t.Temporary()
}

// trackedConn is an open connection of this listener, closed by Close or a drain deadline.
type trackedConn struct{ c net.Conn }

// track registers an open connection. A draining listener still takes connections that were
// accepted (or handed off) before it stopped; a closed one refuses them (nil).
func (l *Listener) track(c net.Conn) *trackedConn {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	tc := &trackedConn{c: c}
	l.conns[tc] = struct{}{}
	l.active.Add(1)
	l.st.cxActive.Inc()
	return tc
}

func (l *Listener) untrack(tc *trackedConn) {
	l.mu.Lock()
	delete(l.conns, tc)
	n := l.active.Add(-1)
	if n == 0 && l.idle != nil {
		close(l.idle)
		l.idle = nil
	}
	l.mu.Unlock()
	l.st.cxActive.Dec()
	l.st.cxDestroy.Inc()
}

// accepted serves one connection accepted on this listener's socket and tracked as tc; global
// says it holds a slot of the global connection limit, released when it ends.
func (l *Listener) accepted(c net.Conn, tc *trackedConn, global bool) {
	if global {
		defer l.adm.ReleaseConnection()
	}
	defer l.untrack(tc)
	src := addrPortOf(c.RemoteAddr())
	dst := addrPortOf(c.LocalAddr())
	if l.restoreDst {
		if od, ok := originalDst(c, dst); ok {
			dst = od
		}
	}
	if l.useOriginalDst {
		if t := l.env.Handoff(dst); t != nil && t != l {
			t.handoff(c, src, dst)
			return
		}
	}
	l.serve(c, src, dst)
}

// handoff serves a connection accepted by another listener (use_original_dst), tracked here.
func (l *Listener) handoff(c net.Conn, src, dst netip.AddrPort) {
	tc := l.track(c)
	if tc == nil {
		c.Close()
		return
	}
	defer l.untrack(tc)
	l.serve(c, src, dst)
}

// serve runs listener filters, selects a chain, terminates TLS and hands the connection to the
// chain's terminal.
func (l *Listener) serve(c net.Conn, src, dst netip.AddrPort) {
	l.st.cxTotal.Inc()

	var conn net.Conn = c
	var peeked *sniff.Conn
	facts := connFacts{dst: dst, src: src, transport: "raw_buffer"}
	if l.inspect.TLS || l.inspect.HTTP {
		pc, res, err := sniff.Inspect(c, l.inspect)
		if err != nil {
			switch {
			case errors.Is(err, sniff.ErrTimeout):
				l.st.preCxTimeout.Inc()
			case errors.Is(err, sniff.ErrTooLarge):
				l.st.helloTooLarge.Inc()
				l.st.filterError.Inc()
			default:
				l.st.filterError.Inc()
			}
			c.Close()
			return
		}
		l.countInspection(&res)
		conn, peeked = pc, pc
		facts.serverName, facts.transport, facts.alpn = res.ServerName, res.TransportProtocol, res.ALPN
	}
	ch := l.match.find(&facts)
	if ch == nil {
		ch = l.defaultChain
	}
	if ch == nil {
		l.st.noChain.Inc()
		c.Close()
		return
	}
	if ch.limit != nil {
		if !ch.limit.acquire() {
			if ch.limit.delay > 0 {
				t := time.NewTimer(ch.limit.delay)
				<-t.C
			}
			c.Close()
			return
		}
		defer ch.limit.release()
	}
	if _, ok := ch.term.(httpTerminal); ok {
		// The HTTP codec's reads and writes become raw system calls on the socket
		// (h1.DirectConn), beneath the peeked bytes and TLS. Not for TCP proxying, whose copy
		// splices between sockets only from a *net.TCPConn.
		if peeked != nil {
			peeked.Conn = h1.DirectConn(peeked.Conn)
		} else {
			conn = h1.DirectConn(conn)
		}
	}
	info := ConnInfo{Source: src, OriginalDst: dst, ServerName: facts.serverName, FilterChain: ch.name}
	if ch.tls == nil && len(facts.alpn) > 0 && facts.transport == "raw_buffer" {
		info.ALPN = facts.alpn[0]
	}
	if ch.tls != nil {
		tlsConn := tls.Server(conn, ch.tls)
		ctx, cancel := context.WithTimeout(context.Background(), ch.handshakeTimeout)
		err := tlsConn.HandshakeContext(ctx)
		cancel()
		if err != nil {
			l.st.tlsError.Inc()
			c.Close()
			return
		}
		cs := tlsConn.ConnectionState()
		info.TLS = true
		info.ServerName = cs.ServerName
		info.ALPN = cs.NegotiatedProtocol
		info.PeerCertificates = cs.PeerCertificates
		info.LocalCertificate = tlsx.LocalCertificate(ch.tls, cs.ServerName)
		conn = tlsConn
	}
	if len(ch.filters) > 0 {
		cs := newConnState(conn, &info)
		for _, f := range ch.filters {
			if !f.onConnection(cs) {
				cs.conn.Close()
				return
			}
		}
		conn = cs.conn
	}
	ch.term.ServeConn(conn, info)
}

func addrPortOf(a net.Addr) netip.AddrPort {
	switch t := a.(type) {
	case *net.TCPAddr:
		ap := t.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	case nil:
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// Drain stops accepting, asks every chain to finish its connections gracefully (HTTP: GOAWAY /
// Connection: close; TCP: let streams end) and waits until all connections are closed or ctx is
// done; then it closes what is left. It returns ctx's error if connections had to be cut.
func (l *Listener) Drain(ctx context.Context) error {
	l.mu.Lock()
	l.draining = true
	for _, ln := range l.lns {
		ln.Close()
	}
	l.mu.Unlock()
	var wg sync.WaitGroup
	for _, ch := range l.chains {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ch.term.Drain(ctx) //nolint:errcheck // the wait below decides
		}()
	}
	for {
		l.mu.Lock()
		if l.active.Load() == 0 {
			l.mu.Unlock()
			wg.Wait()
			return nil
		}
		if l.idle == nil {
			l.idle = make(chan struct{})
		}
		idle := l.idle
		l.mu.Unlock()
		select {
		case <-idle:
		case <-ctx.Done():
			l.Close()
			wg.Wait()
			return fmt.Errorf("draining listener %q: %w", l.name, ctx.Err())
		}
	}
}

// Close stops accepting and closes every connection at once.
func (l *Listener) Close() error {
	l.mu.Lock()
	l.draining, l.closed = true, true
	for _, ln := range l.lns {
		ln.Close()
	}
	conns := make([]net.Conn, 0, len(l.conns))
	for tc := range l.conns {
		conns = append(conns, tc.c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	for _, ch := range l.chains {
		if ch.cancel != nil {
			ch.cancel()
		}
		ch.term.Close()
	}
	return nil
}

// ActiveConnections returns the number of open connections.
func (l *Listener) ActiveConnections() int { return int(l.active.Load()) }

// Registry maps addresses to listeners for use_original_dst hand-off. The proxy core replaces the
// set on each LDS update with Set; Lookup is lock-free.
type Registry struct {
	m atomic.Pointer[map[netip.AddrPort]*Listener]
}

// Set replaces the registered listeners (bound and bind_to_port=false ones alike).
func (r *Registry) Set(ls []*Listener) {
	m := make(map[netip.AddrPort]*Listener, len(ls))
	for _, l := range ls {
		m[l.addr] = l
	}
	r.m.Store(&m)
}

// Lookup returns the listener for dst as Envoy chooses it: the one whose address is exactly dst,
// else the wildcard listener (0.0.0.0 or [::]) on dst's port, else nil.
func (r *Registry) Lookup(dst netip.AddrPort) *Listener {
	mp := r.m.Load()
	if mp == nil {
		return nil
	}
	m := *mp
	if l, ok := m[dst]; ok {
		return l
	}
	any := netip.IPv4Unspecified()
	if dst.Addr().Is6() {
		any = netip.IPv6Unspecified()
	}
	return m[netip.AddrPortFrom(any, dst.Port())]
}

func (l *Listener) countInspection(res *sniff.Result) {
	if l.inspect.TLS {
		if res.TransportProtocol == "tls" {
			l.st.tlsFound.Inc()
			if res.ServerName != "" {
				l.st.sniFound.Inc()
			}
			if len(res.ALPN) > 0 {
				l.st.alpnFound.Inc()
			}
			return
		}
		l.st.tlsNotFound.Inc()
	}
	if l.inspect.HTTP {
		switch {
		case len(res.ALPN) == 0:
			l.st.httpNotFound.Inc()
		case res.ALPN[0] == sniff.ProtoH2C:
			l.st.http2Found.Inc()
		case res.ALPN[0] == sniff.ProtoHTTP10:
			l.st.http10Found.Inc()
		default:
			l.st.http11Found.Inc()
		}
	}
}
