package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/strait-mesh/strait/internal/testenv"
)

// The external authorizers of TestCustomAuthorization decide as Istio's sample ext-authz server
// does: a request carrying "x-ext-authz: allow" is allowed, any other is denied; each answer
// carries x-ext-authz-check-result.
const (
	extAuthzAllowHeader = "x-ext-authz"
	extAuthzResult      = "x-ext-authz-check-result"
	extAuthzDeniedBody  = "denied by ext_authz for not found header `x-ext-authz: allow` in the request"
)

// httpAuthorizer is a real HTTP authorizer (envoyExtAuthzHttp) on loopback.
type httpAuthorizer struct {
	addr  string
	calls atomic.Int64
	paths chan string // the check requests' paths, for the path_prefix check
}

func startHTTPAuthorizer(t *testing.T) *httpAuthorizer {
	t.Helper()
	a := &httpAuthorizer{paths: make(chan string, 64)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a.addr = ln.Addr().String()
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.calls.Add(1)
		select {
		case a.paths <- r.URL.Path:
		default:
		}
		if r.Header.Get(extAuthzAllowHeader) == "allow" {
			w.Header().Set(extAuthzResult, "allowed")
			w.WriteHeader(http.StatusOK)
			return
		}
		w.Header().Set(extAuthzResult, "denied")
		w.Header().Set("x-not-for-the-client", "secret")
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, extAuthzDeniedBody)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return a
}

// grpcAuthorizer is a real gRPC authorizer (envoyExtAuthzGrpc, envoy.service.auth.v3).
type grpcAuthorizer struct {
	authv3.UnimplementedAuthorizationServer
	addr      string
	calls     atomic.Int64
	principal atomic.Value // the last check's source principal
}

func startGRPCAuthorizer(t *testing.T) *grpcAuthorizer {
	t.Helper()
	a := &grpcAuthorizer{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a.addr = ln.Addr().String()
	s := grpc.NewServer()
	authv3.RegisterAuthorizationServer(s, a)
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return a
}

// Check implements the Authorization service.
func (a *grpcAuthorizer) Check(_ context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	a.calls.Add(1)
	a.principal.Store(req.GetAttributes().GetSource().GetPrincipal())
	hdr := func(v string) []*corev3.HeaderValueOption {
		return []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: extAuthzResult, Value: v}}}
	}
	if req.GetAttributes().GetRequest().GetHttp().GetHeaders()[extAuthzAllowHeader] == "allow" {
		return &authv3.CheckResponse{Status: &status.Status{Code: int32(codes.OK)},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{Headers: hdr("allowed")}}}, nil
	}
	return &authv3.CheckResponse{Status: &status.Status{Code: int32(codes.PermissionDenied)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status: &typev3.HttpStatus{Code: typev3.StatusCode_Forbidden}, Headers: hdr("denied"), Body: extAuthzDeniedBody}}}, nil
}

// customPolicy is a CUSTOM AuthorizationPolicy for the reviews workload with provider: requests
// under /checked go to the authorizer, the rest do not.
func customPolicy(provider string) string {
	return reviewsPolicyYAML("AuthorizationPolicy", "ext-authz", fmt.Sprintf(`  action: CUSTOM
  provider: {name: %s}
  rules:
  - to: [{operation: {paths: ["/checked*"]}}]
`, provider))
}

// TestCustomAuthorization runs AuthorizationPolicy action CUSTOM against a real HTTP and a real
// gRPC external authorizer declared as MeshConfig extensionProviders: a request the policy
// selects is allowed or denied by the authorizer (its status, body and chosen headers reach the
// client; on allow its chosen headers reach the application), a request the policy does not
// select never reaches the authorizer, and an authorizer that is down denies (403) unless the
// provider is failOpen.
func TestCustomAuthorization(t *testing.T) {
	skipShort(t)
	const serverIP, clientIP = "127.0.0.112", "127.0.0.113" // unique among the e2e tests
	app := startBackend(t, "127.0.0.1", "reviews", backendOptions{})
	httpAuthz, grpcAuthz := startHTTPAuthorizer(t), startGRPCAuthorizer(t)
	down, err := net.Listen("tcp", "127.0.0.1:0") // a port where nothing answers
	if err != nil {
		t.Fatal(err)
	}
	downPort := down.Addr().(*net.TCPAddr).Port
	down.Close()
	port := func(addr string) int { return mustPort(t, addr) }
	endpoint := func(p int) string { return fmt.Sprintf("{address: 127.0.0.1, ports: {p: %d}}", p) }
	cfg := staticServiceYAML("reviews.e2e.svc.cluster.local", 9080, "http", "HTTP",
		"{address: "+serverIP+", serviceAccount: reviews, labels: {app: reviews, security.istio.io/tlsMode: istio}}") + "---\n" +
		explicitSidecarYAML("reviews", "ingress", "defaultEndpoint: "+app.Addr(), "bind: "+serverIP) + "---\n" +
		explicitSidecarYAML("client", "egress", "bind: "+clientIP, `hosts: ["e2e/*"]`) + "---\n" +
		staticServiceYAML("ext-authz-http.e2e.svc.cluster.local", 8000, "p", "HTTP", endpoint(port(httpAuthz.addr))) + "---\n" +
		staticServiceYAML("ext-authz-grpc.e2e.svc.cluster.local", 9000, "p", "GRPC", endpoint(port(grpcAuthz.addr))) + "---\n" +
		staticServiceYAML("ext-authz-down.e2e.svc.cluster.local", 8000, "p", "HTTP", endpoint(downPort))
	mesh := `extensionProviders:
- name: ext-http
  envoyExtAuthzHttp:
    service: ext-authz-http.e2e.svc.cluster.local
    port: 8000
    pathPrefix: /check
    includeRequestHeadersInCheck: [x-ext-authz]
    headersToUpstreamOnAllow: [x-ext-authz-check-result]
    headersToDownstreamOnDeny: [x-ext-authz-check-result]
- name: ext-grpc
  envoyExtAuthzGrpc:
    service: ext-authz-grpc.e2e.svc.cluster.local
    port: 9000
- name: ext-down
  envoyExtAuthzHttp:
    service: ext-authz-down.e2e.svc.cluster.local
    port: 8000
    timeout: 2s
- name: ext-down-open
  envoyExtAuthzHttp:
    service: ext-authz-down.e2e.svc.cluster.local
    port: 8000
    timeout: 2s
    failOpen: true
`
	meshFile := filepath.Join(t.TempDir(), "meshconfig.yaml")
	if err := os.WriteFile(meshFile, []byte(mesh), 0o644); err != nil {
		t.Fatal(err)
	}
	sd := testenv.StartStraitd(t, map[string]string{"mesh.yaml": cfg}, "--mesh-config", meshFile)
	sidecar := func(name, ip, app, sa string) *testenv.Proxy {
		return testenv.StartProxy(t, sd.XDS, testenv.ProxyOptions{Mode: "sidecar", Name: name, Namespace: "e2e", IP: ip,
			Labels: map[string]string{"app": app}, Extra: append([]string{"--interception-mode", "NONE"}, sd.Identity(t, "e2e", sa)...)})
	}
	server := sidecar("reviews-1", serverIP, "reviews", "reviews")
	sidecar("client-1", clientIP, "client", "client")

	type result struct {
		code   int
		body   string
		header http.Header
		app    echo
	}
	// get goes through the client sidecar, so the server sees the client's mesh identity.
	get := func(path string, allow bool) (result, error) {
		h := http.Header{}
		if allow {
			h.Set(extAuthzAllowHeader, "allow")
		}
		rep, err := do(h1Client, request{URL: "http://" + clientIP + ":9080" + path, Host: "reviews.e2e.svc.cluster.local:9080", Header: h})
		if err != nil {
			return result{}, err
		}
		res := result{code: rep.Code, body: rep.Body, header: rep.Header}
		if rep.Code == 200 {
			if err := json.Unmarshal([]byte(rep.Body), &res.app); err != nil {
				return res, fmt.Errorf("not an echo: %.100q", rep.Body)
			}
		}
		return res, nil
	}
	expect := func(what, path string, allow bool, code int) result {
		t.Helper()
		var res result
		testenv.Eventually(t, 30*time.Second, func() error {
			var err error
			if res, err = get(path, allow); err != nil {
				return err
			}
			if res.code != code {
				return fmt.Errorf("%s: %d %.120q, want %d", what, res.code, res.body, code)
			}
			return nil
		})
		return res
	}

	expect("before any policy", "/checked", false, 200)

	for _, tc := range []struct {
		provider string
		calls    func() int64
	}{
		{"ext-http", httpAuthz.calls.Load},
		{"ext-grpc", grpcAuthz.calls.Load},
	} {
		t.Run(tc.provider, func(t *testing.T) {
			before := tc.calls()
			sd.WriteConfig(t, "authz.yaml", customPolicy(tc.provider))
			testenv.Eventually(t, 30*time.Second, func() error { // until this provider is the one asked
				if _, err := get("/checked", false); err != nil {
					return err
				}
				if tc.calls() == before {
					return fmt.Errorf("%s not asked yet", tc.provider)
				}
				return nil
			})
			denied := expect("selected, without the allow header", "/checked", false, 403)
			if !strings.Contains(denied.body, extAuthzDeniedBody) {
				t.Errorf("the denial's body %.120q is not the authorizer's", denied.body)
			}
			if got := denied.header.Get(extAuthzResult); got != "denied" {
				t.Errorf("the denial's %s = %q, want the authorizer's \"denied\"", extAuthzResult, got)
			}
			if got := denied.header.Get("x-not-for-the-client"); got != "" {
				t.Errorf("an authorizer header not in headersToDownstreamOnDeny reached the client: %q", got)
			}
			allowed := expect("selected, with the allow header", "/checked/a", true, 200)
			if got := allowed.app.Headers[extAuthzResult]; got != "allowed" {
				t.Errorf("the application got %s = %q, want the authorizer's \"allowed\"", extAuthzResult, got)
			}
			before = tc.calls()
			expect("not selected by the policy", "/open", false, 200)
			// strait explain shows which requests the CUSTOM rules send to the authorizer.
			out, err := strait(t, sd, "explain", server.Admin, "--port", "9080", "--principal", spiffeClient, "--path", "/checked")
			if err != nil || !strings.Contains(out, "ALLOWED if the external authorizer allows") {
				t.Errorf("strait explain /checked: %v\n%s", err, out)
			}
			out, err = strait(t, sd, "explain", server.Admin, "--port", "9080", "--principal", spiffeClient, "--path", "/open")
			if err != nil || !strings.Contains(out, "not called: no CUSTOM rule selects the request") || strings.Contains(out, "if the external") {
				t.Errorf("strait explain /open: %v\n%s", err, out)
			}
			if n := tc.calls() - before; n != 0 {
				t.Errorf("a request the CUSTOM rules do not select reached the authorizer (%d checks)", n)
			}
		})
	}
	select {
	case p := <-httpAuthz.paths:
		if !strings.HasPrefix(p, "/check/checked") {
			t.Errorf("the HTTP check request's path is %q, want pathPrefix /check + the request path", p)
		}
	default:
		t.Error("the HTTP authorizer saw no check")
	}
	if p, _ := grpcAuthz.principal.Load().(string); p != spiffeClient {
		t.Errorf("the gRPC check's source principal is %q, want the caller's %q", p, spiffeClient)
	}

	t.Run("authorizer down", func(t *testing.T) {
		sd.WriteConfig(t, "authz.yaml", customPolicy("ext-down"))
		expect("authorizer down, fail closed", "/checked", true, 403)
		expect("authorizer down, not selected", "/open", true, 200)
		sd.WriteConfig(t, "authz.yaml", customPolicy("ext-down-open"))
		expect("authorizer down, failOpen", "/checked", true, 200)
	})

	t.Run("unknown provider fails closed", func(t *testing.T) {
		sd.WriteConfig(t, "authz.yaml", customPolicy("no-such-provider"))
		expect("CUSTOM with an unknown provider", "/checked", true, 403)
		expect("CUSTOM with an unknown provider, not selected", "/open", true, 200)
	})
}

// mustPort returns the port of a host:port.
func mustPort(t *testing.T, addr string) int {
	t.Helper()
	ap, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return ap.Port
}
