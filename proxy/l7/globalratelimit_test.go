package l7

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	gcorev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	groutev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	grlhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	gtypev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/xdsfield"
	"github.com/strait-mesh/strait/proxy/xdspb"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	ratelimitconfv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/ratelimit/v3"
	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
	rlhttpv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/ratelimit/v3"
	typev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/v3"
)

const rlsCluster = "outbound|8081||ratelimit.default.svc.cluster.local"

// istioGlobalRateLimit is the filter of Istio's rate-limit task (global part).
func istioGlobalRateLimit(failureModeDeny bool) *rlhttpv3.RateLimit {
	return &rlhttpv3.RateLimit{
		Domain:          "ratelimit",
		FailureModeDeny: failureModeDeny,
		Timeout:         durationpb.New(10 * time.Second),
		RateLimitService: &ratelimitconfv3.RateLimitServiceConfig{
			GrpcService: &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{
				ClusterName: rlsCluster, Authority: "ratelimit.default.svc.cluster.local"}}},
			TransportApiVersion: corev3.ApiVersion_V3,
		},
	}
}

// pathLimits is the virtual host rate_limits of Istio's task: the :path as descriptor PATH.
func pathLimits() []*routev3.RateLimit {
	return []*routev3.RateLimit{{Actions: []*routev3.RateLimit_Action{{ActionSpecifier: &routev3.RateLimit_Action_RequestHeaders_{
		RequestHeaders: &routev3.RateLimit_Action_RequestHeaders{HeaderName: ":path", DescriptorKey: "PATH"}}}}}}
}

// globalProxy serves a route table whose virtual host has Istio's rate_limits, with cfg as the
// global rate limit filter, the backend and the rate limit service (rlsAddr) as clusters.
func globalProxy(t *testing.T, cfg *rlhttpv3.RateLimit, rlsAddr string, routes ...*routev3.Route) *proxy {
	t.Helper()
	up := startUpstream(t, echoHandler(), false)
	env := &testEnv{clusters: map[string]Upstream{"backend": newTestUpstream(up, false), rlsCluster: newTestUpstream(rlsAddr, true)}}
	if len(routes) == 0 {
		routes = []*routev3.Route{fwdRoute("r", pfx("/"), toCluster("backend"))}
	}
	rc := oneVhost(routes...)
	rc.VirtualHosts[0].RateLimits = pathLimits()
	return startProxy(t, inlineHCM(rc, typedFilter("envoy.filters.http.ratelimit", cfg)), env, false)
}

// TestGlobalRateLimitIstioTask is Istio's task with straitd's in-memory service: /productpage
// 1 per minute, other paths 100 per minute.
func TestGlobalRateLimitIstioTask(t *testing.T) {
	rlsAddr := testenv.InMemoryRateLimitService(t, `domain: ratelimit
descriptors:
  - key: PATH
    value: "/productpage"
    rate_limit: {unit: minute, requests_per_unit: 1}
  - key: PATH
    rate_limit: {unit: minute, requests_per_unit: 100}
`)
	cfg := istioGlobalRateLimit(true)
	cfg.EnableXRatelimitHeaders = rlhttpv3.RateLimit_DRAFT_VERSION_03
	cfg.ResponseHeadersToAdd = []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-limited-path", Value: "%REQ(:PATH)%"}}}
	p := globalProxy(t, cfg, rlsAddr)
	c := h1Client()

	ok, limited := 0, 0
	for i := 0; i < 3; i++ {
		resp, _ := roundTrip(t, c, mustReq(t, "GET", p.url("/productpage")))
		ri := p.nextInfo(t)
		switch resp.StatusCode {
		case http.StatusOK:
			ok++
			if ri.Flags != 0 || resp.Header.Get("X-Envoy-Ratelimited") != "" || resp.Header.Get("X-Limited-Path") != "" {
				t.Errorf("allowed request: flags %s, headers %v", ri.Flags, resp.Header)
			}
		case http.StatusTooManyRequests:
			limited++
			if ri.Flags.String() != "RL" || ri.Details != "request_rate_limited" {
				t.Errorf("limited request: flags %s, details %q", ri.Flags, ri.Details)
			}
			if resp.Header.Get("X-Envoy-Ratelimited") != "true" || resp.Header.Get("X-Limited-Path") != "/productpage" {
				t.Errorf("limited reply headers: %v", resp.Header)
			}
			if resp.Header.Get("X-Ratelimit-Remaining") != "0" {
				t.Errorf("limited reply x-ratelimit-remaining: %v", resp.Header)
			}
		default:
			t.Fatalf("status %d", resp.StatusCode)
		}
		if got := resp.Header.Get("X-Ratelimit-Limit"); got != "1, 1;w=60" {
			t.Errorf("x-ratelimit-limit %q", got)
		}
	}
	// A minute boundary between the requests gives a new window: at most 2 then.
	if ok < 1 || ok > 2 || ok+limited != 3 {
		t.Errorf("%d allowed, %d limited; want 1 and 2", ok, limited)
	}
	resp, _ := roundTrip(t, c, mustReq(t, "GET", p.url("/reviews")))
	p.nextInfo(t)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Ratelimit-Remaining") != "99" {
		t.Errorf("/reviews: %d %v", resp.StatusCode, resp.Header)
	}
	for stat, want := range map[string]uint64{"ok": uint64(ok) + 1, "over_limit": uint64(limited), "error": 0} {
		if got := p.counter("cluster.backend.ratelimit." + stat); got != want {
			t.Errorf("cluster.backend.ratelimit.%s = %d, want %d", stat, got, want)
		}
	}
}

// TestGlobalRateLimitFailureModes: the service unreachable → allowed (failure_mode_allowed)
// or denied with 500 (or status_on_error) and flag RLSE.
func TestGlobalRateLimitFailureModes(t *testing.T) {
	down := closedAddr(t)
	p := globalProxy(t, istioGlobalRateLimit(false), down)
	resp, _ := roundTrip(t, h1Client(), mustReq(t, "GET", p.url("/productpage")))
	if ri := p.nextInfo(t); resp.StatusCode != http.StatusOK || ri.Flags != 0 {
		t.Fatalf("failure_mode_deny false: %d flags %s", resp.StatusCode, ri.Flags)
	}
	if p.counter("cluster.backend.ratelimit.error") != 1 || p.counter("cluster.backend.ratelimit.failure_mode_allowed") != 1 {
		t.Error("error and failure_mode_allowed not counted")
	}

	p = globalProxy(t, istioGlobalRateLimit(true), down)
	resp, _ = roundTrip(t, h1Client(), mustReq(t, "GET", p.url("/productpage")))
	ri := p.nextInfo(t)
	if resp.StatusCode != http.StatusInternalServerError || ri.Flags.String() != "RLSE" || ri.Details != "rate_limiter_error" {
		t.Fatalf("failure_mode_deny true: %d flags %s details %q", resp.StatusCode, ri.Flags, ri.Details)
	}
	if p.counter("cluster.backend.ratelimit.error") != 1 || p.counter("cluster.backend.ratelimit.failure_mode_allowed") != 0 {
		t.Error("error miscounted")
	}

	cfg := istioGlobalRateLimit(true)
	cfg.StatusOnError = &typev3.HttpStatus{Code: typev3.StatusCode_ServiceUnavailable}
	p = globalProxy(t, cfg, down)
	resp, _ = roundTrip(t, h1Client(), mustReq(t, "GET", p.url("/productpage")))
	p.nextInfo(t)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status_on_error 503: %d", resp.StatusCode)
	}
}

// scriptedRLS answers with reply (nil: an UNKNOWN code) and records the requests.
type scriptedRLS struct {
	rlsv3.UnimplementedRateLimitServiceServer
	mu    sync.Mutex
	reqs  []*rlsv3.RateLimitRequest
	reply *rlsv3.RateLimitResponse
	err   error
}

func (s *scriptedRLS) ShouldRateLimit(_ context.Context, r *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = append(s.reqs, r)
	if s.err != nil {
		return nil, s.err
	}
	if s.reply == nil {
		return &rlsv3.RateLimitResponse{}, nil
	}
	return s.reply, nil
}

func (s *scriptedRLS) set(reply *rlsv3.RateLimitResponse, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reply, s.err, s.reqs = reply, err, nil
}

func (s *scriptedRLS) requests() []*rlsv3.RateLimitRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*rlsv3.RateLimitRequest(nil), s.reqs...)
}

func TestGlobalRateLimitDescriptorsAndReplies(t *testing.T) {
	rls := &scriptedRLS{}
	addr := testenv.RateLimitServer(t, rls)
	// /own has its own rate_limits (generic_key, and one of stage 1): the vhost's are not used.
	own := fwdRoute("own", pfx("/own"), toCluster("backend"))
	own.GetRoute().RateLimits = []*routev3.RateLimit{
		{Actions: []*routev3.RateLimit_Action{{ActionSpecifier: &routev3.RateLimit_Action_GenericKey_{
			GenericKey: &routev3.RateLimit_Action_GenericKey{DescriptorValue: "own"}}}}},
		{Stage: wrapperspb.UInt32(1), Actions: []*routev3.RateLimit_Action{{ActionSpecifier: &routev3.RateLimit_Action_GenericKey_{
			GenericKey: &routev3.RateLimit_Action_GenericKey{DescriptorValue: "stage1"}}}}},
	}
	direct := &routev3.Route{Name: "direct", Match: pfx("/direct"), Action: &routev3.Route_DirectResponse{
		DirectResponse: &routev3.DirectResponseAction{Status: 200}}}
	p := globalProxy(t, istioGlobalRateLimit(false), addr, own, direct, fwdRoute("r", pfx("/"), toCluster("backend")))
	c := h1Client()
	get := func(path string) (*http.Response, string, *RequestInfo) {
		resp, body := roundTrip(t, c, mustReq(t, "GET", p.url(path)))
		return resp, body, p.nextInfo(t)
	}

	// Descriptors: the domain and the vhost's PATH, or the route's own of stage 0.
	rls.set(&rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK}, nil)
	get("/a?x=1")
	get("/own")
	get("/direct") // not a forwarding route: not checked
	reqs := rls.requests()
	if len(reqs) != 2 || reqs[0].GetDomain() != "ratelimit" ||
		descString(reqs[0]) != "[PATH=/a?x=1]" || descString(reqs[1]) != "[generic_key=own]" {
		t.Fatalf("requests: %v", reqs)
	}

	// OK: request_headers_to_add reach the upstream, response_headers_to_add the client.
	rls.set(&rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK,
		RequestHeadersToAdd:  []*gcorev3.HeaderValue{{Key: "x-rl-user", Value: "gold"}, {Key: "content-length", Value: "5"}},
		ResponseHeadersToAdd: []*gcorev3.HeaderValue{{Key: "x-rl-info", Value: "ok"}}}, nil)
	resp, body, _ := get("/a")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Rl-Info") != "ok" || !strings.Contains(body, "gold") {
		t.Fatalf("OK with headers: %d %v %s", resp.StatusCode, resp.Header, body)
	}

	// OVER_LIMIT: the reply's headers and raw_body; gRPC requests get UNAVAILABLE.
	rls.set(&rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OVER_LIMIT,
		ResponseHeadersToAdd: []*gcorev3.HeaderValue{{Key: "retry-after", Value: "60"}}, RawBody: []byte("slow down")}, nil)
	resp, body, ri := get("/a")
	if resp.StatusCode != http.StatusTooManyRequests || body != "slow down" || resp.Header.Get("Retry-After") != "60" ||
		resp.Header.Get("X-Envoy-Ratelimited") != "true" || ri.Flags.String() != "RL" {
		t.Fatalf("OVER_LIMIT: %d %q %v %s", resp.StatusCode, body, resp.Header, ri.Flags)
	}

	// UNKNOWN and a failed call are errors (allowed here).
	for _, e := range []error{nil, errors.New("boom")} {
		rls.set(nil, e)
		if resp, _, _ := get("/a"); resp.StatusCode != http.StatusOK {
			t.Fatalf("error %v: %d", e, resp.StatusCode)
		}
	}
	if got := p.counter("cluster.backend.ratelimit.error"); got != 2 {
		t.Errorf("error = %d, want 2", got)
	}
}

func TestGlobalRateLimitOptions(t *testing.T) {
	rls := &scriptedRLS{}
	addr := testenv.RateLimitServer(t, rls)
	cfg := istioGlobalRateLimit(false)
	cfg.Stage = 1
	cfg.RequestType = "external"
	cfg.DisableXEnvoyRatelimitedHeader = true
	cfg.RateLimitedStatus = &typev3.HttpStatus{Code: typev3.StatusCode_ServiceUnavailable}
	own := fwdRoute("own", pfx("/"), toCluster("backend"))
	own.GetRoute().RateLimits = []*routev3.RateLimit{{Stage: wrapperspb.UInt32(1), Actions: []*routev3.RateLimit_Action{{
		ActionSpecifier: &routev3.RateLimit_Action_GenericKey_{GenericKey: &routev3.RateLimit_Action_GenericKey{DescriptorValue: "stage1"}}}}}}
	p := globalProxy(t, cfg, addr, own)
	rls.set(&rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OVER_LIMIT}, nil)
	// The connection manager trusts no client address here: the request is external, checked.
	resp, _ := roundTrip(t, h1Client(), mustReq(t, "GET", p.url("/x")))
	p.nextInfo(t)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("X-Envoy-Ratelimited") != "" {
		t.Fatalf("limited: %d %v", resp.StatusCode, resp.Header)
	}
	if reqs := rls.requests(); len(reqs) != 1 || descString(reqs[0]) != "[generic_key=stage1]" {
		t.Fatalf("stage 1 descriptors: %v", reqs)
	}

	cfg.RequestType = "internal"
	p = globalProxy(t, cfg, addr, own)
	rls.set(&rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OVER_LIMIT}, nil)
	resp, _ = roundTrip(t, h1Client(), mustReq(t, "GET", p.url("/x")))
	p.nextInfo(t)
	if resp.StatusCode != http.StatusOK || len(rls.requests()) != 0 {
		t.Fatalf("internal only, external request: %d, %d calls", resp.StatusCode, len(rls.requests()))
	}
}

func descString(r *rlsv3.RateLimitRequest) string {
	var b strings.Builder
	for _, d := range r.GetDescriptors() {
		b.WriteByte('[')
		for i, e := range d.GetEntries() {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(e.GetKey() + "=" + e.GetValue())
		}
		b.WriteByte(']')
	}
	return b.String()
}

func TestGlobalRateLimitConfigRefused(t *testing.T) {
	for name, c := range map[string]struct {
		mutate func(*grlhttpv3.RateLimit)
		want   string
	}{
		"no domain":      {func(c *grlhttpv3.RateLimit) { c.Domain = "" }, "typed_config.domain: empty"},
		"filter_enabled": {func(c *grlhttpv3.RateLimit) { c.FilterEnabled = &gcorev3.RuntimeFractionalPercent{} }, "filter_enabled"},
		"stat_prefix":    {func(c *grlhttpv3.RateLimit) { c.StatPrefix = "x" }, "stat_prefix"},
		"request_type":   {func(c *grlhttpv3.RateLimit) { c.RequestType = "sometimes" }, "request_type"},
		"V2":             {func(c *grlhttpv3.RateLimit) { c.RateLimitService.TransportApiVersion = gcorev3.ApiVersion_V2 }, "transport_api_version"},
		"no service":     {func(c *grlhttpv3.RateLimit) { c.RateLimitService = nil }, "rate_limit_service: missing"},
		"google_grpc": {func(c *grlhttpv3.RateLimit) {
			c.RateLimitService.GrpcService.TargetSpecifier = &gcorev3.GrpcService_GoogleGrpc_{}
		}, "google_grpc"},
		"grpc timeout":    {func(c *grlhttpv3.RateLimit) { c.RateLimitService.GrpcService.Timeout = durationpb.New(time.Second) }, "grpc_service.timeout"},
		"stage":           {func(c *grlhttpv3.RateLimit) { c.Stage = 11 }, "stage"},
		"status_on_error": {func(c *grlhttpv3.RateLimit) { c.StatusOnError = &gtypev3.HttpStatus{Code: 42} }, "status_on_error"},
		"retry_after":     {func(c *grlhttpv3.RateLimit) { c.EnableRetryAfterHeader = true }, "enable_retry_after_header"},
		"own rate_limits": {func(c *grlhttpv3.RateLimit) {
			c.RateLimits = xdspb.MustFrom[*groutev3.VirtualHost](&routev3.VirtualHost{RateLimits: pathLimits()}).RateLimits
		}, "rate_limits"},
	} {
		// Fields strait-proxy does not read are set through go-control-plane's type.
		cfg := xdspb.MustFrom[*grlhttpv3.RateLimit](istioGlobalRateLimit(false))
		c.mutate(cfg)
		hcm := inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("backend"))), typedFilter("envoy.filters.http.ratelimit", cfg))
		_, err := New(hcm, &testEnv{}, Options{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
		if strings.HasPrefix(name, "filter_enabled") || name == "stat_prefix" || name == "google_grpc" {
			var ue *xdsfield.UnsupportedError
			if !errors.As(err, &ue) {
				t.Errorf("%s: %T is not an UnsupportedError", name, err)
			}
		}
	}
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
