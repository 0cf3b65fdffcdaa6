package translate

import (
	"errors"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/translate/listener"
	"github.com/strait-mesh/strait/controlplane/translate/route"
)

// proxylessOut is the shared part of a proxyless client's output.
type proxylessOut struct {
	listeners []*listenerv3.Listener
	routes    []*routev3.RouteConfiguration
	err       error
	reports   error
}

// proxyless generates what gRPC's xDS client asks for: API listeners and route configurations
// named "host:port" for every reachable service port, EDS clusters (ROUND_ROBIN by default, or
// RING_HASH) and their endpoints. A gRPC client asks for the listener of the target it dials; the
// ADS server answers with the subset it names.
func (g *generator) proxyless(snap *mesh.Snapshot, p *Proxy) (Resources, error) {
	w := p.Workload()
	sc := snap.Scope(w)
	set := g.outboundClusters(snap, sc, w, true)
	g.report(p, set.errs)
	vss := sc.VirtualServices(snap)
	key := shareKey{kind: "proxyless", scope: sc.Key, drSig: snap.DestinationRuleSignature(w), proxyless: true}
	if scopeUsesSourceLabels(snap, sc, vss) {
		key.labels = labelsKey(p.Labels)
	}
	out := proxylessSlot.Get(snap.Cache(), key, func() *proxylessOut {
		out := &proxylessOut{listeners: listener.BuildProxyless(sc)}
		b, err := route.New(g.routeInputs(snap, sc, w, false, vss, nil))
		if err != nil {
			out.err = err
			return out
		}
		var errs []error
		for _, l := range out.listeners {
			rc, err := b.Proxyless(l.GetName())
			if err != nil {
				errs = append(errs, err)
			}
			if rc != nil {
				out.routes = append(out.routes, rc)
			}
		}
		out.reports = errors.Join(errs...)
		return out
	})
	if out.err != nil {
		return nil, out.err
	}
	g.report(p, out.reports)
	res := newResources()
	res[resource.ClusterType] = set.clusterRes
	res[resource.EndpointType] = g.loadAssignments(snap, set, p)
	res[resource.ListenerType] = appendAll(nil, out.listeners)
	res[resource.RouteType] = appendAll(nil, out.routes)
	return res, nil
}
