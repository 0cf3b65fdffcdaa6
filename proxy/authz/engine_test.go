package authz

import (
	"errors"
	"slices"
	"strings"
	"testing"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	httprbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	netrbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/strait-mesh/strait/proxy/matcher"
	"github.com/strait-mesh/strait/proxy/xdsfield"
	"github.com/strait-mesh/strait/proxy/xdspb"
	prbacv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/rbac/v3"
	phttprbacv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/rbac/v3"
	pnetrbacv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/rbac/v3"
	pmatcherv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/matcher/v3"
)

// twoPolicies: "b-get" matches GET, "a-api" matches /api/ paths; both match baseReq.
const twoPolicies = `"policies":{
	"b-get":{"permissions":[{"header":{"name":":method","exactMatch":"GET"}}],"principals":[{"any":true}]},
	"a-api":{"permissions":[{"urlPath":{"path":{"prefix":"/api/"}}}],"principals":[{"authenticated":{"principalName":{"suffix":"/sa/sleep"}}}]}}`

func TestDecisions(t *testing.T) {
	post := func(r *fakeReq) { r.method = "POST" }
	other := func(r *fakeReq) { r.method, r.path = "POST", "/other" }
	for _, tc := range []struct {
		name   string
		rules  string
		mod    func(*fakeReq)
		want   Decision
		action Action
	}{
		{"allow first by name", `{"action":"ALLOW",` + twoPolicies + `}`, nil, Decision{Allowed: true, Matched: true, Policy: "a-api"}, Allow},
		{"allow second", `{"action":"ALLOW",` + twoPolicies + `}`, func(r *fakeReq) { r.path = "/x" }, Decision{Allowed: true, Matched: true, Policy: "b-get"}, Allow},
		{"allow principal decides", `{"action":"ALLOW",` + twoPolicies + `}`, func(r *fakeReq) { r.method, r.peer = "POST", nil }, Decision{}, Allow},
		{"allow none", `{"action":"ALLOW",` + twoPolicies + `}`, other, Decision{}, Allow},
		{"allow no policies denies all", `{"action":"ALLOW"}`, nil, Decision{}, Allow},
		{"default action is ALLOW", `{` + twoPolicies + `}`, post, Decision{Allowed: true, Matched: true, Policy: "a-api"}, Allow},
		{"deny match", `{"action":"DENY",` + twoPolicies + `}`, nil, Decision{Matched: true, Policy: "a-api"}, Deny},
		{"deny no match", `{"action":"DENY",` + twoPolicies + `}`, other, Decision{Allowed: true}, Deny},
		{"deny no policies allows all", `{"action":"DENY"}`, nil, Decision{Allowed: true}, Deny},
		{"log match", `{"action":"LOG",` + twoPolicies + `}`, nil, Decision{Allowed: true, Matched: true, Policy: "a-api"}, Log},
		{"log no match", `{"action":"LOG",` + twoPolicies + `}`, other, Decision{Allowed: true}, Log},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := mustCompile(t, tc.rules)
			r := baseReq()
			if tc.mod != nil {
				tc.mod(r)
			}
			if got := e.Evaluate(r); got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			if e.Action() != tc.action {
				t.Fatalf("action %v, want %v", e.Action(), tc.action)
			}
		})
	}
}

func TestNilEngineAllows(t *testing.T) {
	var e *Engine
	if d := e.Evaluate(baseReq()); !d.Allowed || d.Matched {
		t.Fatalf("got %+v", d)
	}
	if d := e.EvaluateConnection(baseReq()); !d.Allowed {
		t.Fatalf("got %+v", d)
	}
	if e.Policies() != nil || e.MatchingPolicies(baseReq()) != nil || e.Action() != Allow {
		t.Fatal("nil engine has policies")
	}
}

func TestPoliciesAndMatching(t *testing.T) {
	e := mustCompile(t, `{`+twoPolicies+`}`)
	if got := e.Policies(); !slices.Equal(got, []string{"a-api", "b-get"}) {
		t.Fatalf("Policies() = %v", got)
	}
	if got := e.MatchingPolicies(baseReq()); !slices.Equal(got, []string{"a-api", "b-get"}) {
		t.Fatalf("MatchingPolicies() = %v", got)
	}
	if got := e.MatchingPoliciesConnection(baseReq()); got != nil {
		t.Fatalf("MatchingPoliciesConnection() = %v", got)
	}
}

// TestEvaluateConnection: the network filter evaluates header rules against an empty header
// map and never matches url_path or uri_template, as Envoy does.
func TestEvaluateConnection(t *testing.T) {
	for _, tc := range []struct {
		perm string
		want bool
	}{
		{`{"destinationPort":9080}`, true},
		{`{"header":{"name":":method","exactMatch":"GET"}}`, false},
		{`{"header":{"name":":method","presentMatch":true}}`, false},
		{`{"header":{"name":":method","presentMatch":false}}`, true},
		{`{"header":{"name":":method","exactMatch":"GET","invertMatch":true}}`, false},
		{`{"header":{"name":"x-a","exactMatch":"","treatMissingHeaderAsEmpty":true}}`, true},
		{`{"urlPath":{"path":{"prefix":"/"}}}`, false},
		{`{"notRule":{"urlPath":{"path":{"prefix":"/"}}}}`, true},
		{`{"uriTemplate":{"name":"t","typedConfig":{"@type":"` + uriTemplateType + `","pathTemplate":"/**"}}}`, false},
		{`{"requestedServerName":{"suffix":".cluster.local"}}`, true},
	} {
		e := permissionEngine(t, tc.perm)
		if got := e.EvaluateConnection(baseReq()); got.Allowed != tc.want {
			t.Errorf("%s: EvaluateConnection allowed=%v, want %v", tc.perm, got.Allowed, tc.want)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	perm := func(p string) string {
		return `{"policies":{"p":{"permissions":[` + p + `],"principals":[{"any":true}]}}}`
	}
	princ := func(p string) string {
		return `{"policies":{"p":{"permissions":[{"any":true}],"principals":[` + p + `]}}}`
	}
	for _, tc := range []struct {
		name, rules string
		unsupported string // the field an *xdsfield.UnsupportedError must name; "" for another error
		contains    string
	}{
		{"condition", `{"policies":{"p":{"permissions":[{"any":true}],"principals":[{"any":true}],"condition":{"constExpr":{"boolValue":true}}}}}`, "rules.policies[p].condition", ""},
		{"audit logging", `{"auditLoggingOptions":{"auditCondition":"ON_DENY"}}`, "rules.audit_logging_options", ""},
		{"permission matcher", perm(`{"matcher":{"name":"m","typedConfig":{"@type":"type.googleapis.com/google.protobuf.Empty"}}}`), "rules.policies[p].permissions[0].matcher", ""},
		{"principal custom", princ(`{"custom":{"name":"m","typedConfig":{"@type":"type.googleapis.com/google.protobuf.Empty"}}}`), "rules.policies[p].principals[0].custom", ""},
		{"nested unsupported", perm(`{"andRules":{"rules":[{"any":true},{"notRule":{"matcher":{"name":"m"}}}]}}`), "rules.policies[p].permissions[0].and_rules.rules[1].not_rule.matcher", ""},
		{"filter state address", princ(`{"filterState":{"key":"k","addressMatch":{"ranges":[{"addressPrefix":"10.0.0.0","prefixLen":8}]}}}`), "rules.policies[p].principals[0].filter_state.address_match", ""},
		{"route metadata", perm(`{"sourcedMetadata":{"metadataMatcher":{"filter":"f","path":[{"key":"k"}],"value":{"presentMatch":true}},"metadataSource":"ROUTE"}}`), "rules.policies[p].permissions[0].sourced_metadata.metadata_source", ""},
		{"string custom", perm(`{"requestedServerName":{"custom":{"name":"c","typedConfig":{"@type":"type.googleapis.com/google.protobuf.Empty"}}}}`), "rules.policies[p].permissions[0].requested_server_name.custom", ""},
		{"template extension", perm(`{"uriTemplate":{"name":"t","typedConfig":{"@type":"type.googleapis.com/google.protobuf.Empty"}}}`), "rules.policies[p].permissions[0].uri_template.typed_config", ""},
		{"quoted policy name", `{"policies":{"ns[a]-policy[b]-rule[0]":{"permissions":[{"any":true}],"principals":[{"any":true}],"condition":{"constExpr":{"boolValue":true}}}}}`, `rules.policies["ns[a]-policy[b]-rule[0]"].condition`, ""},
		{"regex ignore_case", perm(`{"urlPath":{"path":{"safeRegex":{"regex":"a"},"ignoreCase":true}}}`), "", "ignore_case"},
		{"bad regex", perm(`{"urlPath":{"path":{"safeRegex":{"regex":"("}}}}`), "", "parsing regex"},
		{"regex too big", perm(`{"urlPath":{"path":{"safeRegex":{"regex":"a{1000}b{1000}","googleRe2":{"maxProgramSize":100}}}}}`), "", "program size"},
		{"bad cidr", princ(`{"remoteIp":{"addressPrefix":"10.0.0.0/8","prefixLen":8}}`), "", "not an IP address"},
		{"zoned cidr", princ(`{"remoteIp":{"addressPrefix":"fe80::1%eth0","prefixLen":64}}`), "", "not an IP address"},
		{"port range inverted", perm(`{"destinationPortRange":{"start":90,"end":80}}`), "", "below end"},
		{"port range out of bounds", perm(`{"destinationPortRange":{"start":0,"end":70000}}`), "", "out of bounds"},
		{"port too big", perm(`{"destinationPort":70000}`), "", "not a port"},
		{"empty permissions", `{"policies":{"p":{"principals":[{"any":true}]}}}`, "", "permissions: empty"},
		{"empty principals", `{"policies":{"p":{"permissions":[{"any":true}]}}}`, "", "principals: empty"},
		{"empty and", perm(`{"andRules":{}}`), "", "and_rules.rules: empty"},
		{"empty or ids", princ(`{"orIds":{}}`), "", "or_ids.ids: empty"},
		{"unset rule", perm(`{}`), "", "no rule set"},
		{"any false", perm(`{"any":false}`), "", "permissions[0].any: must be true"},
		{"empty prefix", perm(`{"urlPath":{"path":{"prefix":""}}}`), "", "url_path.path.prefix: empty"},
		{"too deep", perm(deepNot(MaxRuleDepth+1, `{"any":true}`)), "", "nested deeper"},
		{"bad template", perm(`{"uriTemplate":{"name":"t","typedConfig":{"@type":"` + uriTemplateType + `","pathTemplate":"/a/**/*"}}}`), "", "operator after **"},
		{"empty template", perm(`{"uriTemplate":{"name":"t","typedConfig":{"@type":"` + uriTemplateType + `"}}}`), "", "typed_config.path_template: empty"},
		{"metadata no path", perm(`{"metadata":{"filter":"f","value":{"presentMatch":true}}}`), "", "path: empty"},
		{"metadata no value", perm(`{"metadata":{"filter":"f","path":[{"key":"k"}]}}`), "", "missing value matcher"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile(xdspb.MustFrom[*prbacv3.RBAC](mustRBAC(t, tc.rules)), "rules")
			if err == nil {
				t.Fatalf("Compile accepted %s", tc.rules)
			}
			var u *xdsfield.UnsupportedError
			if tc.unsupported != "" {
				if !errors.As(err, &u) || u.Field != tc.unsupported {
					t.Fatalf("error %v, want an UnsupportedError naming %s", err, tc.unsupported)
				}
			}
			if tc.contains != "" && !strings.Contains(err.Error(), tc.contains) {
				t.Fatalf("error %q does not contain %q", err, tc.contains)
			}
		})
	}
}

func TestCompileUnknownField(t *testing.T) {
	r := mustRBAC(t, `{"policies":{"p":{"permissions":[{"any":true}],"principals":[{"any":true}]}}}`)
	// Field 99 of Permission, unknown to this build: a newer control plane's.
	unknown := protowire.AppendTag(nil, 99, protowire.VarintType)
	unknown = protowire.AppendVarint(unknown, 1)
	r.Policies["p"].Permissions[0].ProtoReflect().SetUnknown(unknown)
	_, err := Compile(xdspb.MustFrom[*prbacv3.RBAC](r), "rules")
	var u *xdsfield.UnsupportedError
	if !errors.As(err, &u) || u.Field != "rules.policies[p].permissions[0].<unknown field>" {
		t.Fatalf("got %v", err)
	}
	if _, err := Compile(xdspb.MustFrom[*prbacv3.RBAC](nil), "rules"); err == nil {
		t.Fatal("Compile(xdspb.MustFrom[*prbacv3.RBAC](nil)) succeeded")
	}
}

// TestIstioShaped compiles the kinds of config Istio's authz builder emits for a sidecar and a
// waypoint and checks decisions on them.
func TestIstioShaped(t *testing.T) {
	e := mustCompile(t, `{"policies":{
	  "ns[default]-policy[books-viewer]-rule[0]":{
	    "permissions":[{"andRules":{"rules":[
	      {"orRules":{"rules":[{"header":{"name":":method","exactMatch":"GET"}},{"header":{"name":":method","exactMatch":"HEAD"}}]}},
	      {"orRules":{"rules":[{"urlPath":{"path":{"prefix":"/api/"}}},{"uriTemplate":{"name":"uri-template","typedConfig":{"@type":"`+uriTemplateType+`","pathTemplate":"/books/*/reviews"}}}]}},
	      {"notRule":{"orRules":{"rules":[{"urlPath":{"path":{"prefix":"/api/admin/"}}}]}}},
	      {"orRules":{"rules":[{"header":{"name":":authority","stringMatch":{"suffix":".svc.cluster.local","ignoreCase":true}}}]}},
	      {"orRules":{"rules":[{"destinationPort":9080}]}}]}}],
	    "principals":[{"andIds":{"ids":[
	      {"orIds":{"ids":[{"authenticated":{"principalName":{"exact":"spiffe://cluster.local/ns/default/sa/sleep"}}},
	                      {"authenticated":{"principalName":{"safeRegex":{"googleRe2":{},"regex":".*/ns/frontend/.*"}}}}]}},
	      {"notId":{"orIds":{"ids":[{"remoteIp":{"addressPrefix":"203.0.113.0","prefixLen":24}}]}}},
	      {"orIds":{"ids":[{"metadata":{"filter":"envoy.filters.http.jwt_authn","path":[{"key":"payload"},{"key":"groups"}],
	        "value":{"orMatch":{"valueMatchers":[{"listMatch":{"oneOf":{"stringMatch":{"exact":"readers"}}}},{"stringMatch":{"exact":"readers"}}]}}}}]}}]}}]}
	}}`)
	jwt := func(groups ...any) map[string]*structpbStruct {
		return map[string]*structpbStruct{"envoy.filters.http.jwt_authn": mustStruct(t, map[string]any{"payload": map[string]any{"groups": groups}})}
	}
	for _, tc := range []struct {
		name string
		mod  func(*fakeReq)
		want bool
	}{
		{"allowed", func(r *fakeReq) { r.meta = jwt("readers") }, true},
		{"no jwt", nil, false},
		{"wrong group", func(r *fakeReq) { r.meta = jwt("writers") }, false},
		{"template path", func(r *fakeReq) { r.meta, r.path = jwt("readers"), "/books/42/reviews?page=2" }, true},
		{"template path too deep", func(r *fakeReq) { r.meta, r.path = jwt("readers"), "/books/42/x/reviews" }, false},
		{"admin excluded", func(r *fakeReq) { r.meta, r.path = jwt("readers"), "/api/admin/users" }, false},
		{"POST", func(r *fakeReq) { r.meta, r.method = jwt("readers"), "POST" }, false},
		{"frontend namespace", func(r *fakeReq) {
			r.meta, r.peer = jwt("readers"), &Peer{URISANs: []string{"spiffe://cluster.local/ns/frontend/sa/web"}}
		}, true},
		{"plaintext", func(r *fakeReq) { r.meta, r.peer = jwt("readers"), nil }, false},
		{"blocked client", func(r *fakeReq) { r.meta, r.remote = jwt("readers"), mustAddr("203.0.113.9") }, false},
		{"other port", func(r *fakeReq) { r.meta, r.dstPort = jwt("readers"), 8080 }, false},
		{"external host", func(r *fakeReq) { r.meta, r.host = jwt("readers"), "books.example.com" }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := baseReq()
			if tc.mod != nil {
				tc.mod(r)
			}
			if d := e.Evaluate(r); d.Allowed != tc.want {
				t.Fatalf("got %+v, want allowed=%v", d, tc.want)
			}
		})
	}
}

func TestHTTPFilter(t *testing.T) {
	var cfg httprbacv3.RBAC
	if err := protojson.Unmarshal([]byte(`{
	  "rules":{"action":"DENY","policies":{"deny-post":{"permissions":[{"header":{"name":":method","exactMatch":"POST"}}],"principals":[{"any":true}]}}},
	  "shadowRules":{"action":"ALLOW","policies":{"dry run":{"permissions":[{"header":{"name":":method","exactMatch":"GET"}}],"principals":[{"any":true}]}}},
	  "shadowRulesStatPrefix":"istio_dry_run_allow_"}`), &cfg); err != nil {
		t.Fatal(err)
	}
	f, err := CompileHTTPFilter(xdspb.MustFrom[*phttprbacv3.RBAC](&cfg), "inbound_0.0.0.0_9080", "typed_config")
	if err != nil {
		t.Fatal(err)
	}
	want := StatNames{
		Allowed: "http.inbound_0.0.0.0_9080.rbac.allowed", Denied: "http.inbound_0.0.0.0_9080.rbac.denied",
		ShadowAllowed: "http.inbound_0.0.0.0_9080.rbac.istio_dry_run_allow_shadow_allowed",
		ShadowDenied:  "http.inbound_0.0.0.0_9080.rbac.istio_dry_run_allow_shadow_denied",
	}
	if f.Stats != want {
		t.Fatalf("stats %+v, want %+v", f.Stats, want)
	}
	res := f.Check(baseReq())
	if !res.Allowed() || !res.HasShadow || !res.Shadow.Allowed || res.Shadow.Policy != "dry run" {
		t.Fatalf("GET: %+v", res)
	}
	md := f.ShadowMetadata(res.Shadow)
	if md["istio_dry_run_allow_shadow_engine_result"] != "allowed" || md["istio_dry_run_allow_shadow_effective_policy_id"] != "dry run" {
		t.Fatalf("shadow metadata %v", md)
	}
	r := baseReq()
	r.method = "POST"
	res = f.Check(r)
	if res.Allowed() || res.Enforced.Policy != "deny-post" || res.Shadow.Allowed {
		t.Fatalf("POST: %+v", res)
	}
	if md := f.ShadowMetadata(res.Shadow); len(md) != 1 || md["istio_dry_run_allow_shadow_engine_result"] != "denied" {
		t.Fatalf("shadow metadata %v", md)
	}
	if got := ResponseDetail(res.Enforced); got != "rbac_access_denied_matched_policy[deny-post]" {
		t.Fatalf("ResponseDetail = %q", got)
	}
	if got := ResponseDetail(Decision{}); got != "rbac_access_denied_matched_policy[none]" {
		t.Fatalf("ResponseDetail = %q", got)
	}
	if got := ResponseDetail(Decision{Matched: true, Policy: "a b\tc"}); got != "rbac_access_denied_matched_policy[a_b_c]" {
		t.Fatalf("ResponseDetail = %q", got)
	}

	// No rules: nothing enforced; rules_stat_prefix.
	f, err = CompileHTTPFilter(xdspb.MustFrom[*phttprbacv3.RBAC](&httprbacv3.RBAC{RulesStatPrefix: "foo_"}), "p.", "typed_config")
	if err != nil {
		t.Fatal(err)
	}
	if res := f.Check(baseReq()); !res.Allowed() || res.HasShadow || f.Stats.Denied != "http.p.rbac.foo_denied" {
		t.Fatalf("empty filter: %+v %+v", res, f.Stats)
	}
	// Rules present but empty: deny everything.
	f, err = CompileHTTPFilter(xdspb.MustFrom[*phttprbacv3.RBAC](&httprbacv3.RBAC{Rules: &rbacv3.RBAC{}}), "p", "typed_config")
	if err != nil {
		t.Fatal(err)
	}
	if res := f.Check(baseReq()); res.Allowed() {
		t.Fatalf("empty rules allowed: %+v", res)
	}
}

func TestHTTPFilterRefused(t *testing.T) {
	for _, tc := range []struct{ js, field string }{
		{`{"matcher":{}}`, "typed_config.matcher"},
		{`{"shadowMatcher":{}}`, "typed_config.shadow_matcher"},
		{`{"trackPerRuleStats":true}`, "typed_config.track_per_rule_stats"},
		{`{"rules":{"auditLoggingOptions":{}}}`, "typed_config.rules.audit_logging_options"},
	} {
		var cfg httprbacv3.RBAC
		if err := protojson.Unmarshal([]byte(tc.js), &cfg); err != nil {
			t.Fatal(err)
		}
		_, err := CompileHTTPFilter(xdspb.MustFrom[*phttprbacv3.RBAC](&cfg), "p", "typed_config")
		var u *xdsfield.UnsupportedError
		if !errors.As(err, &u) || u.Field != tc.field {
			t.Errorf("%s: got %v, want UnsupportedError on %s", tc.js, err, tc.field)
		}
		if strings.Contains(tc.field, "matcher") && !strings.Contains(err.Error(), "xds.type.matcher") {
			t.Errorf("%s: error %q does not explain the matcher form", tc.js, err)
		}
	}
}

func TestHTTPPerRoute(t *testing.T) {
	f, err := CompileHTTPPerRoute(xdspb.MustFrom[*phttprbacv3.RBACPerRoute](&httprbacv3.RBACPerRoute{}), "per_route")
	if err != nil || f.Rules != nil || !f.Check(baseReq()).Allowed() {
		t.Fatalf("disabled per-route: %v %+v", err, f)
	}
	f, err = CompileHTTPPerRoute(xdspb.MustFrom[*phttprbacv3.RBACPerRoute](&httprbacv3.RBACPerRoute{Rbac: &httprbacv3.RBAC{Rules: &rbacv3.RBAC{}}}), "per_route")
	if err != nil || f.Check(baseReq()).Allowed() {
		t.Fatalf("deny-all per-route: %v %+v", err, f)
	}
	if _, err := CompileHTTPPerRoute(xdspb.MustFrom[*phttprbacv3.RBACPerRoute](&httprbacv3.RBACPerRoute{Rbac: &httprbacv3.RBAC{Matcher: nil, TrackPerRuleStats: true}}), "per_route"); err == nil {
		t.Fatal("track_per_rule_stats accepted")
	}
}

func TestNetworkFilter(t *testing.T) {
	var cfg netrbacv3.RBAC
	if err := protojson.Unmarshal([]byte(`{"statPrefix":"tcp.","rules":{"policies":{"p":{"permissions":[{"any":true}],
	  "principals":[{"authenticated":{"principalName":{"safeRegex":{"regex":".*/ns/default/.*"}}}}]}}},
	  "shadowRules":{"action":"DENY","policies":{"q":{"permissions":[{"destinationPort":9080}],"principals":[{"any":true}]}}},
	  "shadowRulesStatPrefix":"istio_dry_run_deny_"}`), &cfg); err != nil {
		t.Fatal(err)
	}
	f, err := CompileNetworkFilter(xdspb.MustFrom[*pnetrbacv3.RBAC](&cfg), "typed_config")
	if err != nil {
		t.Fatal(err)
	}
	if f.Stats.Allowed != "tcp.rbac.allowed" || f.Stats.ShadowDenied != "tcp.rbac.istio_dry_run_deny_shadow_denied" {
		t.Fatalf("stats %+v", f.Stats)
	}
	res := f.CheckConnection(baseReq())
	if !res.Allowed() || res.Enforced.Policy != "p" || !res.HasShadow || res.Shadow.Allowed || res.Shadow.Policy != "q" {
		t.Fatalf("got %+v", res)
	}
	r := baseReq()
	r.peer = nil
	if f.CheckConnection(r).Allowed() {
		t.Fatal("plaintext connection allowed")
	}
	for _, tc := range []struct{ js, contains string }{
		{`{"statPrefix":"x","enforcementType":"CONTINUOUS"}`, "enforcement_type"},
		{`{"statPrefix":"x","delayDeny":"1s"}`, "delay_deny"},
		{`{"statPrefix":"x","matcher":{}}`, "xds.type.matcher"},
		{`{}`, "stat_prefix: empty"},
	} {
		var c netrbacv3.RBAC
		if err := protojson.Unmarshal([]byte(tc.js), &c); err != nil {
			t.Fatal(err)
		}
		if _, err := CompileNetworkFilter(xdspb.MustFrom[*pnetrbacv3.RBAC](&c), "typed_config"); err == nil || !strings.Contains(err.Error(), tc.contains) {
			t.Errorf("%s: got %v, want an error containing %q", tc.js, err, tc.contains)
		}
	}
}

func TestActionString(t *testing.T) {
	for a, want := range map[Action]string{Allow: "ALLOW", Deny: "DENY", Log: "LOG", Action(9): "Action(9)"} {
		if got := a.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", a, got, want)
		}
	}
}

func TestStatNames(t *testing.T) {
	got := statNames("inbound_tcp", "", IstioDryRunDenyPrefix)
	want := StatNames{Allowed: "inbound_tcp.rbac.allowed", Denied: "inbound_tcp.rbac.denied",
		ShadowAllowed: "inbound_tcp.rbac.istio_dry_run_deny_shadow_allowed", ShadowDenied: "inbound_tcp.rbac.istio_dry_run_deny_shadow_denied"}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if got := statNames("", "", "").Allowed; got != "rbac.allowed" {
		t.Fatalf("empty prefix: %q", got)
	}
}

// TestIstioRegexesFit: Istio's generated regexes (the multi-value header form, service account
// and namespace principals) compile within the default program size.
func TestIstioRegexesFit(t *testing.T) {
	v := "some-fairly-long-header-value-prefix-"
	for _, re := range []string{
		"^" + v + ".*$|^" + v + ".*,.*|.*," + v + ".*,.*|.*," + v + ".*$",
		"spiffe://.+/ns/some-namespace/(.+/|)sa/some-service-account(/.+)?",
		".*/ns/team-.*-prod/.*",
	} {
		m := &matcherv3.RegexMatcher{Regex: re}
		if _, err := matcher.Regex("f", xdspb.MustFrom[*pmatcherv3.RegexMatcher](m), matchOptions); err != nil {
			t.Errorf("%s: %v", re, err)
		}
		if _, err := matcher.Regex("f", xdspb.MustFrom[*pmatcherv3.RegexMatcher](m), matcher.Options{MaxProgramSize: 200}); err == nil {
			t.Logf("%s also fits the route package's default of 200", re)
		}
	}
}
