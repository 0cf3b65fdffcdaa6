package authz

import (
	"strings"
	"testing"

	"github.com/strait-mesh/strait/proxy/xdspb"
	prbacv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/rbac/v3"
	pmatcherv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/matcher/v3"
)

// TestPGVRules: each protoc-gen-validate rule of rbac.proto and the messages it reaches that
// Envoy enforces on the fields strait-proxy accepts refuses a config that breaks it, naming the
// field: validateRBAC alone, and Compile (which may refuse it first in its own words).
func TestPGVRules(t *testing.T) {
	perm := func(p string) string {
		return `{"policies":{"p":{"permissions":[` + p + `],"principals":[{"any":true}]}}}`
	}
	princ := func(p string) string {
		return `{"policies":{"p":{"permissions":[{"any":true}],"principals":[` + p + `]}}}`
	}
	meta := func(m string) string { return perm(`{"metadata":` + m + `}`) }
	value := func(v string) string { return meta(`{"filter":"f","path":[{"key":"k"}],"value":` + v + `}`) }
	tmpl := `{"@type":"` + uriTemplateType + `","pathTemplate":"/a/*"}`
	const p0 = "rules.policies[p].permissions[0]"
	const i0 = "rules.policies[p].principals[0]"
	for _, tc := range []struct{ name, rules, want string }{
		{"action defined_only", `{"action":7}`, "rules.action: 7 is not a defined value"},
		{"permissions min_items", `{"policies":{"p":{"principals":[{"any":true}]}}}`, "rules.policies[p].permissions: empty"},
		{"principals min_items", `{"policies":{"p":{"permissions":[{"any":true}]}}}`, "rules.policies[p].principals: empty"},
		{"permission rule required", perm(`{}`), p0 + ": rule: value is required"},
		{"and_rules min_items", perm(`{"andRules":{}}`), p0 + ".and_rules.rules: empty"},
		{"or_rules nested", perm(`{"orRules":{"rules":[{"any":true},{"notRule":{"any":false}}]}}`), p0 + ".or_rules.rules[1].not_rule.any: must be true"},
		{"permission any const", perm(`{"any":false}`), p0 + ".any: must be true"},
		{"destination_port lte", perm(`{"destinationPort":70000}`), p0 + ".destination_port: 70000 is above 65535"},
		{"header name min_len", perm(`{"header":{"name":"","presentMatch":true}}`), p0 + ".header.name: empty"},
		{"header name well_known_regex", perm(`{"header":{"name":"a\nb","presentMatch":true}}`), p0 + ".header.name: \"a\\nb\" is not a valid HTTP header name (NUL, CR or LF)"},
		{"header prefix_match min_len", perm(`{"header":{"name":"x","prefixMatch":""}}`), p0 + ".header.prefix_match: empty"},
		{"header suffix_match min_len", perm(`{"header":{"name":"x","suffixMatch":""}}`), p0 + ".header.suffix_match: empty"},
		{"header contains_match min_len", perm(`{"header":{"name":"x","containsMatch":""}}`), p0 + ".header.contains_match: empty"},
		{"header safe_regex_match regex min_len", perm(`{"header":{"name":"x","safeRegexMatch":{"regex":""}}}`), p0 + ".header.safe_regex_match.regex: empty"},
		{"header string_match required pattern", perm(`{"header":{"name":"x","stringMatch":{}}}`), p0 + ".header.string_match: match_pattern: value is required"},
		{"string prefix min_len", perm(`{"urlPath":{"path":{"prefix":""}}}`), p0 + ".url_path.path.prefix: empty"},
		{"string suffix min_len", perm(`{"requestedServerName":{"suffix":""}}`), p0 + ".requested_server_name.suffix: empty"},
		{"string contains min_len", perm(`{"requestedServerName":{"contains":""}}`), p0 + ".requested_server_name.contains: empty"},
		{"string safe_regex regex min_len", perm(`{"urlPath":{"path":{"safeRegex":{"regex":""}}}}`), p0 + ".url_path.path.safe_regex.regex: empty"},
		{"path matcher rule required", perm(`{"urlPath":{}}`), p0 + ".url_path: rule: value is required"},
		{"uri_template name min_len", perm(`{"uriTemplate":{"typedConfig":` + tmpl + `}}`), p0 + ".uri_template.name: empty"},
		{"uri_template typed_config required", perm(`{"uriTemplate":{"name":"t"}}`), p0 + ".uri_template.typed_config: value is required"},
		{"cidr address_prefix min_len", princ(`{"remoteIp":{"prefixLen":8}}`), i0 + ".remote_ip.address_prefix: empty"},
		{"cidr prefix_len lte", princ(`{"directRemoteIp":{"addressPrefix":"10.0.0.0","prefixLen":129}}`), i0 + ".direct_remote_ip.prefix_len: 129 is above 128"},
		{"destination_ip prefix_len lte", perm(`{"destinationIp":{"addressPrefix":"::","prefixLen":200}}`), p0 + ".destination_ip.prefix_len: 200 is above 128"},
		{"metadata filter min_len", meta(`{"path":[{"key":"k"}],"value":{"presentMatch":true}}`), p0 + ".metadata.filter: empty"},
		{"metadata path min_items", meta(`{"filter":"f","value":{"presentMatch":true}}`), p0 + ".metadata.path: empty"},
		{"metadata segment required", meta(`{"filter":"f","path":[{}],"value":{"presentMatch":true}}`), p0 + ".metadata.path[0]: segment: value is required"},
		{"metadata key min_len", meta(`{"filter":"f","path":[{"key":""}],"value":{"presentMatch":true}}`), p0 + ".metadata.path[0].key: empty"},
		{"metadata value required", meta(`{"filter":"f","path":[{"key":"k"}]}`), p0 + ".metadata.value: value is required"},
		{"value matcher required pattern", value(`{}`), p0 + ".metadata.value: match_pattern: value is required"},
		{"double matcher required pattern", value(`{"doubleMatch":{}}`), p0 + ".metadata.value.double_match: match_pattern: value is required"},
		{"list matcher required pattern", value(`{"listMatch":{}}`), p0 + ".metadata.value.list_match: match_pattern: value is required"},
		{"list matcher one_of nested", value(`{"listMatch":{"oneOf":{"stringMatch":{"prefix":""}}}}`), p0 + ".metadata.value.list_match.one_of.string_match.prefix: empty"},
		{"or matcher min_items", value(`{"orMatch":{"valueMatchers":[{"presentMatch":true}]}}`), p0 + ".metadata.value.or_match.value_matchers: 1 items, want at least 2"},
		{"sourced metadata matcher required", perm(`{"sourcedMetadata":{}}`), p0 + ".sourced_metadata.metadata_matcher: value is required"},
		{"sourced metadata source defined_only", perm(`{"sourcedMetadata":{"metadataMatcher":{"filter":"f","path":[{"key":"k"}],"value":{"presentMatch":true}},"metadataSource":9}}`), p0 + ".sourced_metadata.metadata_source: 9 is not a defined value"},
		{"principal identifier required", princ(`{}`), i0 + ": identifier: value is required"},
		{"or_ids min_items", princ(`{"orIds":{}}`), i0 + ".or_ids.ids: empty"},
		{"and_ids nested", princ(`{"andIds":{"ids":[{"notId":{"any":false}}]}}`), i0 + ".and_ids.ids[0].not_id.any: must be true"},
		{"principal any const", princ(`{"any":false}`), i0 + ".any: must be true"},
		{"authenticated principal_name", princ(`{"authenticated":{"principalName":{"prefix":""}}}`), i0 + ".authenticated.principal_name.prefix: empty"},
		{"filter_state key min_len", princ(`{"filterState":{"stringMatch":{"exact":"x"}}}`), i0 + ".filter_state.key: empty"},
		{"filter_state matcher required", princ(`{"filterState":{"key":"k"}}`), i0 + ".filter_state: matcher: value is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := xdspb.MustFrom[*prbacv3.RBAC](mustRBAC(t, tc.rules))
			if err := validateRBAC("rules", r); err == nil || err.Error() != tc.want {
				t.Errorf("validateRBAC: %v, want %q", err, tc.want)
			}
			if _, err := Compile(r, "rules"); err == nil {
				t.Errorf("Compile accepted %s", tc.rules)
			}
		})
	}

	// A safe_regex set without a RegexMatcher (only a Go client can send that).
	r := &prbacv3.RBAC{Policies: map[string]*prbacv3.Policy{"p": {
		Permissions: []*prbacv3.Permission{{Rule: &prbacv3.Permission_RequestedServerName{RequestedServerName: &pmatcherv3.StringMatcher{
			MatchPattern: &pmatcherv3.StringMatcher_SafeRegex{}}}}},
		Principals: []*prbacv3.Principal{{Identifier: &prbacv3.Principal_Any{Any: true}}}}}}
	const want = p0 + ".requested_server_name.safe_regex: value is required"
	if err := validateRBAC("rules", r); err == nil || err.Error() != want {
		t.Errorf("validateRBAC: %v, want %q", err, want)
	}
	if _, err := Compile(r, "rules"); err == nil {
		t.Error("Compile accepted a nil safe_regex")
	}
}

// TestURITemplatePGVRule: path_template holds 1 to 256 characters (not bytes).
func TestURITemplatePGVRule(t *testing.T) {
	long := "/" + strings.Repeat("é", 255)
	if err := validateURITemplateConfig("f", long); err != nil {
		t.Errorf("256 characters: %v", err)
	}
	for tmpl, want := range map[string]string{
		"":         "f.path_template: empty",
		long + "a": "f.path_template: 257 characters, at most 256",
	} {
		if err := validateURITemplateConfig("f", tmpl); err == nil || err.Error() != want {
			t.Errorf("%.20q: %v, want %q", tmpl, err, want)
		}
		rules := `{"policies":{"p":{"permissions":[{"uriTemplate":{"name":"t","typedConfig":{"@type":"` + uriTemplateType + `","pathTemplate":"` + tmpl + `"}}}],"principals":[{"any":true}]}}}`
		if _, err := Compile(xdspb.MustFrom[*prbacv3.RBAC](mustRBAC(t, rules)), "rules"); err == nil || !strings.Contains(err.Error(), want[2:]) {
			t.Errorf("Compile %.20q: %v, want %q", tmpl, err, want[2:])
		}
	}
}
