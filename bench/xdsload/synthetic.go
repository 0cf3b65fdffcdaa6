package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	meshconfig "istio.io/api/mesh/v1alpha1"
	networkingv1alpha3 "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/translate"
	"github.com/strait-mesh/strait/internal/vocab"
)

// synthetic is a Generator with realistic resource counts and sizes, standing in for the real
// translator: per snapshot it builds, once, an outbound cluster and a ClusterLoadAssignment per
// service port, a route configuration per port with a virtual host per service, the
// PassthroughCluster/BlackHoleCluster and the 15001 outbound listener, and shares them between all
// proxies; each proxy also gets its own 15006 inbound listener bound to its IP.
type synthetic struct {
	mu     sync.Mutex
	snap   *mesh.Snapshot
	shared translate.Resources
}

var _ translate.Generator = (*synthetic)(nil)

// Generate implements translate.Generator.
func (g *synthetic) Generate(snap *mesh.Snapshot, p *translate.Proxy) (translate.Resources, error) {
	shared, err := g.sharedFor(snap)
	if err != nil {
		return nil, err
	}
	ip := "0.0.0.0"
	if len(p.IPs) > 0 {
		ip = p.IPs[0]
	}
	inbound, err := tcpListener(vocab.VirtualInbound, ip, vocab.InboundCapturePort, vocab.InboundPassthroughCluster)
	if err != nil {
		return nil, err
	}
	listeners := append(append(make([]types.Resource, 0, 2), shared[resource.ListenerType]...), inbound)
	return translate.Resources{
		resource.ClusterType:  shared[resource.ClusterType],
		resource.EndpointType: shared[resource.EndpointType],
		resource.RouteType:    shared[resource.RouteType],
		resource.ListenerType: listeners,
	}, nil
}

func (g *synthetic) sharedFor(snap *mesh.Snapshot) (translate.Resources, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.snap == snap {
		return g.shared, nil
	}
	var clusters, eps []types.Resource
	routes := map[uint32]*routev3.RouteConfiguration{}
	var ports []uint32
	for _, svc := range snap.Services {
		key := mesh.ServiceKey{Hostname: svc.Hostname, Namespace: svc.Namespace}
		for _, port := range svc.Ports {
			name := vocab.OutboundClusterName(port.Number, "", svc.Hostname)
			clusters = append(clusters, edsCluster(name))
			cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
			lle := &endpointv3.LocalityLbEndpoints{Locality: &corev3.Locality{Region: "eu", Zone: "eu-1"}}
			for _, ep := range snap.Endpoints[key] {
				if ep.ServicePortName != port.Name {
					continue
				}
				lle.LbEndpoints = append(lle.LbEndpoints, &endpointv3.LbEndpoint{
					HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
						Address: socketAddress(ep.Address, ep.Port)}},
					LoadBalancingWeight: wrapperspb.UInt32(1),
				})
			}
			cla.Endpoints = []*endpointv3.LocalityLbEndpoints{lle}
			eps = append(eps, cla)
			rc := routes[port.Number]
			if rc == nil {
				rc = &routev3.RouteConfiguration{Name: strconv.Itoa(int(port.Number)), ValidateClusters: wrapperspb.Bool(false)}
				routes[port.Number] = rc
				ports = append(ports, port.Number)
			}
			short := strings.TrimSuffix(svc.Hostname, ".svc.cluster.local")
			rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{
				Name:    fmt.Sprintf("%s:%d", svc.Hostname, port.Number),
				Domains: []string{svc.Hostname, fmt.Sprintf("%s:%d", svc.Hostname, port.Number), short, fmt.Sprintf("%s:%d", short, port.Number)},
				Routes: []*routev3.Route{{
					Name:  "default",
					Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
					Action: &routev3.Route_Route{Route: &routev3.RouteAction{
						ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: name},
						Timeout:          durationpb.New(0),
						RetryPolicy: &routev3.RetryPolicy{
							RetryOn: "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes", NumRetries: wrapperspb.UInt32(2),
						},
					}},
				}},
			})
		}
	}
	clusters = append(clusters,
		&clusterv3.Cluster{Name: vocab.PassthroughCluster, ConnectTimeout: durationpb.New(10 * time.Second),
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
			LbPolicy:             clusterv3.Cluster_CLUSTER_PROVIDED},
		&clusterv3.Cluster{Name: vocab.BlackHoleCluster, ConnectTimeout: durationpb.New(10 * time.Second),
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}},
	)
	var rcs []types.Resource
	for _, port := range ports {
		rcs = append(rcs, routes[port])
	}
	outbound, err := tcpListener(vocab.VirtualOutbound, "0.0.0.0", vocab.OutboundCapturePort, vocab.PassthroughCluster)
	if err != nil {
		return nil, err
	}
	g.snap = snap
	g.shared = translate.Resources{
		resource.ClusterType:  clusters,
		resource.EndpointType: eps,
		resource.RouteType:    rcs,
		resource.ListenerType: {outbound},
	}
	return g.shared, nil
}

func edsCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		AltStatName:          name,
		ConnectTimeout:       durationpb.New(10 * time.Second),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{ServiceName: name, EdsConfig: &corev3.ConfigSource{
			ResourceApiVersion:    corev3.ApiVersion_V3,
			ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}},
		LbPolicy: clusterv3.Cluster_LEAST_REQUEST,
		CircuitBreakers: &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
			MaxConnections: wrapperspb.UInt32(4294967295), MaxPendingRequests: wrapperspb.UInt32(4294967295),
			MaxRequests: wrapperspb.UInt32(4294967295), MaxRetries: wrapperspb.UInt32(4294967295),
			TrackRemaining: true,
		}}},
		CommonLbConfig: &clusterv3.Cluster_CommonLbConfig{LocalityConfigSpecifier: &clusterv3.Cluster_CommonLbConfig_LocalityWeightedLbConfig_{
			LocalityWeightedLbConfig: &clusterv3.Cluster_CommonLbConfig_LocalityWeightedLbConfig{}}},
	}
}

func socketAddress(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}
}

func tcpListener(name, ip string, port uint32, cluster string) (*listenerv3.Listener, error) {
	tp, err := anypb.New(&tcpproxyv3.TcpProxy{StatPrefix: cluster,
		ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: cluster}})
	if err != nil {
		return nil, fmt.Errorf("building tcp_proxy: %w", err)
	}
	return &listenerv3.Listener{
		Name:    name,
		Address: socketAddress(ip, port),
		FilterChains: []*listenerv3.FilterChain{{
			Name: cluster,
			Filters: []*listenerv3.Filter{{Name: vocab.FilterTCPProxy,
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: tp}}},
		}},
		UseOriginalDst: wrapperspb.Bool(port == vocab.OutboundCapturePort),
	}, nil
}

// meshModel is the benchmark's mutable mesh: one ServiceEntry (MESH_INTERNAL, STATIC) per service
// with up to three ports and three inline endpoints, in 20 namespaces, and optionally a
// VirtualService and DestinationRule for the first services. Each change produces a new
// mesh.Snapshot built by mesh.New, as straitd builds it.
type meshModel struct {
	version uint64
	ports   int
	objects []*config.Object // ServiceEntries, service i at index i
	routing []*config.Object // DestinationRules and VirtualServices
	changes int
}

var benchPorts = []*networkingv1alpha3.ServicePort{
	{Name: "http", Number: 80, Protocol: "HTTP", TargetPort: 8080},
	{Name: "grpc", Number: 9090, Protocol: "GRPC", TargetPort: 9090},
	{Name: "tcp", Number: 5432, Protocol: "TCP", TargetPort: 5432},
}

func newMeshModel(services, ports, virtualServices int) *meshModel {
	m := &meshModel{ports: ports}
	for i := range services {
		m.objects = append(m.objects, serviceEntry(i, ports, 0))
	}
	for i := range virtualServices {
		m.routing = append(m.routing, routing(i, 0)...)
	}
	return m
}

// routing returns a DestinationRule with subsets v1 and v2 for service i and a VirtualService
// that sends /api 90/10 to them on the HTTP port (gen shifts the split by gen%80 points) and
// everything else to v1.
func routing(i, gen int) []*config.Object {
	split := int32(90 - gen%80)
	ns := fmt.Sprintf("ns-%d", i%20)
	name := fmt.Sprintf("svc-%d", i)
	host := fmt.Sprintf("%s.%s.svc.cluster.local", name, ns)
	meta := config.Meta{Name: name, Namespace: ns, CreationTimestamp: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	dest := func(subset string, weight int32) *networkingv1alpha3.HTTPRouteDestination {
		return &networkingv1alpha3.HTTPRouteDestination{Weight: weight, Destination: &networkingv1alpha3.Destination{
			Host: host, Subset: subset, Port: &networkingv1alpha3.PortSelector{Number: benchPorts[0].Number}}}
	}
	return []*config.Object{
		{Kind: config.DestinationRule, APIVersion: "networking.istio.io/v1", Meta: meta, Origin: "xdsload",
			Spec: &networkingv1alpha3.DestinationRule{Host: host, Subsets: []*networkingv1alpha3.Subset{
				{Name: "v1", Labels: map[string]string{"version": "v1"}},
				{Name: "v2", Labels: map[string]string{"version": "v2"}}}}},
		{Kind: config.VirtualService, APIVersion: "networking.istio.io/v1", Meta: meta, Origin: "xdsload",
			Spec: &networkingv1alpha3.VirtualService{Hosts: []string{host}, Http: []*networkingv1alpha3.HTTPRoute{
				{Match: []*networkingv1alpha3.HTTPMatchRequest{{Uri: &networkingv1alpha3.StringMatch{
					MatchType: &networkingv1alpha3.StringMatch_Prefix{Prefix: "/api"}}}},
					Route: []*networkingv1alpha3.HTTPRouteDestination{dest("v1", split), dest("v2", 100-split)}},
				{Route: []*networkingv1alpha3.HTTPRouteDestination{dest("v1", 0)}},
			}}},
	}
}

// serviceEntry builds service i; gen varies its endpoint addresses.
func serviceEntry(i, ports, gen int) *config.Object {
	ns := fmt.Sprintf("ns-%d", i%20)
	name := fmt.Sprintf("svc-%d", i)
	se := &networkingv1alpha3.ServiceEntry{
		Hosts:      []string{fmt.Sprintf("%s.%s.svc.cluster.local", name, ns)},
		Addresses:  []string{fmt.Sprintf("240.240.%d.%d", i/250, i%250+1)},
		Ports:      benchPorts[:ports],
		Location:   networkingv1alpha3.ServiceEntry_MESH_INTERNAL,
		Resolution: networkingv1alpha3.ServiceEntry_STATIC,
	}
	for e := range 3 {
		addr := fmt.Sprintf("198.18.%d.%d", i%250, e+1)
		if e == 0 && gen > 0 {
			addr = fmt.Sprintf("198.19.%d.%d", gen/250%250, gen%250+1)
		}
		se.Endpoints = append(se.Endpoints, &networkingv1alpha3.WorkloadEntry{
			Address: addr, Labels: map[string]string{"app": name, "version": "v1"},
		})
	}
	return &config.Object{
		Kind:       config.ServiceEntry,
		APIVersion: "networking.istio.io/v1",
		Meta: config.Meta{Name: name, Namespace: ns,
			CreationTimestamp: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second)},
		Spec:   se,
		Origin: "xdsload",
	}
}

// change applies one config change: "endpoint" moves an endpoint of one service (EDS only);
// "service" adds a service (CDS, EDS and routes change); "virtualservice" changes the weights
// of one VirtualService (routes change).
func (m *meshModel) change(kind string) {
	m.changes++
	switch kind {
	case "service":
		m.objects = append(m.objects, serviceEntry(len(m.objects), m.ports, 0))
	case "virtualservice":
		i := m.changes % (len(m.routing) / 2)
		objs := slices.Clone(m.routing)
		objs[2*i+1] = routing(i, m.changes)[1]
		m.routing = objs
	default:
		i := m.changes % len(m.objects)
		objs := slices.Clone(m.objects)
		objs[i] = serviceEntry(i, m.ports, m.changes)
		m.objects = objs
	}
}

func (m *meshModel) snapshot() *mesh.Snapshot {
	m.version++
	return mesh.New(m.version, &meshconfig.MeshConfig{TrustDomain: "cluster.local"}, slices.Concat(m.objects, m.routing))
}
