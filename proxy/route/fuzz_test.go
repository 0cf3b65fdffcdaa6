package route

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/wrapperspb"

	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
	matcherv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/matcher/v3"
)

func fuzzTable(t testing.TB) *Table {
	hm := func(name string, m *matcherv3.StringMatcher) *routev3.HeaderMatcher {
		return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: m}}
	}
	routes := []*routev3.Route{
		{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: "/api"},
			Headers:         []*routev3.HeaderMatcher{hm("x-v", sm("contains", "Ab", true))},
			QueryParameters: []*routev3.QueryParameterMatcher{{Name: "q", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{StringMatch: sm("prefix", "x", false)}}}},
			Action: &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{PathRewriteSpecifier: &routev3.RedirectAction_PrefixRewrite{PrefixRewrite: "/v2"}}}},
		{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "/r/([a-z]+)/.*"}}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "c"},
				RegexRewrite: &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: "/r/([a-z]+)"}, Substitution: "/\\1"}}}},
		{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/P"}, CaseSensitive: boolValue(false),
			Headers: []*routev3.HeaderMatcher{{Name: "x-n", InvertMatch: true, HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_ClusterHeader{ClusterHeader: "x-c"}, PrefixRewrite: "/"}}},
		fwd("all", prefix("/"), "c"),
	}
	return mustCompile(t, &routev3.RouteConfiguration{VirtualHosts: []*routev3.VirtualHost{
		{Name: "exact", Domains: []string{"a.example.com", "a.example.com:80"}, Routes: routes},
		{Name: "suffix", Domains: []string{"*.example.com"}, Routes: routes},
		{Name: "prefix", Domains: []string{"api.*"}, Routes: routes},
	}})
}

// FuzzMatch feeds arbitrary hosts, request targets and header values through vhost and route
// matching, rewrites and redirects: nothing may panic, and a match must come from the virtual
// host the domain rules select.
func FuzzMatch(f *testing.F) {
	f.Add("a.example.com", "/api/x?q=xy", "xaBy")
	f.Add("B.Example.COM:8080", "/r/abc/def?z", "")
	f.Add("api.v1", "/p/..%2f/x", "1")
	f.Add("[::1]:80", "/api?q=%zz&q=x", "ab")
	f.Add("", "", "")
	tb := fuzzTable(f)
	f.Fuzz(func(t *testing.T, host, target, hv string) {
		r := &http.Request{Method: "GET", Host: host, RequestURI: target, URL: &url.URL{}, Header: http.Header{}}
		if hv != "" {
			r.Header["X-V"] = []string{hv}
			r.Header["X-C"] = []string{hv}
		}
		if !strings.HasPrefix(target, "/") {
			r.RequestURI = ""
			r.URL.Path = target
		}
		rt := tb.Match(HTTPRequest(r))
		vh := tb.VirtualHost(host)
		if rt == nil {
			return
		}
		if rt.VirtualHost != vh {
			t.Fatalf("route from vhost %s, host selects %v", rt.VirtualHost.Name, vh)
		}
		path := HTTPRequest(r).Path()
		switch rt.Action {
		case ActionRedirect:
			_ = rt.Redirect.Location(HTTPRequest(r))
		case ActionForward:
			_, _ = rt.PickCluster(HTTPRequest(r))
			_, _ = rt.RewritePath(path)
		}
	})
}

// FuzzQueryParam feeds arbitrary raw queries, names and hosts through query-parameter lookup
// and port stripping: nothing may panic. (String matching itself is fuzzed in proxy/matcher.)
func FuzzQueryParam(f *testing.F) {
	f.Add("abc", "xxABCxx")
	f.Add("", "")
	f.Add("ß", "SS")
	f.Add("K", "\u212a")
	f.Fuzz(func(t *testing.T, pattern, value string) {
		_, _ = queryParam(value, pattern)
		_ = stripPort(value)
	})
}

func boolValue(v bool) *wrapperspb.BoolValue { return wrapperspb.Bool(v) }
