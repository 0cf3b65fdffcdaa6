package route

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/strait-mesh/strait/internal/vocab"
	"github.com/strait-mesh/strait/proxy/httpmsg"
	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
	faultcommonv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/fault/v3"
)

// TestFaultInert: only a fault with neither a delay (fixed or from headers) nor an abort is
// inert, whatever its conditions.
func TestFaultInert(t *testing.T) {
	delay := &faultcommonv3.FaultDelay{FaultDelaySecifier: &faultcommonv3.FaultDelay_FixedDelay{FixedDelay: durationpb.New(time.Millisecond)}}
	hdrDelay := &faultcommonv3.FaultDelay{FaultDelaySecifier: &faultcommonv3.FaultDelay_HeaderDelay_{HeaderDelay: &faultcommonv3.FaultDelay_HeaderDelay{}}}
	abort := &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_HttpStatus{HttpStatus: 503}}
	hdrAbort := &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_HeaderAbort_{HeaderAbort: &faultv3.FaultAbort_HeaderAbort{}}}
	for _, tc := range []struct {
		name  string
		hf    *faultv3.HTTPFault
		inert bool
	}{
		{"empty", &faultv3.HTTPFault{}, true},
		{"conditions only", &faultv3.HTTPFault{UpstreamCluster: "c", MaxActiveFaults: wrapperspb.UInt32(1)}, true},
		{"delay", &faultv3.HTTPFault{Delay: delay}, false},
		{"header delay", &faultv3.HTTPFault{Delay: hdrDelay}, false},
		{"abort", &faultv3.HTTPFault{Abort: abort}, false},
		{"header abort", &faultv3.HTTPFault{Abort: hdrAbort}, false},
	} {
		f, err := CompileFault("fault", tc.hf)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := f.Inert(); got != tc.inert {
			t.Errorf("%s: Inert() = %v, want %v", tc.name, got, tc.inert)
		}
	}
}

// TestMatchMore: a match is decided by its path alone (more unset) only without gRPC, header
// and query parameter matchers and a runtime fraction below 100%; with them the path still
// comes first.
func TestMatchMore(t *testing.T) {
	pre := func(m *routev3.RouteMatch) *routev3.RouteMatch {
		m.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: "/a"}
		return m
	}
	for _, tc := range []struct {
		name string
		m    *routev3.RouteMatch
		more bool
	}{
		{"path", pre(&routev3.RouteMatch{}), false},
		{"grpc", pre(&routev3.RouteMatch{Grpc: &routev3.RouteMatch_GrpcRouteMatchOptions{}}), true},
		{"header", pre(&routev3.RouteMatch{Headers: []*routev3.HeaderMatcher{{Name: "x", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}}}), true},
		{"query", pre(&routev3.RouteMatch{QueryParameters: []*routev3.QueryParameterMatcher{{Name: "q", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_PresentMatch{PresentMatch: true}}}}), true},
	} {
		m, err := compileMatch("match", tc.m)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if m.more != tc.more {
			t.Errorf("%s: more = %v, want %v", tc.name, m.more, tc.more)
		}
		if m.match(nil, "/b") {
			t.Errorf("%s: /b matched", tc.name)
		}
	}
	m, err := compileMatch("match", pre(&routev3.RouteMatch{}))
	if err != nil || !m.match(nil, "/a/x?q") {
		t.Errorf("a path-only match does not match /a/x?q (err %v)", err)
	}
}

// TestRetryOnResponseCommonPath: the answers of RetryOnResponse's short path (a policy whose
// only status condition is retriable-status-codes, a response without x-envoy-ratelimited or
// grpc-status) and of the full one (retryOnResponse) agree where both apply, and the full one
// still decides the rest.
func TestRetryOnResponseCommonPath(t *testing.T) {
	var none, grpc, limited httpmsg.Header
	grpc.Add("grpc-status", "14")
	limited.Add("x-envoy-ratelimited", "true")
	codes := &RetryPolicy{On: vocab.RetryRetriableStatusCodes | vocab.RetryGrpcUnavailable, StatusCodes: []int{503, 418}}
	plain := &RetryPolicy{On: vocab.RetryConnectFailure}
	fivexx := &RetryPolicy{On: vocab.Retry5xx}
	for _, tc := range []struct {
		name string
		p    *RetryPolicy
		code int
		hdr  *httpmsg.Header
		want bool
	}{
		{"codes 200", codes, 200, &none, false},
		{"codes 503", codes, 503, &none, true},
		{"codes 418", codes, 418, &none, true},
		{"codes grpc unavailable", codes, 200, &grpc, true},
		{"codes rate limited", codes, 503, &limited, false},
		{"plain 503", plain, 503, &none, false},
		{"5xx 502", fivexx, 502, &none, true},
		{"5xx 200", fivexx, 200, &none, false},
	} {
		if got := tc.p.RetryOnResponse(tc.code, tc.hdr); got != tc.want {
			t.Errorf("%s: RetryOnResponse = %v, want %v", tc.name, got, tc.want)
		}
		if got := tc.p.retryOnResponse(tc.code, tc.hdr); got != tc.want {
			t.Errorf("%s: retryOnResponse = %v, want %v", tc.name, got, tc.want)
		}
	}
}
