package discoveryv3_test

import (
	"context"
	"net"
	"testing"
	"time"

	gcpdiscoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	discoveryv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/service/discovery/v3"
)

// echoADS answers each request on either stream with one response naming its type URL.
type echoADS struct {
	gcpdiscoveryv3.UnimplementedAggregatedDiscoveryServiceServer
}

func (echoADS) StreamAggregatedResources(s gcpdiscoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	req, err := s.Recv()
	if err != nil {
		return err
	}
	return s.Send(&gcpdiscoveryv3.DiscoveryResponse{TypeUrl: req.GetTypeUrl(), Nonce: "n1"})
}

func (echoADS) DeltaAggregatedResources(s gcpdiscoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	req, err := s.Recv()
	if err != nil {
		return err
	}
	return s.Send(&gcpdiscoveryv3.DeltaDiscoveryResponse{TypeUrl: req.GetTypeUrl(), Nonce: "d1"})
}

// TestADSClient: the hand-written client speaks to go-control-plane's generated server on both
// streams (over an in-memory connection).
func TestADSClient(t *testing.T) {
	lis := bufconn.Listen(1 << 16)
	srv := grpc.NewServer()
	gcpdiscoveryv3.RegisterAggregatedDiscoveryServiceServer(srv, echoADS{})
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ads := discoveryv3.NewAggregatedDiscoveryServiceClient(conn)

	sotw, err := ads.StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := sotw.Send(&discoveryv3.DiscoveryRequest{TypeUrl: "t1"}); err != nil {
		t.Fatal(err)
	}
	resp, err := sotw.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetTypeUrl() != "t1" || resp.GetNonce() != "n1" {
		t.Errorf("state of the world response = %v", resp)
	}

	delta, err := ads.DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := delta.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: "t2"}); err != nil {
		t.Fatal(err)
	}
	dresp, err := delta.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if dresp.GetTypeUrl() != "t2" || dresp.GetNonce() != "d1" {
		t.Errorf("delta response = %v", dresp)
	}
}
