package grpclite

import (
	"context"
	"io"
	"testing"

	gclusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/strait-mesh/strait/internal/testenv"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	discoveryv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/service/discovery/v3"
)

// TestADS runs the proxy's ADS exchange (its own trimmed xDS types) against go-control-plane's
// server: request, response, ACK, and a later push on the same stream.
func TestADS(t *testing.T) {
	ads := testenv.StartADS(t, testenv.ADSOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	setClusters := func(version string, names ...string) {
		var rs []types.Resource
		for _, n := range names {
			rs = append(rs, &gclusterv3.Cluster{Name: n})
		}
		snap, err := cachev3.NewSnapshot(version, map[resource.Type][]types.Resource{resource.ClusterType: rs})
		if err != nil {
			t.Fatal(err)
		}
		if err := ads.Cache.SetSnapshot(ctx, "node-1", snap); err != nil {
			t.Fatal(err)
		}
	}
	setClusters("v1", "a")

	c := dial(t, ads.Addr(), Options{})
	st, err := c.NewStream(ctx, "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources", nil)
	if err != nil {
		t.Fatal(err)
	}
	node := &corev3.Node{Id: "node-1"}
	if err := st.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resource.ClusterType}); err != nil {
		t.Fatal(err)
	}
	var resp discoveryv3.DiscoveryResponse
	if err := st.Recv(&resp); err != nil {
		t.Fatal(err)
	}
	if resp.GetVersionInfo() != "v1" || len(resp.GetResources()) != 1 || resp.GetTypeUrl() != resource.ClusterType {
		t.Fatalf("first response: version %q, %d resources, %s", resp.GetVersionInfo(), len(resp.GetResources()), resp.GetTypeUrl())
	}
	ack := &discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resource.ClusterType, VersionInfo: "v1", ResponseNonce: resp.GetNonce()}
	if err := st.Send(ack); err != nil {
		t.Fatal(err)
	}
	setClusters("v2", "a", "b")
	if err := st.Recv(&resp); err != nil {
		t.Fatal(err)
	}
	if resp.GetVersionInfo() != "v2" || len(resp.GetResources()) != 2 {
		t.Fatalf("push: version %q, %d resources", resp.GetVersionInfo(), len(resp.GetResources()))
	}
	cancel()
	if err := st.Recv(&resp); CodeOf(err) != Canceled {
		t.Fatalf("after cancel: %v", err)
	}
}

// TestHealthCheck calls grpc-go's own health service, as the gRPC application probe does.
func TestHealthCheck(t *testing.T) {
	hs := health.NewServer()
	hs.SetServingStatus("svc", healthpb.HealthCheckResponse_NOT_SERVING)
	srv := testenv.ServeGRPC(t, "127.0.0.1:0", func() *grpc.Server {
		g := grpc.NewServer()
		healthpb.RegisterHealthServer(g, hs)
		return g
	})
	c := dial(t, srv.Addr(), Options{})
	check := func(service string) (healthpb.HealthCheckResponse_ServingStatus, error) {
		var resp healthpb.HealthCheckResponse
		err := c.Invoke(context.Background(), "/grpc.health.v1.Health/Check", nil, &healthpb.HealthCheckRequest{Service: service}, &resp)
		return resp.GetStatus(), err
	}
	if s, err := check(""); err != nil || s != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("server health: %v, %v", s, err)
	}
	if s, err := check("svc"); err != nil || s != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("svc: %v, %v", s, err)
	}
	if _, err := check("unknown"); CodeOf(err) != NotFound {
		t.Errorf("unknown service: %v", err)
	}
	// Watch is server streaming: the first status comes, then the call stays open.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := c.NewStream(ctx, "/grpc.health.v1.Health/Watch", nil)
	if err != nil {
		t.Fatal(err)
	}
	st.Send(&healthpb.HealthCheckRequest{Service: "svc"})
	st.CloseSend()
	var resp healthpb.HealthCheckResponse
	if err := st.Recv(&resp); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("watch: %v, %v", resp.GetStatus(), err)
	}
	hs.SetServingStatus("svc", healthpb.HealthCheckResponse_SERVING)
	if err := st.Recv(&resp); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("watch update: %v, %v", resp.GetStatus(), err)
	}
	cancel()
	if err := st.Recv(&resp); err == io.EOF || CodeOf(err) != Canceled {
		t.Fatalf("after cancel: %v", err)
	}
}
