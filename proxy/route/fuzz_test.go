package route

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
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
		rt := tb.Match(r)
		vh := tb.VirtualHost(host)
		if rt == nil {
			return
		}
		if rt.VirtualHost != vh {
			t.Fatalf("route from vhost %s, host selects %v", rt.VirtualHost.Name, vh)
		}
		path := requestPath(r)
		switch rt.Action {
		case ActionRedirect:
			_ = rt.Redirect.Location(r)
		case ActionForward:
			_, _ = rt.PickCluster(r)
			_, _ = rt.RewritePath(path)
		}
	})
}

// FuzzStringMatch checks the allocation-free case-insensitive matchers against a reference
// written with strings.ToLower.
func FuzzStringMatch(f *testing.F) {
	f.Add("abc", "xxABCxx")
	f.Add("", "")
	f.Add("ß", "SS")
	f.Add("K", "\u212a") // Kelvin sign folds to k
	f.Fuzz(func(t *testing.T, pattern, value string) {
		for _, kind := range []string{"exact", "prefix", "suffix", "contains"} {
			m, err := compileStringMatch("f", sm(kind, pattern, false))
			if err != nil {
				t.Fatal(err)
			}
			want := matchesRef(kind, pattern, value)
			if got := m.Match(value); got != want {
				t.Fatalf("%s %q in %q: got %v want %v", kind, pattern, value, got, want)
			}
			// Case-insensitive matching must agree with ASCII lower-casing (Envoy folds ASCII only).
			{
				mi, _ := compileStringMatch("f", sm(kind, pattern, true))
				want = matchesRef(kind, asciiLower(pattern), asciiLower(value))
				if got := mi.Match(value); got != want {
					t.Fatalf("ignore_case %s %q in %q: got %v want %v", kind, pattern, value, got, want)
				}
			}
		}
		_, _ = queryParam(value, pattern)
		_ = stripPort(value)
	})
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func boolValue(v bool) *wrapperspb.BoolValue { return wrapperspb.Bool(v) }

// matchesRef is the reference a string matcher of kind is checked against: whether pattern
// matches value.
func matchesRef(kind, pattern, value string) bool {
	switch kind {
	case "exact":
		return value == pattern
	case "prefix":
		return strings.HasPrefix(value, pattern)
	case "suffix":
		return strings.HasSuffix(value, pattern)
	case "contains":
		return strings.Contains(value, pattern)
	}
	panic("unknown kind " + kind)
}
