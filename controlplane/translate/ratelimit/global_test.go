package ratelimit

import (
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/strait-mesh/strait/controlplane/config"
)

const globalPolicy = `apiVersion: extensions.strait.io/v1alpha1
kind: RateLimit
metadata: {name: g, namespace: default}
spec:
  rules:
  - scope: Global
    limit: {requests: 5, per: 1s}
`

// TestGlobalWithoutService checks that a Global rule is refused, naming the flag, when
// straitd's rate limit service is off.
func TestGlobalWithoutService(t *testing.T) {
	_, err := Filters(load(t, globalPolicy), 9080, false)
	if err == nil || !strings.Contains(err.Error(), "RateLimit default/g: spec.rules[0]: scope Global needs straitd's rate limit service") ||
		!strings.Contains(err.Error(), "--ratelimit-listen") {
		t.Fatalf("error %v", err)
	}
}

// TestGlobalInlineRoutes checks a sidecar's inbound connection manager with an inline route
// configuration: the Global filter is added and its rate_limits go into the inline routes;
// nothing is returned for RDS.
func TestGlobalInlineRoutes(t *testing.T) {
	hcm := &hcmv3.HttpConnectionManager{StatPrefix: "inbound_0.0.0.0_9080",
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{Name: "inbound|9080||",
			VirtualHosts: []*routev3.VirtualHost{{Name: "inbound|http|9080", Domains: []string{"*"}, Routes: []*routev3.Route{{
				Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "inbound|9080||"}}},
			}}}}}}}
	tc, err := anypb.New(hcm)
	if err != nil {
		t.Fatal(err)
	}
	l := &listenerv3.Listener{Name: "virtualInbound", FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
		Name: config.HCMFilterName, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: tc}}}}}}
	out, rds, err := Listener(l, load(t, globalPolicy), true)
	if err != nil || len(rds) != 0 {
		t.Fatalf("Listener: %v, rds %v", err, rds)
	}
	got := &hcmv3.HttpConnectionManager{}
	if err := out.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(got); err != nil {
		t.Fatal(err)
	}
	if fs := got.GetHttpFilters(); len(fs) != 1 || fs[0].GetName() != FilterPrefix+"default/g/0" {
		t.Fatalf("filters %v", fs)
	}
	a := got.GetRouteConfig().GetVirtualHosts()[0].GetRoutes()[0].GetRoute()
	if len(a.GetRateLimits()) != 1 || a.GetRateLimits()[0].GetStage().GetValue() != 1 || !a.GetIncludeVhRateLimits().GetValue() {
		t.Fatalf("route action %v", a)
	}
	// The input is untouched.
	if len(hcm.GetRouteConfig().GetVirtualHosts()[0].GetRoutes()[0].GetRoute().GetRateLimits()) != 0 {
		t.Fatal("the input route configuration was modified")
	}
}

// TestGlobalStages checks that more than MaxGlobalRules Global rules on one port are refused.
func TestGlobalStages(t *testing.T) {
	doc := "apiVersion: extensions.strait.io/v1alpha1\nkind: RateLimit\nmetadata: {name: g, namespace: default}\nspec:\n  rules:\n" +
		strings.Repeat("  - {scope: Global, limit: {requests: 5, per: 1s}}\n", MaxGlobalRules+1)
	if _, err := Filters(load(t, doc), 80, true); err == nil || !strings.Contains(err.Error(), "more than 10 Global rules apply to port 80") {
		t.Fatalf("error %v", err)
	}
}
