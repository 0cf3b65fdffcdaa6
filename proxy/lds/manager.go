// Package lds is strait-proxy's listener manager (Envoy's ListenerManager): it applies LDS
// updates to the listeners being served. A new or changed listener binds its address (or takes
// over the socket of the listener it replaces, so that no connection is refused), warms until the
// route configurations it names are in force, then serves; the one it replaces, or a removed one,
// drains for the drain duration. It also drains every listener at shutdown or on
// /drain_listeners, and finds the listener for a use_original_dst hand-off.
package lds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strait-mesh/strait/internal/vocab"
	"github.com/strait-mesh/strait/proxy/listener"
	"github.com/strait-mesh/strait/proxy/stats"
	"github.com/strait-mesh/strait/proxy/xdsclient"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	listenerv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/listener/v3"
)

// Options configure a Manager.
type Options struct {
	// Compile compiles a listener resource and returns the RDS route configurations it serves
	// (the listener warms until they are in force).
	Compile func(lr *listenerv3.Listener) (l *listener.Listener, routes []string, err error)
	// RoutesReady reports whether every named route configuration is in force.
	RoutesReady func(routes []string) bool
	// DrainDuration is how long a replaced, removed or drained listener's connections may finish.
	DrainDuration time.Duration
	// Stats receives the listener_manager gauges.
	Stats  *stats.Store
	Logger *slog.Logger
}

// Manager owns the listeners being served. Apply is called by one goroutine (the xDS client's);
// the other methods may be called concurrently.
type Manager struct {
	opts Options
	log  *slog.Logger

	mu        sync.Mutex
	listeners map[string]*activeListener // serving, by listener name
	warming   map[string]*activeListener // compiled, waiting for their routes
	registry  listener.Registry          // for use_original_dst hand-off
	draining  sync.WaitGroup             // listeners draining after removal or change

	inboundDrained atomic.Bool // /drain_listeners?inboundonly was called
	allDrained     atomic.Bool // /drain_listeners or shutdown: listeners stay closed

	gauges struct{ active, warming, draining *stats.Gauge }
}

// New returns a Manager with no listeners.
func New(opts Options) *Manager {
	m := &Manager{opts: opts, log: opts.Logger,
		listeners: map[string]*activeListener{}, warming: map[string]*activeListener{}}
	if m.log == nil {
		m.log = slog.Default()
	}
	st := opts.Stats
	if st == nil {
		st = stats.NewStore()
	}
	m.gauges.active = st.Gauge("listener_manager.total_listeners_active", "envoy_listener_manager_total_listeners_active")
	m.gauges.warming = st.Gauge("listener_manager.total_listeners_warming", "envoy_listener_manager_total_listeners_warming")
	m.gauges.draining = st.Gauge("listener_manager.total_listeners_draining", "envoy_listener_manager_total_listeners_draining")
	return m
}

// activeListener is one LDS listener being served.
type activeListener struct {
	name    string
	res     *xdsclient.Resource
	l       *listener.Listener
	sock    *socket // nil for bind_to_port=false listeners (reached by hand-off only)
	feed    *feed
	inbound bool
	routes  []string // RDS names it serves, for warming
	retired bool     // draining already (guarded by Manager.mu)
}

// Lookup finds the serving listener for a use_original_dst hand-off to dst, or nil.
func (m *Manager) Lookup(dst netip.AddrPort) *listener.Listener { return m.registry.Lookup(dst) }

// Drained reports whether every listener was drained (shutdown or /drain_listeners).
func (m *Manager) Drained() bool { return m.allDrained.Load() }

// WarmingCount returns the number of listeners waiting for their routes.
func (m *Manager) WarmingCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.warming)
}

// updateGauges refreshes the serving and warming gauges. mu is held.
func (m *Manager) updateGauges() {
	m.gauges.active.Set(int64(len(m.listeners)))
	m.gauges.warming.Set(int64(len(m.warming)))
}

// handoffGrace is how long a replaced listener keeps its accept path open after the socket's
// connections go to its successor, so that a connection it accepted a moment earlier is tracked
// before the drain starts (a draining listener refuses untracked connections).
const handoffGrace = 250 * time.Millisecond

// isInbound reports whether a listener carries inbound traffic (for /drain_listeners?inboundonly).
func isInbound(l *listenerv3.Listener) bool {
	return l.GetTrafficDirection() == corev3.TrafficDirection_INBOUND || l.GetName() == vocab.VirtualInbound
}

// Apply compiles the changed listeners of an LDS update, binds the new addresses, then switches:
// new listeners start accepting, changed ones take over their predecessor's socket (no
// connection is refused), and replaced or removed ones drain. Any compile or bind failure
// rejects the whole update before anything changes.
//
// As in Envoy, a new or changed listener warms first: it starts serving only when the RDS route
// configurations it names are in force (Options.RoutesReady) or after WarmingTimeout; until then
// its predecessor, if any, keeps serving.
func (m *Manager) Apply(set map[string]*xdsclient.Resource) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	// The current listener of each name, serving or (newer) warming, and what it was built from.
	cur := map[string]*activeListener{}
	accepted := map[string]*xdsclient.Resource{}
	for _, m := range []map[string]*activeListener{m.listeners, m.warming} {
		for name, al := range m {
			cur[name], accepted[name] = al, al.res
		}
	}
	next, compiled, err := xdsclient.CompileSet("listener", set, accepted, cur,
		func(name string, lr *listenerv3.Listener) (*activeListener, error) {
			l, routes, err := m.opts.Compile(lr)
			if err != nil {
				return nil, err
			}
			return &activeListener{name: name, res: set[name], l: l, inbound: isInbound(lr), routes: routes}, nil
		})
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	keep := map[string]*activeListener{} // unchanged, by name (serving or warming)
	byAddr := map[netip.AddrPort]string{}
	for _, name := range slices.Sorted(maps.Keys(next)) {
		al := next[name]
		if cur[name] == al {
			keep[name] = al
		}
		if al.l.BindToPort() {
			if other, dup := byAddr[al.l.Address()]; dup {
				errs = append(errs, fmt.Errorf("listener %q: address %s already used by listener %q", name, al.l.Address(), other))
			}
			byAddr[al.l.Address()] = name
		}
	}
	// Bind sockets for addresses no current listener holds.
	held := map[netip.AddrPort]*socket{}
	for _, m := range []map[string]*activeListener{m.listeners, m.warming} {
		for _, al := range m {
			if al.sock != nil {
				held[al.sock.addr] = al.sock
			}
		}
	}
	var bound []*socket
	if len(errs) == 0 {
		for _, al := range compiled {
			if !al.l.BindToPort() {
				continue
			}
			if s := held[al.l.Address()]; s != nil {
				al.sock = s
				continue
			}
			ln, err := al.l.Listen(context.Background())
			if err != nil {
				errs = append(errs, fmt.Errorf("listener %q: %w", al.name, err))
				continue
			}
			al.sock = newSocket(ln, al.l.Address(), m.log)
			bound = append(bound, al.sock)
		}
	}
	if len(errs) > 0 {
		for _, s := range bound {
			s.close()
		}
		for _, al := range compiled {
			al.l.Close()
		}
		return errors.Join(errs...)
	}

	// Commit. Warming listeners that were replaced or removed never served: close them.
	for name, w := range m.warming {
		if keep[name] != w {
			delete(m.warming, name)
			m.closeUnused(w)
		}
	}
	for _, al := range compiled {
		if m.warm(al) {
			m.activate(al)
			continue
		}
		m.warming[al.name] = al
		m.log.Info("listener warming", "listener", al.name, "routes", al.routes)
		time.AfterFunc(WarmingTimeout, func() { m.warmingExpired(al) })
	}
	// Serving listeners that were removed drain now (changed ones drain when their successor
	// activates). This runs after the new listeners took their sockets, so a socket moving to a
	// listener of another name stays open.
	for name, al := range m.listeners {
		if _, ok := set[name]; !ok {
			delete(m.listeners, name)
			m.retireListener(al, al.feed, m.socketInUse(al.sock))
		}
	}
	m.updateRegistry()

	m.updateGauges()
	return nil
}

// WarmingTimeout is how long a listener waits for its route configurations before it serves
// anyway (Envoy's initial_fetch_timeout default).
const WarmingTimeout = 15 * time.Second

// warm reports whether every route configuration al names is in force.
func (m *Manager) warm(al *activeListener) bool { return m.opts.RoutesReady(al.routes) }

// ActivateWarm starts the warming listeners whose routes have arrived; called after RDS.
func (m *Manager) ActivateWarm() {
	m.mu.Lock()
	defer m.mu.Unlock()
	changed := false
	for name, al := range m.warming {
		if m.warm(al) {
			delete(m.warming, name)
			m.activate(al)
			changed = true
		}
	}
	if changed {
		m.updateRegistry()
		m.updateGauges()
	}
}

// warmingExpired activates al if it is still warming after warmingTimeout.
func (m *Manager) warmingExpired(al *activeListener) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.warming[al.name] != al {
		return
	}
	m.log.Warn("listener warming timed out; serving without its routes", "listener", al.name, "routes", al.routes)
	delete(m.warming, al.name)
	m.activate(al)
	m.updateRegistry()
	m.updateGauges()
}

// activate makes al the serving listener of its name and drains its predecessor. lmu is held.
func (m *Manager) activate(al *activeListener) {
	prev := m.listeners[al.name]
	m.listeners[al.name] = al
	m.start(al)
	if prev != nil {
		m.retireListener(prev, prev.feed, m.socketInUse(prev.sock))
	}
}

// socketInUse reports whether a serving or warming listener holds s. lmu is held.
func (m *Manager) socketInUse(s *socket) bool {
	if s == nil {
		return false
	}
	for _, m := range []map[string]*activeListener{m.listeners, m.warming} {
		for _, al := range m {
			if al.sock == s {
				return true
			}
		}
	}
	return false
}

// closeUnused closes a listener that never served, and its socket unless another listener holds
// it. lmu is held.
func (m *Manager) closeUnused(al *activeListener) {
	if al.sock != nil && !m.socketInUse(al.sock) {
		al.sock.close()
	}
	al.l.Close()
}

// updateRegistry publishes the serving listeners for use_original_dst hand-off. lmu is held.
func (m *Manager) updateRegistry() {
	all := make([]*listener.Listener, 0, len(m.listeners))
	for _, al := range m.listeners {
		all = append(all, al.l)
	}
	m.registry.Set(all)
}

// start serves a newly compiled listener: on its socket (taking the socket's connections from
// now on) or, for bind_to_port=false, only through hand-off.
func (m *Manager) start(al *activeListener) {
	if al.sock == nil {
		return
	}
	if m.allDrained.Load() || (al.inbound && m.inboundDrained.Load()) {
		return // drained by /drain_listeners or shutdown: stay closed
	}
	f := al.sock.newFeed()
	al.feed = f
	go func() {
		if err := al.l.Serve(f); err != nil && !errors.Is(err, listener.ErrClosed) {
			m.log.Error("listener stopped", "listener", al.name, "error", err)
		}
	}()
	al.sock.switchTo(f)
	al.sock.startOnce.Do(func() { go al.sock.acceptLoop() })
	m.log.Info("listener serving", "listener", al.name, "address", al.sock.addr.String())
}

// retireListener drains a replaced or removed listener (once; lmu is held). keepSocket is true when a successor
// serves the same socket; otherwise the socket is closed first so new connections are refused.
func (m *Manager) retireListener(al *activeListener, f *feed, keepSocket bool) {
	if al.sock != nil && !keepSocket {
		al.sock.close()
	}
	if al.retired {
		return
	}
	al.retired = true
	m.draining.Add(1)
	m.gauges.draining.Inc()
	go func() {
		defer m.draining.Done()
		defer m.gauges.draining.Dec()
		if f != nil {
			time.Sleep(handoffGrace)
			f.Close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), m.opts.DrainDuration)
		defer cancel()
		if err := al.l.Drain(ctx); err != nil {
			m.log.Warn("listener drain cut connections", "listener", al.name, "error", err)
		} else {
			m.log.Info("listener drained", "listener", al.name)
		}
	}()
}

// DrainAll stops every listener (or only inbound ones) from accepting and drains them: open
// connections get Options.DrainDuration to finish.
func (m *Manager) DrainAll(inboundOnly bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if inboundOnly {
		m.inboundDrained.Store(true)
	} else {
		m.allDrained.Store(true)
	}
	for _, al := range m.listeners {
		if inboundOnly && !al.inbound {
			continue
		}
		if al.sock != nil {
			al.sock.close()
		}
		// Listeners without a socket (bind_to_port=false, reached by hand-off) drain too.
		m.retireListener(al, al.feed, true) // the socket is already closed
		al.feed = nil
	}
}

// WaitDrained waits until draining listeners finished, at most d.
func (m *Manager) WaitDrained(d time.Duration) {
	done := make(chan struct{})
	go func() { m.draining.Wait(); close(done) }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

// Close closes every listener and socket at once (end of shutdown).
func (m *Manager) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, al := range m.warming {
		delete(m.warming, name)
		m.closeUnused(al)
	}
	for _, al := range m.listeners {
		if al.sock != nil {
			al.sock.close()
		}
		al.l.Close()
	}
}

// WarmingResources returns the LDS resources of listeners still warming (for config dumps).
func (m *Manager) WarmingResources() map[*xdsclient.Resource]bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[*xdsclient.Resource]bool, len(m.warming))
	for _, al := range m.warming {
		out[al.res] = true
	}
	return out
}
