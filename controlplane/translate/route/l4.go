package route

import (
	"errors"
	"net/netip"
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"
)

// L4Route is one match block of a VirtualService tcp or tls route, translated for the listener
// generator: where the traffic goes (a tcp_proxy config) and the filter chain conditions the
// block adds.
type L4Route struct {
	// Match holds only the conditions the block adds; an unset field adds no condition:
	//   - destination_port: match.port;
	//   - prefix_ranges: match.destinationSubnets;
	//   - source_prefix_ranges: match.sourceSubnet (tcp only);
	//   - server_names and transport_protocol "tls": match.sniHosts (tls only).
	// The caller merges these into its own filter chain match (for a sidecar, the service VIP and
	// port; for a gateway, the server port). A route without match blocks yields one L4Route with
	// an empty Match.
	Match *listenerv3.FilterChainMatch
	// TCPProxy is the tcp_proxy filter config: a cluster (stat_prefix = the cluster name) or
	// weighted_clusters (stat_prefix = the first destination's host), and a source-IP hash
	// policy when the destination's DestinationRule hashes on useSourceIp. The caller may set
	// the remaining fields (idle_timeout, access_log, ...).
	TCPProxy *tcpproxyv3.TcpProxy
	// Source names the block for debugging and errors: "namespace/name tcp[0].match[1]".
	Source string
}

// TCPRoutes translates the tcp routes of the VirtualService that routes host for traffic on port
// in the context gateway: MeshGateway for a sidecar (host is the service hostname, or an
// external host named by a VirtualService), or "namespace/name" for a router (host "" selects
// every VirtualService bound to that gateway, in order).
//
// The VirtualService is the oldest one bound to gateway whose hosts name host, else the one with
// the most specific wildcard host matching it (as for HTTP). Match blocks apply only if their port (when set) is port, and their
// sourceLabels, sourceNamespace and gateways select the proxy, as Istio decides at generation
// time. Routes come back in VirtualService order; Istio's first-match order is kept only if the
// caller gives each returned Match its own filter chain — Envoy picks the most specific filter
// chain, so the caller must not let a later, more specific Match shadow an earlier, broader one.
// Routes after one whose Match is empty are omitted (it catches everything). A nil result means no
// VirtualService applies: the caller uses its default tcp_proxy to outbound|port||host.
//
// A destination without a port uses the service's only port, else port (sidecars); routers need
// an explicit port for multi-port services. Errors name the VirtualService and field; the
// VirtualService is then left out.
func (b *Builder) TCPRoutes(host string, port uint32, gateway string) ([]L4Route, error) {
	return b.l4Routes(host, port, gateway, false)
}

// TLSRoutes is TCPRoutes for the tls routes of VirtualServices (SNI-routed TLS passthrough):
// every returned Match carries server_names (match.sniHosts) and transport_protocol "tls".
func (b *Builder) TLSRoutes(host string, port uint32, gateway string) ([]L4Route, error) {
	return b.l4Routes(host, port, gateway, true)
}

func (b *Builder) l4Routes(host string, port uint32, gateway string, tls bool) ([]L4Route, error) {
	var vss []*virtualService
	if host == "" {
		for _, v := range b.vs {
			if contains(v.gateways, gateway) {
				vss = append(vss, v)
			}
		}
	} else if v := b.selectVirtualService(host, gateway); v != nil {
		vss = []*virtualService{v}
	}
	var out []L4Route
	var errs []error
	for _, v := range vss {
		routes, err := b.l4RoutesOf(v, port, gateway, tls)
		if err != nil {
			errs = append(errs, objectErr(v.obj, err, "VirtualService not applied"))
			continue
		}
		out = append(out, routes...)
	}
	return out, errors.Join(errs...)
}

// l4Match is the common part of L4MatchAttributes and TLSMatchAttributes.
type l4Match struct {
	port            uint32
	subnets         []string
	sourceSubnet    string
	sniHosts        []string
	sourceLabels    map[string]string
	gateways        []string
	sourceNamespace string
}

// l4Matches converts the match attributes of a tls or tcp route with conv; nil for none.
func l4Matches[M any](ms []M, conv func(M) *l4Match) []*l4Match {
	var out []*l4Match
	for _, m := range ms {
		out = append(out, conv(m))
	}
	return out
}

func (b *Builder) l4RoutesOf(v *virtualService, port uint32, gateway string, tls bool) ([]L4Route, error) {
	c := &routeCtx{b: b, obj: v.obj, rootNS: v.obj.Namespace, port: port, gateway: gateway, vsGateways: v.gateways}
	type l4Route struct {
		matches []*l4Match
		dests   []*networking.RouteDestination
	}
	var routes []l4Route
	kind := "tcp"
	if tls {
		kind = "tls"
		for _, r := range v.spec.Tls {
			routes = append(routes, l4Route{dests: r.Route, matches: l4Matches(r.Match, func(m *networking.TLSMatchAttributes) *l4Match {
				return &l4Match{port: m.Port, subnets: m.DestinationSubnets, sniHosts: m.SniHosts,
					sourceLabels: m.SourceLabels, gateways: m.Gateways, sourceNamespace: m.SourceNamespace}
			})})
		}
	} else {
		for _, r := range v.spec.Tcp {
			routes = append(routes, l4Route{dests: r.Route, matches: l4Matches(r.Match, func(m *networking.L4MatchAttributes) *l4Match {
				return &l4Match{port: m.Port, subnets: m.DestinationSubnets, sourceSubnet: m.SourceSubnet,
					sourceLabels: m.SourceLabels, gateways: m.Gateways, sourceNamespace: m.SourceNamespace}
			})})
		}
	}
	var out []L4Route
	for i, r := range routes {
		field := kind + "[" + strconv.Itoa(i) + "]"
		proxy, err := c.tcpProxy(r.dests)
		if err != nil {
			return nil, atField(field, err)
		}
		matches := r.matches
		if len(matches) == 0 {
			if tls {
				return nil, errf(field+".match", "tls routes need a match with sniHosts")
			}
			matches = []*l4Match{nil}
		}
		for j, m := range matches {
			mfield := field + ".match[" + strconv.Itoa(j) + "]"
			if m != nil && !c.l4MatchApplies(m) {
				continue
			}
			fcm, err := filterChainMatch(m, tls)
			if err != nil {
				return nil, atField(mfield, err)
			}
			out = append(out, L4Route{Match: fcm, TCPProxy: proxy, Source: v.obj.Namespace + "/" + v.obj.Name + " " + mfield})
			if isEmptyFilterChainMatch(fcm) {
				return out, nil
			}
		}
	}
	return out, nil
}

func (c *routeCtx) l4MatchApplies(m *l4Match) bool {
	return c.matchApplies(&networking.HTTPMatchRequest{Port: m.port, SourceLabels: m.sourceLabels, Gateways: m.gateways, SourceNamespace: m.sourceNamespace})
}

func filterChainMatch(m *l4Match, tls bool) (*listenerv3.FilterChainMatch, error) {
	out := &listenerv3.FilterChainMatch{}
	if m == nil {
		return out, nil
	}
	if m.port != 0 {
		out.DestinationPort = wrapperspb.UInt32(m.port)
	}
	for i, s := range m.subnets {
		cr, err := cidrRange(s)
		if err != nil {
			return nil, atField("destinationSubnets["+strconv.Itoa(i)+"]", err)
		}
		out.PrefixRanges = append(out.PrefixRanges, cr)
	}
	if m.sourceSubnet != "" {
		cr, err := cidrRange(m.sourceSubnet)
		if err != nil {
			return nil, atField("sourceSubnet", err)
		}
		out.SourcePrefixRanges = []*corev3.CidrRange{cr}
	}
	if tls {
		if len(m.sniHosts) == 0 {
			return nil, errf("sniHosts", "required for tls routes")
		}
		out.ServerNames = append([]string(nil), m.sniHosts...)
		out.TransportProtocol = "tls"
	}
	return out, nil
}

func isEmptyFilterChainMatch(m *listenerv3.FilterChainMatch) bool {
	return m.DestinationPort == nil && len(m.PrefixRanges) == 0 && len(m.SourcePrefixRanges) == 0 && len(m.ServerNames) == 0
}

// cidrRange parses "10.0.0.0/8" or a single address.
func cidrRange(s string) (*corev3.CidrRange, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return &corev3.CidrRange{AddressPrefix: p.Masked().Addr().String(), PrefixLen: wrapperspb.UInt32(uint32(p.Bits()))}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return nil, errf("", "%q is not an IP address or CIDR", s)
	}
	return &corev3.CidrRange{AddressPrefix: a.String(), PrefixLen: wrapperspb.UInt32(uint32(a.BitLen()))}, nil
}

// tcpProxy builds the tcp_proxy config for a route's destinations.
func (c *routeCtx) tcpProxy(in []*networking.RouteDestination) (*tcpproxyv3.TcpProxy, error) {
	if len(in) == 0 {
		return nil, errf("route", "at least one destination is required")
	}
	var dests []dest
	for i, d := range in {
		field := "route[" + strconv.Itoa(i) + "]"
		if d.Destination == nil {
			return nil, errf(field+".destination", "required")
		}
		if d.Weight < 0 {
			return nil, errf(field+".weight", "negative weight %d", d.Weight)
		}
		if len(in) > 1 && d.Weight == 0 {
			continue
		}
		rd, err := c.destination(d.Destination)
		if err != nil {
			return nil, atField(field+".destination", err)
		}
		rd.weight = uint32(d.Weight)
		dests = append(dests, rd)
	}
	if len(dests) == 0 {
		return nil, errf("route", "every destination has weight 0")
	}
	out := &tcpproxyv3.TcpProxy{}
	if len(dests) == 1 {
		out.StatPrefix = dests[0].cluster
		out.ClusterSpecifier = &tcpproxyv3.TcpProxy_Cluster{Cluster: dests[0].cluster}
	} else {
		out.StatPrefix = dests[0].host
		wc := &tcpproxyv3.TcpProxy_WeightedCluster{}
		for _, d := range dests {
			wc.Clusters = append(wc.Clusters, &tcpproxyv3.TcpProxy_WeightedCluster_ClusterWeight{Name: d.cluster, Weight: d.weight})
		}
		out.ClusterSpecifier = &tcpproxyv3.TcpProxy_WeightedClusters{WeightedClusters: wc}
	}
	if c.b.in.DestinationRule != nil {
		sourceIP := true
		for _, d := range dests {
			ch := consistentHash(c.destinationRule(d.host), d.subset, d.port)
			if !ch.GetUseSourceIp() {
				sourceIP = false
			}
		}
		if sourceIP {
			out.HashPolicy = []*typev3.HashPolicy{{PolicySpecifier: &typev3.HashPolicy_SourceIp_{SourceIp: &typev3.HashPolicy_SourceIp{}}}}
		}
	}
	return out, nil
}
