package route

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	groutev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/strait-mesh/strait/internal/vocab"
	"github.com/strait-mesh/strait/proxy/httpmsg"
	"github.com/strait-mesh/strait/proxy/xdspb"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
	faultcommonv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/common/fault/v3"
	corsv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/cors/v3"
	faultv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/fault/v3"
	previoushostsv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/retry/host/previous_hosts/v3"
	matcherv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/matcher/v3"
	typev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/v3"
)

func fwd(name string, m *routev3.RouteMatch, cluster string) *routev3.Route {
	return &routev3.Route{Name: name, Match: m, Action: &routev3.Route_Route{Route: &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}}}
}

func prefix(p string) *routev3.RouteMatch {
	return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: p}}
}

func req(method, host, target string, hdr ...string) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	r.Host = host
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Add(hdr[i], hdr[i+1])
	}
	return r
}

func mustCompile(t testing.TB, rc *routev3.RouteConfiguration) *Table {
	t.Helper()
	tb, err := Compile(rc)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return tb
}

func TestVirtualHostPrecedence(t *testing.T) {
	vh := func(name string, domains ...string) *routev3.VirtualHost {
		return &routev3.VirtualHost{Name: name, Domains: domains, Routes: []*routev3.Route{fwd(name, prefix("/"), name)}}
	}
	rc := &routev3.RouteConfiguration{Name: "80", VirtualHosts: []*routev3.VirtualHost{
		vh("exact", "foo.example.com", "foo.example.com:8080"),
		vh("suffix-long", "*.bar.example.com"),
		vh("suffix-short", "*.example.com"),
		vh("suffix-nodot", "*-svc.local"),
		vh("prefix-long", "foo.exa*"),
		vh("prefix-short", "foo.*"),
		vh("any", "*"),
	}}
	tb := mustCompile(t, rc)
	cases := map[string]string{
		"foo.example.com":      "exact",
		"FOO.Example.com":      "exact",
		"foo.example.com:8080": "exact",
		"foo.example.com:9090": "prefix-long", // the port is part of the host unless ignored
		"a.bar.example.com":    "suffix-long",
		"x.example.com":        "suffix-short",
		".example.com":         "any", // a wildcard must match at least one character... of prefix
		"reviews-svc.local":    "suffix-nodot",
		"foo.exam":             "prefix-long",
		"foo.other":            "prefix-short",
		"other":                "any",
	}
	// ".example.com" has the exact length of the suffix: not a wildcard match; falls to prefix?
	cases[".example.com"] = "any"
	for host, want := range cases {
		vh := tb.VirtualHost(host)
		if vh == nil || vh.Name != want {
			got := "<nil>"
			if vh != nil {
				got = vh.Name
			}
			t.Errorf("host %q: got vhost %s, want %s", host, got, want)
		}
	}
}

func TestIgnorePortInHostMatching(t *testing.T) {
	rc := &routev3.RouteConfiguration{IgnorePortInHostMatching: true, VirtualHosts: []*routev3.VirtualHost{
		{Name: "a", Domains: []string{"a.local"}, Routes: []*routev3.Route{fwd("r", prefix("/"), "c")}},
	}}
	tb := mustCompile(t, rc)
	for _, h := range []string{"a.local", "a.local:80", "a.local:15001"} {
		if tb.VirtualHost(h) == nil {
			t.Errorf("%s: no vhost", h)
		}
	}
	if tb.VirtualHost("[::1]:80") != nil {
		t.Error("ipv6 host matched a.local")
	}
	if got := StripPort("[::1]:80"); got != "[::1]" {
		t.Errorf("StripPort ipv6 = %q", got)
	}
	if got := StripPort("::1"); got != "::1" {
		t.Errorf("StripPort bare ipv6 = %q", got)
	}
}

func sm(kind string, v string, ignoreCase bool) *matcherv3.StringMatcher {
	m := &matcherv3.StringMatcher{IgnoreCase: ignoreCase}
	switch kind {
	case "exact":
		m.MatchPattern = &matcherv3.StringMatcher_Exact{Exact: v}
	case "prefix":
		m.MatchPattern = &matcherv3.StringMatcher_Prefix{Prefix: v}
	case "suffix":
		m.MatchPattern = &matcherv3.StringMatcher_Suffix{Suffix: v}
	case "contains":
		m.MatchPattern = &matcherv3.StringMatcher_Contains{Contains: v}
	case "regex":
		m.MatchPattern = &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: v}}
	}
	return m
}

func TestRouteMatchKinds(t *testing.T) {
	hm := func(name string, m *matcherv3.StringMatcher, invert bool) *routev3.HeaderMatcher {
		return &routev3.HeaderMatcher{Name: name, InvertMatch: invert,
			HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: m}}
	}
	type tc struct {
		name  string
		match *routev3.RouteMatch
		yes   []*http.Request
		no    []*http.Request
	}
	cases := []tc{
		{"prefix", prefix("/api"),
			[]*http.Request{req("GET", "h", "/api"), req("GET", "h", "/api/v1"), req("GET", "h", "/apix?q=1")},
			[]*http.Request{req("GET", "h", "/API"), req("GET", "h", "/ap")}},
		{"prefix case-insensitive", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/api"}, CaseSensitive: wrapperspb.Bool(false)},
			[]*http.Request{req("GET", "h", "/API/x")}, []*http.Request{req("GET", "h", "/ap")}},
		{"path", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/exact"}},
			[]*http.Request{req("GET", "h", "/exact"), req("GET", "h", "/exact?x=1")},
			[]*http.Request{req("GET", "h", "/exact/"), req("GET", "h", "/EXACT"), req("GET", "h", "/exac")}},
		{"path_separated_prefix", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: "/api"}},
			[]*http.Request{req("GET", "h", "/api"), req("GET", "h", "/api/"), req("GET", "h", "/api/x"), req("GET", "h", "/api?x")},
			[]*http.Request{req("GET", "h", "/apix"), req("GET", "h", "/ap")}},
		{"safe_regex", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "/v[0-9]+/items"}}},
			[]*http.Request{req("GET", "h", "/v1/items"), req("GET", "h", "/v22/items?x=1")},
			[]*http.Request{req("GET", "h", "/v1/items/x"), req("GET", "h", "/x/v1/items")}},
		{"header exact", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{hm("x-user", sm("exact", "jason", false), false)}},
			[]*http.Request{req("GET", "h", "/", "X-User", "jason")},
			[]*http.Request{req("GET", "h", "/", "X-User", "Jason"), req("GET", "h", "/")}},
		{"header exact ignore_case", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{hm("x-user", sm("exact", "jason", true), false)}},
			[]*http.Request{req("GET", "h", "/", "X-User", "JASON")}, []*http.Request{req("GET", "h", "/", "X-User", "jasonx")}},
		{"header prefix", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{hm("x-v", sm("prefix", "ab", false), false)}},
			[]*http.Request{req("GET", "h", "/", "X-V", "abc")}, []*http.Request{req("GET", "h", "/", "X-V", "cab")}},
		{"header suffix", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{hm("x-v", sm("suffix", "yz", true), false)}},
			[]*http.Request{req("GET", "h", "/", "X-V", "xYZ")}, []*http.Request{req("GET", "h", "/", "X-V", "yzx")}},
		{"header contains", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{hm("x-v", sm("contains", "mid", true), false)}},
			[]*http.Request{req("GET", "h", "/", "X-V", "aMIDb")}, []*http.Request{req("GET", "h", "/", "X-V", "mi-d")}},
		{"header regex", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{hm("x-v", sm("regex", "v[12]", false), false)}},
			[]*http.Request{req("GET", "h", "/", "X-V", "v2")}, []*http.Request{req("GET", "h", "/", "X-V", "v3"), req("GET", "h", "/", "X-V", "v12")}},
		{"header invert", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{hm("x-v", sm("exact", "no", false), true)}},
			[]*http.Request{req("GET", "h", "/", "X-V", "yes")},
			[]*http.Request{req("GET", "h", "/", "X-V", "no"), req("GET", "h", "/")}}, // missing header + invert: no match (Envoy)
		{"header missing as empty", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{
			{Name: "x-v", TreatMissingHeaderAsEmpty: true, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: sm("exact", "", false)}}}},
			[]*http.Request{req("GET", "h", "/")}, []*http.Request{req("GET", "h", "/", "X-V", "a")}},
		{"header present", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{
			{Name: "x-v", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}}},
			[]*http.Request{req("GET", "h", "/", "X-V", "")}, []*http.Request{req("GET", "h", "/")}},
		{"header absent", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{
			{Name: "x-v", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: false}}}},
			[]*http.Request{req("GET", "h", "/")}, []*http.Request{req("GET", "h", "/", "X-V", "1")}},
		{"header present inverted", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{
			{Name: "x-v", InvertMatch: true, HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}}},
			[]*http.Request{req("GET", "h", "/")}, []*http.Request{req("GET", "h", "/", "X-V", "1")}},
		{"header range", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{
			{Name: "x-n", HeaderMatchSpecifier: &routev3.HeaderMatcher_RangeMatch{RangeMatch: &typev3.Int64Range{Start: -10, End: 10}}}}},
			[]*http.Request{req("GET", "h", "/", "X-N", "-10"), req("GET", "h", "/", "X-N", "9")},
			[]*http.Request{req("GET", "h", "/", "X-N", "10"), req("GET", "h", "/", "X-N", "x")}},
		{"header deprecated exact + repeated values joined", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{
			{Name: "x-v", HeaderMatchSpecifier: &routev3.HeaderMatcher_ExactMatch{ExactMatch: "a,b"}}}},
			[]*http.Request{req("GET", "h", "/", "X-V", "a", "X-V", "b")}, []*http.Request{req("GET", "h", "/", "X-V", "a")}},
		{"pseudo headers", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{
			hm(":method", sm("exact", "POST", false), false), hm(":authority", sm("suffix", ".svc", false), false)}},
			[]*http.Request{req("POST", "a.svc", "/")}, []*http.Request{req("GET", "a.svc", "/"), req("POST", "a.com", "/")}},
		{"query", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, QueryParameters: []*routev3.QueryParameterMatcher{
			{Name: "v", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{StringMatch: sm("exact", "a b", false)}},
			{Name: "debug", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_PresentMatch{PresentMatch: true}}}},
			[]*http.Request{req("GET", "h", "/x?v=a+b&debug"), req("GET", "h", "/x?debug=1&v=a%20b")},
			[]*http.Request{req("GET", "h", "/x?v=a+b"), req("GET", "h", "/x?debug&v=ab")}},
		{"grpc", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Grpc: &routev3.RouteMatch_GrpcRouteMatchOptions{}},
			[]*http.Request{req("POST", "h", "/s/M", "Content-Type", "application/grpc+proto")},
			[]*http.Request{req("POST", "h", "/s/M", "Content-Type", "application/json")}},
		{"runtime_fraction 0%", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, RuntimeFraction: &corev3.RuntimeFractionalPercent{
			DefaultValue: &typev3.FractionalPercent{Numerator: 0}}}, nil, []*http.Request{req("GET", "h", "/")}},
		{"runtime_fraction 100%", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, RuntimeFraction: &corev3.RuntimeFractionalPercent{
			DefaultValue: &typev3.FractionalPercent{Numerator: 100}}}, []*http.Request{req("GET", "h", "/")}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tb := mustCompile(t, &routev3.RouteConfiguration{VirtualHosts: []*routev3.VirtualHost{
				{Name: "v", Domains: []string{"*"}, Routes: []*routev3.Route{fwd("r", c.match, "c")}}}})
			for _, r := range c.yes {
				if tb.Match(HTTPRequest(r)) == nil {
					t.Errorf("%s %s %v: want match", r.Method, r.RequestURI, r.Header)
				}
			}
			for _, r := range c.no {
				if tb.Match(HTTPRequest(r)) != nil {
					t.Errorf("%s %s %v: want no match", r.Method, r.RequestURI, r.Header)
				}
			}
		})
	}
}

func TestRouteOrderAndNoRoute(t *testing.T) {
	tb := mustCompile(t, &routev3.RouteConfiguration{VirtualHosts: []*routev3.VirtualHost{
		{Name: "v", Domains: []string{"a"}, Routes: []*routev3.Route{fwd("first", prefix("/a"), "c1"), fwd("second", prefix("/"), "c2")}}}})
	if rt := tb.Match(HTTPRequest(req("GET", "a", "/ab"))); rt == nil || rt.Name != "first" {
		t.Fatalf("got %v", rt)
	}
	if rt := tb.Match(HTTPRequest(req("GET", "a", "/b"))); rt == nil || rt.Name != "second" {
		t.Fatalf("got %v", rt)
	}
	if rt := tb.Match(HTTPRequest(req("GET", "other", "/b"))); rt != nil {
		t.Fatal("matched an unknown host")
	}
}

func TestActions(t *testing.T) {
	rx := func(p, s string) *matcherv3.RegexMatchAndSubstitute {
		return &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: p}, Substitution: s}
	}
	routes := []*routev3.Route{
		{Name: "prefix-rw", Match: prefix("/old/"), Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "c"}, PrefixRewrite: "/new/",
			HostRewriteSpecifier: &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: "backend"},
			Timeout:              durationpb.New(2 * time.Second), IdleTimeout: durationpb.New(time.Second)}}},
		{Name: "regex-rw", Match: prefix("/re/"), Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_ClusterHeader{ClusterHeader: "x-cluster"},
			RegexRewrite:     rx("^/re/([^/]+)/(.*)$", "/\\2/\\1")}}},
		{Name: "weighted", Match: prefix("/w"), Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{Clusters: []*routev3.WeightedCluster_ClusterWeight{
				{Name: "w0", Weight: wrapperspb.UInt32(0)},
				{Name: "w1", Weight: wrapperspb.UInt32(100), RequestHeadersToAdd: []*corev3.HeaderValueOption{
					{Header: &corev3.HeaderValue{Key: "x-w", Value: "1"}}}}}}}}}},
		{Name: "redirect", Match: prefix("/r/"), Action: &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{
			SchemeRewriteSpecifier: &routev3.RedirectAction_HttpsRedirect{HttpsRedirect: true},
			HostRedirect:           "secure.example.com", PortRedirect: 8443,
			PathRewriteSpecifier: &routev3.RedirectAction_PrefixRewrite{PrefixRewrite: "/s/"},
			ResponseCode:         routev3.RedirectAction_PERMANENT_REDIRECT}}},
		{Name: "redirect-path", Match: prefix("/p"), Action: &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{
			PathRewriteSpecifier: &routev3.RedirectAction_PathRedirect{PathRedirect: "/elsewhere"}, StripQuery: true}}},
		{Name: "host-redirect", Match: prefix("/hr"), Action: &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{
			HostRedirect: "other.test"}}},
		{Name: "direct", Match: prefix("/d"), Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{
			Status: 418, Body: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "teapot"}}}}},
	}
	tb := mustCompile(t, &routev3.RouteConfiguration{VirtualHosts: []*routev3.VirtualHost{{Name: "v", Domains: []string{"*"}, Routes: routes}}})

	rt := tb.Match(HTTPRequest(req("GET", "h", "/old/x?q=1")))
	if p, ok := rt.RewritePath("/old/x?q=1"); !ok || p != "/new/x?q=1" {
		t.Errorf("prefix rewrite: %q", p)
	}
	if rt.HostRewrite != "backend" || rt.Timeout != 2*time.Second || rt.IdleTimeout != time.Second {
		t.Errorf("route action fields: %+v", rt)
	}
	rt = tb.Match(HTTPRequest(req("GET", "h", "/re/a/b/c?z")))
	if p, _ := rt.RewritePath("/re/a/b/c?z"); p != "/b/c/a?z" {
		t.Errorf("regex rewrite: %q", p)
	}
	if rt.Timeout != DefaultTimeout {
		t.Errorf("default timeout %v", rt.Timeout)
	}
	if name, _ := rt.PickCluster(HTTPRequest(req("GET", "h", "/re/a/b", "X-Cluster", "from-header"))); name != "from-header" {
		t.Errorf("cluster_header: %q", name)
	}
	rt = tb.Match(HTTPRequest(req("GET", "h", "/w")))
	for i := 0; i < 50; i++ {
		name, tgt := rt.PickCluster(HTTPRequest(req("GET", "h", "/w")))
		if name != "w1" {
			t.Fatalf("weighted picked %q", name)
		}
		var h httpmsg.Header
		rt.ApplyRequestHeaders(&h, nil, nil, tgt)
		if h.Get("X-W") != "1" {
			t.Fatalf("per-cluster header missing: %v", h)
		}
	}
	rt = tb.Match(HTTPRequest(req("GET", "h:80", "/r/a?b=c")))
	if rt.Action != ActionRedirect || rt.Redirect.Code != 308 {
		t.Fatalf("redirect: %+v", rt)
	}
	if loc := rt.Redirect.Location(HTTPRequest(req("GET", "h:80", "/r/a?b=c"))); loc != "https://secure.example.com:8443/s/a?b=c" {
		t.Errorf("location %q", loc)
	}
	rt = tb.Match(HTTPRequest(req("GET", "h", "/p?x=1")))
	if loc := rt.Redirect.Location(HTTPRequest(req("GET", "h", "/p?x=1"))); loc != "http://h/elsewhere" || rt.Redirect.Code != 301 {
		t.Errorf("location %q code %d", loc, rt.Redirect.Code)
	}
	rt = tb.Match(HTTPRequest(req("GET", "h:8080", "/hr/x")))
	if loc := rt.Redirect.Location(HTTPRequest(req("GET", "h:8080", "/hr/x"))); loc != "http://other.test/hr/x" {
		t.Errorf("host_redirect keeps the request port: %q", loc)
	}
	rt = tb.Match(HTTPRequest(req("GET", "h", "/d")))
	if rt.Action != ActionDirect || rt.Direct.Status != 418 || string(rt.Direct.Body) != "teapot" {
		t.Errorf("direct: %+v", rt.Direct)
	}
}

func TestHeaderOpsOrderAndAppendActions(t *testing.T) {
	hv := func(k, v string, a corev3.HeaderValueOption_HeaderAppendAction) *corev3.HeaderValueOption {
		return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}, AppendAction: a}
	}
	rc := &routev3.RouteConfiguration{
		RequestHeadersToAdd: []*corev3.HeaderValueOption{hv("x-level", "config", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)},
		VirtualHosts: []*routev3.VirtualHost{{Name: "v", Domains: []string{"*"},
			RequestHeadersToAdd: []*corev3.HeaderValueOption{hv("x-level", "vhost", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD),
				hv("x-remote", "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)},
			ResponseHeadersToRemove: []string{"server-timing"},
			Routes: []*routev3.Route{{Match: prefix("/"),
				RequestHeadersToAdd: []*corev3.HeaderValueOption{
					hv("x-level", "route", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD),
					hv("x-append", "b", corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD),
					hv("x-absent", "new", corev3.HeaderValueOption_ADD_IF_ABSENT),
					hv("x-only-if", "set", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS),
					hv("x-copy", "%REQ(x-src)%-100%%", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD),
				},
				RequestHeadersToRemove: []string{"x-drop"},
				Action:                 &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "c"}}}}}}}}
	tb := mustCompile(t, rc)
	r := req("GET", "h", "/", "X-Append", "a", "X-Absent", "old", "X-Drop", "1", "X-Src", "v")
	rt := tb.Match(HTTPRequest(r))
	info := &RequestInfo{}
	info.Remote = mustAddrPort("10.1.2.3:5000")
	var rh httpmsg.Header
	for k, vs := range r.Header {
		for _, v := range vs {
			rh.Add(k, v)
		}
	}
	rt.ApplyRequestHeaders(&rh, HTTPRequest(r), info, nil)
	r.Header = http.Header{}
	for i := 0; i < rh.Len(); i++ {
		k, v := rh.Field(i)
		r.Header.Add(string(k), string(v))
	}
	want := map[string][]string{"X-Level": {"config"}, "X-Append": {"a", "b"}, "X-Absent": {"old"},
		"X-Copy": {"v-100%"}, "X-Remote": {"10.1.2.3"}}
	for k, v := range want {
		if strings.Join(r.Header[k], "|") != strings.Join(v, "|") {
			t.Errorf("%s = %q, want %q", k, r.Header[k], v)
		}
	}
	if _, ok := r.Header["X-Drop"]; ok {
		t.Error("x-drop not removed")
	}
	if _, ok := r.Header["X-Only-If"]; ok {
		t.Error("OVERWRITE_IF_EXISTS added a header")
	}
	var resp httpmsg.Header
	resp.Add("Server-Timing", "x")
	rt.ApplyResponseHeaders(&resp, HTTPRequest(r), info, nil)
	if resp.Len() != 0 {
		t.Errorf("response headers: %d fields", resp.Len())
	}
}

func TestRetryHashMirrorFilterConfigs(t *testing.T) {
	fault, _ := anypb.New(&faultv3.HTTPFault{Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_HttpStatus{HttpStatus: 503},
		Percentage: &typev3.FractionalPercent{Numerator: 100}},
		Delay: &faultcommonv3.FaultDelay{FaultDelaySecifier: &faultcommonv3.FaultDelay_FixedDelay{FixedDelay: durationpb.New(time.Millisecond)}}})
	cors, _ := anypb.New(&corsv3.CorsPolicy{AllowOriginStringMatch: []*matcherv3.StringMatcher{sm("exact", "https://a.com", false)}, AllowMethods: "GET"})
	unknownOptional, _ := anypb.New(&routev3.FilterConfig{IsOptional: true, Config: mustAny(&routev3.Route{})})
	rc := &routev3.RouteConfiguration{VirtualHosts: []*routev3.VirtualHost{{Name: "v", Domains: []string{"*"},
		RetryPolicy: &routev3.RetryPolicy{RetryOn: "5xx", NumRetries: wrapperspb.UInt32(7)},
		Routes: []*routev3.Route{
			{Name: "r", Match: prefix("/"), TypedPerFilterConfig: map[string]*anypb.Any{
				"envoy.filters.http.fault": fault, "envoy.filters.http.cors": cors, "istio.unknown": unknownOptional},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{
					ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "c"},
					RetryPolicy: &routev3.RetryPolicy{RetryOn: "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
						NumRetries: wrapperspb.UInt32(2), PerTryTimeout: durationpb.New(time.Second), RetriableStatusCodes: []uint32{418},
						RetryHostPredicate: []*routev3.RetryPolicy_RetryHostPredicate{{Name: vocab.PreviousHostsPredicate},
							{Name: "typed", ConfigType: &routev3.RetryPolicy_RetryHostPredicate_TypedConfig{TypedConfig: mustAny(&previoushostsv3.PreviousHostsPredicate{})}}},
						HostSelectionRetryMaxAttempts: 5},
					HashPolicy: []*routev3.RouteAction_HashPolicy{
						{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: "x-user"}}, Terminal: true},
						{PolicySpecifier: &routev3.RouteAction_HashPolicy_Cookie_{Cookie: &routev3.RouteAction_HashPolicy_Cookie{Name: "sid", Ttl: durationpb.New(time.Hour)}}},
					},
					RequestMirrorPolicies: []*routev3.RouteAction_RequestMirrorPolicy{{Cluster: "shadow"}},
				}}}}}}}
	tb := mustCompile(t, rc)
	rt := tb.Match(HTTPRequest(req("GET", "h", "/")))
	p := rt.Retry
	if p.NumRetries != 2 || p.PerTryTimeout != time.Second || !p.AvoidPreviousHosts || p.HostSelectionMaxAttempts != 5 {
		t.Errorf("retry policy %+v", p)
	}
	if !p.RetryOnFailure(FailConnect) || !p.RetryOnFailure(FailRefusedStream) || p.RetryOnFailure(FailReset) {
		t.Error("retry-on failure conditions")
	}
	var none, unavailable httpmsg.Header
	unavailable.Add("grpc-status", "14")
	if !p.RetryOnResponse(418, &none) || p.RetryOnResponse(503, &none) || !p.RetryOnResponse(200, &unavailable) {
		t.Error("retry-on response conditions")
	}
	h1, ok1, _ := rt.Hash(HTTPRequest(req("GET", "h", "/", "X-User", "a")), nil)
	h2, ok2, _ := rt.Hash(HTTPRequest(req("GET", "h", "/", "X-User", "a", "Cookie", "sid=zzz")), nil)
	h3, _, _ := rt.Hash(HTTPRequest(req("GET", "h", "/", "X-User", "b")), nil)
	if !ok1 || !ok2 || h1 != h2 || h1 == h3 {
		t.Errorf("header hash with terminal: %x %x %x", h1, h2, h3)
	}
	_, ok, setCookie := rt.Hash(HTTPRequest(req("GET", "h", "/")), nil)
	if !ok || !strings.HasPrefix(setCookie, "sid=\"") || !strings.Contains(setCookie, "Max-Age=3600") {
		t.Errorf("generated cookie %q", setCookie)
	}
	if len(rt.Mirrors) != 1 || rt.Mirrors[0].ShadowHost("svc:80") != "svc-shadow:80" || rt.Mirrors[0].ShadowHost("svc") != "svc-shadow" {
		t.Errorf("mirrors %+v", rt.Mirrors)
	}
	f, ok := rt.FilterConfig(FaultFilterName).(*Fault)
	if !ok || f.AbortStatus != 503 || f.Delay != time.Millisecond || f.AbortFraction != Million || f.DelayFraction != Million {
		t.Errorf("fault %+v", f)
	}
	if rt.CORS == nil || !rt.CORS.AllowsOrigin("https://a.com") || rt.CORS.AllowsOrigin("https://b.com") {
		t.Errorf("cors %+v", rt.CORS)
	}
}

func mustAny(m interface{ ProtoReflect() protoreflectMessage }) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(err)
	}
	return a
}

func TestUnsupportedFieldsAreErrors(t *testing.T) {
	base := func() *routev3.RouteConfiguration {
		return &routev3.RouteConfiguration{VirtualHosts: []*routev3.VirtualHost{{Name: "v", Domains: []string{"*"},
			Routes: []*routev3.Route{fwd("r", prefix("/"), "c")}}}}
	}
	cases := map[string]func(rc *groutev3.RouteConfiguration){
		"virtual_hosts[0].require_tls": func(rc *groutev3.RouteConfiguration) {
			rc.VirtualHosts[0].RequireTls = groutev3.VirtualHost_ALL
		},
		"virtual_hosts[0].routes[0].route.hedge_policy": func(rc *groutev3.RouteConfiguration) {
			rc.VirtualHosts[0].Routes[0].GetRoute().HedgePolicy = &groutev3.HedgePolicy{}
		},
		"virtual_hosts[0].routes[0].match.tls_context": func(rc *groutev3.RouteConfiguration) {
			rc.VirtualHosts[0].Routes[0].Match.TlsContext = &groutev3.RouteMatch_TlsContextMatchOptions{}
		},
		"route_configuration.vhds": func(rc *groutev3.RouteConfiguration) { rc.Vhds = &groutev3.Vhds{} },
		"virtual_hosts[0].routes[0].typed_per_filter_config[envoy.filters.http.ext_authz]": func(rc *groutev3.RouteConfiguration) {
			rc.VirtualHosts[0].Routes[0].TypedPerFilterConfig = map[string]*anypb.Any{"envoy.filters.http.ext_authz": mustAny(&groutev3.Route{})}
		},
		"virtual_hosts[0].routes[0].route.retry_policy.retry_on": func(rc *groutev3.RouteConfiguration) {
			rc.VirtualHosts[0].Routes[0].GetRoute().RetryPolicy = &groutev3.RetryPolicy{RetryOn: "5xx,bogus"}
		},
	}
	for field, mutate := range cases {
		// The fields strait-proxy does not read are set through go-control-plane's type.
		g := xdspb.MustFrom[*groutev3.RouteConfiguration](base())
		mutate(g)
		_, err := Compile(xdspb.MustFrom[*routev3.RouteConfiguration](g))
		var ue *UnsupportedError
		if !errors.As(err, &ue) || !strings.HasPrefix(ue.Field, field) && !strings.HasSuffix(ue.Field, field) {
			t.Errorf("%s: got %v", field, err)
		}
	}
	// Regex program size limit.
	rc := base()
	rc.VirtualHosts[0].Routes[0].Match = &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: strings.Repeat("(a|b|c)", 200)}}}
	if _, err := Compile(rc); err == nil || !strings.Contains(err.Error(), "program size") {
		t.Errorf("large regex: %v", err)
	}
}

type protoreflectMessage = protoreflect.Message

func mustAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// TestNoOpsShortcut checks the compiled shortcut past applyOps: set only for routes whose
// route, virtual host and table have no operations of that direction, and a weighted cluster's
// own operations still apply.
func TestNoOpsShortcut(t *testing.T) {
	add := []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-added", Value: "1"}}}
	rc := &routev3.RouteConfiguration{VirtualHosts: []*routev3.VirtualHost{
		{Name: "plain", Domains: []string{"plain"}, Routes: []*routev3.Route{fwd("p", prefix("/"), "c")}},
		{Name: "vh", Domains: []string{"vh"}, ResponseHeadersToAdd: add, Routes: []*routev3.Route{fwd("v", prefix("/"), "c")}},
		{Name: "wc", Domains: []string{"wc"}, Routes: []*routev3.Route{{Name: "w", Match: prefix("/"),
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_WeightedClusters{
				WeightedClusters: &routev3.WeightedCluster{Clusters: []*routev3.WeightedCluster_ClusterWeight{
					{Name: "c", Weight: wrapperspb.UInt32(1), RequestHeadersToAdd: add}}}}}}}}},
	}}
	tb := mustCompile(t, rc)
	for _, c := range []struct {
		host             string
		noReq, noResp    bool
		wantReq, wantRsp bool
	}{
		{"plain", true, true, false, false},
		{"vh", true, false, false, true},
		{"wc", true, true, true, false},
	} {
		r := HTTPRequest(req("GET", c.host, "/"))
		rt := tb.Match(r)
		if rt.noReqOps != c.noReq || rt.noRespOps != c.noResp {
			t.Errorf("%s: noReqOps %v noRespOps %v", c.host, rt.noReqOps, rt.noRespOps)
		}
		_, target := rt.PickCluster(r)
		if rt.NoRequestOps(target) != !c.wantReq || rt.NoResponseOps(target) != !c.wantRsp {
			t.Errorf("%s: NoRequestOps %v NoResponseOps %v", c.host, rt.NoRequestOps(target), rt.NoResponseOps(target))
		}
		var rq, rs httpmsg.Header
		rt.ApplyRequestHeaders(&rq, r, &RequestInfo{}, target)
		rt.ApplyResponseHeaders(&rs, r, &RequestInfo{}, target)
		if rq.Has("X-Added") != c.wantReq || rs.Has("X-Added") != c.wantRsp {
			t.Errorf("%s: request ops applied %v, response ops applied %v", c.host, rq.Has("X-Added"), rs.Has("X-Added"))
		}
	}
}

// TestPlain: Plain is set only for a route that asks the router for none of grpc-timeout, a
// path or host rewrite (its own or a target's), request header operations at any level and a
// hash policy.
func TestPlain(t *testing.T) {
	add := []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-added", Value: "1"}}}
	action := func(name string, edit func(a *routev3.RouteAction)) *routev3.Route {
		a := &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "c"}}
		if edit != nil {
			edit(a)
		}
		return &routev3.Route{Name: name, Match: prefix("/" + name), Action: &routev3.Route_Route{Route: a}}
	}
	weighted := func(cw *routev3.WeightedCluster_ClusterWeight) func(a *routev3.RouteAction) {
		return func(a *routev3.RouteAction) {
			a.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{
				Clusters: []*routev3.WeightedCluster_ClusterWeight{cw}}}
		}
	}
	rc := &routev3.RouteConfiguration{VirtualHosts: []*routev3.VirtualHost{
		{Name: "a", Domains: []string{"a"}, Routes: []*routev3.Route{
			action("plain", nil),
			action("weighted", weighted(&routev3.WeightedCluster_ClusterWeight{Name: "c", Weight: wrapperspb.UInt32(1)})),
			action("prefixrw", func(a *routev3.RouteAction) { a.PrefixRewrite = "/x" }),
			action("hostrw", func(a *routev3.RouteAction) {
				a.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: "b"}
			}),
			action("wchostrw", weighted(&routev3.WeightedCluster_ClusterWeight{Name: "c", Weight: wrapperspb.UInt32(1),
				HostRewriteSpecifier: &routev3.WeightedCluster_ClusterWeight_HostRewriteLiteral{HostRewriteLiteral: "b"}})),
			action("wcops", weighted(&routev3.WeightedCluster_ClusterWeight{Name: "c", Weight: wrapperspb.UInt32(1),
				RequestHeadersToAdd: add})),
			action("hash", func(a *routev3.RouteAction) {
				a.HashPolicy = []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{
					Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: "x-user"}}}}
			}),
			action("grpc", func(a *routev3.RouteAction) {
				a.MaxStreamDuration = &routev3.RouteAction_MaxStreamDuration{GrpcTimeoutHeaderMax: durationpb.New(time.Second)}
			}),
		}},
		{Name: "ops", Domains: []string{"ops"}, RequestHeadersToAdd: add, Routes: []*routev3.Route{action("plain", nil)}},
	}}
	tb := mustCompile(t, rc)
	for _, c := range []struct {
		host, path string
		plain      bool
	}{
		{"a", "/plain", true},
		{"a", "/weighted", true},
		{"a", "/prefixrw", false},
		{"a", "/hostrw", false},
		{"a", "/wchostrw", false},
		{"a", "/wcops", false},
		{"a", "/hash", false},
		{"a", "/grpc", false},
		{"ops", "/plain", false},
	} {
		rt := tb.Match(HTTPRequest(req("GET", c.host, c.path)))
		if rt == nil {
			t.Fatalf("%s%s: no route", c.host, c.path)
		}
		if rt.Plain() != c.plain {
			t.Errorf("%s%s: Plain %v, want %v", c.host, c.path, rt.Plain(), c.plain)
		}
	}
	if (&Route{}).Plain() {
		t.Error("a Route not made by Compile is plain")
	}
}
