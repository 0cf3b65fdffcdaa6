package route

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

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
