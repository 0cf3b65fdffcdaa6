package route

import (
	"net/http/httptest"
	"net/netip"
	"testing"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/strait-mesh/strait/proxy/ratelimit"
	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
	matcherv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/matcher/v3"
)

func rlAct(a any) *routev3.RateLimit_Action {
	switch v := a.(type) {
	case *routev3.RateLimit_Action_RequestHeaders:
		return &routev3.RateLimit_Action{ActionSpecifier: &routev3.RateLimit_Action_RequestHeaders_{RequestHeaders: v}}
	case *routev3.RateLimit_Action_GenericKey:
		return &routev3.RateLimit_Action{ActionSpecifier: &routev3.RateLimit_Action_GenericKey_{GenericKey: v}}
	case *routev3.RateLimit_Action_HeaderValueMatch:
		return &routev3.RateLimit_Action{ActionSpecifier: &routev3.RateLimit_Action_HeaderValueMatch_{HeaderValueMatch: v}}
	case *routev3.RateLimit_Action_QueryParameters:
		return &routev3.RateLimit_Action{ActionSpecifier: &routev3.RateLimit_Action_QueryParameters_{QueryParameters: v}}
	case *routev3.RateLimit_Action_MaskedRemoteAddress:
		return &routev3.RateLimit_Action{ActionSpecifier: &routev3.RateLimit_Action_MaskedRemoteAddress_{MaskedRemoteAddress: v}}
	case string:
		switch v {
		case "remote_address":
			return &routev3.RateLimit_Action{ActionSpecifier: &routev3.RateLimit_Action_RemoteAddress_{RemoteAddress: &routev3.RateLimit_Action_RemoteAddress{}}}
		case "destination_cluster":
			return &routev3.RateLimit_Action{ActionSpecifier: &routev3.RateLimit_Action_DestinationCluster_{DestinationCluster: &routev3.RateLimit_Action_DestinationCluster{}}}
		}
	}
	panic("unknown action")
}

// TestRateLimitDescriptors checks the descriptors route and virtual host rate_limits produce,
// with Envoy's rules for absent values, failed matches, stages and vh_rate_limits.
func TestRateLimitDescriptors(t *testing.T) {
	hdrMatch := &routev3.RateLimit_Action_HeaderValueMatch{DescriptorValue: "get", Headers: []*routev3.HeaderMatcher{{
		Name: ":method", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "GET"}}}}}}
	notGet := &routev3.RateLimit_Action_HeaderValueMatch{DescriptorKey: "m", DescriptorValue: "not-get", ExpectMatch: wrapperspb.Bool(false),
		Headers: hdrMatch.Headers}
	rls := []*routev3.RateLimit{
		{Actions: []*routev3.RateLimit_Action{rlAct("remote_address"), rlAct("destination_cluster")}},
		{Actions: []*routev3.RateLimit_Action{rlAct(&routev3.RateLimit_Action_RequestHeaders{HeaderName: "x-user", DescriptorKey: "user"})}},
		{Actions: []*routev3.RateLimit_Action{rlAct(&routev3.RateLimit_Action_RequestHeaders{HeaderName: "x-absent", DescriptorKey: "a", SkipIfAbsent: true}),
			rlAct(&routev3.RateLimit_Action_GenericKey{DescriptorValue: "g"})}},
		{Actions: []*routev3.RateLimit_Action{rlAct(hdrMatch)}},
		{Actions: []*routev3.RateLimit_Action{rlAct(notGet)}},
		{Actions: []*routev3.RateLimit_Action{rlAct(&routev3.RateLimit_Action_RequestHeaders{HeaderName: "x-absent", DescriptorKey: "a"})}},
		{Stage: wrapperspb.UInt32(1), Actions: []*routev3.RateLimit_Action{rlAct(&routev3.RateLimit_Action_GenericKey{DescriptorValue: "stage1"})}},
		{DisableKey: "off", Actions: []*routev3.RateLimit_Action{rlAct(&routev3.RateLimit_Action_GenericKey{DescriptorValue: "disabled"})}},
		{Actions: []*routev3.RateLimit_Action{rlAct(&routev3.RateLimit_Action_QueryParameters{QueryParameterName: "id", DescriptorKey: "id"}),
			rlAct(&routev3.RateLimit_Action_MaskedRemoteAddress{V4PrefixMaskLen: wrapperspb.UInt32(24)})}},
	}
	r := &routev3.Route{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "backend"},
			RateLimits: rls}}}
	vhLimits := []*routev3.RateLimit{{Actions: []*routev3.RateLimit_Action{rlAct(&routev3.RateLimit_Action_GenericKey{DescriptorKey: "vh", DescriptorValue: "1"})}}}
	tbl, err := Compile(&routev3.RouteConfiguration{VirtualHosts: []*routev3.VirtualHost{{Name: "vh", Domains: []string{"*"},
		Routes: []*routev3.Route{r}, RateLimits: vhLimits}}})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("GET", "http://svc/p?id=a%20b", nil)
	req.Header.Set("X-User", "alice")
	rt := tbl.Match(HTTPRequest(req))
	info := &RequestInfo{Remote: netip.MustParseAddrPort("10.1.2.3:5555")}
	for _, tc := range []struct {
		stage uint32
		vh    VhRateLimits
		want  string
	}{
		{0, VhOverride, "[remote_address=10.1.2.3, destination_cluster=backend] [user=alice] [generic_key=g] [header_match=get] [id=a b, masked_remote_address=10.1.2.0/24]"},
		{0, VhInclude, "[remote_address=10.1.2.3, destination_cluster=backend] [user=alice] [generic_key=g] [header_match=get] [id=a b, masked_remote_address=10.1.2.0/24] [vh=1]"},
		{1, VhIgnore, "[generic_key=stage1]"},
	} {
		var d ratelimit.Descriptors
		rt.AppendRateLimitDescriptors(&d, tc.stage, tc.vh, HTTPRequest(req), info, "backend")
		if got := d.String(); got != tc.want {
			t.Errorf("stage %d vh %d:\n got %s\nwant %s", tc.stage, tc.vh, got, tc.want)
		}
	}
}
