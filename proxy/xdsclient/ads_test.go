package xdsclient

import (
	"context"
	"net"
	"testing"
	"time"

	gcpdiscoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/strait-mesh/strait/internal/grpclite"
	discoveryv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/service/discovery/v3"
)

// echoADS answers each request on either stream with one response naming its type URL; a
// request for type "refuse" ends the stream with Unavailable and a retry hint of 3 s.
type echoADS struct {
	gcpdiscoveryv3.UnimplementedAggregatedDiscoveryServiceServer
}

func (echoADS) StreamAggregatedResources(s gcpdiscoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	req, err := s.Recv()
	if err != nil {
		return err
	}
	if req.GetTypeUrl() == "refuse" {
		st, err := status.New(codes.Unavailable, "too many new streams").
			WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(3 * time.Second)})
		if err != nil {
			return err
		}
		return st.Err()
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

// bufADS serves register's services on an in-memory listener and returns a grpclite
// connection to it.
func bufADS(t *testing.T, register func(*grpc.Server)) *grpclite.Conn {
	t.Helper()
	lis := bufconn.Listen(1 << 16)
	srv := grpc.NewServer()
	register(srv)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpclite.Dial("bufnet:1", grpclite.Options{
		Dial: func(ctx context.Context, _, _ string) (net.Conn, error) { return lis.DialContext(ctx) },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestADSStreams: the grpclite ADS streams speak to go-control-plane's generated server on both
// methods, and a server's status and its retry hint (grpc-status-details-bin) reach Recv.
func TestADSStreams(t *testing.T) {
	conn := bufADS(t, func(s *grpc.Server) { gcpdiscoveryv3.RegisterAggregatedDiscoveryServiceServer(s, echoADS{}) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	sotw, err := openSotW(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	if err := sotw.Send(&discoveryv3.DiscoveryRequest{TypeUrl: "t1"}); err != nil {
		t.Fatal(err)
	}
	if resp, err := sotw.Recv(); err != nil || resp.GetTypeUrl() != "t1" || resp.GetNonce() != "n1" {
		t.Errorf("state of the world response = %v, %v", resp, err)
	}

	delta, err := openDelta(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	if err := delta.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: "t2"}); err != nil {
		t.Fatal(err)
	}
	if resp, err := delta.Recv(); err != nil || resp.GetTypeUrl() != "t2" || resp.GetNonce() != "d1" {
		t.Errorf("delta response = %v, %v", resp, err)
	}

	refused, err := openSotW(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	if err := refused.Send(&discoveryv3.DiscoveryRequest{TypeUrl: "refuse"}); err != nil {
		t.Fatal(err)
	}
	_, err = refused.Recv()
	if grpclite.CodeOf(err) != grpclite.Unavailable {
		t.Errorf("refused stream: %v", err)
	}
	if h := retryHint(err, time.Minute); h != 3*time.Second {
		t.Errorf("retry hint of the refused stream: %s, want 3s", h)
	}
}

// TestADSUnimplemented: a server without ADS answers Unimplemented, which the client reads as
// "fall back to state of the world" (runDelta's errUnimplemented).
func TestADSUnimplemented(t *testing.T) {
	conn := bufADS(t, func(*grpc.Server) {})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := New(Options{Address: "bufnet:1", Handler: HandlerFunc(func(string, map[string]*Resource) error { return nil })})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.runDelta(ctx, conn); err != errUnimplemented {
		t.Errorf("runDelta against a server without ADS: %v, want errUnimplemented", err)
	}
}
