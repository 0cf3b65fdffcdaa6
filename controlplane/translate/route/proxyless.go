package route

import (
	"errors"
	"fmt"
	"net"
	"strconv"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/internal/vocab"
)

// Proxyless builds the route configuration a proxyless gRPC client (xds:///host:port) asks for:
// named "host:port", one virtual host of the same name with domains host and host:port, routed by
// the mesh VirtualService that routes the service (as for Outbound), else one default route to
// outbound|port||host. Only what gRPC's xDS client implements is emitted: path and header
// matching, weighted clusters, retries on gRPC status conditions, timeouts (as
// max_stream_duration, which gRPC reads), fault injection and header hash policies. A
// VirtualService that needs anything else (redirect, rewrite, mirror, CORS, header operations,
// query/scheme/method/authority matches, HTTP retry conditions, delegation) is an error; the
// configuration then carries the default route.
func (b *Builder) Proxyless(target string) (*routev3.RouteConfiguration, error) {
	host, ps, err := net.SplitHostPort(target)
	if err != nil {
		return nil, fmt.Errorf("proxyless route %q: %w", target, err)
	}
	p, err := strconv.ParseUint(ps, 10, 32)
	if err != nil || p == 0 || p > 65535 {
		return nil, fmt.Errorf("proxyless route %q: bad port %q", target, ps)
	}
	port := uint32(p)
	svc := b.byHost[host]
	if svc == nil {
		return nil, fmt.Errorf("proxyless route %q: no visible service %s", target, host)
	}
	if _, ok := servicePort(svc, port); !ok {
		return nil, fmt.Errorf("proxyless route %q: service %s has no port %d", target, host, port)
	}
	var errs []error
	var routes []*routev3.Route
	if v := b.selectVirtualService(host, MeshGateway); v != nil {
		rs, err := b.httpRoutes(v, port, MeshGateway, true, false, nil)
		if err != nil {
			errs = append(errs, objectErr(v.obj, err, "VirtualService not applied for proxyless gRPC"))
		} else {
			routes = rs
		}
	}
	if len(routes) == 0 {
		action := &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: vocab.OutboundClusterName(port, "", host)}}
		if b.in.DestinationRule != nil {
			for _, h := range HashPolicy(b.in.DestinationRule(host), "", port) {
				if h.GetHeader() != nil {
					action.HashPolicy = append(action.HashPolicy, h)
				}
			}
		}
		routes = []*routev3.Route{{
			Name:   DefaultRouteName,
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: action},
		}}
	}
	return &routev3.RouteConfiguration{
		Name: target,
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    target,
			Domains: []string{host, target},
			Routes:  routes,
		}},
	}, errors.Join(errs...)
}

// checkProxylessMatch rejects match conditions gRPC's xDS client does not evaluate.
func checkProxylessMatch(m *networking.HTTPMatchRequest) error {
	switch {
	case m == nil:
		return nil
	case len(m.QueryParams) > 0:
		return errf("queryParams", "not supported by proxyless gRPC clients")
	case m.Scheme != nil:
		return errf("scheme", "not supported by proxyless gRPC clients")
	case m.Method != nil:
		return errf("method", "not supported by proxyless gRPC clients (always POST)")
	case m.Authority != nil:
		return errf("authority", "not supported by proxyless gRPC clients")
	}
	return nil
}
