package extauthz

import (
	"bufio"
	"bytes"
	"net/http"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/strait-mesh/strait/proxy/grpcunary"
)

// checkMutations applies an allowing reply as the connection manager would and checks that
// nothing the service is not allowed to touch changed.
func checkMutations(t *testing.T, res *Response) {
	if res.Status == StatusOK && !res.Invalid {
		hm := msgHeader(http.Header{"Authorization": {"x"}, "X-A": {"1"}})
		ApplyHeaders(hm, res.RequestHeaders)
		RemoveHeaders(hm, res.RemoveHeaders)
		h := mapHeader(hm)
		MutateQuery("a=1&b=2", res.QuerySet, res.QueryRemove)
		for k, vs := range h {
			if forbidden(strings.ToLower(k)) || !validName(k) {
				t.Fatalf("reply set header %q", k)
			}
			for _, v := range vs {
				if !validValue(v) {
					t.Fatalf("reply set an invalid value %q", v)
				}
			}
		}
	}
	for _, op := range res.ResponseHeaders {
		if forbidden(op.Name) || !validName(op.Name) || !validValue(op.Value) {
			t.Fatalf("reply passes header %q: %q to the client", op.Name, op.Value)
		}
	}
	if res.Status == StatusDenied && (res.Code < 200 || res.Code > 599) {
		t.Fatalf("denial with status %d", res.Code)
	}
}

// FuzzGRPCReply feeds arbitrary bytes to the parser of a Check call's response body.
func FuzzGRPCReply(f *testing.F) {
	seeds := []*authv3.CheckResponse{
		{Status: &rpcstatus.Status{}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers:              []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-user", Value: "a"}}},
			HeadersToRemove:      []string{"authorization", ":path"},
			ResponseHeadersToAdd: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "set-cookie", Value: "s=1"}}},
			QueryParametersToSet: []*corev3.QueryParameter{{Key: "k", Value: "v"}},
		}}},
		{Status: &rpcstatus.Status{Code: 7}, HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status: &typev3.HttpStatus{Code: 401}, Body: "no",
			Headers: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "host", Value: "x"}}}}}},
		{Status: &rpcstatus.Status{Code: 13}, HttpResponse: &authv3.CheckResponse_ErrorResponse{ErrorResponse: &authv3.DeniedHttpResponse{}}},
	}
	for _, s := range seeds {
		b, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(frame(b))
	}
	f.Add([]byte{0, 0, 0, 0, 0})
	f.Add([]byte{1, 0, 0, 0, 1, 0})
	c := &Config{GRPC: true, StatusOnError: 403, grpc: grpcunary.Client{MaxReceive: 1 << 16}, MaxDeniedBodyBytes: 64}
	strict := &Config{GRPC: true, StatusOnError: 403, grpc: grpcunary.Client{MaxReceive: 1 << 16}, ValidateMutations: true}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkMutations(t, c.fromGRPCBody(body))
		checkMutations(t, strict.fromGRPCBody(body))
	})
}

// FuzzHTTPReply feeds arbitrary responses to the interpretation of an HTTP service's reply.
func FuzzHTTPReply(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nX-User: a\r\nX-Envoy-Auth-Headers-To-Remove: cookie, :path\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 403 Forbidden\r\nSet-Cookie: a\r\nSet-Cookie: b\r\nConnection: close\r\nContent-Length: 2\r\n\r\nno"))
	f.Add([]byte("HTTP/1.1 302 Found\r\nLocation: /login\r\n\r\n"))
	c := &Config{StatusOnError: 403, upstream: (&nameList{}).withExact("x-user", "connection"),
		clientOnSuccess: (&nameList{}).withExact("x-user"), MaxDeniedBodyBytes: 16}
	f.Fuzz(func(t *testing.T, raw []byte) {
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), nil)
		if err != nil {
			return
		}
		defer resp.Body.Close()
		res := c.fromHTTPResponse(resp)
		checkMutations(t, res)
		if len(res.Body) > c.MaxDeniedBodyBytes {
			t.Fatalf("denial body of %d bytes", len(res.Body))
		}
	})
}
