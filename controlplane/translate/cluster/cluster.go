package cluster

import (
	"fmt"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	meshconfig "istio.io/api/mesh/v1alpha1"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/registry"
	"github.com/strait-mesh/strait/internal/vocab"
)

// Options configure cluster generation for one class of proxy.
type Options struct {
	// Mesh supplies defaults (connectTimeout, tcpKeepalive, h2UpgradePolicy, localityLbSetting).
	Mesh *meshconfig.MeshConfig
	// Proxyless selects gRPC's xDS client's subset of Envoy: EDS or LOGICAL_DNS clusters,
	// ROUND_ROBIN by default, no Envoy-only options.
	Proxyless bool
	// MTLSReady reports whether a client may use automatic mutual TLS to an endpoint: it runs a
	// sidecar (label security.istio.io/tlsMode: istio) whose PeerAuthentication for that port is
	// not DISABLE. Such endpoints carry the transport socket match metadata; nil means none does.
	MTLSReady func(*registry.Endpoint) bool
}

// AutoMTLS reports whether MeshConfig.enableAutoMtls is on (Istio's default: true).
func AutoMTLS(m *meshconfig.MeshConfig) bool {
	return m.GetEnableAutoMtls() == nil || m.GetEnableAutoMtls().GetValue()
}

// ADS is the config source pointing at the ADS stream.
func ADS() *corev3.ConfigSource {
	return &corev3.ConfigSource{ResourceApiVersion: corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}
}

// Outbound builds the clusters for one port of a service: the default cluster
// outbound|PORT||HOST and one per DestinationRule subset (outbound|PORT|SUBSET|HOST), with the
// effective traffic policy applied. eps are the service's endpoints (used inline for DNS
// clusters). Resolution maps to the cluster type: STATIC -> EDS, DNS -> STRICT_DNS,
// DNS_ROUND_ROBIN -> LOGICAL_DNS, NONE -> ORIGINAL_DST. It returns an error naming the
// DestinationRule field that cannot be translated.
func Outbound(svc *registry.Service, port registry.Port, eps []*registry.Endpoint, r *Rule, opts Options) ([]*clusterv3.Cluster, error) {
	dr := r.spec()
	out := make([]*clusterv3.Cluster, 0, 1+len(dr.GetSubsets()))
	c, err := outbound(svc, port, eps, nil, r, opts)
	if err != nil {
		return nil, err
	}
	if c != nil {
		out = append(out, c)
	}
	for _, ss := range dr.GetSubsets() {
		c, err := outbound(svc, port, eps, ss, r, opts)
		if err != nil {
			return nil, err
		}
		if c != nil {
			out = append(out, c)
		}
	}
	return out, nil
}

func outbound(svc *registry.Service, port registry.Port, eps []*registry.Endpoint, subset *networking.Subset, r *Rule, opts Options) (*clusterv3.Cluster, error) {
	name := vocab.OutboundClusterName(port.Number, subset.GetName(), svc.Hostname)
	tp := EffectivePolicy(r.spec(), subset, port.Number)
	c := &clusterv3.Cluster{Name: name}
	switch svc.Resolution {
	case registry.ResolutionStatic:
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}
		c.EdsClusterConfig = &clusterv3.Cluster_EdsClusterConfig{EdsConfig: ADS(), ServiceName: name}
	case registry.ResolutionDNS, registry.ResolutionDNSRoundRobin:
		typ := clusterv3.Cluster_STRICT_DNS
		if svc.Resolution == registry.ResolutionDNSRoundRobin || opts.Proxyless {
			typ = clusterv3.Cluster_LOGICAL_DNS
		}
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: typ}
		c.DnsLookupFamily = clusterv3.Cluster_V4_ONLY
		c.LoadAssignment = dnsAssignment(name, port, eps, subset, opts.MTLSReady)
		if typ == clusterv3.Cluster_LOGICAL_DNS && len(c.LoadAssignment.GetEndpoints()) > 0 {
			// LOGICAL_DNS takes exactly one host; keep the first.
			la := c.LoadAssignment.Endpoints[0]
			la.LbEndpoints = la.LbEndpoints[:1]
			c.LoadAssignment.Endpoints = c.LoadAssignment.Endpoints[:1]
		}
	default: // NONE: connect to the address the client dialled.
		if opts.Proxyless {
			return nil, nil // gRPC cannot dial an original destination
		}
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST}
	}
	defaultLB := clusterv3.Cluster_LEAST_REQUEST
	if opts.Proxyless {
		defaultLB = clusterv3.Cluster_ROUND_ROBIN
	}
	if err := applyLoadBalancer(c, tp.GetLoadBalancer(), opts.Mesh.GetLocalityLbSetting(), defaultLB, r); err != nil {
		return nil, err
	}
	if svc.Resolution == registry.ResolutionNone {
		c.LbPolicy = clusterv3.Cluster_CLUSTER_PROVIDED
		c.LbConfig = nil
	}
	if opts.Proxyless {
		switch c.LbPolicy {
		case clusterv3.Cluster_ROUND_ROBIN, clusterv3.Cluster_RING_HASH, clusterv3.Cluster_LEAST_REQUEST:
		default:
			return nil, r.errf("trafficPolicy.loadBalancer", "proxyless gRPC supports ROUND_ROBIN, LEAST_REQUEST and RING_HASH, not %s", c.LbPolicy)
		}
	}
	if err := applyConnectionPool(c, tp, port, opts.Mesh, opts.Proxyless, r); err != nil {
		return nil, err
	}
	if err := applyOutlierDetection(c, tp.GetOutlierDetection(), r); err != nil {
		return nil, err
	}
	if tp.GetTunnel() != nil {
		return nil, r.errf("trafficPolicy.tunnel", "HTTP CONNECT tunnelling to an egress proxy is not supported")
	}
	tlsCtx, err := upstreamTLS(tp.GetTls(), svc, port.Number, subset.GetName(), subsetEndpoints(eps, subset), opts.Mesh.GetTrustDomain(), r)
	if err != nil {
		return nil, err
	}
	if opts.Proxyless && (tlsCtx != nil || tp.GetProxyProtocol() != nil) {
		return nil, r.errf("trafficPolicy.tls", "proxyless gRPC clients get TLS from certificate providers, which Strait does not configure")
	}
	if tp.GetTls() == nil && AutoMTLS(opts.Mesh) && !opts.Proxyless && svc.Resolution != registry.ResolutionNone {
		// Automatic mutual TLS: ISTIO_MUTUAL to the endpoints that can take it, plaintext to the
		// rest, chosen per endpoint by its transport socket match metadata.
		mt, err := upstreamTLS(istioMutual, svc, port.Number, subset.GetName(), subsetEndpoints(eps, subset), opts.Mesh.GetTrustDomain(), r)
		if err != nil {
			return nil, err
		}
		c.TransportSocketMatches, err = autoMTLSMatches(mt, tp.GetProxyProtocol(), r)
		return c, err
	}
	ts, err := transportSocket(tlsCtx, tp.GetProxyProtocol(), r)
	if err != nil {
		return nil, err
	}
	c.TransportSocket = ts
	return c, nil
}

// istioMutual is the client TLS setting automatic mutual TLS applies; never modified.
var istioMutual = &networking.ClientTLSSettings{Mode: networking.ClientTLSSettings_ISTIO_MUTUAL}

// autoMTLSMatches returns Istio's transport socket matches of automatic mutual TLS:
// "tlsMode-istio" (endpoint metadata tlsMode: istio) with the mesh mTLS context, and
// "tlsMode-disabled" (every other endpoint) in plaintext; both wrapped in the PROXY protocol
// socket when the policy asks for it.
func autoMTLSMatches(mt *tlsv3.UpstreamTlsContext, pp *networking.TrafficPolicy_ProxyProtocol, r *Rule) ([]*clusterv3.Cluster_TransportSocketMatch, error) {
	istio, err := transportSocket(mt, pp, r)
	if err != nil {
		return nil, err
	}
	plain, err := transportSocket(nil, pp, r)
	if err != nil {
		return nil, err
	}
	if plain == nil {
		plain = rawBuffer()
	}
	return []*clusterv3.Cluster_TransportSocketMatch{
		{Name: "tlsMode-" + vocab.TLSModeIstio, Match: tlsModeStruct(), TransportSocket: istio},
		{Name: "tlsMode-disabled", Match: &structpb.Struct{}, TransportSocket: plain},
	}, nil
}

// tlsModeStruct returns {tlsMode: istio}, the match and the endpoint metadata of automatic mTLS.
func tlsModeStruct() *structpb.Struct {
	return &structpb.Struct{Fields: map[string]*structpb.Value{vocab.TLSModeKey: structpb.NewStringValue(vocab.TLSModeIstio)}}
}

// EndpointMetadata returns the metadata of an endpoint that takes automatic mutual TLS, or nil
// when ready is false.
func EndpointMetadata(ready bool) *corev3.Metadata {
	if !ready {
		return nil
	}
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{vocab.TransportSocketMatchMD: tlsModeStruct()}}
}

// dnsAssignment builds the inline load assignment of a DNS cluster (hostnames as addresses).
func dnsAssignment(name string, port registry.Port, eps []*registry.Endpoint, subset *networking.Subset, ready func(*registry.Endpoint) bool) *endpointv3.ClusterLoadAssignment {
	la := &endpointv3.LocalityLbEndpoints{}
	for _, ep := range eps {
		if ep.ServicePortName != port.Name || !registry.LabelsMatch(subset.GetLabels(), ep.Labels) {
			continue
		}
		la.LbEndpoints = append(la.LbEndpoints, &endpointv3.LbEndpoint{
			HostIdentifier:      &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: SocketAddress(ep.Address, ep.Port)}},
			LoadBalancingWeight: wrapperspb.UInt32(max(ep.Weight, 1)),
			Metadata:            EndpointMetadata(ready != nil && ready(ep)),
		})
	}
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	if len(la.LbEndpoints) > 0 {
		cla.Endpoints = []*endpointv3.LocalityLbEndpoints{la}
	}
	return cla
}

// SocketAddress returns a TCP socket address, or a pipe address for "unix://PATH".
func SocketAddress(addr string, port uint32) *corev3.Address {
	if len(addr) > 7 && addr[:7] == "unix://" {
		return &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: addr[7:]}}}
	}
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: addr, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}
}

// PassthroughCluster returns PassthroughCluster: ORIGINAL_DST to wherever the client connected.
func PassthroughCluster(m *meshconfig.MeshConfig) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 vocab.PassthroughCluster,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
		LbPolicy:             clusterv3.Cluster_CLUSTER_PROVIDED,
		ConnectTimeout:       durationpb.New(connectTimeout(m)),
		CircuitBreakers:      &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{defaultThresholds()}},
	}
}

// BlackHoleCluster returns BlackHoleCluster: a STATIC cluster with no endpoints.
func BlackHoleCluster(m *meshconfig.MeshConfig) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 vocab.BlackHoleCluster,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(connectTimeout(m)),
	}
}

// InboundPassthroughCluster returns InboundPassthroughCluster: ORIGINAL_DST bound to 127.0.0.6 so
// that inbound traffic to ports without a service reaches the application.
func InboundPassthroughCluster(m *meshconfig.MeshConfig) *clusterv3.Cluster {
	c := PassthroughCluster(m)
	c.Name = vocab.InboundPassthroughCluster
	c.UpstreamBindConfig = &corev3.BindConfig{SourceAddress: &corev3.SocketAddress{Address: vocab.InboundPassthroughBindIP,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 0}}}
	return c
}

// Inbound builds inbound|PORT||: a STATIC cluster to the application at addr:port (127.0.0.1, the
// instance IP, or a unix socket), with HTTP/2 upstream for HTTP2/gRPC ports. cp is the Sidecar's
// inbound connection pool (ingress[].connectionPool, else inboundConnectionPool), mapped as for
// outbound clusters; nil leaves Istio's unlimited defaults. services (the services that have the
// workload as an endpoint on the port) go into the cluster's metadata as istiod puts them:
// filter_metadata.istio.services, a list of {host, name, namespace}, where the destination
// reporter of Istio's standard metrics finds destination_service.
func Inbound(port registry.Port, addr string, targetPort uint32, cp *networking.ConnectionPoolSettings, services []*registry.Service, m *meshconfig.MeshConfig) (*clusterv3.Cluster, error) {
	name := vocab.InboundClusterName(port.Number)
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
		LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{
				Endpoint: &endpointv3.Endpoint{Address: SocketAddress(addr, targetPort)}}}},
		}}},
	}
	if err := applyConnectionPool(c, &networking.TrafficPolicy{ConnectionPool: cp}, port, m, false, nil); err != nil {
		return nil, fmt.Errorf("building %s: %w", name, err)
	}
	if len(services) > 0 {
		c.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{vocab.IstioMetadata: ServicesMetadata(services)}}
	}
	return c, nil
}

// ServicesMetadata is istiod's cluster metadata for services: {services: [{host, name,
// namespace}]}. The name of a Kubernetes-style host (name.namespace.svc.<domain>) is its first
// label; any other host is its own name, as for ServiceEntries.
func ServicesMetadata(services []*registry.Service) *structpb.Struct {
	list := make([]*structpb.Value, 0, len(services))
	for _, svc := range services {
		name := svc.Hostname
		if parts := strings.SplitN(svc.Hostname, ".", 4); len(parts) >= 3 && parts[1] == svc.Namespace && parts[2] == "svc" {
			name = parts[0]
		}
		list = append(list, structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
			"host":      structpb.NewStringValue(svc.Hostname),
			"name":      structpb.NewStringValue(name),
			"namespace": structpb.NewStringValue(svc.Namespace),
		}}))
	}
	return &structpb.Struct{Fields: map[string]*structpb.Value{vocab.IstioServicesKey: structpb.NewListValue(&structpb.ListValue{Values: list})}}
}

// subsetEndpoints returns the endpoints whose labels match the subset (all when subset is nil).
func subsetEndpoints(eps []*registry.Endpoint, subset *networking.Subset) []*registry.Endpoint {
	if len(subset.GetLabels()) == 0 {
		return eps
	}
	var out []*registry.Endpoint
	for _, ep := range eps {
		if registry.LabelsMatch(subset.GetLabels(), ep.Labels) {
			out = append(out, ep)
		}
	}
	return out
}
