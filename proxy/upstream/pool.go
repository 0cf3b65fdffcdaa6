package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strait-mesh/strait/proxy/clock"
)

// poolKind selects the protocol of a pool.
type poolKind int

const (
	poolH1   poolKind = iota // HTTP/1.1, plaintext or TLS
	poolH2                   // HTTP/2: h2 over TLS (ALPN) or h2c with prior knowledge
	poolAuto                 // TLS with ALPN choosing h2 or http/1.1
	numPoolKinds
)

// pool is one endpoint's connections of one protocol. Connections are net/http ClientConns
// (one connection each, HTTP/1.1 or HTTP/2); the pool decides which connection a request uses,
// when to open another, and when to close one (idle timeout, max requests, max duration,
// removal). HTTP/1.1 connections carry one request at a time and are kept alive for reuse;
// HTTP/2 connections multiplex streams up to the server's limit. Requests that cannot get a
// connection because of the max_connections circuit breaker wait as pending requests, bounded
// by max_pending_requests.
type pool struct {
	ep     *endpoint
	kind   poolKind
	tr     *http.Transport
	scheme string

	mu    sync.Mutex
	conns []*pconn
	// ready holds an HTTP/1.1 pool's idle connections, the most recently released last, so
	// that a request takes one in constant time (reserveReadyLocked) however many are busy,
	// and the most recently used first, as Envoy's pools do (the others idle out). Entries
	// that started draining are dropped when they come up; a closed connection is removed
	// when the pool learns it closed (syncStateAndUnlock).
	ready []*pconn
	// The cluster's idle_timeout, max_connection_duration and max_requests_per_connection
	// (httpOptions), kept here for the request path.
	idleTimeout, maxConnDuration time.Duration
	maxRequests                  uint32

	dialing int
	changed chan struct{} // closed and replaced whenever a connection's state changes
	waiters int           // requests waiting on changed; with none, a change replaces nothing
	closed  bool
	// proxiedKey is set on a per-downstream PROXY-protocol pool (see endpoint.proxiedPool).
	proxiedKey *proxiedKey
}

// pconn is one pooled connection.
type pconn struct {
	p        *pool
	cc       clientConn
	h1       *h1Client // cc when it is one (HTTP/1.1 pools), else nil
	created  time.Time
	requests uint32 // guarded by p.mu
	draining bool   // guarded by p.mu: takes no new requests, closes when idle
	inReady  bool   // guarded by p.mu: in p.ready
	// idle closes the connection after the cluster's idle timeout without requests. It is
	// armed when the connection first goes idle and left running while it is used: each
	// release only records idleSince, and the timer, when it fires, re-arms itself for what is
	// left of the period (or disarms while a request is in flight), so that a request does not
	// stop and restart a runtime timer. Guarded by p.mu.
	idle      *time.Timer
	idleArmed bool
	idleSince time.Duration // clock.Mono when it last went idle: the time of that change
	// changedAt is when the connection's state last changed (clock.Mono), as far as the pool
	// has brought it up to date (syncStateAndUnlock). Guarded by p.mu.
	changedAt time.Duration
	// stateAt is when a state update that waits for the pool lock on another goroutine was
	// recorded (clock.Mono; see onState): it must not let the idle timer close a connection
	// released a moment ago. Updates that find the lock free need not publish it, nor do an
	// h1Client's, which wait for the lock and keep the connection busy until they ran.
	stateAt atomic.Int64
}

// poolFor returns the endpoint's pool of kind k, creating it on first use. The common case is
// one atomic load.
func (ep *endpoint) poolFor(k poolKind) *pool {
	if p := ep.pools[k].Load(); p != nil {
		return p
	}
	ep.poolMu.Lock()
	defer ep.poolMu.Unlock()
	if p := ep.pools[k].Load(); p != nil {
		return p
	}
	p := newPool(ep, k)
	p.closed = ep.closed
	ep.pools[k].Store(p)
	return p
}

// proxiedKey identifies a pool of PROXY-protocol connections for one downstream address pair.
type proxiedKey struct {
	kind poolKind
	d    downstreamAddrs
}

// proxiedPool returns the pool of kind k for downstream addresses d, creating it on first use.
// Such a pool removes itself from the endpoint when its last connection closes.
func (ep *endpoint) proxiedPool(k poolKind, d downstreamAddrs) *pool {
	key := proxiedKey{kind: k, d: d}
	if v, ok := ep.proxied.Load(key); ok {
		return v.(*pool)
	}
	ep.poolMu.Lock()
	defer ep.poolMu.Unlock()
	if v, ok := ep.proxied.Load(key); ok {
		return v.(*pool)
	}
	p := newPool(ep, k)
	p.closed = ep.closed
	p.proxiedKey = &key
	ep.proxied.Store(key, p)
	return p
}

// Upstream HTTP/2 flow-control windows when the cluster sets none (Envoy's edge
// recommendation for its listeners; Envoy bounds upstream buffering with
// per_connection_buffer_limit_bytes, 1 MiB, instead). docs/security.md.
const (
	defaultUpstreamStreamWindow = 64 << 10
	defaultUpstreamConnWindow   = 1 << 20
)

func newPool(ep *endpoint, k poolKind) *pool {
	c := ep.c
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return c.dialTCP(ctx, ep)
		},
		TLSHandshakeTimeout:    c.connectTimeout,
		DisableCompression:     true, // a proxy forwards Accept-Encoding as the client sent it
		MaxResponseHeaderBytes: maxResponseHeaderBytes,
		IdleConnTimeout:        c.http.idleTimeout,
	}
	var protos http.Protocols
	scheme := "http"
	if cfg := ep.ts.tlsConfig(); cfg != nil {
		scheme = "https"
		tr.TLSClientConfig = cfg.Clone()
		// With a custom ALPN list (Istio's "istio-peer-exchange", "istio"), also offer the
		// protocol this pool speaks, so that servers that require an ALPN match (Go's) accept
		// the handshake; net/http adds "h2" itself for HTTP/2 pools.
		if np := tr.TLSClientConfig.NextProtos; k == poolH1 && len(np) > 0 && !slices.Contains(np, "http/1.1") {
			tr.TLSClientConfig.NextProtos = append(slices.Clone(np), "http/1.1")
		}
	}
	switch k {
	case poolH1:
		protos.SetHTTP1(true)
	case poolH2:
		if ep.ts.tlsConfig() != nil {
			protos.SetHTTP2(true)
		} else {
			protos.SetUnencryptedHTTP2(true)
		}
	case poolAuto:
		protos.SetHTTP1(true)
		protos.SetHTTP2(true)
	}
	tr.Protocols = &protos
	// Flow-control windows bound what an upstream can make the proxy buffer while the
	// downstream reads slowly (or not at all): Go's own defaults (4 MiB per stream, 1 GiB per
	// connection) would let 100 stalled streams hold 400 MiB.
	tr.HTTP2 = &http.HTTP2Config{
		MaxReceiveBufferPerStream:     defaultUpstreamStreamWindow,
		MaxReceiveBufferPerConnection: defaultUpstreamConnWindow,
		SendPingTimeout:               c.http.pingInterval,
		PingTimeout:                   c.http.pingTimeout,
	}
	if c.http.streamWindow > 0 {
		tr.HTTP2.MaxReceiveBufferPerStream = c.http.streamWindow
	}
	if c.http.connWindow > 0 {
		tr.HTTP2.MaxReceiveBufferPerConnection = c.http.connWindow
	}
	return &pool{ep: ep, kind: k, tr: tr, scheme: scheme, changed: make(chan struct{}),
		idleTimeout: c.http.idleTimeout, maxConnDuration: c.http.maxConnDuration, maxRequests: c.http.maxRequestsPerConn}
}

// multiplexed reports whether connections of this pool carry concurrent requests, so that
// waiting for a connection being dialed beats dialing another.
func (p *pool) multiplexed() bool { return p.kind == poolH2 }

func (p *pool) broadcastLocked() {
	if p.waiters != 0 { // else no request holds the channel: nothing to wake
		p.wakeLocked()
	}
}

// wakeLocked wakes the requests waiting on p.changed. Not inlined: broadcastLocked runs at
// every request's end, and mostly nobody waits.
//
//go:noinline
func (p *pool) wakeLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// acquire returns a connection with a reserved request slot. reused reports whether the
// connection had carried requests before (a stale keep-alive connection may fail on reuse).
// Its common case, a usable connection at hand, takes the lock once; the others (dialing,
// waiting as a pending request) are acquireSlow's.
func (p *pool) acquire(ctx context.Context) (pc *pconn, reused bool, err error) {
	p.mu.Lock()
	if p.kind != poolH1 {
		return p.acquireOther(ctx)
	}
	if pc := p.reserveReadyLocked(); pc != nil {
		reused := pc.requests > 1
		p.mu.Unlock()
		return pc, reused, nil
	}
	p.mu.Unlock()
	return p.acquireSlow(ctx)
}

// acquireOther is acquire for the pools of net/http's connections (HTTP/2, ALPN); p.mu is
// held, and released. Not inlined: it keeps acquire's common path (HTTP/1.1) short.
//
//go:noinline
func (p *pool) acquireOther(ctx context.Context) (pc *pconn, reused bool, err error) {
	if pc = p.reserveLocked(); pc != nil {
		reused = pc.requests > 1
		p.mu.Unlock()
		return pc, reused, nil
	}
	p.mu.Unlock()
	return p.acquireSlow(ctx)
}

// acquireSlow is acquire when no connection was at hand: it dials one, or waits as a pending
// request, looking again at each change. Not inlined: it keeps acquire's common path short.
//
//go:noinline
func (p *pool) acquireSlow(ctx context.Context) (pc *pconn, reused bool, err error) {
	c := p.ep.c
	pending := false
	defer func() {
		if pending {
			c.breaker.pending.release()
			c.st.rqPendingActive.Dec()
		}
	}()
	for {
		freed := c.connFreed()
		p.mu.Lock()
		if pc := p.reserveLocked(); pc != nil {
			reused := pc.requests > 1
			p.mu.Unlock()
			return pc, reused, nil
		}
		if !p.multiplexed() || p.dialing == 0 {
			p.dialing++
			p.mu.Unlock()
			pc, err := p.dial(ctx)
			p.mu.Lock()
			p.dialing--
			p.broadcastLocked()
			if err == nil {
				p.conns = append(p.conns, pc)
				if pc.cc.Reserve() == nil {
					pc.reservedLocked() // counts against max_requests_per_connection too
					p.mu.Unlock()
					return pc, false, nil
				}
				// Taken by others already (HTTP/2 at its stream limit): look again.
				p.mu.Unlock()
				continue
			}
			if !errors.Is(err, errCxOverflow) {
				p.forgetIfEmptyLocked()
				p.mu.Unlock()
				return nil, false, err
			}
			// A connection may have become free while we dialed.
			if pc := p.reserveLocked(); pc != nil {
				reused := pc.requests > 1
				p.mu.Unlock()
				return pc, reused, nil
			}
		}
		// No connection now: wait as a pending request.
		if !pending {
			if !c.breaker.pending.acquire() {
				p.mu.Unlock()
				c.st.rqPendingOverflow.Inc()
				return nil, false, &Error{Flag: FlagOverflow, Err: errPendingOverflow}
			}
			pending = true
			c.st.rqPendingTotal.Inc()
			c.st.rqPendingActive.Inc()
		}
		// Wait on the state seen under this lock, so no change is missed.
		changed := p.changed
		p.waiters++
		p.mu.Unlock()
		var err error
		select {
		case <-changed:
		case <-freed:
		case <-ctx.Done():
			err = ctx.Err()
		case <-c.stop:
			err = errClosed
		}
		p.mu.Lock()
		p.waiters--
		p.mu.Unlock()
		if err != nil {
			return nil, false, err
		}
	}
}

// reserveLocked reserves a request slot on a usable connection: an HTTP/1.1 pool's most
// recently released idle one (reserveReadyLocked), else the newest.
func (p *pool) reserveLocked() *pconn {
	if p.kind == poolH1 {
		return p.reserveReadyLocked()
	}
	c := p.ep.c
	var now time.Time
	if c.http.maxConnDuration > 0 {
		now = time.Now()
	}
	for i := len(p.conns) - 1; i >= 0; i-- {
		pc := p.conns[i]
		if !pc.usableLocked(now) {
			continue
		}
		if m := c.http.maxStreams; m > 0 && pc.cc.InFlight() >= m {
			continue
		}
		if pc.cc.Reserve() != nil {
			continue
		}
		pc.reservedLocked()
		return pc
	}
	return nil
}

// reserveReadyLocked is reserveLocked for an HTTP/1.1 pool: it takes the most recently released
// connection of p.ready, dropping those that can no longer be used, in constant time but for
// the dropped ones (each was pushed once).
func (p *pool) reserveReadyLocked() *pconn {
	maxDuration := p.maxConnDuration
	for n := len(p.ready); n > 0; n = len(p.ready) {
		pc := p.ready[n-1]
		p.ready[n-1] = nil
		p.ready = p.ready[:n-1]
		pc.inReady = false
		// Listed connections are idle: usable unless draining or closed (usableLocked and
		// h1Client.Reserve, without their calls).
		hc := pc.h1
		if pc.draining || hc.closed.Load() || hc.busy {
			continue
		}
		if maxDuration > 0 && pc.pastDuration(maxDuration) {
			continue // the duration timer has not fired yet; it will close the connection
		}
		hc.busy = true
		pc.reservedLocked()
		return pc
	}
	return nil
}

// pastDuration reports whether pc is older than d (max_connection_duration). Not inlined: the
// clock reading of reserveReadyLocked's rare case (a cluster with a maximum duration), kept out
// of its common path.
//
//go:noinline
func (pc *pconn) pastDuration(d time.Duration) bool { return time.Since(pc.created) >= d }

// usableLocked reports whether pc may take a new request (now is set when the cluster has a
// max_connection_duration). p.mu is held.
func (pc *pconn) usableLocked(now time.Time) bool {
	if pc.draining || pc.closed() {
		return false
	}
	// Past its duration, the duration timer has not fired yet; it will close the connection.
	d := pc.p.ep.c.http.maxConnDuration
	return d <= 0 || now.Sub(pc.created) < d
}

// closed reports whether the connection is closed or broken (cc.Err() != nil), without an
// interface call for HTTP/1.1 connections.
func (pc *pconn) closed() bool {
	if hc := pc.h1; hc != nil {
		return hc.closed.Load()
	}
	return pc.cc.Err() != nil
}

// idleLocked reports whether the connection carries no request (cc.InFlight() == 0), without
// an interface call for HTTP/1.1 connections. p.mu is held.
func (pc *pconn) idleLocked() bool {
	if pc.h1 != nil {
		return !pc.h1.busy
	}
	return pc.cc.InFlight() == 0
}

// reservedLocked counts a request reserved on pc against max_requests_per_connection. p.mu is
// held.
func (pc *pconn) reservedLocked() {
	pc.requests++
	if m := pc.p.maxRequests; m > 0 && pc.requests >= m {
		pc.maxRequestsReached()
	}
}

// maxRequestsReached drains pc, which reached max_requests_per_connection. p.mu is held. Not
// inlined: reservedLocked's rare path, kept out of the request's common path.
//
//go:noinline
func (pc *pconn) maxRequestsReached() {
	pc.draining = true
	pc.p.ep.c.st.cxMaxRequests.Inc()
}

func (p *pool) dial(ctx context.Context) (*pconn, error) {
	c := p.ep.c
	// The connect timeout bounds TCP connect and the TLS handshake; the connection outlives ctx.
	dctx, cancel := context.WithTimeout(ctx, c.connectTimeout)
	defer cancel()
	addr := p.ep.dialAddr()
	if p.ep.network == "unix" {
		addr = "localhost:0" // the dialer ignores it; it only names the peer for TLS
	}
	if p.kind == poolH1 {
		// HTTP/1.1 on the proxy's own codec (h1conn.go).
		nc, err := p.dialH1(dctx, addr)
		if err != nil {
			return nil, err
		}
		hc := newH1Client(nc)
		if t, ok := nc.(*trackedConn); ok {
			// Plaintext: the codec reads and writes the socket beneath (h1.DirectConn's,
			// which counts the bytes as trackedConn's Read and Write would) without the call
			// through t; a socket of another kind stays behind t.
			hc.conn.CountBytes(t.Conn, t.rx, t.tx)
		}
		hc.x.acct.c, hc.x.acct.ep = c, p.ep // the response bodies' accounting (Cluster.roundTrip)
		pc := &pconn{p: p, cc: hc, h1: hc, created: time.Now()}
		c.st.cxHTTP1Total.Inc()
		hc.pc = pc // before the pool shares pc
		pc.startDuration()
		return pc, nil
	}
	cc, err := p.tr.NewClientConn(dctx, p.scheme, addr)
	if err != nil {
		return nil, err
	}
	pc := &pconn{p: p, cc: cc, created: time.Now()}
	if p.kind == poolH2 || cc.Available() > 1 {
		c.st.cxHTTP2Total.Inc()
	} else {
		c.st.cxHTTP1Total.Inc()
	}
	cc.SetStateHook(func(*http.ClientConn) { pc.onState() })
	pc.startDuration()
	return pc, nil
}

// startDuration arms max_connection_duration: Envoy drains a connection when it reaches it,
// busy or not.
func (pc *pconn) startDuration() {
	if d := pc.p.ep.c.http.maxConnDuration; d > 0 {
		time.AfterFunc(d, pc.onMaxDuration)
	}
}

// dialH1 opens an HTTP/1.1 connection: TCP within the circuit breakers (dialTCP), then the
// transport socket's TLS handshake, within ctx (the connect timeout).
func (p *pool) dialH1(ctx context.Context, addr string) (net.Conn, error) {
	nc, err := p.ep.c.dialTCP(ctx, p.ep)
	if err != nil {
		return nil, err
	}
	cfg := p.tr.TLSClientConfig
	if cfg == nil {
		return nc, nil
	}
	if cfg.ServerName == "" {
		// As net/http's client: the server name is the dialed host.
		cfg = cfg.Clone()
		if host, _, err := net.SplitHostPort(addr); err == nil {
			cfg.ServerName = host
		} else {
			cfg.ServerName = addr
		}
	}
	tc := tls.Client(nc, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	return tc, nil
}

func (pc *pconn) onMaxDuration() {
	p := pc.p
	p.mu.Lock()
	first := !pc.draining
	pc.draining = true
	closeIt := pc.cc.InFlight() == 0 && pc.cc.Err() == nil
	p.mu.Unlock()
	if first {
		p.ep.c.st.cxMaxDurationReached.Inc()
	}
	if closeIt {
		pc.cc.Close()
	}
}

// onState runs when a connection's state changes: it forgets dead connections, closes idle ones
// that should not be kept, arms the idle timer of the others, and wakes waiting requests. (An
// h1Client's exchange end has a hook of its own: see newH1Client.)
func (pc *pconn) onState() {
	p := pc.p
	at := clock.Mono()
	if pc.h1 != nil {
		// An h1Client runs its hook only without the lock (the pool closes connections after
		// unlocking), so this waits for it: the connection stays busy until the update below,
		// which no other update or idle timer can see half done, and is reusable at once.
		p.mu.Lock()
		pc.syncStateAndUnlock(at)
		return
	}
	// net/http runs the state hook synchronously inside ClientConn.Reserve and Release, and the
	// pool calls Reserve with p.mu held: locking here would deadlock that goroutine. When the
	// lock is busy, finish on another goroutine; the update is recomputed from the connection's
	// current state, so running it a little later is correct. Its time is published first
	// (stateAt) for the idle timer, which may take the lock before it does.
	if !p.mu.TryLock() {
		pc.stateAt.Store(int64(at))
		go func() {
			p.mu.Lock()
			pc.syncStateAndUnlock(at)
		}()
		return
	}
	pc.syncStateAndUnlock(at)
}

// syncStateAndUnlock brings the pool up to date with the connection's state (closed, idle),
// which changed at at, and releases p.mu, which the caller holds. An h1Client's exchange end
// runs its common case itself (newH1Client) and this otherwise, its reservation released. Its
// rare parts (a dead connection, a first idle timer) are functions of their own.
func (pc *pconn) syncStateAndUnlock(at time.Duration) {
	p := pc.p
	hc := pc.h1
	// Updates may reach the lock out of order: the latest change counts.
	pc.changedAt = max(pc.changedAt, at)
	closeIt := false
	var dead, idle bool
	if hc != nil {
		dead, idle = hc.closed.Load(), !hc.busy // pc.closed() and pc.idleLocked()
	} else {
		dead, idle = pc.ccStateLocked()
	}
	if dead {
		pc.forgetLocked()
	} else if idle {
		if pc.draining || p.closed || len(p.conns) > maxIdlePerEndpoint {
			closeIt = pc.closeIdleLocked()
		}
		if !closeIt {
			if hc != nil && !pc.inReady {
				pc.inReady = true
				if n := len(p.ready); n < cap(p.ready) {
					p.ready = p.ready[:n+1]
					p.ready[n] = pc
				} else {
					p.growReadyLocked(pc)
				}
			}
			if d := p.idleTimeout; d > 0 {
				// Idle since the latest state change (the connection is idle now), including
				// one still on its way to the lock: no clock reading of its own.
				pc.idleSince = max(pc.changedAt, time.Duration(pc.stateAt.Load()))
				if !pc.idleArmed {
					pc.armIdleLocked(d)
				}
			}
		}
	}
	p.broadcastLocked()
	p.mu.Unlock()
	if closeIt {
		pc.cc.Close()
	}
}

// closeIdleLocked reports whether pc, idle, is to be closed rather than kept: it is draining,
// the pool is closed, or more than maxIdlePerEndpoint of the pool's connections are idle; if
// so it drains pc. p.mu is held. Not inlined: syncStateAndUnlock calls it only when one of
// those may hold (rare).
//
//go:noinline
func (pc *pconn) closeIdleLocked() bool {
	p := pc.p
	closeIt := pc.draining || p.closed || p.idleOverLocked(maxIdlePerEndpoint)
	if closeIt {
		pc.draining = true
	}
	return closeIt
}

// ccStateLocked reports whether a connection of net/http's client is closed (dead) or carries
// no request (idle). p.mu is held. Not inlined: syncStateAndUnlock's common case is an
// h1Client's.
//
//go:noinline
func (pc *pconn) ccStateLocked() (dead, idle bool) {
	return pc.cc.Err() != nil, pc.cc.InFlight() == 0
}

// growReadyLocked appends pc to p.ready, which is full. p.mu is held. Not inlined: a rare
// path of syncStateAndUnlock (p.ready keeps its storage).
//
//go:noinline
func (p *pool) growReadyLocked(pc *pconn) { p.ready = append(p.ready, pc) }

// forgetLocked removes a dead connection from the pool. p.mu is held. Not inlined: a rare
// path of syncStateAndUnlock.
//
//go:noinline
func (pc *pconn) forgetLocked() {
	p := pc.p
	for i, x := range p.conns {
		if x == pc {
			p.conns = append(p.conns[:i], p.conns[i+1:]...)
			break
		}
	}
	if pc.inReady {
		pc.inReady = false
		if i := slices.Index(p.ready, pc); i >= 0 {
			p.ready = slices.Delete(p.ready, i, i+1)
		}
	}
	if pc.idle != nil {
		pc.idle.Stop()
	}
	p.forgetIfEmptyLocked()
}

// armIdleLocked arms the idle timer, which is not armed, for d: the timer is created when the
// connection first goes idle, and left running while it is used (see pconn.idle). p.mu is
// held. Not inlined: a rare path of syncStateAndUnlock.
//
//go:noinline
func (pc *pconn) armIdleLocked(d time.Duration) {
	if pc.idle == nil {
		pc.idle = time.AfterFunc(d, pc.onIdle)
	} else {
		pc.idle.Reset(d)
	}
	pc.idleArmed = true
}

// forgetIfEmptyLocked removes a per-downstream PROXY-protocol pool from its endpoint once it has
// no connections left, so such pools do not accumulate. p.mu is held.
func (p *pool) forgetIfEmptyLocked() {
	if p.proxiedKey != nil && len(p.conns) == 0 && p.dialing == 0 {
		p.ep.proxied.CompareAndDelete(*p.proxiedKey, p)
	}
}

// idleOverLocked reports whether more than max of the pool's connections are idle. A pool of
// at most max connections is not looked at (this runs at every request's end); a larger one
// only until the count passes max. p.mu is held.
func (p *pool) idleOverLocked(max int) bool {
	if len(p.conns) <= max {
		return false
	}
	n := 0
	for _, pc := range p.conns {
		if !pc.draining && pc.cc.InFlight() == 0 {
			if n++; n > max {
				return true
			}
		}
	}
	return false
}

func (pc *pconn) onIdle() {
	p := pc.p
	p.mu.Lock()
	pc.idleArmed = false
	closeIt := !pc.draining && pc.cc.InFlight() == 0 && pc.cc.Err() == nil
	if closeIt {
		now := clock.Mono()
		quiet := now - pc.idleSince
		if q := now - time.Duration(pc.stateAt.Load()); q < quiet {
			quiet = q // a state update is still on its way to the lock
		}
		if d := p.ep.c.http.idleTimeout; quiet < d {
			// Used since the timer was armed: idle only for quiet so far.
			pc.idle.Reset(d - quiet)
			pc.idleArmed = true
			p.mu.Unlock()
			return
		}
		pc.draining = true
	}
	p.mu.Unlock()
	if closeIt {
		p.ep.c.st.cxIdleTimeout.Inc()
		pc.cc.Close()
	}
}

// close stops the pool from keeping connections: idle ones close now, busy ones when idle.
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	var idle []*pconn
	for _, pc := range p.conns {
		if !pc.draining && pc.cc.InFlight() == 0 {
			pc.draining = true
			idle = append(idle, pc)
		}
	}
	p.broadcastLocked()
	p.mu.Unlock()
	for _, pc := range idle {
		pc.cc.Close()
	}
}
