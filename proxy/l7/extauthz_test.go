package l7

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/strait-mesh/strait/internal/testenv"
	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
)

const (
	httpAuthzCluster = "outbound|8000||ext-authz.foo.svc.cluster.local"
	grpcAuthzCluster = "outbound|9000||ext-authz.foo.svc.cluster.local"
	customPolicy     = "istio-ext-authz-ns[foo]-policy[bar]-rule[0]"
)

func strExact(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}, IgnoreCase: true}
}

func strList(names ...string) *matcherv3.ListStringMatcher {
	l := &matcherv3.ListStringMatcher{}
	for _, n := range names {
		l.Patterns = append(l.Patterns, strExact(n))
	}
	return l
}

// istioCustomRBAC is the shadow RBAC filter istiod emits for a CUSTOM AuthorizationPolicy whose
// rule matches paths under pathPrefix.
func istioCustomRBAC(pathPrefix string) *hcmv3.HttpFilter {
	return typedFilter("envoy.filters.http.rbac", &rbachttpv3.RBAC{
		ShadowRules: &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW, Policies: map[string]*rbacv3.Policy{customPolicy: {
			Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{
				Rule: &matcherv3.PathMatcher_Path{Path: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: pathPrefix}}}}}}},
			Principals: []*rbacv3.Principal{{Identifier: &rbacv3.Principal_Any{Any: true}}},
		}}},
		ShadowRulesStatPrefix: "istio_ext_authz_",
	})
}

// istioHTTPAuthz is the ext_authz config istiod emits for an envoyExtAuthzHttp provider.
func istioHTTPAuthz() *extauthzv3.ExtAuthz {
	return testenv.IstioExtAuthzHTTP(httpAuthzCluster, &extauthzv3.AuthorizationRequest{
		AllowedHeaders: strList("x-ext-authz"),
		HeadersToAdd:   []*corev3.HeaderValue{{Key: "x-from-proxy", Value: "1"}},
	})
}

func extAuthzFilterOf(cfg proto.Message) *hcmv3.HttpFilter {
	return typedFilter("envoy.filters.http.ext_authz", cfg)
}

// httpAuthorizer is a real HTTP authorization service: x-ext-authz: allow is allowed, anything
// else denied, as Istio's sample ext-authz server does. It counts its checks.
type httpAuthorizer struct {
	calls atomic.Int64
	mu    sync.Mutex
	last  seenRequest
	body  string
}

func (a *httpAuthorizer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.calls.Add(1)
	b, _ := io.ReadAll(r.Body)
	a.mu.Lock()
	a.last, a.body = seenRequest{uri: r.RequestURI, header: r.Header.Clone()}, string(b)
	a.mu.Unlock()
	if r.Header.Get("X-Ext-Authz") == "allow" {
		w.Header().Set("X-Ext-Authz-Check-Result", "allowed")
		w.Header().Set("X-User", "alice")
		w.Header().Set("X-Session", "s1")
		w.Header().Set("X-Not-Listed", "x")
		return
	}
	w.Header().Set("X-Ext-Authz-Check-Result", "denied")
	w.Header()["Set-Cookie"] = []string{"a=1", "b=2"}
	w.Header().Set("X-Not-Listed", "x")
	w.WriteHeader(http.StatusForbidden)
	io.WriteString(w, "denied by ext authz for "+r.RequestURI)
}

func (a *httpAuthorizer) seen() (seenRequest, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last, a.body
}

// upstreamRecorder is the application behind the proxy: it records the requests it gets.
type upstreamRecorder struct {
	mu   sync.Mutex
	reqs []seenRequest
	body []string
}

func (u *upstreamRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	u.mu.Lock()
	u.reqs = append(u.reqs, seenRequest{uri: r.RequestURI, header: r.Header.Clone()})
	u.body = append(u.body, string(b))
	u.mu.Unlock()
	w.Header().Set("Set-Cookie", "app=1")
	io.WriteString(w, "ok")
}

func (u *upstreamRecorder) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

func (u *upstreamRecorder) last(t *testing.T) (seenRequest, string) {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.reqs) == 0 {
		t.Fatal("the upstream got no request")
	}
	return u.reqs[len(u.reqs)-1], u.body[len(u.body)-1]
}

type extAuthzResult struct {
	status int
	body   string
	header http.Header
	info   *RequestInfo
}

func doGet(t *testing.T, p *proxy, path string, hdr map[string]string) extAuthzResult {
	t.Helper()
	return doReq(t, p, "GET", path, "", hdr)
}

func doReq(t *testing.T, p *proxy, method, path, body string, hdr map[string]string) extAuthzResult {
	t.Helper()
	var rb io.Reader
	if body != "" {
		rb = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, p.url(path), rb)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, b := roundTrip(t, h1Client(), req)
	return extAuthzResult{status: resp.StatusCode, body: b, header: resp.Header, info: p.nextInfo(t)}
}

// TestExtAuthzHTTPServiceIstio runs Istio's CUSTOM action end to end with an HTTP authorizer:
// the shadow RBAC rule decides which requests are checked, the authorizer decides the rest.
func TestExtAuthzHTTPServiceIstio(t *testing.T) {
	authz := &httpAuthorizer{}
	app := &upstreamRecorder{}
	env := &testEnv{clusters: map[string]Upstream{
		"app":            newTestUpstream(startUpstream(t, app, false), false),
		httpAuthzCluster: newTestUpstream(startUpstream(t, authz, false), false),
	}}
	p := startProxy(t, inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("app"))), istioCustomRBAC("/secure"), extAuthzFilterOf(istioHTTPAuthz())), env, false)

	// Allowed: the authorizer's listed headers go upstream and to the client.
	r := doGet(t, p, "/secure/data?x=1", map[string]string{"X-Ext-Authz": "allow", "Authorization": "Basic dTpw", "Cookie": "c=1"})
	if r.status != 200 || r.body != "ok" {
		t.Fatalf("allowed: %d %q", r.status, r.body)
	}
	if r.header.Get("X-Session") != "s1" || r.header.Get("X-Not-Listed") != "" || r.header.Get("Set-Cookie") != "app=1" {
		t.Errorf("client headers on success: %v", r.header)
	}
	up, _ := app.last(t)
	if up.header.Get("X-Ext-Authz-Check-Result") != "allowed" || up.header.Get("X-User") != "alice" || up.header.Get("X-Not-Listed") != "" ||
		up.header.Get("X-Session") != "" {
		t.Errorf("upstream headers: %v", up.header)
	}
	seen, _ := authz.seen()
	if seen.uri != "/check/secure/data?x=1" || seen.header.Get("Authorization") != "Basic dTpw" || seen.header.Get("X-Ext-Authz") != "allow" ||
		seen.header.Get("Cookie") != "" || seen.header.Get("X-From-Proxy") != "1" {
		t.Errorf("check request %s %v", seen.uri, seen.header)
	}
	if r.info.Flags != 0 || r.info.Status != 200 {
		t.Errorf("allowed request info: %+v", r.info)
	}

	// Denied: the authorizer's status, body and listed headers reach the client; the app sees
	// nothing.
	before := app.count()
	r = doGet(t, p, "/secure/data", map[string]string{"X-Ext-Authz": "deny"})
	if r.status != 403 || r.body != "denied by ext authz for /check/secure/data" {
		t.Fatalf("denied: %d %q", r.status, r.body)
	}
	if r.header.Get("X-Ext-Authz-Check-Result") != "denied" || strings.Join(r.header.Values("Set-Cookie"), ";") != "a=1;b=2" ||
		r.header.Get("X-Not-Listed") != "" || r.header.Get("Server") != "envoy" {
		t.Errorf("denial headers: %v", r.header)
	}
	if r.info.Flags != FlagUnauthorizedExtService || r.info.Flags.String() != "UAEX" || r.info.Details != "ext_authz_denied" {
		t.Errorf("denied request info: flags %v details %q", r.info.Flags, r.info.Details)
	}
	if app.count() != before {
		t.Error("a denied request reached the upstream")
	}

	// The shadow rule does not match /public: no check at all.
	calls := authz.calls.Load()
	r = doGet(t, p, "/public/page", map[string]string{"X-Ext-Authz": "deny"})
	if r.status != 200 || authz.calls.Load() != calls {
		t.Fatalf("/public: %d, checks %d -> %d", r.status, calls, authz.calls.Load())
	}

	for name, want := range map[string]uint64{
		"http.test.ext_authz.ok": 1, "http.test.ext_authz.denied": 1, "http.test.ext_authz.disabled": 1, "http.test.ext_authz.error": 0,
		"http.test.rbac.istio_ext_authz_shadow_allowed": 2, "http.test.rbac.istio_ext_authz_shadow_denied": 1,
		"http.test.downstream_rq_response_flags.UAEX": 1,
	} {
		if got := p.counter(name); got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
}

// grpcAuthorizer is a real envoy.service.auth.v3 Authorization server.
type grpcAuthorizer struct {
	authv3.UnimplementedAuthorizationServer
	calls atomic.Int64
	mu    sync.Mutex
	last  *authv3.CheckRequest
	md    metadata.MD
}

func (a *grpcAuthorizer) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	a.calls.Add(1)
	md, _ := metadata.FromIncomingContext(ctx)
	a.mu.Lock()
	a.last, a.md = req, md
	a.mu.Unlock()
	h := req.GetAttributes().GetRequest().GetHttp().GetHeaders()
	if h["x-ext-authz"] == "allow" {
		return &authv3.CheckResponse{
			Status: &rpcstatus.Status{Code: int32(codes.OK)},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
				Headers:              []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-ext-authz-check-result", Value: "allowed"}}},
				HeadersToRemove:      []string{"authorization"},
				ResponseHeadersToAdd: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-session", Value: "g1"}}},
			}},
			DynamicMetadata: &structpb.Struct{Fields: map[string]*structpb.Value{"user": structpb.NewStringValue("alice")}},
		}, nil
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode_Unauthorized},
			Headers: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-ext-authz-check-result", Value: "denied"}}},
			Body:    "denied by grpc ext authz",
		}},
	}, nil
}

// TestExtAuthzGRPCServiceIstio runs Istio's CUSTOM action with a gRPC authorizer.
func TestExtAuthzGRPCServiceIstio(t *testing.T) {
	authz := &grpcAuthorizer{}
	app := &upstreamRecorder{}
	env := &testEnv{clusters: map[string]Upstream{
		"app":            newTestUpstream(startUpstream(t, app, false), false),
		grpcAuthzCluster: newTestUpstream(testenv.AuthorizationServer(t, authz), true),
	}}
	p := startProxy(t, inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("app"))), istioCustomRBAC("/secure"), extAuthzFilterOf(testenv.IstioExtAuthzGRPC(grpcAuthzCluster))), env, false)

	r := doGet(t, p, "/secure/x?y=1", map[string]string{"X-Ext-Authz": "allow", "Authorization": "Bearer t", "X-Request-Id": "rid-1"})
	if r.status != 200 || r.body != "ok" || r.header.Get("X-Session") != "g1" {
		t.Fatalf("allowed: %d %q %v", r.status, r.body, r.header)
	}
	up, _ := app.last(t)
	if up.header.Get("X-Ext-Authz-Check-Result") != "allowed" || up.header.Get("Authorization") != "" {
		t.Errorf("upstream headers: %v", up.header)
	}
	authz.mu.Lock()
	ac, md := authz.last.GetAttributes(), authz.md
	authz.mu.Unlock()
	hr := ac.GetRequest().GetHttp()
	if hr.GetPath() != "/secure/x?y=1" || hr.GetMethod() != "GET" || hr.GetHost() != p.addr || hr.GetScheme() != "http" ||
		hr.GetProtocol() != "HTTP/1.1" || hr.GetHeaders()["authorization"] != "Bearer t" || hr.GetHeaders()[":path"] != "/secure/x?y=1" ||
		hr.GetId() != r.info.RequestID || hr.GetId() == "" {
		t.Errorf("check request http %v (request id %q)", hr, r.info.RequestID)
	}
	if ac.GetSource().GetAddress().GetSocketAddress().GetAddress() != "127.0.0.1" ||
		ac.GetDestination().GetAddress().GetSocketAddress().GetPortValue() == 0 || ac.GetRequest().GetTime() == nil {
		t.Errorf("check request peers %v %v", ac.GetSource(), ac.GetDestination())
	}
	if got := md.Get(":authority"); len(got) != 1 || got[0] != "ext-authz.foo.svc.cluster.local" {
		t.Errorf(":authority %v", got)
	}

	r = doGet(t, p, "/secure/x", map[string]string{"X-Ext-Authz": "deny"})
	if r.status != 401 || r.body != "denied by grpc ext authz" || r.header.Get("X-Ext-Authz-Check-Result") != "denied" {
		t.Fatalf("denied: %d %q %v", r.status, r.body, r.header)
	}
	if r.info.Flags != FlagUnauthorizedExtService || r.info.Details != "ext_authz_denied" {
		t.Errorf("denied request info: %v %q", r.info.Flags, r.info.Details)
	}

	calls := authz.calls.Load()
	if r = doGet(t, p, "/public", map[string]string{"X-Ext-Authz": "deny"}); r.status != 200 || authz.calls.Load() != calls {
		t.Fatalf("/public: %d, checks %d -> %d", r.status, calls, authz.calls.Load())
	}

	// A gRPC client is denied with a trailers-only reply carrying the mapped status.
	req, _ := http.NewRequest("POST", p.url("/secure.Svc/Call"), strings.NewReader(""))
	req.Header.Set("Content-Type", "application/grpc")
	resp, err := h2cClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	p.nextInfo(t)
	if resp.StatusCode != 200 || resp.Header.Get("Grpc-Status") != "16" || resp.Header.Get("Grpc-Message") != "denied by grpc ext authz" {
		t.Errorf("gRPC client denial: %d %v", resp.StatusCode, resp.Header)
	}
	if got := p.counter("http.test.ext_authz.denied"); got != 2 {
		t.Errorf("denied = %d, want 2", got)
	}
}

// TestExtAuthzDynamicMetadata checks that the gRPC service's dynamic metadata lands in the
// envoy.filters.http.ext_authz namespace, where a later RBAC filter can read it.
func TestExtAuthzDynamicMetadata(t *testing.T) {
	authz := &grpcAuthorizer{}
	app := &upstreamRecorder{}
	env := &testEnv{clusters: map[string]Upstream{
		"app":            newTestUpstream(startUpstream(t, app, false), false),
		grpcAuthzCluster: newTestUpstream(testenv.AuthorizationServer(t, authz), true),
	}}
	cfg := testenv.IstioExtAuthzGRPC(grpcAuthzCluster)
	cfg.FilterEnabledMetadata = nil
	// Allow only requests whose ext_authz metadata says user alice.
	rbac := typedFilter("envoy.filters.http.rbac", &rbachttpv3.RBAC{Rules: &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW, Policies: map[string]*rbacv3.Policy{
		"alice": {
			Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_Any{Any: true}}},
			Principals: []*rbacv3.Principal{{Identifier: &rbacv3.Principal_Metadata{Metadata: &matcherv3.MetadataMatcher{
				Filter: "envoy.filters.http.ext_authz",
				Path:   []*matcherv3.MetadataMatcher_PathSegment{{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: "user"}}},
				Value:  &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_StringMatch{StringMatch: strExact("alice")}},
			}}}},
		}}}})
	p := startProxy(t, inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("app"))), extAuthzFilterOf(cfg), rbac), env, false)
	if r := doGet(t, p, "/x", map[string]string{"X-Ext-Authz": "allow"}); r.status != 200 {
		t.Fatalf("allowed with metadata: %d %q", r.status, r.body)
	}

	// With ingestion off, the metadata is dropped and counted, and RBAC denies.
	cfg.EnableDynamicMetadataIngestion = wrapperspb.Bool(false)
	p = startProxy(t, inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("app"))), extAuthzFilterOf(cfg), rbac), env, false)
	if r := doGet(t, p, "/x", map[string]string{"X-Ext-Authz": "allow"}); r.status != 403 || r.body != "RBAC: access denied" {
		t.Fatalf("without ingestion: %d %q", r.status, r.body)
	}
	if got := p.counter("http.test.ext_authz.ignored_dynamic_metadata"); got != 1 {
		t.Errorf("ignored_dynamic_metadata = %d", got)
	}
}

// TestExtAuthzFailures covers an authorizer that cannot be reached, is slow, or is missing:
// status_on_error unless failure_mode_allow.
func TestExtAuthzFailures(t *testing.T) {
	app := &upstreamRecorder{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	downAddr := ln.Addr().String()
	ln.Close()
	slow := testenv.HangingHTTPBackend(t)
	env := &testEnv{clusters: map[string]Upstream{
		"app":  newTestUpstream(startUpstream(t, app, false), false),
		"down": newTestUpstream(downAddr, false),
		"slow": newTestUpstream(slow, false),
	}}
	build := func(cluster string, mod func(*extauthzv3.ExtAuthz)) *proxy {
		cfg := istioHTTPAuthz()
		cfg.FilterEnabledMetadata = nil
		cfg.GetHttpService().GetServerUri().HttpUpstreamType = &corev3.HttpUri_Cluster{Cluster: cluster}
		cfg.GetHttpService().GetServerUri().Timeout = durationpb.New(100 * time.Millisecond)
		if mod != nil {
			mod(cfg)
		}
		return startProxy(t, inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("app"))), extAuthzFilterOf(cfg)), env, false)
	}

	for _, tc := range []struct {
		name, cluster string
		mod           func(*extauthzv3.ExtAuthz)
		status        int
	}{
		{"down", "down", nil, 403},
		{"down, status_on_error 503", "down", func(c *extauthzv3.ExtAuthz) {
			c.StatusOnError = &typev3.HttpStatus{Code: typev3.StatusCode_ServiceUnavailable}
		}, 503},
		{"timeout", "slow", nil, 403},
		{"missing cluster", "absent", nil, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := build(tc.cluster, tc.mod)
			before := app.count()
			r := doGet(t, p, "/x", map[string]string{"X-Ext-Authz": "allow"})
			if r.status != tc.status || r.body != "" {
				t.Fatalf("got %d %q, want %d", r.status, r.body, tc.status)
			}
			if r.info.Flags != FlagUnauthorizedExtService || r.info.Details != "ext_authz_error" || app.count() != before {
				t.Errorf("flags %v details %q, upstream requests %d -> %d", r.info.Flags, r.info.Details, before, app.count())
			}
			if p.counter("http.test.ext_authz.error") != 1 {
				t.Errorf("error = %d", p.counter("http.test.ext_authz.error"))
			}
		})
	}

	t.Run("failure_mode_allow", func(t *testing.T) {
		for _, addHeader := range []bool{false, true} {
			p := build("down", func(c *extauthzv3.ExtAuthz) {
				c.FailureModeAllow, c.FailureModeAllowHeaderAdd = true, addHeader
			})
			hdr := map[string]string{}
			if addHeader {
				hdr["X-Envoy-Auth-Failure-Mode-Allowed"] = "spoofed" // replaced, not appended to
			}
			r := doGet(t, p, "/x", hdr)
			if r.status != 200 || r.body != "ok" || r.info.Flags != 0 {
				t.Fatalf("got %d %q flags %v", r.status, r.body, r.info.Flags)
			}
			up, _ := app.last(t)
			want := ""
			if addHeader {
				want = "true"
			}
			if got := up.header.Get("X-Envoy-Auth-Failure-Mode-Allowed"); got != want {
				t.Errorf("header_add %v: upstream x-envoy-auth-failure-mode-allowed %q, want %q", addHeader, got, want)
			}
			if p.counter("http.test.ext_authz.failure_mode_allowed") != 1 || p.counter("http.test.ext_authz.error") != 1 {
				t.Errorf("failure_mode_allowed = %d", p.counter("http.test.ext_authz.failure_mode_allowed"))
			}
		}
	})
}

// TestExtAuthzBodyAndRoutes covers with_request_body, a route that disables the filter, the
// filter's own stat_prefix and deny_at_disable.
func TestExtAuthzBodyAndRoutes(t *testing.T) {
	authz := &httpAuthorizer{}
	app := &upstreamRecorder{}
	env := &testEnv{clusters: map[string]Upstream{
		"app":            newTestUpstream(startUpstream(t, app, false), false),
		httpAuthzCluster: newTestUpstream(startUpstream(t, authz, false), false),
	}}
	cfg := istioHTTPAuthz()
	cfg.FilterEnabledMetadata = nil
	cfg.StatPrefix = "waf"
	cfg.WithRequestBody = &extauthzv3.BufferSettings{MaxRequestBytes: 8, AllowPartialMessage: true}
	off, _ := anypb.New(&routev3.FilterConfig{Disabled: true})
	open := fwdRoute("open", pfx("/open"), toCluster("app"))
	open.TypedPerFilterConfig = map[string]*anypb.Any{"envoy.filters.http.ext_authz": off}
	p := startProxy(t, inlineHCM(oneVhost(open, fwdRoute("r", pfx("/"), toCluster("app"))), extAuthzFilterOf(cfg)), env, false)
	allow := map[string]string{"X-Ext-Authz": "allow"}

	r := doReq(t, p, "POST", "/x", "0123456789abcdef", allow)
	if r.status != 200 {
		t.Fatalf("partial body: %d %q", r.status, r.body)
	}
	seen, body := authz.seen()
	if body != "01234567" || seen.header.Get("X-Envoy-Auth-Partial-Body") != "true" || seen.header.Get("Content-Length") != "8" {
		t.Errorf("check body %q, headers %v", body, seen.header)
	}
	if _, upBody := app.last(t); upBody != "0123456789abcdef" {
		t.Errorf("upstream body %q", upBody)
	}
	if r = doReq(t, p, "POST", "/x", "short", allow); r.status != 200 {
		t.Fatalf("short body: %d", r.status)
	}
	if seen, body = authz.seen(); body != "short" || seen.header.Get("X-Envoy-Auth-Partial-Body") != "false" {
		t.Errorf("check body %q, headers %v", body, seen.header)
	}
	if _, upBody := app.last(t); upBody != "short" {
		t.Errorf("upstream body %q", upBody)
	}

	calls := authz.calls.Load()
	if r = doGet(t, p, "/open/x", nil); r.status != 200 || authz.calls.Load() != calls {
		t.Fatalf("route with the filter disabled: %d, checks %d -> %d", r.status, calls, authz.calls.Load())
	}
	if got := p.counter("http.test.ext_authz.waf.ok"); got != 2 {
		t.Errorf("http.test.ext_authz.waf.ok = %d", got)
	}

	// Without allow_partial_message a larger body is refused before any check.
	cfg.WithRequestBody.AllowPartialMessage = false
	p = startProxy(t, inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("app"))), extAuthzFilterOf(cfg)), env, false)
	calls = authz.calls.Load()
	if r = doReq(t, p, "POST", "/x", "0123456789abcdef", allow); r.status != 413 || authz.calls.Load() != calls {
		t.Fatalf("too large: %d, checks %d -> %d", r.status, calls, authz.calls.Load())
	}

	// deny_at_disable answers status_on_error to requests the filter is not enabled for.
	cfg = istioHTTPAuthz()
	cfg.DenyAtDisable = &corev3.RuntimeFeatureFlag{DefaultValue: wrapperspb.Bool(true), RuntimeKey: "ext_authz.deny_at_disable"}
	p = startProxy(t, inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("app"))), istioCustomRBAC("/secure"), extAuthzFilterOf(cfg)), env, false)
	if r = doGet(t, p, "/public", allow); r.status != 403 || r.info.Flags != FlagUnauthorizedExtService {
		t.Fatalf("deny_at_disable: %d %v", r.status, r.info.Flags)
	}
}

// TestExtAuthzRefusesUnsupported checks that a listener whose ext_authz uses a field the proxy
// does not implement is NACKed with the field named.
func TestExtAuthzRefusesUnsupported(t *testing.T) {
	cfg := testenv.IstioExtAuthzGRPC(grpcAuthzCluster)
	cfg.IncludePeerCertificate = true
	_, err := New(inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("c"))), extAuthzFilterOf(cfg)), &testEnv{}, Options{})
	if err == nil || !strings.Contains(err.Error(), "http_connection_manager.http_filters[0].typed_config.include_peer_certificate") {
		t.Fatalf("error %v", err)
	}
	// A per-route ExtAuthzPerRoute is refused by the route compiler.
	per, _ := anypb.New(&extauthzv3.ExtAuthzPerRoute{Override: &extauthzv3.ExtAuthzPerRoute_Disabled{Disabled: true}})
	rt := fwdRoute("r", pfx("/"), toCluster("c"))
	rt.TypedPerFilterConfig = map[string]*anypb.Any{"envoy.filters.http.ext_authz": per}
	if _, err := New(inlineHCM(oneVhost(rt), extAuthzFilterOf(testenv.IstioExtAuthzGRPC(grpcAuthzCluster))), &testEnv{}, Options{}); err == nil {
		t.Fatal("ExtAuthzPerRoute accepted")
	}
}
