package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"

	"github.com/strait-mesh/strait/proxy/l4"
	"github.com/strait-mesh/strait/proxy/l7"
	"github.com/strait-mesh/strait/proxy/listener"
	"github.com/strait-mesh/strait/proxy/xdsclient"
)

// activeListener is one LDS listener being served.
type activeListener struct {
	name    string
	res     *xdsclient.Resource
	l       *listener.Listener
	sock    *socket // nil for bind_to_port=false listeners (reached by hand-off only)
	feed    *feed
	inbound bool
	routes  []string // RDS names it serves, for warming
	retired bool     // draining already (guarded by Proxy.lmu)
}

// listenerEnv adapts the proxy to listener.Env.
type listenerEnv struct{ *Proxy }

// HTTP returns the l7 view of the proxy.
func (e listenerEnv) HTTP() l7.Env { return l7Env(e) }

// HTTPOptions returns the process-level l7 options.
func (e listenerEnv) HTTPOptions() l7.Options {
	return l7.Options{Stats: e.stats, Logger: e.log, Overload: e.overload}
}

// Admission returns the overload manager, which admits accepted connections.
func (e listenerEnv) Admission() listener.Admission { return e.overload }

// TCP returns the l4 view of the proxy.
func (e listenerEnv) TCP() l4.Env { return l4Env(e) }

// Handoff finds the serving listener for a use_original_dst hand-off.
func (e listenerEnv) Handoff(dst netip.AddrPort) *listener.Listener { return e.registry.Lookup(dst) }

var (
	_ listener.Env          = listenerEnv{}
	_ listener.AdmissionEnv = listenerEnv{}
)

// handoffGrace is how long a replaced listener keeps its accept path open after the socket's
// connections go to its successor, so that a connection it accepted a moment earlier is tracked
// before the drain starts (a draining listener refuses untracked connections).
const handoffGrace = 250 * time.Millisecond

// isInbound reports whether a listener carries inbound traffic (for /drain_listeners?inboundonly).
func isInbound(l *listenerv3.Listener) bool {
	return l.GetTrafficDirection() == corev3.TrafficDirection_INBOUND || l.GetName() == "virtualInbound"
}

// applyListeners compiles the changed listeners, binds the new addresses, then switches: new
// listeners start accepting, changed ones take over their predecessor's socket (no connection is
// refused), and replaced or removed ones drain. Any compile or bind failure rejects the whole
// update before anything changes.
//
// As in Envoy, a new or changed listener warms first: it starts serving only when the RDS route
// configurations it names have arrived (or after warmingTimeout); until then its predecessor, if
// any, keeps serving.
func (p *Proxy) applyListeners(set map[string]*xdsclient.Resource) error {
	p.lmu.Lock()
	defer p.lmu.Unlock()
	var compiled []*activeListener
	keep := map[string]*activeListener{} // unchanged, by name (serving or warming)
	var errs []error
	byAddr := map[netip.AddrPort]string{}
	for _, name := range sortedNames(set) {
		res := set[name]
		lr, ok := res.Message.(*listenerv3.Listener)
		if !ok {
			errs = append(errs, fmt.Errorf("listener %q: not a Listener", name))
			continue
		}
		cur := p.warming[name]
		if cur == nil {
			cur = p.listeners[name]
		}
		var al *activeListener
		if cur != nil && unchanged(cur.res, res) {
			al = cur
			keep[name] = cur
		} else {
			l, err := listener.Compile(lr, listenerEnv{p})
			if err != nil {
				errs = append(errs, named("listener", name, err))
				continue
			}
			l.SetMaxConnections(p.opts.MaxConnectionsPerListener)
			r := newRefs()
			r.collect(lr)
			al = &activeListener{name: name, res: res, l: l, inbound: isInbound(lr), routes: sortedKeys(r.routes)}
			compiled = append(compiled, al)
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
	for _, m := range []map[string]*activeListener{p.listeners, p.warming} {
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
			al.sock = newSocket(ln, al.l.Address(), p.log)
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
	for name, w := range p.warming {
		if keep[name] != w {
			delete(p.warming, name)
			p.closeUnused(w)
		}
	}
	rt := p.rt.Load()
	for _, al := range compiled {
		if p.warm(al, rt) {
			p.activate(al)
			continue
		}
		p.warming[al.name] = al
		p.log.Info("listener warming", "listener", al.name, "routes", al.routes)
		time.AfterFunc(warmingTimeout, func() { p.warmingExpired(al) })
	}
	// Serving listeners that were removed drain now (changed ones drain when their successor
	// activates). This runs after the new listeners took their sockets, so a socket moving to a
	// listener of another name stays open.
	for name, al := range p.listeners {
		if _, ok := set[name]; !ok {
			delete(p.listeners, name)
			p.retireListener(al, al.feed, p.socketInUse(al.sock))
		}
	}
	p.updateRegistry()

	next := rt.clone()
	next.Resources[xdsclient.ListenerType] = set
	p.publish(next)
	p.subscribeRoutes(set)
	p.subscribeSecrets(next)
	p.markReceived(xdsclient.ListenerType)
	return nil
}

// warmingTimeout is how long a listener waits for its route configurations before it serves
// anyway (Envoy's initial_fetch_timeout default).
const warmingTimeout = 15 * time.Second

// warm reports whether every route configuration al names is in rt.
func (p *Proxy) warm(al *activeListener, rt *Runtime) bool {
	for _, r := range al.routes {
		if rt.Routes[r] == nil {
			return false
		}
	}
	return true
}

// activateWarm starts the warming listeners whose routes have arrived; called after RDS.
func (p *Proxy) activateWarm() {
	p.lmu.Lock()
	defer p.lmu.Unlock()
	rt := p.rt.Load()
	changed := false
	for name, al := range p.warming {
		if p.warm(al, rt) {
			delete(p.warming, name)
			p.activate(al)
			changed = true
		}
	}
	if changed {
		p.updateRegistry()
	}
}

// warmingExpired activates al if it is still warming after warmingTimeout.
func (p *Proxy) warmingExpired(al *activeListener) {
	p.lmu.Lock()
	defer p.lmu.Unlock()
	if p.warming[al.name] != al {
		return
	}
	p.log.Warn("listener warming timed out; serving without its routes", "listener", al.name, "routes", al.routes)
	delete(p.warming, al.name)
	p.activate(al)
	p.updateRegistry()
	p.gauges.listenersActive.Set(int64(len(p.listeners)))
	p.gauges.listenersWarming.Set(int64(len(p.warming)))
}

// activate makes al the serving listener of its name and drains its predecessor. lmu is held.
func (p *Proxy) activate(al *activeListener) {
	prev := p.listeners[al.name]
	p.listeners[al.name] = al
	p.start(al)
	if prev != nil {
		p.retireListener(prev, prev.feed, p.socketInUse(prev.sock))
	}
}

// socketInUse reports whether a serving or warming listener holds s. lmu is held.
func (p *Proxy) socketInUse(s *socket) bool {
	if s == nil {
		return false
	}
	for _, m := range []map[string]*activeListener{p.listeners, p.warming} {
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
func (p *Proxy) closeUnused(al *activeListener) {
	if al.sock != nil && !p.socketInUse(al.sock) {
		al.sock.close()
	}
	al.l.Close()
}

// updateRegistry publishes the serving listeners for use_original_dst hand-off. lmu is held.
func (p *Proxy) updateRegistry() {
	all := make([]*listener.Listener, 0, len(p.listeners))
	for _, al := range p.listeners {
		all = append(all, al.l)
	}
	p.registry.Set(all)
}

// start serves a newly compiled listener: on its socket (taking the socket's connections from
// now on) or, for bind_to_port=false, only through hand-off.
func (p *Proxy) start(al *activeListener) {
	if al.sock == nil {
		return
	}
	if p.allDrained.Load() || (al.inbound && p.inboundDrained.Load()) {
		return // drained by /drain_listeners or shutdown: stay closed
	}
	f := al.sock.newFeed()
	al.feed = f
	go func() {
		if err := al.l.Serve(f); err != nil && !errors.Is(err, listener.ErrClosed) {
			p.log.Error("listener stopped", "listener", al.name, "error", err)
		}
	}()
	al.sock.switchTo(f)
	al.sock.startOnce.Do(func() { go al.sock.acceptLoop() })
	p.log.Info("listener serving", "listener", al.name, "address", al.sock.addr.String())
}

// retireListener drains a replaced or removed listener (once; lmu is held). keepSocket is true when a successor
// serves the same socket; otherwise the socket is closed first so new connections are refused.
func (p *Proxy) retireListener(al *activeListener, f *feed, keepSocket bool) {
	if al.sock != nil && !keepSocket {
		al.sock.close()
	}
	if al.retired {
		return
	}
	al.retired = true
	p.draining.Add(1)
	p.gauges.listenersDraining.Inc()
	go func() {
		defer p.draining.Done()
		defer p.gauges.listenersDraining.Dec()
		if f != nil {
			time.Sleep(handoffGrace)
			f.Close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), p.opts.DrainDuration)
		defer cancel()
		if err := al.l.Drain(ctx); err != nil {
			p.log.Warn("listener drain cut connections", "listener", al.name, "error", err)
		} else {
			p.log.Info("listener drained", "listener", al.name)
		}
	}()
}

// drainAll stops every listener (or only inbound ones) from accepting and drains them: open
// connections get Options.DrainDuration to finish.
func (p *Proxy) drainAll(inboundOnly bool) {
	p.lmu.Lock()
	defer p.lmu.Unlock()
	if inboundOnly {
		p.inboundDrained.Store(true)
	} else {
		p.allDrained.Store(true)
	}
	for _, al := range p.listeners {
		if inboundOnly && !al.inbound {
			continue
		}
		if al.sock != nil {
			al.sock.close()
		}
		// Listeners without a socket (bind_to_port=false, reached by hand-off) drain too.
		p.retireListener(al, al.feed, true) // the socket is already closed
		al.feed = nil
	}
}

// waitDrained waits until draining listeners finished, at most d.
func (p *Proxy) waitDrained(d time.Duration) {
	done := make(chan struct{})
	go func() { p.draining.Wait(); close(done) }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

// closeListeners closes every listener and socket at once (end of shutdown).
func (p *Proxy) closeListeners() {
	p.lmu.Lock()
	defer p.lmu.Unlock()
	for name, al := range p.warming {
		delete(p.warming, name)
		p.closeUnused(al)
	}
	for _, al := range p.listeners {
		if al.sock != nil {
			al.sock.close()
		}
		al.l.Close()
	}
}

// warmingResources returns the LDS resources of listeners still warming (for config dumps).
func (p *Proxy) warmingResources() map[*xdsclient.Resource]bool {
	p.lmu.Lock()
	defer p.lmu.Unlock()
	out := make(map[*xdsclient.Resource]bool, len(p.warming))
	for _, al := range p.warming {
		out[al.res] = true
	}
	return out
}
