package authz

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	meshconfig "istio.io/api/mesh/v1alpha1"
	security "istio.io/api/security/v1beta1"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/registry"
)

// anyJSON renders a filter's typed config as compact JSON, prefixed by the filter name.
func anyJSON(t *testing.T, name string, a *anypb.Any) string {
	t.Helper()
	m, err := a.UnmarshalNew()
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := m.(interface{ Validate() error }); ok {
		if err := v.Validate(); err != nil {
			t.Errorf("%s: Validate: %v", name, err)
		}
	}
	b, err := protojson.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, b); err != nil {
		t.Fatal(err)
	}
	return name + " " + compact.String()
}

// filtersJSON renders HTTP or network filters with anyJSON, one string a filter.
func filtersJSON[F interface {
	GetName() string
	GetTypedConfig() *anypb.Any
}](t *testing.T, fs []F) []string {
	t.Helper()
	var out []string
	for _, f := range fs {
		out = append(out, anyJSON(t, f.GetName(), f.GetTypedConfig()))
	}
	return out
}

func customPolicy(ns, name string, age int, provider string, rules ...*security.Rule) *config.Object {
	return policy(ns, name, age, &security.AuthorizationPolicy{Action: security.AuthorizationPolicy_CUSTOM,
		ActionDetail: &security.AuthorizationPolicy_Provider{Provider: &security.AuthorizationPolicy_ExtensionProvider{Name: provider}},
		Rules:        rules})
}

var adminRule = &security.Rule{To: []*security.Rule_To{{Operation: &security.Operation{Paths: []string{"/admin*"}}}}}

func httpProvider(name string, c *meshconfig.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationHttpProvider) *meshconfig.MeshConfig_ExtensionProvider {
	return &meshconfig.MeshConfig_ExtensionProvider{Name: name, Provider: &meshconfig.MeshConfig_ExtensionProvider_EnvoyExtAuthzHttp{EnvoyExtAuthzHttp: c}}
}

func grpcProvider(name string, c *meshconfig.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationGrpcProvider) *meshconfig.MeshConfig_ExtensionProvider {
	return &meshconfig.MeshConfig_ExtensionProvider{Name: name, Provider: &meshconfig.MeshConfig_ExtensionProvider_EnvoyExtAuthzGrpc{EnvoyExtAuthzGrpc: c}}
}

// extAuthzOptions is a mesh with an HTTP provider "http" (every field set), a gRPC provider
// "grpc", providers with problems, and the services they name.
func extAuthzOptions() Options {
	return Options{RootNamespace: "istio-system", TrustDomains: []string{"cluster.local"},
		Providers: []*meshconfig.MeshConfig_ExtensionProvider{
			{Name: "prometheus", Provider: &meshconfig.MeshConfig_ExtensionProvider_Prometheus{Prometheus: &meshconfig.MeshConfig_ExtensionProvider_PrometheusMetricsProvider{}}},
			httpProvider("http", &meshconfig.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationHttpProvider{
				Service: "ext-authz.foo.svc.cluster.local", Port: 8000, Timeout: durationpb.New(2e9), PathPrefix: "/check",
				FailOpen: true, ClearRouteCache: true, StatusOnError: "503",
				IncludeRequestHeadersInCheck:    []string{"x-ext-authz", "x-prefix-*", "*-suffix"},
				IncludeHeadersInCheck:           []string{"ignored-when-the-new-field-is-set"},
				IncludeAdditionalHeadersInCheck: map[string]string{"x-b": "2", "x-a": "1"},
				IncludeRequestBodyInCheck:       &meshconfig.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationRequestBody{MaxRequestBytes: 4096, AllowPartialMessage: true, PackAsBytes: true},
				HeadersToUpstreamOnAllow:        []string{"x-user"},
				HeadersToDownstreamOnDeny:       []string{"location", "set-cookie"},
				HeadersToDownstreamOnAllow:      []string{"set-cookie"},
			}),
			httpProvider("http-minimal", &meshconfig.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationHttpProvider{
				Service: "ext-authz.foo.svc.cluster.local", Port: 8000, IncludeHeadersInCheck: []string{"cookie"}}),
			grpcProvider("grpc", &meshconfig.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationGrpcProvider{
				Service: "foo/ext-authz.foo.svc.cluster.local", Port: 9000, FailOpen: true}),
			grpcProvider("ambiguous", &meshconfig.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationGrpcProvider{
				Service: "twice.example.com", Port: 9000}),
			grpcProvider("qualified", &meshconfig.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationGrpcProvider{
				Service: "bar/twice.example.com", Port: 9000}),
			grpcProvider("unknown-service", &meshconfig.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationGrpcProvider{
				Service: "nowhere.foo.svc.cluster.local", Port: 9000}),
			httpProvider("lone-wildcard", &meshconfig.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationHttpProvider{
				Service: "ext-authz.foo.svc.cluster.local", Port: 8000, HeadersToUpstreamOnAllow: []string{"*"}}),
			httpProvider("bad-status", &meshconfig.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationHttpProvider{
				Service: "ext-authz.foo.svc.cluster.local", Port: 8000, StatusOnError: "299"}),
		},
		Services: []*registry.Service{
			{Hostname: "ext-authz.foo.svc.cluster.local", Namespace: "foo"},
			{Hostname: "twice.example.com", Namespace: "bar"},
			{Hostname: "twice.example.com", Namespace: "baz"},
		},
	}
}

func TestBuildCustom(t *testing.T) {
	o := extAuthzOptions()
	const enabledHTTP = `"filterEnabledMetadata":{"filter":"envoy.filters.http.rbac","path":[{"key":"istio_ext_authz_shadow_effective_policy_id"}],"value":{"stringMatch":{"prefix":"istio-ext-authz"}}}`
	const enabledTCP = `"filterEnabledMetadata":{"filter":"envoy.filters.network.rbac","path":[{"key":"istio_ext_authz_shadow_effective_policy_id"}],"value":{"stringMatch":{"prefix":"istio-ext-authz"}}}`
	const badHTTP = `envoy.filters.http.rbac {"rules":{"action":"DENY","policies":{"istio-ext-authz-ns[foo]-policy[a]-rule[0]-deny-due-to-bad-CUSTOM-action":{"permissions":[{"andRules":{"rules":[{"orRules":{"rules":[{"urlPath":{"path":{"prefix":"/admin"}}}]}}]}}]`
	const badTCP = `envoy.filters.network.rbac {"rules":{"action":"DENY","policies":{"istio-ext-authz-ns[foo]-policy[a]-rule[0]-deny-due-to-bad-CUSTOM-action":{"permissions":[{"andRules":{"rules":[{"any":true}]}}]`
	for _, tc := range []struct {
		name     string
		policies []*config.Object
		http     [][]string // substrings of each HTTP filter, in order
		tcp      [][]string // substrings of each TCP filter, in order
		errs     []string   // substrings of the errors, in order
	}{
		{name: "HTTP provider: shadow RBAC then ext_authz; nothing on TCP chains",
			policies: []*config.Object{customPolicy("foo", "ext", 0, "http", adminRule)},
			http: [][]string{
				{`envoy.filters.http.rbac {"shadowRules":{"action":"DENY","policies":{"istio-ext-authz-ns[foo]-policy[ext]-rule[0]":{"permissions":[{"andRules":{"rules":[{"orRules":{"rules":[{"urlPath":{"path":{"prefix":"/admin"}}}]}}]}}],"principals":[{"andIds":{"ids":[{"any":true}]}}]}}},"shadowRulesStatPrefix":"istio_ext_authz_"}`},
				{`envoy.filters.http.ext_authz {"httpService":{"serverUri":{"uri":"http://ext-authz.foo.svc.cluster.local","cluster":"outbound|8000||ext-authz.foo.svc.cluster.local","timeout":"2s"},"pathPrefix":"/check",` +
					`"authorizationRequest":{"headersToAdd":[{"key":"x-a","value":"1"},{"key":"x-b","value":"2"}]},` +
					`"authorizationResponse":{"allowedUpstreamHeaders":{"patterns":[{"exact":"x-user","ignoreCase":true}]},"allowedClientHeaders":{"patterns":[{"exact":"location","ignoreCase":true},{"exact":"set-cookie","ignoreCase":true}]},"allowedClientHeadersOnSuccess":{"patterns":[{"exact":"set-cookie","ignoreCase":true}]}}}`,
					`"transportApiVersion":"V3"`, `"failureModeAllow":true`, `"withRequestBody":{"maxRequestBytes":4096,"allowPartialMessage":true,"packAsBytes":true}`,
					`"clearRouteCache":true`, `"statusOnError":{"code":"ServiceUnavailable"}`, enabledHTTP,
					`"allowedHeaders":{"patterns":[{"exact":"x-ext-authz","ignoreCase":true},{"prefix":"x-prefix-","ignoreCase":true},{"suffix":"-suffix","ignoreCase":true}]}`},
			}},
		{name: "HTTP provider defaults: 600s, no status, deprecated includeHeadersInCheck",
			policies: []*config.Object{customPolicy("foo", "ext", 0, "http-minimal", &security.Rule{})},
			http: [][]string{{`"istio-ext-authz-ns[foo]-policy[ext]-rule[0]"`},
				{`envoy.filters.http.ext_authz {"httpService":{"serverUri":{"uri":"http://ext-authz.foo.svc.cluster.local","cluster":"outbound|8000||ext-authz.foo.svc.cluster.local","timeout":"600s"}},"transportApiVersion":"V3",` +
					enabledHTTP + `,"allowedHeaders":{"patterns":[{"exact":"cookie","ignoreCase":true}]}}`}}},
		{name: "gRPC provider on HTTP and TCP; HTTP-only values widen the TCP rule",
			policies: []*config.Object{customPolicy("foo", "ext", 0, "grpc", adminRule)},
			http: [][]string{{`"shadowRules":{"action":"DENY"`, `"urlPath"`},
				{`envoy.filters.http.ext_authz {"grpcService":{"envoyGrpc":{"clusterName":"outbound|9000||ext-authz.foo.svc.cluster.local","authority":"ext-authz.foo.svc.cluster.local"},"timeout":"600s"},"transportApiVersion":"V3","failureModeAllow":true,` +
					enabledHTTP + `}`}},
			tcp: [][]string{
				{`envoy.filters.network.rbac {"shadowRules":{"action":"DENY","policies":{"istio-ext-authz-ns[foo]-policy[ext]-rule[0]":{"permissions":[{"andRules":{"rules":[{"any":true}]}}],"principals":[{"andIds":{"ids":[{"any":true}]}}]}}},"shadowRulesStatPrefix":"istio_ext_authz_","statPrefix":"tcp."}`},
				{`envoy.filters.network.ext_authz {"statPrefix":"tcp.","grpcService":{"envoyGrpc":{"clusterName":"outbound|9000||ext-authz.foo.svc.cluster.local","authority":"ext-authz.foo.svc.cluster.local"},"timeout":"600s"},"failureModeAllow":true,"transportApiVersion":"V3",` +
					enabledTCP + `}`},
			}},
		{name: "several policies of one provider share the filters",
			policies: []*config.Object{customPolicy("istio-system", "mesh", 0, "grpc", adminRule), customPolicy("foo", "ext", 1, "grpc", &security.Rule{}, adminRule)},
			http:     [][]string{{`"istio-ext-authz-ns[istio-system]-policy[mesh]-rule[0]"`, `"istio-ext-authz-ns[foo]-policy[ext]-rule[1]"`}, {`envoy.filters.http.ext_authz`}},
			tcp:      [][]string{{`"istio-ext-authz-ns[istio-system]-policy[mesh]-rule[0]"`, `"istio-ext-authz-ns[foo]-policy[ext]-rule[0]"`}, {`envoy.filters.network.ext_authz`}}},
		{name: "namespace/hostname picks one of several namespaces",
			policies: []*config.Object{customPolicy("foo", "ext", 0, "qualified", adminRule)},
			http:     [][]string{{`"shadowRules"`}, {`"clusterName":"outbound|9000||twice.example.com","authority":"twice.example.com"`}},
			tcp:      [][]string{{`"shadowRules"`}, {`"clusterName":"outbound|9000||twice.example.com"`}}},
		{name: "different providers on one workload: the rules deny",
			policies: []*config.Object{customPolicy("foo", "a", 0, "http", adminRule), customPolicy("foo", "b", 1, "grpc", &security.Rule{})},
			http:     [][]string{{badHTTP, `"istio-ext-authz-ns[foo]-policy[b]-rule[0]-deny-due-to-bad-CUSTOM-action"`}},
			tcp:      [][]string{{badTCP, `"istio-ext-authz-ns[foo]-policy[b]-rule[0]-deny-due-to-bad-CUSTOM-action"`, `"statPrefix":"tcp."`}},
			errs: []string{`AuthorizationPolicy foo/a: action CUSTOM: only one extension provider can be used per workload, found several: http, grpc; the requests its rules match are denied`,
				`AuthorizationPolicy foo/b: action CUSTOM: only one extension provider`}},
		{name: "undefined provider",
			policies: []*config.Object{customPolicy("foo", "a", 0, "missing", adminRule)},
			http:     [][]string{{badHTTP}}, tcp: [][]string{{badTCP}},
			errs: []string{`AuthorizationPolicy foo/a: action CUSTOM: extension provider "missing" is not defined in the mesh config (extensionProviders: ambiguous, bad-status, grpc, http, http-minimal, lone-wildcard, prometheus, qualified, unknown-service); the requests its rules match are denied`}},
		{name: "provider of another kind",
			policies: []*config.Object{customPolicy("foo", "a", 0, "prometheus", adminRule)},
			http:     [][]string{{badHTTP}}, tcp: [][]string{{badTCP}},
			errs: []string{`extension provider "prometheus": not an external authorization provider (envoyExtAuthzHttp or envoyExtAuthzGrpc)`}},
		{name: "service not in the registry",
			policies: []*config.Object{customPolicy("foo", "a", 0, "unknown-service", adminRule)},
			http:     [][]string{{badHTTP}}, tcp: [][]string{{badTCP}},
			errs: []string{`service "nowhere.foo.svc.cluster.local" is not in the service registry`}},
		{name: "hostname in several namespaces",
			policies: []*config.Object{customPolicy("foo", "a", 0, "ambiguous", adminRule)},
			http:     [][]string{{badHTTP}}, tcp: [][]string{{badTCP}},
			errs: []string{`service "twice.example.com" is defined in several namespaces (bar, baz): name one as <namespace>/<hostname>`}},
		{name: "a lone wildcard header",
			policies: []*config.Object{customPolicy("foo", "a", 0, "lone-wildcard", adminRule)},
			http:     [][]string{{badHTTP}}, tcp: [][]string{{badTCP}},
			errs: []string{`headersToUpstreamOnAllow: a single wildcard "*" is not supported`}},
		{name: "statusOnError Envoy does not know",
			policies: []*config.Object{customPolicy("foo", "a", 0, "bad-status", adminRule)},
			http:     [][]string{{badHTTP}}, tcp: [][]string{{badTCP}},
			errs: []string{`unsupported statusOnError "299"`}},
		{name: "a rule that cannot be translated sends every request to the authorizer",
			policies: []*config.Object{customPolicy("foo", "a", 0, "http", &security.Rule{When: []*security.Condition{{Key: "unknown.key", Values: []string{"x"}}}})},
			http:     [][]string{{`"istio-ext-authz-ns[foo]-policy[a]-rule[0]":{"permissions":[{"andRules":{"rules":[{"any":true}]}}],"principals":[{"andIds":{"ids":[{"any":true}]}}]}`}, {`envoy.filters.http.ext_authz`}},
			errs:     []string{`AuthorizationPolicy foo/a rules[0]: when key "unknown.key" is not supported`}},
		{name: "dry-run CUSTOM is reported and not enforced",
			policies: func() []*config.Object {
				p := customPolicy("foo", "a", 0, "http", adminRule)
				p.Annotations = map[string]string{config.DryRunAnnotation: "true"}
				return []*config.Object{p}
			}(),
			errs: []string{`AuthorizationPolicy foo/a: dry-run is not supported with action CUSTOM; the policy is not enforced`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, errs := Build(tc.policies, o)
			check := func(what string, got []string, want [][]string) {
				t.Helper()
				if len(got) != len(want) {
					t.Fatalf("%s: %d, want %d:\n%s", what, len(got), len(want), strings.Join(got, "\n"))
				}
				for i := range want {
					for _, w := range want[i] {
						if !strings.Contains(got[i], w) {
							t.Errorf("%s[%d]:\n%s\nwant it to contain\n%s", what, i, got[i], w)
						}
					}
				}
			}
			check("HTTP filters", filtersJSON(t, f.HTTP), tc.http)
			check("TCP filters", filtersJSON(t, f.TCP), tc.tcp)
			var got []string
			for _, e := range errs {
				got = append(got, e.Error())
			}
			var want [][]string
			for _, e := range tc.errs {
				want = append(want, []string{e})
			}
			check("errors", got, want)
		})
	}
}
