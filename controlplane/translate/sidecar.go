package translate

import (
	"errors"
	"fmt"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/registry"
	"github.com/strait-mesh/strait/controlplane/translate/cluster"
	"github.com/strait-mesh/strait/controlplane/translate/listener"
	"github.com/strait-mesh/strait/controlplane/translate/route"
)

// sidecarOutbound is the proxy-independent part of a sidecar's output: listeners and route
// configurations of its scope.
type sidecarOutbound struct {
	listeners   []*listenerv3.Listener
	routes      []*routev3.RouteConfiguration
	listenerRes []types.Resource // the same, type-erased once
	routeRes    []types.Resource
	err         error // fatal
	reports     error // per-object problems
}

// sidecar generates a sidecar's resources: outbound clusters/endpoints/listeners/routes of its
// Sidecar scope (shared), plus its inbound listeners and clusters.
func (g *generator) sidecar(snap *mesh.Snapshot, p *Proxy) (Resources, error) {
	w := p.Workload()
	sc := snap.Scope(w)
	explicit := p.InterceptMode == "NONE"
	set := outboundClusters(snap, sc, w, false)
	g.report(p, set.errs)

	vss := sc.VirtualServices(snap)
	key := shareKey{kind: "sidecar-out", scope: sc.Key, drSig: snap.DestinationRuleSignature(w), explicit: explicit}
	if usesSourceLabels(vss) {
		key.labels = labelsKey(p.Labels)
	}
	out := snap.CacheValue(key, func() any { return g.sidecarOutbound(snap, sc, w, explicit, vss) }).(*sidecarOutbound)
	if out.err != nil {
		return nil, out.err
	}
	g.report(p, out.reports)

	var sidecarSpec *networking.Sidecar
	if sc.Sidecar != nil {
		sidecarSpec = sc.Sidecar.Spec.(*networking.Sidecar)
		if sidecarSpec.GetOutboundTrafficPolicy().GetEgressProxy() != nil {
			g.report(p, fmt.Errorf("Sidecar %s/%s: outboundTrafficPolicy.egressProxy is not supported: unknown destinations are reached directly (PassthroughCluster)",
				sc.Sidecar.Namespace, sc.Sidecar.Name))
		}
	}
	inPorts, err := listener.InboundPorts(snap, sidecarSpec, listener.Instance{IPs: p.IPs, Explicit: explicit})
	if err != nil {
		return nil, err
	}
	inListeners, err := listener.BuildInbound(inPorts, explicit)
	if err != nil {
		return nil, err
	}

	res := newResources()
	clusters := make([]types.Resource, 0, len(set.clusters)+len(inPorts)+3)
	clusters = append(clusters, set.clusterRes...)
	clusters = append(clusters, cluster.BlackHoleCluster(snap.Mesh), cluster.PassthroughCluster(snap.Mesh))
	if !explicit {
		clusters = append(clusters, cluster.InboundPassthroughCluster(snap.Mesh))
	}
	var errs []error
	for _, ip := range inPorts {
		c, err := cluster.Inbound(ip.Port, ip.Endpoint, ip.TargetPort, ip.ConnectionPool, snap.Mesh)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		clusters = append(clusters, c)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	res[resource.ClusterType] = clusters
	res[resource.EndpointType] = loadAssignments(snap, set, p, key)
	res[resource.ListenerType] = appendAll(append(make([]types.Resource, 0, len(out.listenerRes)+len(inListeners)), out.listenerRes...), inListeners)
	res[resource.RouteType] = out.routeRes
	return res, nil
}

func (g *generator) sidecarOutbound(snap *mesh.Snapshot, sc *mesh.Scope, w mesh.Workload, explicit bool, vss []*config.Object) *sidecarOutbound {
	out := &sidecarOutbound{}
	b, err := route.New(g.routeInputs(snap, sc, w, false, vss, nil))
	if err != nil {
		out.err = err
		return out
	}
	var reports []error
	tcpRoutes := func(svc *registry.Service, port registry.Port) ([]route.L4Route, error) {
		var rs []route.L4Route
		var err error
		if port.Protocol.IsTLS() {
			rs, err = b.TLSRoutes(svc.Hostname, port.Number, mesh.GatewayMesh)
		} else {
			rs, err = b.TCPRoutes(svc.Hostname, port.Number, mesh.GatewayMesh)
		}
		if err != nil {
			reports = append(reports, err) // the VirtualService is left out; rs holds the rest
		}
		return rs, nil
	}
	out.listeners, out.err = listener.BuildOutbound(listener.Outbound{Snap: snap, Scope: sc, Workload: w, Explicit: explicit,
		TCPRoutes: tcpRoutes, Report: func(err error) { reports = append(reports, err) }})
	if out.err != nil {
		return out
	}
	routes, err := outboundRoutes(b, httpRoutePorts(sc))
	if err != nil {
		reports = append(reports, err)
	}
	out.routes = routes
	out.reports = errors.Join(reports...)
	out.listenerRes = appendAll(nil, out.listeners)
	out.routeRes = appendAll(nil, out.routes)
	return out
}
