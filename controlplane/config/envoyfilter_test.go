package config

import (
	"errors"
	"strings"
	"testing"

	lrlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	networking "istio.io/api/networking/v1alpha3"
)

// efDoc is an EnvoyFilter with the given spec (YAML, indented two spaces).
func efDoc(spec string) string {
	return "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {name: ef, namespace: default}\nspec:\n" + spec
}

// TestEnvoyFilterRefusals checks Istio's validation rules and what Strait does not apply: each
// document is refused with an error naming the field.
func TestEnvoyFilterRefusals(t *testing.T) {
	lrl := "        value:\n          name: envoy.filters.http.local_ratelimit\n          typed_config:\n            \"@type\": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit\n            stat_prefix: rl\n"
	for name, tc := range map[string]struct{ spec, want string }{
		"selector and targetRefs": {"  workloadSelector: {labels: {app: a}}\n  targetRefs: [{kind: Service, name: a}]\n  configPatches: []\n",
			"spec: only one of workloadSelector and targetRefs may be set"},
		"targetRefs":         {"  targetRefs: [{kind: Service, name: a}]\n", "spec.targetRefs: targetRefs is not supported yet"},
		"no applyTo":         {"  configPatches:\n    - patch: {operation: MERGE, value: {}}\n", "spec.configPatches[0].applyTo: applyTo is required"},
		"no operation":       {"  configPatches:\n    - applyTo: CLUSTER\n      patch: {value: {}}\n", "spec.configPatches[0].patch.operation: operation is required"},
		"no patch":           {"  configPatches:\n    - applyTo: CLUSTER\n", "spec.configPatches[0].patch: patch is required"},
		"no value":           {"  configPatches:\n    - applyTo: CLUSTER\n      patch: {operation: MERGE}\n", "patch.value: value is required for operation MERGE"},
		"bootstrap":          {"  configPatches:\n    - applyTo: BOOTSTRAP\n      patch: {operation: MERGE, value: {}}\n", "applyTo BOOTSTRAP is not supported yet"},
		"extension config":   {"  configPatches:\n    - applyTo: EXTENSION_CONFIG\n      patch: {operation: ADD, value: {}}\n", "applyTo EXTENSION_CONFIG is not supported yet"},
		"ADD route ignored":  {"  configPatches:\n    - applyTo: HTTP_ROUTE\n      patch: {operation: ADD, value: {name: r}}\n", "operation ADD is not supported for applyTo HTTP_ROUTE"},
		"REPLACE cluster":    {"  configPatches:\n    - applyTo: CLUSTER\n      patch: {operation: REPLACE, value: {name: c}}\n", "operation REPLACE is not supported for applyTo CLUSTER"},
		"merge replace list": {"  configPatches:\n    - applyTo: CLUSTER\n      patch: {operation: MERGE_AND_REPLACE_LIST, value: {}}\n", "MERGE_AND_REPLACE_LIST is not supported yet"},
		"filterClass":        {"  configPatches:\n    - applyTo: HTTP_FILTER\n      patch:\n        operation: ADD\n        filterClass: AUTHZ\n" + lrl, "patch.filterClass: filterClass is not supported yet"},
		"waypoint":           {"  configPatches:\n    - applyTo: CLUSTER\n      match: {context: WAYPOINT}\n      patch: {operation: MERGE, value: {}}\n", "context WAYPOINT is not supported yet"},
		"bad proxyVersion":   {"  configPatches:\n    - applyTo: CLUSTER\n      match: {proxy: {proxyVersion: \"(\"}}\n      patch: {operation: MERGE, value: {}}\n", "match.proxy.proxyVersion: invalid regex"},
		"wrong match class":  {"  configPatches:\n    - applyTo: CLUSTER\n      match: {listener: {portNumber: 80}}\n      patch: {operation: MERGE, value: {}}\n", "applyTo CLUSTER needs a cluster match"},
		"subFilter not HCM": {"  configPatches:\n    - applyTo: HTTP_FILTER\n      match: {listener: {filterChain: {filter: {name: envoy.filters.network.tcp_proxy, subFilter: {name: x}}}}}\n      patch:\n        operation: INSERT_BEFORE\n" + lrl,
			"a subFilter match needs filter name envoy.filters.network.http_connection_manager"},
		"unknown Envoy field": {"  configPatches:\n    - applyTo: CLUSTER\n      patch: {operation: MERGE, value: {connect_timeout: 1s, bogus: 1}}\n",
			`spec.configPatches[0].patch.value.bogus: unknown field "bogus" in Cluster`},
		"wrong Envoy type": {"  configPatches:\n    - applyTo: CLUSTER\n      patch: {operation: MERGE, value: {connect_timeout: 5}}\n",
			"spec.configPatches[0].patch.value.connect_timeout: expected a duration string"},
		"unknown typed_config field": {"  configPatches:\n    - applyTo: HTTP_FILTER\n      patch:\n        operation: INSERT_FIRST\n" + lrl + "            tokens: 5\n",
			`patch.value.typed_config.tokens: unknown field "tokens" in LocalRateLimit`},
		"unknown type": {"  configPatches:\n    - applyTo: HTTP_FILTER\n      patch:\n        operation: INSERT_FIRST\n        value: {name: x, typed_config: {\"@type\": type.googleapis.com/foo.Bar}}\n",
			`patch.value.typed_config.@type: unknown type "type.googleapis.com/foo.Bar"`},
		"filter strait-proxy lacks": {"  configPatches:\n    - applyTo: HTTP_FILTER\n      patch:\n        operation: INSERT_FIRST\n        value:\n          name: envoy.filters.http.lua\n          typed_config: {\"@type\": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua}\n",
			`patch.value.typed_config: HTTP filter "envoy.filters.http.lua" (type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua) is not supported yet: strait-proxy does not implement it`},
		"TypedStruct of a filter strait-proxy lacks": {"  configPatches:\n    - applyTo: HTTP_FILTER\n      patch:\n        operation: INSERT_FIRST\n        value:\n          name: envoy.filters.http.lua\n          typed_config: {\"@type\": type.googleapis.com/udpa.type.v1.TypedStruct, type_url: type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua, value: {}}\n",
			`HTTP filter "envoy.filters.http.lua" (type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua) is not supported yet`},
		"MERGE without a subFilter": {"  configPatches:\n    - applyTo: HTTP_FILTER\n      patch:\n        operation: MERGE\n" + lrl,
			"subFilter.name: operation MERGE of an HTTP filter needs the filter's name"},
		"remove with value": {"  configPatches:\n    - applyTo: CLUSTER\n      patch: {operation: REMOVE, value: {name: c}}\n", "a REMOVE patch takes no value"},
	} {
		t.Run(name, func(t *testing.T) {
			objs, errs := Load("ef.yaml", []byte(efDoc(tc.spec)))
			if len(objs) != 0 || len(errs) == 0 {
				t.Fatalf("accepted: %v", objs)
			}
			if msg := errors.Join(errs...).Error(); !strings.Contains(msg, tc.want) {
				t.Errorf("got %s\nwant it to contain %q", msg, tc.want)
			}
			var ce *Error
			if !errors.As(errs[0], &ce) || ce.Line == 0 || ce.Field == "" {
				t.Errorf("error without a line or field: %#v", errs[0])
			}
		})
	}
}

// TestDecodeEnvoyPatchTypedStruct checks that a TypedStruct typed_config becomes the real typed
// message, and that Struct numbers decode into integer fields.
func TestDecodeEnvoyPatchTypedStruct(t *testing.T) {
	objs, errs := Load("ef.yaml", []byte(efDoc(`  configPatches:
    - applyTo: HTTP_FILTER
      patch:
        operation: INSERT_FIRST
        value:
          name: envoy.filters.http.local_ratelimit
          typed_config:
            "@type": type.googleapis.com/xds.type.v3.TypedStruct
            type_url: type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
            value:
              stat_prefix: rl
              token_bucket: {max_tokens: 10000000, tokens_per_fill: 5, fill_interval: 10s}
`)))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	ef := objs[0].Spec.(*networking.EnvoyFilter)
	msg, err := DecodeEnvoyPatch(networking.EnvoyFilter_HTTP_FILTER, ef.GetConfigPatches()[0].GetPatch().GetValue())
	if err != nil {
		t.Fatal(err)
	}
	hf := msg.(*hcmv3.HttpFilter)
	var lrl lrlv3.LocalRateLimit
	if err := hf.GetTypedConfig().UnmarshalTo(&lrl); err != nil {
		t.Fatalf("typed_config %s: %v", hf.GetTypedConfig().GetTypeUrl(), err)
	}
	if lrl.GetStatPrefix() != "rl" || lrl.GetTokenBucket().GetMaxTokens() != 10000000 || lrl.GetTokenBucket().GetFillInterval().GetSeconds() != 10 {
		t.Errorf("decoded %v", &lrl)
	}
}
