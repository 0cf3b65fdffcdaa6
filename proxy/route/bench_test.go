package route

import (
	"fmt"
	"net/http"
	"testing"

	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
	matcherv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/matcher/v3"
)

// benchTable is shaped like an Istio sidecar's outbound route: many virtual hosts with several
// domains each, a few routes with header matchers and a catch-all.
func benchTable(b testing.TB) *Table {
	var vhs []*routev3.VirtualHost
	for i := 0; i < 200; i++ {
		svc := fmt.Sprintf("svc%d", i)
		vhs = append(vhs, &routev3.VirtualHost{Name: svc + ".ns.svc.cluster.local:80",
			Domains: []string{svc + ".ns.svc.cluster.local", svc + ".ns.svc.cluster.local:80", svc, svc + ":80", svc + ".ns", svc + ".ns:80"},
			Routes: []*routev3.Route{
				{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/api/v2"},
					Headers: []*routev3.HeaderMatcher{{Name: "end-user", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
						StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "jason"}}}}}},
					Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "v2"}}}},
				{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "/items/[0-9]+"}}},
					Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "items"}}}},
				fwd("default", prefix("/"), "outbound|80||"+svc),
			}})
	}
	vhs = append(vhs, &routev3.VirtualHost{Name: "allow_any", Domains: []string{"*"}, Routes: []*routev3.Route{fwd("any", prefix("/"), "PassthroughCluster")}})
	return mustCompile(b, &routev3.RouteConfiguration{Name: "80", VirtualHosts: vhs})
}

func benchRequests() map[string]*http.Request {
	return map[string]*http.Request{
		"exact-host-header-match": req("GET", "svc150.ns.svc.cluster.local:80", "/api/v2/users?id=7", "End-User", "jason"),
		"regex-path":              req("GET", "svc7", "/items/12345"),
		"catch-all-route":         req("GET", "svc99.ns", "/index.html"),
		"wildcard-vhost":          req("GET", "example.org", "/"),
	}
}

func BenchmarkMatch(b *testing.B) {
	tb := benchTable(b)
	for name, r := range benchRequests() {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if tb.Match(HTTPRequest(r)) == nil {
					b.Fatal("no match")
				}
			}
		})
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	tb := benchTable(t)
	for name, r := range benchRequests() {
		if n := testing.AllocsPerRun(100, func() { tb.Match(HTTPRequest(r)) }); n != 0 {
			t.Errorf("%s: %v allocs per match", name, n)
		}
	}
}
