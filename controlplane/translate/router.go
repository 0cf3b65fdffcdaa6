package translate

import (
	"errors"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/translate/cluster"
	"github.com/strait-mesh/strait/controlplane/translate/listener"
	"github.com/strait-mesh/strait/controlplane/translate/route"
)

// router generates a gateway's resources: a listener per Gateway server port, route
// configurations "http.PORT" and one per TLS-terminating server, clusters and endpoints for
// every service visible from the gateway's namespace, and the SDS Secrets of the credentials its
// listeners and clusters name (secrets.go).
func (g *generator) router(snap *mesh.Snapshot, p *Proxy) (Resources, error) {
	w := p.Workload()
	sc := snap.DefaultScope(p.Namespace)
	gateways := snap.Gateways(w)
	set := g.outboundClusters(snap, sc, w, false)
	g.report(p, set.errs)

	// VirtualServices bound to any selected gateway and exported to the gateway's namespace.
	var vss []*config.Object
	seen := map[*config.Object]bool{}
	for _, gw := range gateways {
		for _, o := range snap.VirtualServices(p.Namespace, mesh.GatewayName(gw)) {
			if !seen[o] {
				seen[o] = true
				vss = append(vss, o)
			}
		}
	}
	b, err := route.New(g.routeInputs(snap, sc, w, true, vss, gateways))
	if err != nil {
		return nil, err
	}
	var reports []error
	dropped := map[string]bool{} // chains (and so route configurations) of conflicting servers
	tcpRoutes := func(gw *config.Object, s *networking.Server) ([]route.L4Route, error) {
		var rs []route.L4Route
		var err error
		if s.GetTls() != nil && (s.GetTls().GetMode() == networking.ServerTLSSettings_PASSTHROUGH) {
			rs, err = b.TLSRoutes("", s.GetPort().GetNumber(), mesh.GatewayName(gw))
		} else {
			rs, err = b.TCPRoutes("", s.GetPort().GetNumber(), mesh.GatewayName(gw))
		}
		if err != nil {
			reports = append(reports, err)
		}
		return rs, nil
	}
	az := g.authorization(snap, w)
	for _, err := range az.errs {
		g.report(p, err)
	}
	listeners, err := listener.BuildGateway(listener.Gateway{Gateways: gateways, TCPRoutes: tcpRoutes,
		TrustedProxies: snap.Mesh.GetDefaultConfig().GetGatewayTopology().GetNumTrustedProxies(),
		HTTPFilters:    az.filters.HTTP, NetworkFilters: az.filters.TCP,
		PathNormalization: snap.Mesh.GetPathNormalization().GetNormalization(),
		AccessLog:         listener.AccessLogFromMesh(snap.Mesh),
		Telemetry:         g.telemetry(snap, p, true).Client,
		Report: func(err error) {
			reports = append(reports, err)
			var ce *listener.ConflictError
			if errors.As(err, &ce) {
				dropped[ce.Chain] = true
			}
		}})
	if err != nil {
		return nil, err
	}
	// Route configurations: one per plaintext HTTP port, one per TLS-terminating HTTP server.
	var routes []*routev3.RouteConfiguration
	httpPorts := map[uint32]bool{}
	for _, gw := range gateways {
		for _, s := range gw.Spec.(*networking.Gateway).GetServers() {
			rc, err := gatewayRoute(b, gw, s, httpPorts)
			if err != nil {
				reports = append(reports, err)
			}
			if rc != nil && !dropped[rc.GetName()] {
				routes = append(routes, rc)
			}
		}
	}
	// SDS: the credentials (credentialName) the listeners and clusters name, from Secrets.
	secrets, err := g.routerSecrets(snap, p, gateways, listeners, set.clusterRes)
	reports = append(reports, err)
	g.report(p, errors.Join(reports...))

	res := newResources()
	clusters := make([]types.Resource, 0, len(set.clusters)+1)
	clusters = append(clusters, set.clusterRes...)
	clusters = append(clusters, cluster.BlackHoleCluster(snap.Mesh))
	res[resource.ClusterType] = clusters
	res[resource.EndpointType] = g.loadAssignments(snap, set, p)
	res[resource.ListenerType] = appendAll(nil, listeners)
	res[resource.RouteType] = appendAll(nil, routes)
	res[resource.SecretType] = secrets
	if p.WorkloadTable {
		ecds, err := g.extensionConfigs(snap, p, nil)
		if err != nil {
			return nil, err
		}
		res[resource.ExtensionConfigType] = ecds
	}
	return res, nil
}

// gatewayRoute returns the route configuration a Gateway server needs, or nil (TCP, TLS
// passthrough, or an HTTP port already built).
func gatewayRoute(b *route.Builder, gw *config.Object, s *networking.Server, httpPorts map[uint32]bool) (*routev3.RouteConfiguration, error) {
	mode := s.GetTls().GetMode()
	terminates := s.GetTls() != nil && mode != networking.ServerTLSSettings_PASSTHROUGH && mode != networking.ServerTLSSettings_AUTO_PASSTHROUGH
	switch s.GetPort().GetProtocol() {
	case "HTTP", "HTTP2", "GRPC", "GRPC-WEB", "http", "http2", "grpc", "grpc-web":
		if !terminates {
			if httpPorts[s.GetPort().GetNumber()] {
				return nil, nil
			}
			httpPorts[s.GetPort().GetNumber()] = true
			return b.Gateway(s.GetPort().GetNumber())
		}
		return b.GatewayTLS(gw, s)
	case "HTTPS", "https":
		if terminates {
			return b.GatewayTLS(gw, s)
		}
	}
	return nil, nil
}
