package config

import (
	"strings"
	"testing"
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
		{"filter", "spec: {accessLogging: [{filter: {expression: 'response.cod >= 400'}}]}", "spec.accessLogging[0].filter.expression", "undeclared reference"},
		{"filter type", "spec: {accessLogging: [{filter: {expression: 'request.path'}}]}", "spec.accessLogging[0].filter.expression", "want bool"},
		{"empty filter", "spec: {accessLogging: [{filter: {}}]}", "spec.accessLogging[0].filter.expression", "expression is empty"},
		{"upsert without value", "spec: {metrics: [{overrides: [{tagOverrides: {a: {operation: UPSERT}}}]}]}", `spec.metrics[0].overrides[0].tagOverrides["a"].value`, "value is required"},
		{"remove with value", "spec: {metrics: [{overrides: [{tagOverrides: {a: {operation: REMOVE, value: x}}}]}]}", `spec.metrics[0].overrides[0].tagOverrides["a"].value`, "must not be set"},
		{"bad tag value", "spec: {metrics: [{overrides: [{tagOverrides: {a: {value: \"request.headers['x'] | 'unknown'\"}}}]}]}", `spec.metrics[0].overrides[0].tagOverrides["a"].value`, "invalid CEL expression"},
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
