package proxycheck

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	ratelimitconfv3 "github.com/envoyproxy/go-control-plane/envoy/config/ratelimit/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	commonrlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	rlnetv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/ratelimit/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/redis_proxy/v3" // a filter strait-proxy lacks
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/strait-mesh/strait/controlplane/config"
)

// anyOf returns an empty message of typeURL as an Any.
func anyOf(t *testing.T, typeURL string) *anypb.Any {
	t.Helper()
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(typeURL)
	if err != nil {
		t.Fatalf("%s: %v", typeURL, err)
	}
	a, err := anypb.New(mt.New().Interface())
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// listenerWith is a listener whose one chain has the network filters fs.
func listenerWith(fs ...*listenerv3.Filter) *listenerv3.Listener {
	return &listenerv3.Listener{Name: "l",
		Address:      &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 1}}}},
		FilterChains: []*listenerv3.FilterChain{{Filters: fs}}}
}

// hcmWith is an HTTP connection manager network filter with the HTTP filter typ, then the router.
func hcmWith(t *testing.T, typ string) *listenerv3.Filter {
	router, _ := anypb.New(&routerv3.Router{})
	hcm := &hcmv3.HttpConnectionManager{StatPrefix: "p", HttpFilters: []*hcmv3.HttpFilter{
		{Name: "f", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: anyOf(t, typ)}},
		{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router}},
	}, RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{Name: "r"}}}
	a, _ := anypb.New(hcm)
	return &listenerv3.Filter{Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: a}}
}

// TestProxyFilterTypes keeps config.ProxyHTTPFilterTypes and config.ProxyNetworkFilterTypes (the
// filters an EnvoyFilter may add, checked at apply time) equal to what strait-proxy's compilers
// implement: a listed type is never refused as an unknown filter (an empty config may be refused
// for its content), and filters strait-proxy lacks (Lua, Envoy's Redis proxy) are.
func TestProxyFilterTypes(t *testing.T) {
	c := Checker{}
	for _, typ := range config.ProxyHTTPFilterTypes {
		if err := c.Listener(listenerWith(hcmWith(t, typ))); err != nil && strings.Contains(err.Error(), typ) {
			t.Errorf("HTTP filter %s: %v", typ, err)
		}
	}
	for _, typ := range config.ProxyNetworkFilterTypes {
		f := &listenerv3.Filter{Name: "f", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: anyOf(t, typ)}}
		if err := c.Listener(listenerWith(f)); err != nil && strings.Contains(err.Error(), typ) {
			t.Errorf("network filter %s: %v", typ, err)
		}
	}
	const lua = "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua"
	if err := c.Listener(listenerWith(hcmWith(t, lua))); err == nil || !strings.Contains(err.Error(), lua) {
		t.Errorf("the Lua filter: %v (config.ProxyHTTPFilterTypes must not list it while strait-proxy lacks it)", err)
	}
	const redis = "type.googleapis.com/envoy.extensions.filters.network.redis_proxy.v3.RedisProxy"
	f := &listenerv3.Filter{Name: "f", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: anyOf(t, redis)}}
	if err := c.Listener(listenerWith(f)); err == nil || !strings.Contains(err.Error(), redis) {
		t.Errorf("the Redis proxy filter: %v (config.ProxyNetworkFilterTypes must not list it while strait-proxy lacks it)", err)
	}
}

// TestNetworkGlobalRateLimitChecked: an EnvoyFilter's network global rate limit filter is
// checked with strait-proxy's own compiler, so a field it does not implement (a descriptor
// value with substitution formatting) is refused naming the field, and a valid one passes.
func TestNetworkGlobalRateLimitChecked(t *testing.T) {
	filter := func(value string) *listenerv3.Filter {
		a, err := anypb.New(&rlnetv3.RateLimit{StatPrefix: "tcp", Domain: "tcp",
			Descriptors: []*commonrlv3.RateLimitDescriptor{{Entries: []*commonrlv3.RateLimitDescriptor_Entry{{Key: "k", Value: value}}}},
			RateLimitService: &ratelimitconfv3.RateLimitServiceConfig{GrpcService: &corev3.GrpcService{
				TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: "rls"}}}}})
		if err != nil {
			t.Fatal(err)
		}
		return &listenerv3.Filter{Name: "envoy.filters.network.ratelimit", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: a}}
	}
	tcp, _ := anypb.New(&tcpv3.TcpProxy{StatPrefix: "tcp", ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: "backend"}})
	terminal := &listenerv3.Filter{Name: "envoy.filters.network.tcp_proxy", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: tcp}}
	c := Checker{}
	if err := c.Listener(listenerWith(filter("static"), terminal)); err != nil {
		t.Errorf("valid filter: %v", err)
	}
	err := c.Listener(listenerWith(filter("%DOWNSTREAM_REMOTE_ADDRESS%"), terminal))
	if err == nil || !strings.Contains(err.Error(), "descriptors[0].entries[0].value") || !strings.Contains(err.Error(), "not supported yet") {
		t.Errorf("substitution formatting: %v", err)
	}
}
