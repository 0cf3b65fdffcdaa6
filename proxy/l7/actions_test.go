package l7

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/route"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
	faultv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/fault/v3"
	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/matcher/v3"
	typev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/v3"
)

// TestRouteActionsEndToEnd drives matchers and actions through the handler with real upstreams:
// header- and query-matched routes, weighted clusters with per-cluster headers, cluster_header,
// regex rewrite, cookie hash policy with a generated cookie, response header removal.
func TestRouteActionsEndToEnd(t *testing.T) {
	named := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Upstream", name)
			w.Header().Set("X-Internal-Debug", "1")
			io.WriteString(w, name+" "+r.RequestURI+" "+r.Header.Get("X-Weighted"))
		})
	}
	env := &testEnv{clusters: map[string]Upstream{}}
	for _, n := range []string{"a", "b", "v2", "hdr"} {
		env.clusters[n] = newTestUpstream(startUpstream(t, named(n), false), false)
	}
	weighted := &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{
		Clusters: []*routev3.WeightedCluster_ClusterWeight{
			{Name: "a", Weight: wrapperspb.UInt32(50), RequestHeadersToAdd: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-weighted", Value: "to-a"}}}},
			{Name: "b", Weight: wrapperspb.UInt32(50), RequestHeadersToAdd: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-weighted", Value: "to-b"}}}},
		}}}}
	hashed := toCluster("a")
	hashed.HashPolicy = []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_Cookie_{
		Cookie: &routev3.RouteAction_HashPolicy_Cookie{Name: "affinity", Ttl: durationpb.New(time.Minute), Path: "/"}}}}
	rx := toCluster("a")
	rx.RegexRewrite = &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: "^/rx/([^/]+)/(.+)$"}, Substitution: "/\\2/\\1"}
	hdrRoute := fwdRoute("by-header", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/api"},
		Headers: []*routev3.HeaderMatcher{{Name: "end-user", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
			StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "jason"}}}}}}, toCluster("v2"))
	queryRoute := fwdRoute("by-query", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/api"},
		QueryParameters: []*routev3.QueryParameterMatcher{{Name: "canary", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_PresentMatch{PresentMatch: true}}}}, toCluster("v2"))
	apiRoute := fwdRoute("api", pfx("/api"), toCluster("a"))
	apiRoute.StatPrefix = "api-stats"
	rc := oneVhost(
		hdrRoute, queryRoute,
		apiRoute,
		fwdRoute("weighted", pfx("/w"), weighted),
		fwdRoute("header", pfx("/ch"), &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_ClusterHeader{ClusterHeader: "x-target"}}),
		fwdRoute("hashed", pfx("/sticky"), hashed),
		fwdRoute("rx", pfx("/rx/"), rx),
	)
	rc.ResponseHeadersToRemove = []string{"x-internal-debug"}
	p := startProxy(t, inlineHCM(rc), env, false)
	c := h1Client()
	get := func(path string, hdr ...string) (*http.Response, string) {
		req, _ := http.NewRequest("GET", p.url(path), nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		return roundTrip(t, c, req)
	}
	if _, b := get("/api/x", "End-User", "jason"); b != "v2 /api/x " {
		t.Errorf("header match: %q", b)
	}
	if _, b := get("/api/x?canary"); b != "v2 /api/x?canary " {
		t.Errorf("query match: %q", b)
	}
	resp, b := get("/api/x", "End-User", "other")
	if b != "a /api/x " || resp.Header.Get("X-Internal-Debug") != "" || resp.Header.Get("X-Upstream") != "a" {
		t.Errorf("default: %q %v", b, resp.Header)
	}
	if p.counter("vhost.all.route.api-stats.upstream_rq_200") != 1 || p.counter("vhost.all.route.api-stats.upstream_rq_total") != 1 {
		t.Error("per-route stats (stat_prefix) not recorded")
	}
	seen := map[string]bool{}
	for i := 0; i < 200 && len(seen) < 2; i++ {
		_, b := get("/w")
		switch b {
		case "a /w to-a", "b /w to-b":
			seen[b] = true
		default:
			t.Fatalf("weighted: %q", b)
		}
	}
	if len(seen) != 2 {
		t.Errorf("weighted clusters: only %v chosen in 200 requests", seen)
	}
	if _, b := get("/ch", "X-Target", "hdr"); b != "hdr /ch " {
		t.Errorf("cluster_header: %q", b)
	}
	if resp, _ := get("/ch", "X-Target", "nonexistent"); resp.StatusCode != 503 {
		t.Errorf("cluster_header to unknown cluster: %d", resp.StatusCode)
	}
	resp, _ = get("/sticky")
	if sc := resp.Header.Get("Set-Cookie"); !strings.HasPrefix(sc, "affinity=\"") || !strings.Contains(sc, "Max-Age=60; Path=/; HttpOnly") {
		t.Errorf("generated affinity cookie %q", sc)
	}
	if resp, _ := get("/sticky", "Cookie", "affinity=abc"); resp.Header.Get("Set-Cookie") != "" {
		t.Error("cookie generated although the client sent one")
	}
	if _, b := get("/rx/one/two/three?q=1"); b != "a /two/three/one?q=1 " {
		t.Errorf("regex rewrite: %q", b)
	}
}

func TestGRPCFaultAbortAndTimeoutHeader(t *testing.T) {
	env := &testEnv{clusters: map[string]Upstream{"c": cannedUpstream{}}}
	abort := testenv.MustAny(t, &faultv3.HTTPFault{Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_GrpcStatus{GrpcStatus: uint32(codes.ResourceExhausted)},
		Percentage: &typev3.FractionalPercent{Numerator: 100}}})
	r := fwdRoute("r", pfx("/"), toCluster("c"))
	r.TypedPerFilterConfig = map[string]*anypb.Any{route.FaultFilterName: abort}
	faultFilter := &hcmv3.HttpFilter{Name: route.FaultFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: testenv.MustAny(t, &faultv3.HTTPFault{})}}
	p := startProxy(t, inlineHCM(oneVhost(r), faultFilter), env, false)
	cc, err := grpc.NewClient("passthrough:///"+p.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = testpb.NewTestServiceClient(cc).EmptyCall(ctx, &testpb.Empty{})
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("grpc abort: %v", err)
	}
	if ri := p.nextInfo(t); ri.Flags != FlagFaultInjected || ri.Status != 200 || ri.GRPCStatus != "8" {
		t.Errorf("info %+v", ri)
	}
}
