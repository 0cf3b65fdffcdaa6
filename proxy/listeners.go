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
}

// listenerEnv adapts the proxy to listener.Env.
type listenerEnv struct{ *Proxy }

func (e listenerEnv) HTTP() l7.Env { return l7Env(e) }

func (e listenerEnv) HTTPOptions() l7.Options {
	return l7.Options{Stats: e.stats, Logger: e.log}
}

func (e listenerEnv) TCP() l4.Env { return l4Env(e) }

func (e listenerEnv) Handoff(dst netip.AddrPort) *listener.Listener { return e.registry.Lookup(dst) }

var _ listener.Env = listenerEnv{}

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
func (p *Proxy) applyListeners(set map[string]*xdsclient.Resource) error {
	p.lmu.Lock()
	defer p.lmu.Unlock()
	old := p.listeners
	next := make(map[string]*activeListener, len(set))
	var compiled []*activeListener
	var errs []error
	byAddr := map[netip.AddrPort]string{}
	for _, name := range sortedNames(set) {
		res := set[name]
		lr, ok := res.Message.(*listenerv3.Listener)
		if !ok {
			errs = append(errs, fmt.Errorf("listener %q: not a Listener", name))
			continue
		}
		if prev := old[name]; prev != nil && unchanged(prev.res, res) {
			next[name] = prev
		} else {
			l, err := listener.Compile(lr, listenerEnv{p})
			if err != nil {
				errs = append(errs, fmt.Errorf("listener %q: %w", name, err))
				continue
			}
			al := &activeListener{name: name, res: res, l: l, inbound: isInbound(lr)}
			compiled = append(compiled, al)
			next[name] = al
		}
		if a := next[name].l; a.BindToPort() {
			if other, dup := byAddr[a.Address()]; dup {
				errs = append(errs, fmt.Errorf("listener %q: address %s already used by listener %q", name, a.Address(), other))
			}
			byAddr[a.Address()] = name
		}
	}
	// Bind sockets for addresses no current listener holds.
	held := map[netip.AddrPort]*socket{}
	for _, al := range old {
		if al.sock != nil {
			held[al.sock.addr] = al.sock
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
			s := newSocket(ln, al.l.Address(), p.log)
			al.sock = s
			bound = append(bound, s)
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

	// Commit: hand-off registry first, so new listeners are reachable by use_original_dst.
	all := make([]*listener.Listener, 0, len(next))
	for _, al := range next {
		all = append(all, al.l)
	}
	p.registry.Set(all)
	inUse := map[*socket]bool{}
	for _, al := range next {
		if al.sock != nil {
			inUse[al.sock] = true
		}
	}
	for _, al := range compiled {
		p.start(al)
	}
	for name, prev := range old {
		if next[name] == prev {
			continue
		}
		keep := prev.sock != nil && inUse[prev.sock]
		p.retireListener(prev, prev.feed, keep)
	}
	for _, s := range bound {
		go s.acceptLoop()
	}
	p.listeners = next

	rt := p.rt.Load().clone()
	rt.Resources[xdsclient.ListenerType] = set
	p.publish(rt)
	p.subscribeRoutes(set)
	p.subscribeSecrets(rt)
	p.markReceived(xdsclient.ListenerType)
	return nil
}

// start serves a newly compiled listener: on its socket (taking the socket's connections from
// now on) or, for bind_to_port=false, only through hand-off.
func (p *Proxy) start(al *activeListener) {
	if al.sock == nil {
		return
	}
	if p.drainingAll.Load() || (al.inbound && p.inboundDrained.Load()) {
		return // drained by /drain_listeners or shutdown: stay closed
	}
	al.feed = al.sock.newFeed()
	go func() {
		if err := al.l.Serve(al.feed); err != nil && !errors.Is(err, listener.ErrClosed) {
			p.log.Error("listener stopped", "listener", al.name, "error", err)
		}
	}()
	al.sock.switchTo(al.feed)
	p.log.Info("listener serving", "listener", al.name, "address", al.sock.addr.String())
}

// retireListener drains a replaced or removed listener. keepSocket is true when a successor
// serves the same socket; otherwise the socket is closed first so new connections are refused.
func (p *Proxy) retireListener(al *activeListener, f *feed, keepSocket bool) {
	if al.sock != nil && !keepSocket {
		al.sock.close()
	}
	p.draining.Add(1)
	go func() {
		defer p.draining.Done()
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
	}
	for _, al := range p.listeners {
		if inboundOnly && !al.inbound || al.feed == nil {
			continue
		}
		al.sock.close()
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
	for _, al := range p.listeners {
		if al.sock != nil {
			al.sock.close()
		}
		al.l.Close()
	}
}
