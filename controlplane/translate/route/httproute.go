package route

import (
	"fmt"
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/structpb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/internal/vocab"
)

// routeCtx is the context the HTTP routes of one VirtualService are translated in.
type routeCtx struct {
	b *Builder
	// obj is the VirtualService the routes come from: the root, or the delegate for merged routes.
	obj *config.Object
	// rootNS is the root VirtualService's namespace, against which gateway names resolve.
	rootNS string
	// port is the port of the route configuration (listener or gateway server port).
	port uint32
	// gateway is MeshGateway for sidecars and proxyless clients, "namespace/name" for routers.
	gateway string
	// vsGateways are the root VirtualService's gateways, resolved.
	vsGateways []string
	// proxyless restricts the output to what gRPC's xDS client implements.
	proxyless bool
	// tls is true for the routes of a TLS-terminating gateway server (the scheme is https).
	tls bool
	// meta is the istio.config metadata of obj's routes, built once.
	meta *corev3.Metadata
	// reads, when not nil, records the lookups the translation makes (see Reads).
	reads *Reads
}

// httpRoutes translates the HTTP routes of v for one port and gateway into Envoy routes, in
// order, stopping after the first catch-all as Istio does (later routes could never match).
// Delegating routes are replaced by the delegate's routes merged under the root's match. tls
// tells that requests arrive over TLS (a terminating gateway server). reads, when not nil,
// records the lookups made.
func (b *Builder) httpRoutes(v *virtualService, port uint32, gateway string, proxyless, tls bool, reads *Reads) ([]*routev3.Route, error) {
	c := &routeCtx{b: b, obj: v.obj, rootNS: v.obj.Namespace, port: port, gateway: gateway, vsGateways: v.gateways, proxyless: proxyless, tls: tls, reads: reads}
	var out []*routev3.Route
	for i, r := range v.spec.Http {
		field := "http[" + strconv.Itoa(i) + "]"
		if r.Delegate != nil {
			routes, catchAll, err := c.delegatedRoutes(r, field)
			if err != nil {
				return nil, err
			}
			out = append(out, routes...)
			if catchAll {
				break
			}
			continue
		}
		routes, catchAll, err := c.translateHTTPRoute(r)
		if err != nil {
			return nil, atField(field, err)
		}
		out = append(out, routes...)
		if catchAll {
			break
		}
	}
	return out, nil
}

// translateHTTPRoute maps one HTTPRoute to one Envoy route per applicable match block (match
// blocks are ORed; Envoy's first-match order keeps the VirtualService's order). It reports whether
// one of the applicable blocks is a catch-all.
func (c *routeCtx) translateHTTPRoute(r *networking.HTTPRoute) ([]*routev3.Route, bool, error) {
	matches := r.Match
	if len(matches) == 0 {
		matches = []*networking.HTTPMatchRequest{nil}
	}
	var out []*routev3.Route
	catchAll := false
	for j, m := range matches {
		if m != nil && !c.matchApplies(m) {
			continue
		}
		rt, err := c.buildRoute(r, m, "match["+strconv.Itoa(j)+"]")
		if err != nil {
			return nil, false, err
		}
		out = append(out, rt)
		if isCatchAll(m) {
			catchAll = true
			break
		}
	}
	return out, catchAll, nil
}

// buildRoute builds the Envoy route for one HTTPRoute and one of its match blocks (nil: none).
// matchField is the match block's field path, for errors.
func (c *routeCtx) buildRoute(r *networking.HTTPRoute, m *networking.HTTPMatchRequest, matchField string) (*routev3.Route, error) {
	rm, err := translateMatch(m)
	if err != nil {
		return nil, atField(matchField, err)
	}
	if c.proxyless {
		if err := checkProxylessMatch(m); err != nil {
			return nil, atField(matchField, err)
		}
	}
	out := &routev3.Route{Name: routeName(r, m), Match: rm, Metadata: c.metadata()}
	if m.GetStatPrefix() != "" {
		out.StatPrefix = m.GetStatPrefix()
	}
	destOps, err := c.setAction(out, r, m)
	if err != nil {
		return nil, err
	}
	if err := c.applyPolicies(out, r, destOps); err != nil {
		return nil, err
	}
	if !c.proxyless {
		out.Decorator = &routev3.Decorator{Operation: operation(out, c.obj.Name, c.port)}
	}
	return out, nil
}

// operation is the tracing operation name of a route, as Istio names it: "host:port/path*" for a
// route to one cluster, "<VirtualService name>:port/path*" otherwise.
func operation(r *routev3.Route, vsName string, port uint32) string {
	path := "/*"
	switch ps := r.GetMatch().GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		path = ps.Prefix + "*"
	case *routev3.RouteMatch_Path:
		path = ps.Path
	case *routev3.RouteMatch_SafeRegex:
		path = ps.SafeRegex.GetRegex()
	}
	if n, ok := vocab.ParseClusterName(r.GetRoute().GetCluster()); ok && n.Direction == vocab.Outbound {
		return n.Host + ":" + strconv.FormatUint(uint64(n.Port), 10) + path
	}
	return vsName + ":" + strconv.FormatUint(uint64(port), 10) + path
}

// routeName is Istio's route name: the HTTPRoute name and the match name joined with ".".
func routeName(r *networking.HTTPRoute, m *networking.HTTPMatchRequest) string {
	switch {
	case r.Name != "" && m.GetName() != "":
		return r.Name + "." + m.GetName()
	case r.Name != "":
		return r.Name
	}
	return m.GetName()
}

// metadata records which VirtualService produced a route, as Istio's istio.config metadata does,
// so that proxy-config and access logs can name it.
func (c *routeCtx) metadata() *corev3.Metadata {
	if c.meta != nil {
		return c.meta
	}
	c.meta = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
		vocab.IstioMetadata: {Fields: map[string]*structpb.Value{
			"config": structpb.NewStringValue(fmt.Sprintf("/apis/networking.istio.io/v1/namespaces/%s/virtual-service/%s", c.obj.Namespace, c.obj.Name)),
		}},
	}}
	return c.meta
}
