package extauthz

import (
	"context"
	"encoding/binary"
	"net/http"
	"reflect"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/strait-mesh/strait/internal/testenv"
)

// authServer is a real envoy.service.auth.v3 Authorization server that records its calls.
type authServer struct {
	authv3.UnimplementedAuthorizationServer
	testenv.Calls[call]
	mu    sync.Mutex
	reply func(*authv3.CheckRequest) (*authv3.CheckResponse, error)
}

type call struct {
	req         *authv3.CheckRequest
	md          metadata.MD
	hasDeadline bool
}

func (a *authServer) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	_, dl := ctx.Deadline()
	a.Add(call{req: req, md: md, hasDeadline: dl})
	a.mu.Lock()
	reply := a.reply
	a.mu.Unlock()
	return reply(req)
}

func (a *authServer) set(reply func(*authv3.CheckRequest) (*authv3.CheckResponse, error)) {
	a.mu.Lock()
	a.reply = reply
	a.mu.Unlock()
}

// checkPeers checks a check's source and destination: clientRequest's addresses (10.0.0.1:5555
// and 10.0.0.2:8080) with the principals srcP and dstP.
func checkPeers(t *testing.T, ac *authv3.AttributeContext, srcP, dstP string) {
	t.Helper()
	src, dst := ac.GetSource(), ac.GetDestination()
	if src.GetAddress().GetSocketAddress().GetAddress() != "10.0.0.1" || src.GetAddress().GetSocketAddress().GetPortValue() != 5555 ||
		src.GetPrincipal() != srcP ||
		dst.GetAddress().GetSocketAddress().GetAddress() != "10.0.0.2" || dst.GetAddress().GetSocketAddress().GetPortValue() != 8080 ||
		dst.GetPrincipal() != dstP {
		t.Errorf("peers %v / %v", src, dst)
	}
}

func okReply(ok *authv3.OkHttpResponse) func(*authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return func(*authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return &authv3.CheckResponse{Status: &rpcstatus.Status{}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: ok}}, nil
	}
}

func hvo(k, v string, appendV *bool, action corev3.HeaderValueOption_HeaderAppendAction) *corev3.HeaderValueOption {
	o := &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}, AppendAction: action}
	if appendV != nil {
		o.Append = wrapperspb.Bool(*appendV)
	}
	return o
}

func TestGRPCServiceCheckRequest(t *testing.T) {
	a := &authServer{reply: okReply(nil)}
	addr := testenv.AuthorizationServer(t, a)
	cfg := testenv.IstioExtAuthzGRPC("outbound|9000||authz")
	cfg.GetGrpcService().InitialMetadata = []*corev3.HeaderValue{{Key: "x-tenant", Value: "t1"}}
	cfg.MetadataContextNamespaces = []string{"envoy.filters.http.jwt_authn", "absent"}
	cfg.IncludeTlsSession = true
	cfg.WithRequestBody = &extauthzv3.BufferSettings{MaxRequestBytes: 16}
	c := mustCompile(t, cfg)
	req := clientRequest()
	req.Header["X-Bin"] = []string{"a\xffb"}
	req.ContentLength, req.Body, req.BodyBuffered = 3, []byte("abc"), true
	req.SourcePrincipal, req.DestinationPrincipal = "spiffe://cluster.local/ns/a/sa/client", "spiffe://cluster.local/ns/b/sa/server"
	req.TLS, req.SNI = true, "svc.local"
	jwt := &structpb.Struct{Fields: map[string]*structpb.Value{"sub": structpb.NewStringValue("alice")}}
	req.Metadata = func(ns string) *structpb.Struct {
		if ns == "envoy.filters.http.jwt_authn" {
			return jwt
		}
		return nil
	}
	if res := c.Check(context.Background(), h2cRT(addr), req); res.Status != StatusOK {
		t.Fatalf("status %v: %v", res.Status, res.Err)
	}
	got := a.Last(t)
	if got.md.Get(":authority")[0] != "ext-authz.foo.svc.cluster.local" || got.md.Get("x-tenant")[0] != "t1" || !got.hasDeadline {
		t.Errorf("call metadata %v deadline %v", got.md, got.hasDeadline)
	}
	ac := got.req.GetAttributes()
	checkPeers(t, ac, "spiffe://cluster.local/ns/a/sa/client", "spiffe://cluster.local/ns/b/sa/server")
	h := ac.GetRequest().GetHttp()
	if h.GetId() != "req-1" || h.GetMethod() != "POST" || h.GetPath() != "/api/items?q=1" || h.GetHost() != "svc.local" ||
		h.GetScheme() != "http" || h.GetProtocol() != "HTTP/1.1" || h.GetSize() != 3 || h.GetBody() != "abc" {
		t.Errorf("http %v", h)
	}
	wantHdrs := map[string]string{":authority": "svc.local", ":method": "POST", ":path": "/api/items?q=1", ":scheme": "http",
		"authorization": "Bearer t", "x-ext-authz": "allow", "x-pass-one": "1,2", "x-other": "no", "cookie": "c=1", "te": "trailers",
		"x-bin": "a!b", "content-length": "3", PartialBodyHeader: "false"}
	if !reflect.DeepEqual(h.GetHeaders(), wantHdrs) {
		t.Errorf("headers %v, want %v", h.GetHeaders(), wantHdrs)
	}
	if !ac.GetRequest().GetTime().AsTime().Equal(time.Unix(1700000000, 5)) {
		t.Errorf("time %v", ac.GetRequest().GetTime())
	}
	fm := ac.GetMetadataContext().GetFilterMetadata()
	if len(fm) != 1 || !proto.Equal(fm["envoy.filters.http.jwt_authn"], jwt) {
		t.Errorf("metadata_context %v", fm)
	}
	if ac.GetTlsSession().GetSni() != "svc.local" || len(ac.GetContextExtensions()) != 0 {
		t.Errorf("tls_session %v, context_extensions %v", ac.GetTlsSession(), ac.GetContextExtensions())
	}

	// allowed_headers narrows the headers; pack_as_bytes sends raw_body.
	cfg.AllowedHeaders = list(exact("x-ext-authz"), exact(":path"))
	cfg.DisallowedHeaders = list(exact(":path"))
	cfg.WithRequestBody.PackAsBytes = true
	c = mustCompile(t, cfg)
	req.Body = []byte{0xff, 0}
	req.PartialBody = true
	if res := c.Check(context.Background(), h2cRT(addr), req); res.Status != StatusOK {
		t.Fatalf("status %v: %v", res.Status, res.Err)
	}
	h = a.Last(t).req.GetAttributes().GetRequest().GetHttp()
	if want := map[string]string{"x-ext-authz": "allow", PartialBodyHeader: "true"}; !reflect.DeepEqual(h.GetHeaders(), want) {
		t.Errorf("headers %v, want %v", h.GetHeaders(), want)
	}
	if string(h.GetRawBody()) != "\xff\x00" || h.GetBody() != "" {
		t.Errorf("raw body %q body %q", h.GetRawBody(), h.GetBody())
	}
}

func TestGRPCServiceReplies(t *testing.T) {
	a := &authServer{}
	addr := testenv.AuthorizationServer(t, a)
	c := mustCompile(t, testenv.IstioExtAuthzGRPC("authz"))
	check := func() *Response { return c.Check(context.Background(), h2cRT(addr), clientRequest()) }
	yes, no := true, false

	a.set(func(*authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return &authv3.CheckResponse{
			Status: &rpcstatus.Status{Code: int32(codes.OK)},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
				Headers: []*corev3.HeaderValueOption{
					hvo("x-user", "alice", nil, 0), hvo("x-tag", "t", &yes, 0), hvo("x-set", "s", &no, 0),
					hvo("x-absent", "a", nil, corev3.HeaderValueOption_ADD_IF_ABSENT),
					hvo("x-over", "o", nil, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS),
					hvo("host", "evil", nil, 0), hvo(":path", "/evil", nil, 0), hvo("content-length", "1", nil, 0),
				},
				HeadersToRemove:         []string{"Authorization", ":authority", "host"},
				ResponseHeadersToAdd:    []*corev3.HeaderValueOption{hvo("set-cookie", "s=1", &yes, 0), hvo("x-r", "r", nil, 0)},
				QueryParametersToSet:    []*corev3.QueryParameter{{Key: "q", Value: "2"}},
				QueryParametersToRemove: []string{"drop"},
			}},
			DynamicMetadata: &structpb.Struct{Fields: map[string]*structpb.Value{"user": structpb.NewStringValue("alice")}},
		}, nil
	})
	res := check()
	if res.Status != StatusOK || res.Invalid {
		t.Fatalf("allow: %+v", res)
	}
	wantReq := []HeaderOp{{"x-user", "alice", Set}, {"x-tag", "t", Append}, {"x-set", "s", Set}, {"x-absent", "a", AddIfAbsent},
		{"x-over", "o", OverwriteIfExists}}
	if !reflect.DeepEqual(res.RequestHeaders, wantReq) {
		t.Errorf("request headers %v, want %v", res.RequestHeaders, wantReq)
	}
	if want := []HeaderOp{{"set-cookie", "s=1", Add}, {"x-r", "r", Set}}; !reflect.DeepEqual(res.ResponseHeaders, want) {
		t.Errorf("response headers %v, want %v", res.ResponseHeaders, want)
	}
	if !reflect.DeepEqual(res.RemoveHeaders, []string{"authorization"}) || !reflect.DeepEqual(res.QuerySet, []QueryParam{{"q", "2"}}) ||
		!reflect.DeepEqual(res.QueryRemove, []string{"drop"}) || res.Metadata.GetFields()["user"].GetStringValue() != "alice" {
		t.Errorf("mutations %+v", res)
	}

	a.set(func(*authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return &authv3.CheckResponse{
			Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)},
			HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
				Status:  &typev3.HttpStatus{Code: typev3.StatusCode_Unauthorized},
				Headers: []*corev3.HeaderValueOption{hvo("www-authenticate", "Bearer", nil, 0), hvo("content-length", "99", nil, 0)},
				Body:    "go away",
			}},
		}, nil
	})
	res = check()
	if res.Status != StatusDenied || res.Code != 401 || res.Body != "go away" ||
		!reflect.DeepEqual(res.ResponseHeaders, []HeaderOp{{"www-authenticate", "Bearer", Set}}) {
		t.Fatalf("deny: %+v", res)
	}

	a.set(func(*authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.Unauthenticated)}}, nil
	})
	if res = check(); res.Status != StatusDenied || res.Code != 403 || res.Body != "" {
		t.Fatalf("bare deny: %+v", res)
	}

	a.set(func(*authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return &authv3.CheckResponse{
			Status: &rpcstatus.Status{Code: int32(codes.Internal)},
			HttpResponse: &authv3.CheckResponse_ErrorResponse{ErrorResponse: &authv3.DeniedHttpResponse{
				Headers: []*corev3.HeaderValueOption{hvo("x-err", "1", nil, 0)}, Body: "broken"}},
		}, nil
	})
	if res = check(); res.Status != StatusError || res.Code != 0 || res.Body != "broken" || !hasOp(res.ResponseHeaders, "x-err", "1") {
		t.Fatalf("error_response: %+v", res)
	}

	a.set(func(*authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return nil, status.Error(codes.Unavailable, "overloaded")
	})
	if res = check(); res.Status != StatusError {
		t.Fatalf("grpc error: %+v", res)
	}

	// validate_mutations: an invalid header is a failed request, not a skipped header.
	a.set(okReply(&authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{hvo("x-bad", "a\x01b", nil, 0), hvo("x-good", "g", nil, 0)}}))
	if res = check(); res.Status != StatusOK || res.Invalid || !reflect.DeepEqual(res.RequestHeaders, []HeaderOp{{"x-good", "g", Set}}) {
		t.Fatalf("invalid header skipped: %+v", res)
	}
	cfg := testenv.IstioExtAuthzGRPC("authz")
	cfg.ValidateMutations = true
	vc := mustCompile(t, cfg)
	if res = vc.Check(context.Background(), h2cRT(addr), clientRequest()); res.Status != StatusOK || !res.Invalid {
		t.Fatalf("invalid header with validate_mutations: %+v", res)
	}
}

func TestGRPCServiceFailures(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	a := &authServer{reply: func(*authv3.CheckRequest) (*authv3.CheckResponse, error) {
		<-release
		return &authv3.CheckResponse{}, nil
	}}
	addr := testenv.AuthorizationServer(t, a)
	cfg := testenv.IstioExtAuthzGRPC("authz")
	cfg.GetGrpcService().Timeout = durationpb.New(50 * time.Millisecond)
	c := mustCompile(t, cfg)
	if res := c.Check(context.Background(), h2cRT(addr), clientRequest()); res.Status != StatusError {
		t.Fatalf("timeout: %+v", res)
	}

	// A plain HTTP server is not a gRPC service.
	plain := testenv.HTTPBackend(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("hello")) })
	if res := c.Check(context.Background(), h1RT(plain), clientRequest()); res.Status != StatusError {
		t.Fatalf("not gRPC: %+v", res)
	}
}

func frame(msg []byte) []byte {
	b := make([]byte, 5+len(msg))
	binary.BigEndian.PutUint32(b[1:5], uint32(len(msg)))
	copy(b[5:], msg)
	return b
}
