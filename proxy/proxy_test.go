package proxy

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	groutev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/strait-mesh/strait/internal/node"
	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/xdsclient"
	"github.com/strait-mesh/strait/proxy/xdspb"
	clusterv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/cluster/v3"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	endpointv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/endpoint/v3"
	listenerv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/listener/v3"
	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
	routerv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/transport_sockets/tls/v3"
)

func newTestProxy(t *testing.T) *Proxy {
	t.Helper()
	p, err := New(Options{
		XDSAddress:    "127.0.0.1:1",
		AdminAddress:  "-",
		DrainDuration: time.Second,
		Node:          xdsclient.NodeInfo{Type: node.Sidecar, IP: "127.0.0.1", Name: "unit", Namespace: "default"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// resources returns ms as the xDS client hands resources over: decoded into the trimmed types
// (ms may be go-control-plane's, to set fields strait-proxy does not read).
func resources(t *testing.T, ms ...proto.Message) map[string]*xdsclient.Resource {
	out := map[string]*xdsclient.Resource{}
	for i, m := range ms {
		type named interface{ GetName() string }
		n := m.(named).GetName()
		a := testenv.MustAny(t, m)
		dm, err := anypb.UnmarshalNew(a, proto.UnmarshalOptions{Resolver: xdspb.Resolver})
		if err != nil {
			t.Fatal(err)
		}
		out[n] = &xdsclient.Resource{Name: n, Version: string(rune('1' + i)), Message: dm, Any: a, Updated: time.Now()}
	}
	return out
}

func TestRefsFindRDSAndSDSInsideTypedConfigs(t *testing.T) {
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix:     "in",
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: "9080"}},
		HttpFilters:    []*hcmv3.HttpFilter{{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: testenv.MustAny(t, &routerv3.Router{})}}},
	}
	dtls := &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: "default"}},
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
			ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: "ROOTCA"},
		},
	}}
	l := &listenerv3.Listener{Name: "l", FilterChains: []*listenerv3.FilterChain{{
		Filters:         []*listenerv3.Filter{{Name: "hcm", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: testenv.MustAny(t, hcm)}}},
		TransportSocket: &corev3.TransportSocket{Name: "tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: testenv.MustAny(t, dtls)}},
	}}}
	r := newRefs()
	r.collect(l)
	if !r.routes["9080"] || len(r.routes) != 1 {
		t.Fatalf("routes = %v", r.routes)
	}
	if !r.secrets["default"] || !r.secrets["ROOTCA"] || len(r.secrets) != 2 {
		t.Fatalf("secrets = %v", r.secrets)
	}
}

func TestApplyRejectsWholeUpdateNamingResource(t *testing.T) {
	p := newTestProxy(t)
	good := &clusterv3.Cluster{
		Name:                 "good",
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		LoadAssignment:       &endpointv3.ClusterLoadAssignment{ClusterName: "good"},
	}
	if err := p.Apply(xdsclient.ClusterType, resources(t, good)); err != nil {
		t.Fatalf("good cluster rejected: %v", err)
	}
	gen := p.Runtime().Generation
	bad := &clusterv3.Cluster{
		Name:                 "bad",
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		LoadAssignment:       &endpointv3.ClusterLoadAssignment{ClusterName: "bad"},
		LbPolicy:             clusterv3.Cluster_CLUSTER_PROVIDED,
	}
	other := proto.Clone(good).(*clusterv3.Cluster)
	other.Name = "other"
	err := p.Apply(xdsclient.ClusterType, resources(t, other, bad))
	if err == nil || !strings.Contains(err.Error(), `cluster "bad"`) {
		t.Fatalf("error = %v, want one naming cluster \"bad\"", err)
	}
	rt := p.Runtime()
	if rt.Generation != gen || rt.Clusters["good"] == nil || rt.Clusters["other"] != nil {
		t.Fatalf("rejected update changed the runtime: gen %d→%d clusters %v", gen, rt.Generation, rt.Clusters)
	}

	// A route configuration with an unsupported field is rejected by name as well.
	rc := &groutev3.RouteConfiguration{Name: "rc", VirtualHosts: []*groutev3.VirtualHost{{ // require_tls: not read by strait-proxy
		Name: "vh", Domains: []string{"*"}, RequireTls: groutev3.VirtualHost_ALL,
	}}}
	if err := p.Apply(xdsclient.RouteType, resources(t, rc)); err == nil || !strings.Contains(err.Error(), `route configuration "rc"`) {
		t.Fatalf("route error = %v", err)
	}
	if p.State() != StatePreInitializing {
		t.Fatalf("state = %s before LDS", p.State())
	}
}

func TestSecretsValidatedAndRedacted(t *testing.T) {
	p := newTestProxy(t)
	bad := &tlsv3.Secret{Name: "default", Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "not pem"}},
		PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "secret key"}},
	}}}
	if err := p.Apply(xdsclient.SecretType, resources(t, bad)); err == nil || !strings.Contains(err.Error(), `secret "default"`) {
		t.Fatalf("bad secret: %v", err)
	}
	r := redactSecret(bad)
	if strings.Contains(r.String(), "secret key") || !strings.Contains(bad.String(), "secret key") {
		t.Fatal("redaction must hide the key and leave the original alone")
	}
}

// TestListenerBindFailureIsNacked: as in Envoy, a listener whose address cannot be bound rejects
// the LDS update, naming the listener; nothing else changes.
func TestListenerBindFailureIsNacked(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	ap := netip.MustParseAddrPort(busy.Addr().String())
	p := newTestProxy(t)
	l := &listenerv3.Listener{
		Name: "taken",
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(ap.Port())},
		}}},
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name: "envoy.filters.network.http_connection_manager",
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: testenv.MustAny(t, &hcmv3.HttpConnectionManager{
				StatPrefix:     "x",
				RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{Name: "inline"}},
				HttpFilters:    []*hcmv3.HttpFilter{{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: testenv.MustAny(t, &routerv3.Router{})}}},
			})},
		}}}},
	}
	err = p.Apply(xdsclient.ListenerType, resources(t, l))
	if err == nil || !strings.Contains(err.Error(), `listener "taken"`) {
		t.Fatalf("bind failure: %v", err)
	}
	if len(p.Runtime().Resources[xdsclient.ListenerType]) != 0 || p.State() != StatePreInitializing {
		t.Fatal("a rejected LDS update changed the runtime")
	}
}

// TestEndpointsFollowEDS: EDS assignments reach the compiled cluster, survive a recompile of the
// cluster, and a removed assignment empties it.
func TestEndpointsFollowEDS(t *testing.T) {
	p := newTestProxy(t)
	cl := &clusterv3.Cluster{
		Name:                 "svc",
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{ServiceName: "svc-eds", EdsConfig: &corev3.ConfigSource{
			ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}},
	}
	if err := p.Apply(xdsclient.ClusterType, resources(t, cl)); err != nil {
		t.Fatal(err)
	}
	ep := func(port uint32) *endpointv3.LbEndpoint {
		return &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}}}}
	}
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: "svc-eds", Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{ep(1), ep(2)}}}}
	eds := map[string]*xdsclient.Resource{"svc-eds": {Name: "svc-eds", Version: "1", Message: cla, Any: testenv.MustAny(t, cla)}}
	if err := p.Apply(xdsclient.EndpointType, eds); err != nil {
		t.Fatal(err)
	}
	if _, total := p.Runtime().Clusters["svc"].HealthyHosts(); total != 2 {
		t.Fatalf("hosts after EDS = %d, want 2", total)
	}
	// A changed cluster is recompiled with the endpoints it already had.
	cl2 := proto.Clone(cl).(*clusterv3.Cluster)
	cl2.LbPolicy = clusterv3.Cluster_LEAST_REQUEST
	if err := p.Apply(xdsclient.ClusterType, resources(t, cl2)); err != nil {
		t.Fatal(err)
	}
	if _, total := p.Runtime().Clusters["svc"].HealthyHosts(); total != 2 {
		t.Fatalf("hosts after recompile = %d, want 2", total)
	}
	if err := p.Apply(xdsclient.EndpointType, map[string]*xdsclient.Resource{}); err != nil {
		t.Fatal(err)
	}
	if _, total := p.Runtime().Clusters["svc"].HealthyHosts(); total != 0 {
		t.Fatalf("hosts after removal = %d, want 0", total)
	}
	if p.Runtime().Resources[xdsclient.EndpointType]["svc-eds"] != nil {
		t.Fatal("removed assignment still in the runtime")
	}
}
