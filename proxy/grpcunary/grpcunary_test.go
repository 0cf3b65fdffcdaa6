package grpcunary

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	gcorev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/strait-mesh/strait/proxy/xdsfield"
	"github.com/strait-mesh/strait/proxy/xdspb"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
)

const method = "/test.Echo/Say"

func frame(msg []byte) []byte {
	b := make([]byte, 5+len(msg))
	binary.BigEndian.PutUint32(b[1:5], uint32(len(msg)))
	copy(b[5:], msg)
	return b
}

// fakeRT records the request it is sent and answers with reply (nil: err).
type fakeRT struct {
	got         *http.Request
	body        []byte
	hasDeadline bool
	reply       func() *http.Response
	err         error
}

func (f *fakeRT) RoundTrip(req *http.Request) (*http.Response, error) {
	f.got = req
	f.body, _ = io.ReadAll(req.Body)
	_, f.hasDeadline = req.Context().Deadline()
	if f.reply == nil {
		return nil, f.err
	}
	return f.reply(), nil
}

// reply is a gRPC reply with body and grpc-status in the header (trailersOnly) or trailer.
func reply(status int, ct string, body []byte, grpcStatus string, trailersOnly bool) func() *http.Response {
	return func() *http.Response {
		r := &http.Response{StatusCode: status, Header: http.Header{"Content-Type": {ct}}, Trailer: http.Header{},
			Body: io.NopCloser(bytes.NewReader(body))}
		if grpcStatus != "" {
			if trailersOnly {
				r.Header.Set("Grpc-Status", grpcStatus)
				r.Header.Set("Grpc-Message", "no%20way")
			} else {
				r.Trailer.Set("Grpc-Status", grpcStatus)
			}
		}
		return r
	}
}

func TestCall(t *testing.T) {
	out, _ := proto.Marshal(wrapperspb.String("hi back"))
	rt := &fakeRT{reply: reply(200, "application/grpc", frame(out), "0", false)}
	c := Client{Cluster: "outbound|9000||svc", Authority: "svc", Timeout: 250 * time.Millisecond,
		Metadata: [][2]string{{"X-Tenant", "t1"}}}
	var resp wrapperspb.StringValue
	if err := c.Call(context.Background(), rt, method, wrapperspb.String("hi"), &resp); err != nil {
		t.Fatal(err)
	}
	if resp.GetValue() != "hi back" {
		t.Errorf("reply %q", resp.GetValue())
	}
	in, _ := proto.Marshal(wrapperspb.String("hi"))
	h := rt.got.Header
	if rt.got.URL.Path != method || rt.got.Method != "POST" || rt.got.Host != "svc" || rt.got.ProtoMajor != 2 ||
		!bytes.Equal(rt.body, frame(in)) || !rt.hasDeadline {
		t.Errorf("request %s %s host %q body %x deadline %v", rt.got.Method, rt.got.URL, rt.got.Host, rt.body, rt.hasDeadline)
	}
	if h.Get("Content-Type") != "application/grpc" || h.Get("Te") != "trailers" || h.Get("Grpc-Timeout") != "250m" ||
		h.Get("X-Tenant") != "t1" || h.Get("User-Agent") != "" {
		t.Errorf("request headers %v", h)
	}
}

func TestCallFailures(t *testing.T) {
	ok, _ := proto.Marshal(wrapperspb.String("x"))
	for name, tc := range map[string]struct {
		rt   *fakeRT
		want string
	}{
		"transport":       {&fakeRT{err: errors.New("connection refused")}, "connection refused"},
		"HTTP status":     {&fakeRT{reply: reply(503, "application/grpc", nil, "", false)}, "HTTP 503"},
		"not gRPC":        {&fakeRT{reply: reply(200, "text/plain", []byte("hello"), "", false)}, `content-type "text/plain"`},
		"trailers-only":   {&fakeRT{reply: reply(200, "application/grpc", nil, "7", true)}, "grpc-status 7: no way"},
		"status trailer":  {&fakeRT{reply: reply(200, "application/grpc", frame(ok), "14", false)}, "grpc-status 14"},
		"no grpc-status":  {&fakeRT{reply: reply(200, "application/grpc", frame(ok), "", false)}, "without a grpc-status"},
		"over the limit":  {&fakeRT{reply: reply(200, "application/grpc", frame(make([]byte, 11)), "0", false)}, "exceeds the limit of 10"},
		"longer body":     {&fakeRT{reply: reply(200, "application/grpc", frame(make([]byte, 40))[:30], "0", false)}, "reading the StringValue"},
		"not the message": {&fakeRT{reply: reply(200, "application/grpc", frame([]byte{0xff}), "0", false)}, "decoding the StringValue"},
	} {
		c := Client{Cluster: "c", Authority: "c", MaxReceive: 10}
		err := c.Call(context.Background(), tc.rt, method, wrapperspb.String("hi"), &wrapperspb.StringValue{})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "calling "+method+" on c") {
			t.Errorf("%s: %v, want an error with %q", name, err, tc.want)
		}
	}
}

func TestDecode(t *testing.T) {
	msg, _ := proto.Marshal(wrapperspb.String("hello"))
	var got wrapperspb.StringValue
	if err := Decode(frame(msg), 10, &got); err != nil || got.GetValue() != "hello" {
		t.Fatalf("one message: %q %v", got.GetValue(), err)
	}
	compressed := frame(msg)
	compressed[0] = 1
	two := append(frame(msg), frame(msg)...)
	for name, b := range map[string][]byte{
		"short": {0, 0}, "compressed": compressed, "two messages": two, "truncated": frame(msg)[:7],
		"over the limit": frame(make([]byte, 11)), "huge length": {0, 0xff, 0xff, 0xff, 0xff},
	} {
		if err := Decode(b, 10, &got); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestTimeoutHeader(t *testing.T) {
	for ms, want := range map[int64]string{0: "1m", 600_000: "600000m", 200_000_000: "200000S", 1 << 50: "99999999S"} {
		if got := timeoutHeader(ms); got != want {
			t.Errorf("timeoutHeader(%d) = %q, want %q", ms, got, want)
		}
	}
}

func TestCompileEnvoyGRPC(t *testing.T) {
	gs := func(eg *corev3.GrpcService_EnvoyGrpc) *corev3.GrpcService {
		return &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: eg}}
	}
	c, err := CompileEnvoyGRPC("f", gs(&corev3.GrpcService_EnvoyGrpc{ClusterName: "outbound|9000||svc"}))
	if err != nil || c.Cluster != "outbound|9000||svc" || c.Authority != "svc" || c.MaxReceive != DefaultMaxReceiveBytes {
		t.Fatalf("defaults, an Istio cluster name (the service's host as authority): %+v %v", c, err)
	}
	c, err = CompileEnvoyGRPC("f", gs(&corev3.GrpcService_EnvoyGrpc{ClusterName: "rate_limit_cluster"}))
	if err != nil || c.Authority != "rate_limit_cluster" {
		t.Fatalf("defaults, the cluster name as authority: %+v %v", c, err)
	}
	c, err = CompileEnvoyGRPC("f", gs(&corev3.GrpcService_EnvoyGrpc{ClusterName: "c", Authority: "svc.ns",
		MaxReceiveMessageLength: wrapperspb.UInt32(1000), SkipEnvoyHeaders: true}))
	if err != nil || c.Authority != "svc.ns" || c.MaxReceive != 1000 {
		t.Fatalf("set: %+v %v", c, err)
	}
	for name, tc := range map[string]struct {
		gs   *corev3.GrpcService
		want string
	}{
		"no envoy_grpc": {&corev3.GrpcService{}, "f.envoy_grpc: missing"},
		"no cluster":    {gs(&corev3.GrpcService_EnvoyGrpc{}), "f.envoy_grpc.cluster_name: empty"},
		"bad authority": {gs(&corev3.GrpcService_EnvoyGrpc{ClusterName: "c", Authority: "a/b"}), "f.envoy_grpc.authority"},
		"cluster name no authority": {gs(&corev3.GrpcService_EnvoyGrpc{ClusterName: "a|b"}),
			`f.envoy_grpc.authority: unset, and the cluster name "a|b" is not an authority`},
		"retry_policy": {xdspb.MustFrom[*corev3.GrpcService](&gcorev3.GrpcService{TargetSpecifier: &gcorev3.GrpcService_EnvoyGrpc_{ // not read by strait-proxy
			EnvoyGrpc: &gcorev3.GrpcService_EnvoyGrpc{ClusterName: "c", RetryPolicy: &gcorev3.RetryPolicy{}}}}), "retry_policy"},
	} {
		_, err := CompileEnvoyGRPC("f", tc.gs)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
		var unsupported *xdsfield.UnsupportedError
		if name == "retry_policy" && !errors.As(err, &unsupported) {
			t.Errorf("retry_policy: %v is not an UnsupportedError", err)
		}
	}
}
