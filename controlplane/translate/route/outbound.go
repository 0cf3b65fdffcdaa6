package route

import (
	"errors"
	"sort"
	"strconv"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
	meshconfig "istio.io/api/mesh/v1alpha1"

	"github.com/strait-mesh/strait/controlplane/registry"
	"github.com/strait-mesh/strait/internal/vocab"
)

// Names of the fallback virtual hosts and routes of outbound route configurations, as Istio's.
const (
	AllowAnyVirtualHost = "allow_any"
	BlockAllVirtualHost = "block_all"
	DefaultRouteName    = "default"
)

// OutboundPorts returns the ports that need an outbound HTTP route configuration: every port of a
// visible service whose protocol is HTTP, HTTP2, gRPC, gRPC-Web or sniffed, in increasing order.
func (b *Builder) OutboundPorts() []uint32 {
	seen := map[uint32]bool{}
	var out []uint32
	for _, s := range b.services {
		for _, p := range s.Ports {
			if isHTTPPort(p) && !seen[p.Number] && (b.in.Reaches == nil || b.in.Reaches(s, p.Number)) {
				seen[p.Number] = true
				out = append(out, p.Number)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Outbound builds the sidecar's outbound route configuration for port, named by the port
// ("9080"). It has:
//
//   - one virtual host per visible HTTP service on the port, named "host:port", with the domains a
//     client in the proxy's namespace may use (see domainBases), each also with ":port", routed by the oldest
//     VirtualService bound to the mesh gateway whose hosts name the service — else the one with
//     the most specific wildcard host matching it — else by a default route to outbound|port||host with no
//     timeout, the default retry policy and the DestinationRule's hash policy; a VirtualService
//     none of whose routes applies on this port or to this proxy also leaves the default route;
//   - one virtual host per VirtualService host that matches no visible service (an external
//     name), with domains host and host:port, on the HTTP ports of the services the
//     VirtualService does name, or on port 80 if it names none (as Istio);
//   - a last virtual host for domain "*": allow_any to PassthroughCluster, or block_all (502)
//     when the mesh's outboundTrafficPolicy is REGISTRY_ONLY.
//
// A domain already claimed by an earlier virtual host is not repeated (Envoy rejects duplicate
// domains). The result is never nil. When a VirtualService cannot be translated, it is left out
// (its services get default routes) and the returned error joins one *Error per such
// VirtualService; the route configuration is still usable. The result shares sub-messages
// between virtual hosts: treat it as immutable.
func (b *Builder) Outbound(port uint32) (*routev3.RouteConfiguration, error) {
	var errs []error
	// Which extra (non-service) hosts are on this port: a VirtualService's hosts that name no
	// service go where the services it does name have HTTP ports, or on port 80 when it names
	// none (Istio's rule for external names like google.com).
	type claim struct {
		v    *virtualService
		host string
	}
	var extra []claim
	extraSeen := map[string]bool{}
	for _, v := range b.vs {
		if len(v.extraHosts) == 0 || !contains(v.gateways, MeshGateway) {
			continue
		}
		if !v.servicePorts[port] && !(len(v.servicePorts) == 0 && port == 80) {
			continue
		}
		for _, h := range v.extraHosts {
			if !extraSeen[h] {
				extraSeen[h] = true
				extra = append(extra, claim{v: v, host: h})
			}
		}
	}
	// Pass 2: translate each claiming VirtualService once for this port.
	results := map[*virtualService]*MeshRoutes{}
	translated := func(v *virtualService) *MeshRoutes {
		if r, ok := results[v]; ok {
			return r
		}
		r := b.meshRoutes(v, port)
		if r.Err != nil {
			errs = append(errs, r.Err)
		}
		results[v] = r
		return r
	}
	// Pass 3: virtual hosts.
	domains := make(domainSet, 5*len(b.services))
	var vhosts []*routev3.VirtualHost
	for _, svc := range b.services {
		p, ok := servicePort(svc, port)
		if !ok || !isHTTPPort(p) || b.in.Reaches != nil && !b.in.Reaches(svc, port) {
			continue
		}
		in := &VirtualHostInputs{Port: port, Name: hostPort(svc.Hostname, port), Service: svc}
		if v := b.meshVS[svc]; v != nil {
			if r := translated(v); len(r.Routes) > 0 {
				in.Routes = r
			}
		}
		if in.Routes == nil {
			// No VirtualService, or one whose routes do not apply on this port or proxy.
			in.Reads.DestinationRules = []string{svc.Hostname}
		}
		if in.Domains = domains.claim(b.bases[svc], port); len(in.Domains) > 0 {
			vhosts = append(vhosts, b.virtualHost(in))
		}
	}
	sort.SliceStable(extra, func(i, j int) bool { return extra[i].host < extra[j].host })
	for _, e := range extra {
		r := translated(e.v)
		if len(r.Routes) == 0 {
			continue
		}
		in := &VirtualHostInputs{Port: port, Name: hostPort(e.host, port), Domains: domains.claim([]string{e.host}, port), Routes: r}
		if len(in.Domains) > 0 {
			vhosts = append(vhosts, b.virtualHost(in))
		}
	}
	if domains.free("*") {
		vhosts = append(vhosts, b.virtualHost(&VirtualHostInputs{Port: port, Name: b.fallbackName(), Domains: []string{"*"}}))
	}
	rc := &routev3.RouteConfiguration{
		Name:             strconv.FormatUint(uint64(port), 10),
		VirtualHosts:     vhosts,
		ValidateClusters: wrapperspb.Bool(false),
	}
	if n := directResponseBodyLimit(vhosts); n > 0 {
		rc.MaxDirectResponseBodySizeBytes = wrapperspb.UInt32(n)
	}
	return rc, errors.Join(errs...)
}

// meshRoutes translates v's HTTP routes for the mesh gateway on port, through Inputs.Parts.
func (b *Builder) meshRoutes(v *virtualService, port uint32) *MeshRoutes {
	build := func() *MeshRoutes {
		r := &MeshRoutes{}
		routes, err := b.httpRoutes(v, port, MeshGateway, false, false, &r.Reads)
		if err != nil {
			r.Err = objectErr(v.obj, err, "VirtualService not applied on port "+strconv.FormatUint(uint64(port), 10))
			return r
		}
		r.Routes = routes
		return r
	}
	if b.in.Parts == nil {
		return build()
	}
	return b.in.Parts.MeshRoutes(v.obj, port, build)
}

// virtualHost builds the virtual host of in (through Inputs.Parts): in.Routes, else the default
// route to in.Service, else (no service) the "*" fallback.
func (b *Builder) virtualHost(in *VirtualHostInputs) *routev3.VirtualHost {
	build := func() *routev3.VirtualHost {
		switch {
		case in.Routes != nil:
			return &routev3.VirtualHost{Name: in.Name, Domains: in.Domains, Routes: in.Routes.Routes}
		case in.Service != nil:
			return &routev3.VirtualHost{Name: in.Name, Domains: in.Domains, Routes: []*routev3.Route{b.defaultRoute(in.Service, in.Port)}}
		}
		return b.fallbackVirtualHost()
	}
	if b.in.Parts == nil {
		return build()
	}
	return b.in.Parts.VirtualHost(in, build)
}

// Outbound is New(in) followed by Builder.Outbound(port), for one-off calls.
func Outbound(in Inputs, port uint32) (*routev3.RouteConfiguration, error) {
	b, err := New(in)
	if err != nil {
		return nil, err
	}
	return b.Outbound(port)
}

// defaultRoute is the route of a service without a VirtualService: everything to
// outbound|port||host, no timeout, the mesh default retry policy, the DestinationRule's hash
// policy, and the tracing operation "host:port/*".
func (b *Builder) defaultRoute(svc *registry.Service, port uint32) *routev3.Route {
	action := &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: vocab.OutboundClusterName(port, "", svc.Hostname)},
		Timeout:          b.zeroTimeout,
		RetryPolicy:      b.defaultRetry,
	}
	if b.in.DestinationRule != nil {
		action.HashPolicy = HashPolicy(b.in.DestinationRule(svc.Hostname), "", port)
		if len(action.HashPolicy) > 0 {
			action.RetryPolicy = b.defaultRetryHashed
		}
	}
	return &routev3.Route{
		Name:      DefaultRouteName,
		Match:     b.matchAll,
		Action:    &routev3.Route_Route{Route: action},
		Decorator: &routev3.Decorator{Operation: hostPort(svc.Hostname, port) + "/*"},
	}
}

// registryOnly reports whether the mesh's outboundTrafficPolicy is REGISTRY_ONLY (the enum's zero
// value; an unset policy means Istio's default, ALLOW_ANY).
func (b *Builder) registryOnly() bool {
	otp := b.in.Mesh.GetOutboundTrafficPolicy()
	return otp != nil && otp.Mode == meshconfig.MeshConfig_OutboundTrafficPolicy_REGISTRY_ONLY
}

// fallbackName is the name of the "*" virtual host.
func (b *Builder) fallbackName() string {
	if b.registryOnly() {
		return BlockAllVirtualHost
	}
	return AllowAnyVirtualHost
}

// fallbackVirtualHost is the "*" virtual host: allow_any to PassthroughCluster, or block_all
// answering 502 under REGISTRY_ONLY.
func (b *Builder) fallbackVirtualHost() *routev3.VirtualHost {
	match := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}
	if b.registryOnly() {
		return &routev3.VirtualHost{Name: BlockAllVirtualHost, Domains: []string{"*"}, Routes: []*routev3.Route{{
			Name:   BlockAllVirtualHost,
			Match:  match,
			Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 502}},
		}}}
	}
	return &routev3.VirtualHost{Name: AllowAnyVirtualHost, Domains: []string{"*"}, Routes: []*routev3.Route{{
		Name:  AllowAnyVirtualHost,
		Match: match,
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: vocab.PassthroughCluster},
			Timeout:          zeroDuration(),
		}},
	}}}
}

// domainSet tracks the domains used in one route configuration, by base name: a virtual host's
// domains are base names and the same names with ":port", so a base name decides both.
type domainSet map[string]bool

// claim returns the domains of the bases not yet used — each base followed by base:port — and
// marks them used.
func (s domainSet) claim(bases []string, port uint32) []string {
	out := make([]string, 0, 2*len(bases))
	p := ":" + strconv.FormatUint(uint64(port), 10)
	for _, d := range bases {
		if !s[d] {
			s[d] = true
			out = append(out, d, d+p)
		}
	}
	return out
}

func (s domainSet) free(d string) bool { return !s[d] }
