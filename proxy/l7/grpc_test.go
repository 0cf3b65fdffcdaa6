package l7

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"google.golang.org/protobuf/types/known/durationpb"

	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
)

type fullDuplex struct {
	testpb.UnimplementedTestServiceServer
}

// FullDuplexCall echoes each message as it arrives, then ends with a trailer; a request body of
// "fail" ends the stream with NOT_FOUND instead.
func (fullDuplex) FullDuplexCall(stream testpb.TestService_FullDuplexCallServer) error {
	if err := stream.SendHeader(metadata.Pairs("x-backend", "b")); err != nil {
		return err
	}
	for {
		in, err := stream.Recv()
		if err == io.EOF {
			stream.SetTrailer(metadata.Pairs("x-trailer", "done"))
			return nil
		}
		if err != nil {
			return err
		}
		if string(in.GetPayload().GetBody()) == "fail" {
			return status.Error(codes.NotFound, "no such thing")
		}
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: in.GetPayload()}); err != nil {
			return err
		}
	}
}

func TestGRPCBidirectionalStream(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	testpb.RegisterTestServiceServer(gs, fullDuplex{})
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)

	env := &testEnv{clusters: map[string]Upstream{"grpc": newTestUpstream(ln.Addr().String(), true)}}
	rc := oneVhost(
		fwdRoute("grpc", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/grpc.testing.TestService/FullDuplexCall"},
			Grpc: &routev3.RouteMatch_GrpcRouteMatchOptions{}}, &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "grpc"}, Timeout: durationpb.New(0)}),
		fwdRoute("missing", pfx("/"), toCluster("absent")),
	)
	p := startProxy(t, inlineHCM(rc), env, false)

	cc, err := grpc.NewClient("passthrough:///"+p.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := testpb.NewTestServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	stream, err := client.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Lock-step ping-pong: each reply must arrive before the next message is sent, which only
	// works if both directions stream through the proxy.
	for i := 0; i < 5; i++ {
		msg := []byte{'m', byte('0' + i)}
		if err := stream.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: msg}}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("recv %d: %v", i, err)
		}
		if string(resp.GetPayload().GetBody()) != string(msg) {
			t.Fatalf("echo %q", resp.GetPayload().GetBody())
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("end of stream: %v", err)
	}
	if tr := stream.Trailer(); len(tr.Get("x-trailer")) != 1 || tr.Get("x-trailer")[0] != "done" {
		t.Errorf("trailers %v", tr)
	}
	ri := p.nextInfo(t)
	if ri.GRPCStatus != "0" || ri.Status != 200 {
		t.Errorf("info %+v", ri)
	}

	// An error status in trailers passes through.
	stream, err = client.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stream.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte("fail")}})
	if _, err := stream.Recv(); status.Code(err) != codes.NotFound || status.Convert(err).Message() != "no such thing" {
		t.Errorf("upstream error status: %v", err)
	}
	p.nextInfo(t)

	// A local reply to a gRPC request is a gRPC status, not an HTTP error.
	_, err = client.UnaryCall(ctx, &testpb.SimpleRequest{})
	st := status.Convert(err)
	if st.Code() != codes.Unavailable {
		t.Errorf("local reply: %v", err)
	}
	if ri := p.nextInfo(t); ri.Status != 200 || ri.GRPCStatus != "14" || ri.Flags != FlagNoClusterFound {
		t.Errorf("local reply info %+v", ri)
	}
}
