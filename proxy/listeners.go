package proxy

import (
	"net/netip"

	"github.com/strait-mesh/strait/proxy/l4"
	"github.com/strait-mesh/strait/proxy/l7"
	"github.com/strait-mesh/strait/proxy/lds"
	"github.com/strait-mesh/strait/proxy/listener"
	"github.com/strait-mesh/strait/proxy/xdsclient"
	listenerv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/listener/v3"
)

// listenerEnv adapts the proxy to listener.Env.
type listenerEnv struct{ *Proxy }

// HTTP returns the l7 view of the proxy.
func (e listenerEnv) HTTP() l7.Env { return l7Env(e) }

// HTTPOptions returns the process-level l7 options.
func (e listenerEnv) HTTPOptions() l7.Options {
	n := e.opts.Node
	return l7.Options{Stats: e.stats, Logger: e.log, Overload: e.overload, Telemetry: e.telemetry,
		Tracing: l7.TracingOptions{NodeID: n.ID().String(), LocalCluster: n.Cluster, LocalAddress: n.IP}}
}

// Admission returns the overload manager, which admits accepted connections.
func (e listenerEnv) Admission() listener.Admission { return e.overload }

// TCP returns the l4 view of the proxy.
func (e listenerEnv) TCP() l4.Env { return l4Env(e) }

// Handoff finds the serving listener for a use_original_dst hand-off.
func (e listenerEnv) Handoff(dst netip.AddrPort) *listener.Listener { return e.lds.Lookup(dst) }

var (
	_ listener.Env          = listenerEnv{}
	_ listener.AdmissionEnv = listenerEnv{}
)

// newListeners returns the proxy's listener manager: it compiles listeners against the proxy
// (listenerEnv) and warms them until their route configurations are in the current runtime.
func (p *Proxy) newListeners() *lds.Manager {
	return lds.New(lds.Options{
		Compile: func(lr *listenerv3.Listener) (*listener.Listener, []string, error) {
			l, err := listener.Compile(lr, listenerEnv{p})
			if err != nil {
				return nil, nil, err
			}
			l.SetMaxConnections(p.opts.MaxConnectionsPerListener)
			r := newRefs()
			r.collect(lr)
			return l, sortedKeys(r.routes), nil
		},
		RoutesReady: func(routes []string) bool {
			rt := p.rt.Load()
			for _, r := range routes {
				if rt.Routes[r] == nil {
					return false
				}
			}
			return true
		},
		DrainDuration: p.opts.DrainDuration,
		Stats:         p.stats,
		Logger:        p.log,
	})
}

// applyListeners hands an LDS update to the listener manager and, once it is accepted, records
// it in the runtime and subscribes to the route configurations and secrets it names.
func (p *Proxy) applyListeners(set map[string]*xdsclient.Resource) error {
	if err := p.lds.Apply(set); err != nil {
		return err
	}
	rt := p.rt.Load().clone()
	rt.Resources[xdsclient.ListenerType] = set
	p.publish(rt)
	p.subscribeRoutes(set)
	p.subscribeSecrets(rt)
	p.markReceived(xdsclient.ListenerType)
	return nil
}
