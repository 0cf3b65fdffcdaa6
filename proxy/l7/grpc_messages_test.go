package l7

import (
	"context"
	"io"
	"net"
	"regexp"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/strait-mesh/strait/proxy/stats"
)

// messageServer answers UnaryCall, echoes FullDuplexCall (fullDuplex) and answers a
// StreamingOutputCall with one message per response parameter.
type messageServer struct{ fullDuplex }

func (messageServer) UnaryCall(_ context.Context, in *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	return &testpb.SimpleResponse{Payload: in.GetPayload()}, nil
}

func (messageServer) StreamingOutputCall(in *testpb.StreamingOutputCallRequest, stream testpb.TestService_StreamingOutputCallServer) error {
	for range in.GetResponseParameters() {
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: []byte("x")}}); err != nil {
			return err
		}
	}
	return nil
}

// grpcMessages returns the value of the gRPC series of a message counter in st's output.
func grpcMessages(t *testing.T, st *stats.Store, name string) int {
	t.Helper()
	re := regexp.MustCompile(name + `\{[^}]*request_protocol="grpc"[^}]*\} (\d+)\n`)
	m := re.FindStringSubmatch(prometheusText(t, st))
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// TestGRPCMessageCounts sends a unary call, a bidirectional stream of n messages each way and
// a server stream of 1 request and 3 responses through the proxy with a real gRPC client and
// server: istio_request_messages_total and istio_response_messages_total count the messages
// in each direction.
func TestGRPCMessageCounts(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	testpb.RegisterTestServiceServer(gs, messageServer{})
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)

	const cluster = "outbound|80||api.shop.svc.cluster.local"
	env := &testEnv{clusters: map[string]Upstream{cluster: newTestUpstream(ln.Addr().String(), true)}}
	addr, st := startTelemetryProxy(t, "outbound_0.0.0.0_80", env, loopbackInfo)
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := testpb.NewTestServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	expect := func(what string, req, resp int) {
		t.Helper()
		waitFor(t, what, func() bool {
			return grpcMessages(t, st, "istio_request_messages_total") == req &&
				grpcMessages(t, st, "istio_response_messages_total") == resp
		})
	}

	if _, err := client.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("hi")}}); err != nil {
		t.Fatal(err)
	}
	expect("unary: 1 and 1", 1, 1)

	const n = 7
	stream, err := client.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		// Payloads of several sizes, one larger than the proxy's copy buffer, so that gRPC
		// frames are cut across reads.
		body := make([]byte, 1+i*i*1000)
		if i == n-1 {
			body = make([]byte, 100<<10)
		}
		if err := stream.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: body}}); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatalf("recv %d: %v", i, err)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("end of stream: %v", err)
	}
	expect("bidirectional stream: n more each way", 1+n, 1+n)

	out, err := client.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{
		ResponseParameters: []*testpb.ResponseParameters{{}, {}, {}}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := out.Recv(); err != nil {
			t.Fatalf("recv %d: %v", i, err)
		}
	}
	if _, err := out.Recv(); err != io.EOF {
		t.Fatalf("end of server stream: %v", err)
	}
	expect("server stream: 1 request, 3 responses", 2+n, 4+n)

	// Plain HTTP requests have no message counters.
	if got := regexp.MustCompile(`istio_request_messages_total\{[^}]*request_protocol="http"`).FindString(prometheusText(t, st)); got != "" {
		t.Errorf("an HTTP series of istio_request_messages_total: %s", got)
	}
}
