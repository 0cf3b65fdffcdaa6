package l7

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/route"
	"github.com/strait-mesh/strait/proxy/stats"
	"github.com/strait-mesh/strait/proxy/upstream"
	"github.com/strait-mesh/strait/proxy/xdspb"
	clusterv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/cluster/v3"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	endpointv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/endpoint/v3"
	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
)

// staticCluster compiles a STATIC cluster name with one endpoint, addr; h2 speaks HTTP/2 to it.
func staticCluster(t testing.TB, name, addr string, h2 bool) *upstream.Cluster {
	t.Helper()
	c := xdspb.MustFrom[*clusterv3.Cluster](testenv.StaticCluster(name, 2*time.Second, addr))
	if h2 {
		c.Http2ProtocolOptions = &corev3.Http2ProtocolOptions{}
	}
	uc, err := upstream.Compile(c, upstream.Deps{Stats: stats.NewStore()})
	if err != nil {
		t.Fatalf("upstream.Compile: %v", err)
	}
	t.Cleanup(uc.Close)
	return uc
}

// TestWithUpstreamCluster runs requests through the real upstream package (STATIC clusters,
// HTTP/1.1 and HTTP/2 pools) and an RDS route table reached through Env.
func TestWithUpstreamCluster(t *testing.T) {
	h1 := startUpstream(t, echoHandler(), false)
	h2 := startUpstream(t, echoHandler(), true)
	env := &testEnv{clusters: map[string]Upstream{
		"h1": staticCluster(t, "h1", h1, false),
		"h2": staticCluster(t, "h2", h2, true),
	}}
	tb, err := route.Compile(oneVhost(fwdRoute("to-h2", pfx("/h2"), toCluster("h2")), fwdRoute("to-h1", pfx("/"), toCluster("h1"))))
	if err != nil {
		t.Fatal(err)
	}
	hcm := inlineHCM(nil)
	hcm.RouteSpecifier = &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: "80"}}
	p := startProxy(t, hcm, env, false)

	// Before RDS arrives: 404 NR.
	resp, err := h1Client().Get(p.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("without route table: %d", resp.StatusCode)
	}
	env.mu.Lock()
	env.tables = map[string]*route.Table{"80": tb}
	env.mu.Unlock()

	for _, c := range []*http.Client{h1Client(), h2cClient()} {
		for path, proto := range map[string]string{"/h2/x": "HTTP/2.0", "/h1": "HTTP/1.1"} {
			resp, err := c.Get(p.url(path))
			if err != nil {
				t.Fatal(err)
			}
			if s := decodeSeen(t, resp); resp.StatusCode != 200 || s.Proto != proto || s.URI != path {
				t.Errorf("%s via %s: %d %+v", path, resp.Proto, resp.StatusCode, s)
			}
		}
	}
}

// TestDrain stops keep-alive and lets an in-flight request finish.
func TestDrain(t *testing.T) {
	release := make(chan struct{})
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		w.Write([]byte("done"))
	}), false)
	env := &testEnv{clusters: map[string]Upstream{"b": newTestUpstream(up, false)}}
	a := toCluster("b")
	a.Timeout = durationpb.New(0)
	p := startProxy(t, inlineHCM(oneVhost(fwdRoute("r", pfx("/"), a))), env, false)
	c := h1Client()
	errc := make(chan error, 1)
	go func() {
		resp, err := c.Get(p.url("/slow"))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != 200 {
				err = &net.AddrError{Err: "status " + resp.Status}
			}
		}
		errc <- err
	}()
	waitFor(t, "request in flight", func() bool { return p.h.st.rqActive() == 1 })
	drained := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		drained <- p.h.Drain(ctx)
	}()
	close(release)
	if err := <-errc; err != nil {
		t.Fatalf("in-flight request: %v", err)
	}
	if err := <-drained; err != nil {
		t.Fatalf("drain: %v", err)
	}
}

// TestHashPolicyAffinity checks that the route's hash policy reaches the load balancer: with a
// RING_HASH cluster of three endpoints, requests carrying the same x-user land on one endpoint.
func TestHashPolicyAffinity(t *testing.T) {
	var eps []*endpointv3.LbEndpoint
	for _, name := range []string{"e0", "e1", "e2"} {
		n := name
		addr := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(n)) }), false)
		host, port, _ := net.SplitHostPort(addr)
		p, _ := strconv.Atoi(port)
		eps = append(eps, &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(p)}}}}}}})
	}
	uc, err := upstream.Compile(&clusterv3.Cluster{
		Name:                 "ring",
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		LbPolicy:             clusterv3.Cluster_RING_HASH,
		ConnectTimeout:       durationpb.New(2 * time.Second),
		LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: "ring",
			Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: eps}}},
	}, upstream.Deps{Stats: stats.NewStore()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(uc.Close)
	a := toCluster("ring")
	a.HashPolicy = []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{
		Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: "x-user"}}}}
	p := startProxy(t, inlineHCM(oneVhost(fwdRoute("r", pfx("/"), a))), &testEnv{clusters: map[string]Upstream{"ring": uc}}, false)
	c := h1Client()
	chosen := map[string]bool{}
	for u := 0; u < 12; u++ {
		user := "user-" + strconv.Itoa(u)
		first := ""
		for i := 0; i < 5; i++ {
			req, _ := http.NewRequest("GET", p.url("/"), nil)
			req.Header.Set("X-User", user)
			_, b := roundTrip(t, c, req)
			if first == "" {
				first = b
			} else if b != first {
				t.Fatalf("%s went to %s, then %s", user, first, b)
			}
		}
		chosen[first] = true
	}
	if len(chosen) < 2 {
		t.Errorf("12 users all hashed to %v", chosen)
	}
}
