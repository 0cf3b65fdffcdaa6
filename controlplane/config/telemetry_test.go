package config

import (
	"fmt"
	"strings"
	"testing"

	"github.com/strait-mesh/strait/proxy/attributes"
)

// TestTelemetryValidation checks the refusals of validateTelemetry: each names the field.
func TestTelemetryValidation(t *testing.T) {
	const head = "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: t, namespace: ns}\n"
	for _, tc := range []struct{ name, spec, field, msg string }{
		{"sampling", "spec: {tracing: [{randomSamplingPercentage: 101}]}", "spec.tracing[0].randomSamplingPercentage", "must be in 0-100"},
		{"negative sampling", "spec: {tracing: [{randomSamplingPercentage: -1}]}", "spec.tracing[0].randomSamplingPercentage", "must be in 0-100"},
		{"two providers", "spec: {tracing: [{providers: [{name: a}, {name: b}]}]}", "spec.tracing[0].providers", "only one tracing provider"},
		{"provider name", "spec: {accessLogging: [{providers: [{name: ''}]}]}", "spec.accessLogging[0].providers[0].name", "name is required"},
		{"null entry", "spec: {metrics: [null]}", "spec.metrics[0]", "null is not allowed"},
		{"custom tag type", "spec: {tracing: [{customTags: {a: {}}}]}", `spec.tracing[0].customTags["a"]`, "one of literal"},
		{"custom tag header", "spec: {tracing: [{customTags: {a: {header: {name: 'x y'}}}}]}", `spec.tracing[0].customTags["a"].header.name`, "header"},
		{"custom tag env", "spec: {tracing: [{customTags: {a: {environment: {}}}}]}", `spec.tracing[0].customTags["a"].environment.name`, "name is required"},
		{"formatter", "spec: {tracing: [{customTags: {a: {formatter: {value: '%NOPE%'}}}}]}", `spec.tracing[0].customTags["a"].formatter.value`, "NOPE"},
		{"filter", "spec: {accessLogging: [{filter: {expression: 'response.cod >= 400'}}]}", "spec.accessLogging[0].filter.expression", "attribute response.cod: not supported by strait-proxy"},
		{"filter type", "spec: {accessLogging: [{filter: {expression: 'size(request.path)'}}]}", "spec.accessLogging[0].filter.expression", "of type int, not bool"},
		{"empty filter", "spec: {accessLogging: [{filter: {}}]}", "spec.accessLogging[0].filter.expression", "empty expression"},
		{"upsert without value", "spec: {metrics: [{overrides: [{tagOverrides: {a: {operation: UPSERT}}}]}]}", `spec.metrics[0].overrides[0].tagOverrides["a"].value`, "value is required"},
		{"remove with value", "spec: {metrics: [{overrides: [{tagOverrides: {a: {operation: REMOVE, value: x}}}]}]}", `spec.metrics[0].overrides[0].tagOverrides["a"].value`, "must not be set"},
		{"bad tag value", "spec: {metrics: [{overrides: [{tagOverrides: {a: {value: \"request.headers['x'] | 'unknown'\"}}}]}]}", `spec.metrics[0].overrides[0].tagOverrides["a"].value`, "Syntax error"},
		{"tag name", "spec: {metrics: [{overrides: [{tagOverrides: {a-b: {value: request.host}}}]}]}", `spec.metrics[0].overrides[0].tagOverrides["a-b"]`, "Prometheus label name"},
		{"custom metric", "spec: {metrics: [{overrides: [{match: {customMetric: 'a b'}}]}]}", "spec.metrics[0].overrides[0].match.customMetric", "invalid metric name"},
		{"interval", "spec: {metrics: [{reportingInterval: 0s}]}", "spec.metrics[0].reportingInterval", "at least 1ms"},
		{"target refs", "spec: {targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: g}]}", "spec.targetRefs", "not supported yet"},
		{"selector", "spec: {selector: {matchLabels: {app: 'a*'}}}", `spec.selector.matchLabels["app"]`, "wildcards"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, errs := Load("f.yaml", []byte(head+tc.spec))
			if len(objs) != 0 || len(errs) == 0 {
				t.Fatalf("accepted: %v", objs)
			}
			found := false
			for _, e := range errs {
				for _, ce := range Errors(e) {
					if ce, ok := ce.(*Error); ok && ce.Field == tc.field && strings.Contains(ce.Msg, tc.msg) {
						found = true
					}
				}
			}
			if !found {
				t.Errorf("got %v\nwant %s: ...%s...", errs, tc.field, tc.msg)
			}
		})
	}
}

// celCases are CEL expressions with strait-proxy's verdict on them; straitd must refuse exactly
// what the proxy refuses, with the proxy's message.
var celCases = []struct {
	name, expr string
	filterErr  string // "" when accepted as an access log filter
	valueErr   string // "" when accepted as a tag override value
}{
	{"status", `response.code >= 400`, "", ""},
	{"header", `request.headers['x-user'] == 'admin'`, "", ""},
	{"and", `request.url_path.startsWith('/api') && connection.mtls`, "", ""},
	{"uint", `upstream.request_attempt_count > 1u`, "", ""},
	{"presence", `has(response.code) && 'x-debug' in request.headers`, "", ""},
	{"comprehension", `request.headers.exists(k, k.startsWith('x-'))`, "", ""},
	{"string value", `xds.cluster_name`, "", ""},
	{"literal", `'literal'`, "of type string, not bool", ""},
	{"int value", `size(request.path)`, "of type int, not bool", ""},
	{"unknown attribute", `request.foo == 'x'`, "attribute request.foo: not supported by strait-proxy", "attribute request.foo: not supported by strait-proxy"},
	{"unprovided attribute", `xds.node`, "attribute xds.node: not supported by strait-proxy", "attribute xds.node: not supported by strait-proxy"},
	{"filter_state", `filter_state['wasm.upstream_peer'] != ''`, "attribute filter_state: not supported by strait-proxy yet", "attribute filter_state: not supported by strait-proxy yet"},
	{"tls_version", `connection.tls_version`, "attribute connection.tls_version: not supported", "attribute connection.tls_version: not supported"},
	{"undeclared", `foo`, "undeclared reference to 'foo'", "undeclared reference to 'foo'"},
	{"syntax", `response.code >=`, "Syntax error", "Syntax error"},
	{"regexp", `request.path.matches('(')`, "error parsing regexp", "error parsing regexp"},
	{"deep", strings.Repeat("(", 40) + "true" + strings.Repeat(")", 40), "recursion", "recursion"},
	{"nodes", "[" + strings.Repeat("1,", attributes.MaxNodes) + "1].size() > 0", "node count exceeds limit", "node count exceeds limit"},
	{"long", "'" + strings.Repeat("a", attributes.MaxExpressionLength) + "' != ''", "size exceeds limit", "size exceeds limit"},
}

// TestTelemetryCEL checks that accessLogging.filter.expression and tagOverrides values are
// compiled by strait-proxy's compiler: straitd accepts what the proxy accepts and refuses what it
// refuses, naming the field, with the proxy's own message.
func TestTelemetryCEL(t *testing.T) {
	const head = "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: t, namespace: ns}\n"
	for _, tc := range celCases {
		for _, fc := range []struct {
			kind, spec, field, want string
			compile                 func(string) (*attributes.Program, error)
		}{
			{"filter", "spec: {accessLogging: [{filter: {expression: %q}}]}", "spec.accessLogging[0].filter.expression", tc.filterErr, attributes.CompileBool},
			{"value", "spec: {metrics: [{overrides: [{tagOverrides: {a: {value: %q}}}]}]}", `spec.metrics[0].overrides[0].tagOverrides["a"].value`, tc.valueErr, attributes.Compile},
		} {
			t.Run(tc.name+"/"+fc.kind, func(t *testing.T) {
				objs, errs := Load("f.yaml", []byte(head+fmt.Sprintf(fc.spec, tc.expr)))
				_, perr := fc.compile(tc.expr)
				if fc.want == "" {
					if len(errs) != 0 || len(objs) != 1 || perr != nil {
						t.Fatalf("straitd: %v; strait-proxy: %v; want both to accept", errs, perr)
					}
					return
				}
				if perr == nil || !strings.Contains(perr.Error(), fc.want) {
					t.Fatalf("strait-proxy: %v, want an error containing %q", perr, fc.want)
				}
				if len(objs) != 0 || len(errs) != 1 {
					t.Fatalf("got %d objects, errors %v; want one error", len(objs), errs)
				}
				ce, ok := Errors(errs[0])[0].(*Error)
				if !ok || ce.Field != fc.field || ce.Msg != perr.Error() {
					t.Fatalf("got %v\nwant %s: %s", errs[0], fc.field, perr)
				}
			})
		}
	}
}

// TestTelemetryDimensionLimit checks that one Telemetry cannot give a mode more distinct tag
// values than strait-proxy's istio.stats filter evaluates.
func TestTelemetryDimensionLimit(t *testing.T) {
	const head = "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: t, namespace: ns}\n"
	tags := func(n int, mode string) string {
		var b strings.Builder
		fmt.Fprintf(&b, "{match: {mode: %s}, tagOverrides: {", mode)
		for i := range n {
			fmt.Fprintf(&b, "t%d: {value: \"request.headers['x-%d']\"}, ", i, i)
		}
		b.WriteString("}}")
		return b.String()
	}
	// 8 per mode, and 8 shared by both modes: accepted.
	ok := "spec: {metrics: [{overrides: [" + tags(8, "CLIENT") + ", " + tags(8, "SERVER") + ", " + tags(8, "CLIENT_AND_SERVER") + "]}]}"
	if objs, errs := Load("f.yaml", []byte(head+ok)); len(errs) != 0 || len(objs) != 1 {
		t.Fatalf("refused: %v", errs)
	}
	bad := "spec: {metrics: [{overrides: [" + tags(8, "SERVER") + "]}, {overrides: [" + tags(9, "SERVER") + "]}]}"
	objs, errs := Load("f.yaml", []byte(head+bad))
	if len(objs) != 0 || len(errs) != 1 {
		t.Fatalf("got %d objects, errors %v; want one error", len(objs), errs)
	}
	if ce, ok := Errors(errs[0])[0].(*Error); !ok || ce.Field != "spec.metrics" || !strings.Contains(ce.Msg, "9 distinct tagOverrides values apply to mode SERVER") {
		t.Fatalf("got %v", errs[0])
	}
}
