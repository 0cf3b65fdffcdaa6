package listener

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/net/websocket"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/l7"
	"github.com/strait-mesh/strait/proxy/route"
	"github.com/strait-mesh/strait/proxy/upstream"
	clusterv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/cluster/v3"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	endpointv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/endpoint/v3"
	listenerv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/listener/v3"
	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
	routerv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
)

// stackEnv serves HTTP chains with l7 and real upstream.Clusters.
type stackEnv struct {
	*testEnv
	clusters map[string]*upstream.Cluster
}

func (e stackEnv) HTTP() l7.Env { return stackHTTP(e) }

type stackHTTP stackEnv

func (e stackHTTP) Route(string) *route.Table { return nil }
func (e stackHTTP) Cluster(name string) l7.Upstream {
	if c, ok := e.clusters[name]; ok {
		return c
	}
	return nil
}

// TestWebSocketThroughListener: a WebSocket client (golang.org/x/net/websocket) talks to an echo
// server through listener (http_inspector) → l7 (upgrade websocket) → upstream STATIC cluster.
func TestWebSocketThroughListener(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle("/ws", websocket.Handler(func(ws *websocket.Conn) { io.Copy(ws, ws) }))
	bl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(bl)
	defer srv.Close()
	ap := netip.MustParseAddrPort(bl.Addr().String())

	base := newEnv()
	cl, err := upstream.Compile(&clusterv3.Cluster{
		Name:                 "ws",
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(5 * time.Second),
		LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: "ws", Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
					Address: ap.Addr().String(), PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(ap.Port())}}}}}}}},
		}}},
	}, upstream.Deps{Stats: base.st})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	env := stackEnv{testEnv: base, clusters: map[string]*upstream.Cluster{"ws": cl}}
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix:     "ws",
		UpgradeConfigs: []*hcmv3.HttpConnectionManager_UpgradeConfig{{UpgradeType: "websocket"}},
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name: "ws",
			VirtualHosts: []*routev3.VirtualHost{{Name: "all", Domains: []string{"*"}, Routes: []*routev3.Route{{
				Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "ws"}}},
			}}}},
		}},
		HttpFilters: []*hcmv3.HttpFilter{{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: testenv.MustAny(t, &routerv3.Router{})}}},
	}
	fc := &listenerv3.FilterChain{Name: "ws", Filters: []*listenerv3.Filter{{Name: "envoy.filters.network.http_connection_manager",
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: testenv.MustAny(t, hcm)}}}}
	_, addr := start(t, &listenerv3.Listener{Name: "ws", ListenerFilters: []*listenerv3.ListenerFilter{httpInspector(t)},
		FilterChains: []*listenerv3.FilterChain{fc}}, env)

	cfg, err := websocket.NewConfig("ws://"+addr+"/ws", "http://"+addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, err := cfg.DialContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	ws.SetDeadline(time.Now().Add(10 * time.Second))
	testenv.WebSocketEcho(t, ws, "hello", "through", "strait")
}
