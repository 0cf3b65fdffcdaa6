package authz

import (
	"net/netip"
	"testing"

	"google.golang.org/protobuf/types/known/structpb"
)

type matchCase struct {
	name string
	rule string         // Permission or Principal JSON
	mod  func(*fakeReq) // changes to baseReq
	want bool
}

func runPermissionCases(t *testing.T, cases []matchCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := permissionEngine(t, tc.rule)
			r := baseReq()
			if tc.mod != nil {
				tc.mod(r)
			}
			if got := e.Evaluate(r); got.Allowed != tc.want || got.Matched != tc.want {
				t.Fatalf("permission %s on %+v: got %+v, want match=%v", tc.rule, r, got, tc.want)
			}
		})
	}
}

func setHeader(k string, v ...string) func(*fakeReq) {
	return func(r *fakeReq) { r.headers[k] = v }
}

func TestPermissionHeader(t *testing.T) {
	runPermissionCases(t, []matchCase{
		{"method exact", `{"header":{"name":":method","exactMatch":"GET"}}`, nil, true},
		{"method exact other", `{"header":{"name":":method","exactMatch":"POST"}}`, nil, false},
		{"method case matters", `{"header":{"name":":method","exactMatch":"get"}}`, nil, false},
		{"method string_match ignore_case", `{"header":{"name":":method","stringMatch":{"exact":"get","ignoreCase":true}}}`, nil, true},
		{"authority suffix ignore_case", `{"header":{"name":":authority","stringMatch":{"suffix":".DEFAULT.svc.cluster.local","ignoreCase":true}}}`, nil, true},
		{"authority prefix ignore_case", `{"header":{"name":":authority","stringMatch":{"prefix":"BOOKS.","ignoreCase":true}}}`, nil, true},
		{"authority prefix case sensitive", `{"header":{"name":":authority","stringMatch":{"prefix":"BOOKS."}}}`, nil, false},
		{"host is :authority", `{"header":{"name":"Host","exactMatch":"books.default.svc.cluster.local"}}`, nil, true},
		{"authority absent", `{"header":{"name":":authority","presentMatch":true}}`, func(r *fakeReq) { r.host = "" }, false},
		{"path header keeps query", `{"header":{"name":":path","exactMatch":"/api/v1/books?x=1"}}`, nil, true},
		{"scheme", `{"header":{"name":":scheme","exactMatch":"http"}}`, nil, true},
		{"regular exact", `{"header":{"name":"user-agent","exactMatch":"curl/8"}}`, nil, true},
		{"name is case-insensitive", `{"header":{"name":"User-Agent","exactMatch":"curl/8"}}`, nil, true},
		{"prefix", `{"header":{"name":"user-agent","prefixMatch":"curl"}}`, nil, true},
		{"suffix", `{"header":{"name":"user-agent","suffixMatch":"/8"}}`, nil, true},
		{"contains", `{"header":{"name":"user-agent","containsMatch":"rl/"}}`, nil, true},
		{"contains ignore_case", `{"header":{"name":"user-agent","stringMatch":{"contains":"RL/","ignoreCase":true}}}`, nil, true},
		{"contains miss", `{"header":{"name":"user-agent","containsMatch":"wget"}}`, nil, false},
		{"safe_regex full match", `{"header":{"name":"user-agent","safeRegexMatch":{"regex":"curl/[0-9]+"}}}`, nil, true},
		{"safe_regex is anchored", `{"header":{"name":"user-agent","safeRegexMatch":{"regex":"curl"}}}`, nil, false},
		{"string_match safe_regex", `{"header":{"name":"user-agent","stringMatch":{"safeRegex":{"regex":"c.*8"}}}}`, nil, true},
		{"present", `{"header":{"name":"user-agent","presentMatch":true}}`, nil, true},
		{"present missing", `{"header":{"name":"x-missing","presentMatch":true}}`, nil, false},
		{"present false on missing", `{"header":{"name":"x-missing","presentMatch":false}}`, nil, true},
		{"present false on present", `{"header":{"name":"user-agent","presentMatch":false}}`, nil, false},
		{"present inverted on missing", `{"header":{"name":"x-missing","presentMatch":true,"invertMatch":true}}`, nil, true},
		{"no specifier means present", `{"header":{"name":"user-agent"}}`, nil, true},
		{"no specifier missing", `{"header":{"name":"x-missing"}}`, nil, false},
		{"invert", `{"header":{"name":"user-agent","exactMatch":"wget","invertMatch":true}}`, nil, true},
		{"invert on match", `{"header":{"name":"user-agent","exactMatch":"curl/8","invertMatch":true}}`, nil, false},
		// A missing header never matches a value matcher, inverted or not (Envoy).
		{"invert missing", `{"header":{"name":"x-missing","exactMatch":"a","invertMatch":true}}`, nil, false},
		{"missing as empty", `{"header":{"name":"x-missing","exactMatch":"","treatMissingHeaderAsEmpty":true}}`, nil, true},
		{"missing as empty inverted", `{"header":{"name":"x-missing","exactMatch":"a","invertMatch":true,"treatMissingHeaderAsEmpty":true}}`, nil, true},
		{"missing as empty prefix", `{"header":{"name":"x-missing","prefixMatch":"a","treatMissingHeaderAsEmpty":true}}`, nil, false},
		// exact_match "" is Envoy's legacy "any value".
		{"legacy exact empty", `{"header":{"name":"user-agent","exactMatch":""}}`, nil, true},
		{"legacy exact empty missing", `{"header":{"name":"x-missing","exactMatch":""}}`, nil, false},
		{"string exact empty", `{"header":{"name":"user-agent","stringMatch":{"exact":""}}}`, nil, false},
		{"empty value", `{"header":{"name":"x-e","stringMatch":{"exact":""}}}`, setHeader("x-e", ""), true},
		{"joined with comma", `{"header":{"name":"x-a","exactMatch":"a,b"}}`, setHeader("x-a", "a", "b"), true},
		{"joined no single value", `{"header":{"name":"x-a","exactMatch":"b"}}`, setHeader("x-a", "a", "b"), false},
		{"istio multi-value regex", `{"header":{"name":"x-a","safeRegexMatch":{"regex":"^b$|^b,.*|.*,b,.*|.*,b$"}}}`, setHeader("x-a", "a", "b"), true},
		{"range", `{"header":{"name":"x-n","rangeMatch":{"start":10,"end":20}}}`, setHeader("x-n", "15"), true},
		{"range end excluded", `{"header":{"name":"x-n","rangeMatch":{"start":10,"end":20}}}`, setHeader("x-n", "20"), false},
		{"range negative", `{"header":{"name":"x-n","rangeMatch":{"start":-5,"end":0}}}`, setHeader("x-n", "-3"), true},
		{"range not a number", `{"header":{"name":"x-n","rangeMatch":{"start":0,"end":20}}}`, setHeader("x-n", "1x"), false},
		{"range whitespace", `{"header":{"name":"x-n","rangeMatch":{"start":0,"end":20}}}`, setHeader("x-n", " 7 "), true},
		{"ignore_case is ASCII only", `{"header":{"name":"x-k","stringMatch":{"exact":"k","ignoreCase":true}}}`, setHeader("x-k", "\u212a"), false},
	})
}

func TestPermissionURLPath(t *testing.T) {
	path := func(p string) func(*fakeReq) { return func(r *fakeReq) { r.path = p } }
	runPermissionCases(t, []matchCase{
		{"exact strips query", `{"urlPath":{"path":{"exact":"/api/v1/books"}}}`, nil, true},
		{"exact strips fragment", `{"urlPath":{"path":{"exact":"/a"}}}`, path("/a#frag?x"), true},
		{"question mark after fragment", `{"urlPath":{"path":{"exact":"/a"}}}`, path("/a?q#f"), true},
		{"empty query", `{"urlPath":{"path":{"exact":"/a"}}}`, path("/a?"), true},
		{"prefix", `{"urlPath":{"path":{"prefix":"/api/"}}}`, nil, true},
		{"prefix not in query", `{"urlPath":{"path":{"prefix":"/api/v1/books/x"}}}`, path("/api/v1/books?/x"), false},
		{"suffix before query", `{"urlPath":{"path":{"suffix":"/books"}}}`, nil, true},
		{"suffix in query does not count", `{"urlPath":{"path":{"suffix":"=1"}}}`, nil, false},
		{"contains", `{"urlPath":{"path":{"contains":"v1"}}}`, nil, true},
		{"case sensitive", `{"urlPath":{"path":{"exact":"/API/v1/books"}}}`, nil, false},
		{"ignore_case", `{"urlPath":{"path":{"exact":"/API/V1/BOOKS","ignoreCase":true}}}`, nil, true},
		{"regex", `{"urlPath":{"path":{"safeRegex":{"regex":"/api/v[0-9]+/.*"}}}}`, nil, true},
		{"regex any", `{"urlPath":{"path":{"safeRegex":{"googleRe2":{},"regex":".+"}}}}`, nil, true},
		{"no path (CONNECT)", `{"urlPath":{"path":{"safeRegex":{"regex":".*"}}}}`, path(""), false},
		{"not path on CONNECT", `{"notRule":{"urlPath":{"path":{"prefix":"/"}}}}`, path(""), true},
		{"encoded slash is literal", `{"urlPath":{"path":{"prefix":"/admin/"}}}`, path("/admin%2Fx"), false},
	})
}

func TestPermissionURITemplate(t *testing.T) {
	tmpl := func(p string) string {
		return `{"uriTemplate":{"name":"uri-template","typedConfig":{"@type":"` + uriTemplateType + `","pathTemplate":"` + p + `"}}}`
	}
	path := func(p string) func(*fakeReq) { return func(r *fakeReq) { r.path = p } }
	runPermissionCases(t, []matchCase{
		{"one segment", tmpl("/api/*/books"), nil, true},
		{"one segment strips query", tmpl("/api/v1/*"), nil, true},
		{"one segment not two", tmpl("/api/*"), nil, false},
		{"any segments", tmpl("/api/**"), nil, true},
		{"any segments zero", tmpl("/api/**"), path("/api/"), true},
		{"any segments needs slash", tmpl("/api/**"), path("/api"), false},
		{"suffix", tmpl("/**.mpd"), path("/content/123/dash/manifest.mpd"), true},
		{"suffix miss", tmpl("/**.mpd"), path("/content/123/dash/manifest.mp4"), false},
		{"glob then literal", tmpl("/**/books"), nil, true},
		{"variable", tmpl("/api/{version}/books"), nil, true},
		{"variable with pattern", tmpl("/{path=api/*}/books"), nil, true},
		{"fragment stripped", tmpl("/a/*"), path("/a/b#c/d"), true},
		{"equals sign not in segment", tmpl("/a/*"), path("/a/b=c"), false},
		{"star not in segment", tmpl("/a/*"), path("/a/*"), false},
		{"no path", tmpl("/**"), path(""), false},
	})
}

func TestPermissionConnectionRules(t *testing.T) {
	runPermissionCases(t, []matchCase{
		{"destination_ip /32", `{"destinationIp":{"addressPrefix":"10.1.0.7","prefixLen":32}}`, nil, true},
		{"destination_ip /24", `{"destinationIp":{"addressPrefix":"10.1.0.0","prefixLen":24}}`, nil, true},
		{"destination_ip host bits cleared", `{"destinationIp":{"addressPrefix":"10.1.0.200","prefixLen":24}}`, nil, true},
		{"destination_ip miss", `{"destinationIp":{"addressPrefix":"10.2.0.0","prefixLen":16}}`, nil, false},
		{"destination_ip no prefix_len is /0", `{"destinationIp":{"addressPrefix":"192.0.2.1"}}`, nil, true},
		{"destination_ip length clamped", `{"destinationIp":{"addressPrefix":"10.1.0.7","prefixLen":64}}`, nil, true},
		{"destination_ip v6 range, v4 address", `{"destinationIp":{"addressPrefix":"::","prefixLen":0}}`, nil, false},
		{"destination_ip v4-mapped address", `{"destinationIp":{"addressPrefix":"10.1.0.0","prefixLen":16}}`,
			func(r *fakeReq) { r.dstIP = netip.MustParseAddr("::ffff:10.1.0.7") }, true},
		{"destination_ip v6", `{"destinationIp":{"addressPrefix":"2001:db8::","prefixLen":32}}`,
			func(r *fakeReq) { r.dstIP = netip.MustParseAddr("2001:db8:1::7") }, true},
		{"destination_ip v6 miss", `{"destinationIp":{"addressPrefix":"2001:db8::","prefixLen":48}}`,
			func(r *fakeReq) { r.dstIP = netip.MustParseAddr("2001:db8:1::7") }, false},
		{"destination_ip unknown", `{"destinationIp":{"addressPrefix":"0.0.0.0","prefixLen":0}}`,
			func(r *fakeReq) { r.dstIP = netip.Addr{} }, false},
		{"destination_port", `{"destinationPort":9080}`, nil, true},
		{"destination_port miss", `{"destinationPort":80}`, nil, false},
		{"port range", `{"destinationPortRange":{"start":9000,"end":9081}}`, nil, true},
		{"port range end excluded", `{"destinationPortRange":{"start":9000,"end":9080}}`, nil, false},
		{"port range whole", `{"destinationPortRange":{"start":0,"end":65536}}`, func(r *fakeReq) { r.dstPort = 65535 }, true},
		{"sni exact", `{"requestedServerName":{"exact":"outbound_.9080_._.books.default.svc.cluster.local"}}`, nil, true},
		{"sni suffix", `{"requestedServerName":{"suffix":".cluster.local"}}`, nil, true},
		{"sni none", `{"requestedServerName":{"safeRegex":{"regex":".+"}}}`, func(r *fakeReq) { r.sni = "" }, false},
		{"sni empty exact", `{"requestedServerName":{"exact":""}}`, func(r *fakeReq) { r.sni = "" }, true},
	})
}

func TestPermissionMetadata(t *testing.T) {
	jwt := func(r *fakeReq) {
		r.meta = map[string]*structpb.Struct{
			"envoy.filters.http.jwt_authn": mustStruct(t, map[string]any{
				"payload": map[string]any{
					"iss": "https://issuer.example", "sub": "alice", "aud": []any{"a", "b"},
					"groups": []any{"dev", "ops"}, "admin": true, "level": 3.0, "nothing": nil,
					"nested": map[string]any{"role": "reader"},
				},
			}),
			"istio_authn": mustStruct(t, map[string]any{"request.auth.principal": "https://issuer.example/alice"}),
		}
	}
	meta := func(filter, path, value string) string {
		return `{"metadata":{"filter":"` + filter + `","path":[` + path + `],"value":` + value + `}}`
	}
	const jf = "envoy.filters.http.jwt_authn"
	runPermissionCases(t, []matchCase{
		{"istio_authn principal", meta("istio_authn", `{"key":"request.auth.principal"}`, `{"stringMatch":{"exact":"https://issuer.example/alice"}}`), jwt, true},
		{"claim string", meta(jf, `{"key":"payload"},{"key":"sub"}`, `{"stringMatch":{"exact":"alice"}}`), jwt, true},
		{"claim string miss", meta(jf, `{"key":"payload"},{"key":"sub"}`, `{"stringMatch":{"exact":"bob"}}`), jwt, false},
		{"list one_of", meta(jf, `{"key":"payload"},{"key":"groups"}`, `{"listMatch":{"oneOf":{"stringMatch":{"exact":"ops"}}}}`), jwt, true},
		{"list one_of miss", meta(jf, `{"key":"payload"},{"key":"groups"}`, `{"listMatch":{"oneOf":{"stringMatch":{"exact":"root"}}}}`), jwt, false},
		{"list on a string", meta(jf, `{"key":"payload"},{"key":"sub"}`, `{"listMatch":{"oneOf":{"stringMatch":{"exact":"alice"}}}}`), jwt, false},
		{"string on a list", meta(jf, `{"key":"payload"},{"key":"groups"}`, `{"stringMatch":{"exact":"dev"}}`), jwt, false},
		{"istio extended or(list, string) on string", meta(jf, `{"key":"payload"},{"key":"sub"}`,
			`{"orMatch":{"valueMatchers":[{"listMatch":{"oneOf":{"stringMatch":{"exact":"alice"}}}},{"stringMatch":{"exact":"alice"}}]}}`), jwt, true},
		{"istio extended or(list, string) on list", meta(jf, `{"key":"payload"},{"key":"aud"}`,
			`{"orMatch":{"valueMatchers":[{"listMatch":{"oneOf":{"stringMatch":{"exact":"b"}}}},{"stringMatch":{"exact":"b"}}]}}`), jwt, true},
		{"nested claim", meta(jf, `{"key":"payload"},{"key":"nested"},{"key":"role"}`, `{"stringMatch":{"prefix":"read"}}`), jwt, true},
		{"path through a non-struct", meta(jf, `{"key":"payload"},{"key":"sub"},{"key":"x"}`, `{"presentMatch":true}`), jwt, false},
		{"bool", meta(jf, `{"key":"payload"},{"key":"admin"}`, `{"boolMatch":true}`), jwt, true},
		{"bool false", meta(jf, `{"key":"payload"},{"key":"admin"}`, `{"boolMatch":false}`), jwt, false},
		{"double exact", meta(jf, `{"key":"payload"},{"key":"level"}`, `{"doubleMatch":{"exact":3}}`), jwt, true},
		{"double range", meta(jf, `{"key":"payload"},{"key":"level"}`, `{"doubleMatch":{"range":{"start":1,"end":3}}}`), jwt, false},
		{"null", meta(jf, `{"key":"payload"},{"key":"nothing"}`, `{"nullMatch":{}}`), jwt, true},
		{"null on missing", meta(jf, `{"key":"payload"},{"key":"missing"}`, `{"nullMatch":{}}`), jwt, false},
		{"present", meta(jf, `{"key":"payload"},{"key":"sub"}`, `{"presentMatch":true}`), jwt, true},
		{"present struct", meta(jf, `{"key":"payload"}`, `{"presentMatch":true}`), jwt, true},
		{"present false never matches", meta(jf, `{"key":"payload"},{"key":"missing"}`, `{"presentMatch":false}`), jwt, false},
		{"missing filter", meta("other", `{"key":"sub"}`, `{"presentMatch":true}`), jwt, false},
		{"no metadata", meta(jf, `{"key":"payload"},{"key":"sub"}`, `{"stringMatch":{"exact":"alice"}}`), nil, false},
		{"invert", `{"metadata":{"filter":"` + jf + `","path":[{"key":"payload"},{"key":"sub"}],"value":{"stringMatch":{"exact":"bob"}},"invert":true}}`, jwt, true},
		{"invert on missing", `{"metadata":{"filter":"` + jf + `","path":[{"key":"payload"},{"key":"sub"}],"value":{"stringMatch":{"exact":"bob"}},"invert":true}}`, nil, true},
		{"sourced DYNAMIC", `{"sourcedMetadata":{"metadataMatcher":{"filter":"istio_authn","path":[{"key":"request.auth.principal"}],"value":{"stringMatch":{"suffix":"/alice"}}}}}`, jwt, true},
	})
}

func TestPermissionCombinators(t *testing.T) {
	get := `{"header":{"name":":method","exactMatch":"GET"}}`
	post := `{"header":{"name":":method","exactMatch":"POST"}}`
	api := `{"urlPath":{"path":{"prefix":"/api/"}}}`
	runPermissionCases(t, []matchCase{
		{"and all", `{"andRules":{"rules":[` + get + `,` + api + `]}}`, nil, true},
		{"and one fails", `{"andRules":{"rules":[` + post + `,` + api + `]}}`, nil, false},
		{"or one", `{"orRules":{"rules":[` + post + `,` + api + `]}}`, nil, true},
		{"or none", `{"orRules":{"rules":[` + post + `]}}`, nil, false},
		{"not", `{"notRule":` + post + `}`, nil, true},
		{"not not", `{"notRule":{"notRule":` + get + `}}`, nil, true},
		{"and of not", `{"andRules":{"rules":[{"notRule":` + post + `},{"notRule":{"destinationPort":80}}]}}`, nil, true},
		{"istio shape", `{"andRules":{"rules":[{"orRules":{"rules":[` + post + `,` + get + `]}},{"orRules":{"rules":[` + api + `]}},{"notRule":{"orRules":{"rules":[{"urlPath":{"path":{"prefix":"/api/v1/admin"}}}]}}}]}}`, nil, true},
		{"istio shape excluded", `{"andRules":{"rules":[{"orRules":{"rules":[` + get + `]}},{"notRule":{"orRules":{"rules":[{"urlPath":{"path":{"prefix":"/api/v1/"}}}]}}}]}}`, nil, false},
		{"deep nesting", deepNot(50, get), nil, true},
	})
}

// deepNot wraps rule in n not_rules (n even keeps its meaning).
func deepNot(n int, rule string) string {
	for i := 0; i < n; i++ {
		rule = `{"notRule":` + rule + `}`
	}
	return rule
}

func TestPermissionsAnyOf(t *testing.T) {
	// A policy matches if ANY permission matches (and any principal).
	e := mustCompile(t, `{"policies":{"p":{"permissions":[{"destinationPort":80},{"destinationPort":9080}],"principals":[{"any":true}]}}}`)
	if d := e.Evaluate(baseReq()); !d.Allowed || d.Policy != "p" {
		t.Fatalf("got %+v", d)
	}
}
