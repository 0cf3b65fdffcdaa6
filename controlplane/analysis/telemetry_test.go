package analysis

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	meshconfig "istio.io/api/mesh/v1alpha1"

	"github.com/strait-mesh/strait/controlplane/config"
)

func telemetryDoc(name, ns, spec string) string {
	return "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: " + name + ", namespace: " + ns + "}\nspec:\n" + spec
}

// TestTelemetryProviders checks IST0157: an accessLogging entry without providers is reported
// when it has none to inherit, and not when defaultProviders, a mesh-wide Telemetry, the
// namespace's Telemetry (for a workload-level one) or an earlier entry names providers.
func TestTelemetryProviders(t *testing.T) {
	disable := "  accessLogging:\n  - disabled: true\n"
	withEnvoy := "  accessLogging:\n  - providers: [{name: envoy}]\n"
	selector := "  selector: {matchLabels: {app: reviews}}\n"
	warn := func(ns, name string, line int) string {
		return "Warning [IST0157] (Telemetry " + ns + "/" + name + " in.yaml:" + strconv.Itoa(line) + `) The Telemetry ` + name + ` in namespace "` + ns +
			`" with empty providers will be ignored: MeshConfig defaultProviders.accessLogging is empty, so it selects no access log provider (MeshConfig accessLogFile, if set, keeps logging). Name a provider, such as "envoy".`
	}
	cases := []struct {
		name     string
		input    string
		defaults []string
		want     []string
	}{
		{name: "disabled without providers", input: telemetryDoc("no-log", "bookinfo", disable),
			want: []string{warn("bookinfo", "no-log", 6)}},
		{name: "default providers", input: telemetryDoc("no-log", "bookinfo", disable), defaults: []string{"envoy"}},
		{name: "named provider", input: telemetryDoc("no-log", "bookinfo", "  accessLogging:\n  - disabled: true\n    providers: [{name: envoy}]\n")},
		{name: "inherits the mesh's", input: telemetryDoc("mesh", "istio-system", withEnvoy) + "---\n" + telemetryDoc("no-log", "bookinfo", disable)},
		{name: "workload inherits the namespace's", input: telemetryDoc("ns", "bookinfo", withEnvoy) + "---\n" + telemetryDoc("w", "bookinfo", selector+disable)},
		{name: "workload in another namespace", input: telemetryDoc("ns", "other", withEnvoy) + "---\n" + telemetryDoc("w", "bookinfo", selector+disable),
			want: []string{warn("bookinfo", "w", 14)}},
		{name: "earlier entry", input: telemetryDoc("two", "bookinfo", "  accessLogging:\n  - providers: [{name: envoy}]\n  - match: {mode: SERVER}\n    disabled: true\n")},
		{name: "no access logging", input: telemetryDoc("trace", "bookinfo", "  tracing:\n  - randomSamplingPercentage: 10\n")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs, errs := config.Load("in.yaml", []byte(tc.input))
			for _, err := range errs {
				t.Fatalf("loading: %v", err)
			}
			mc := config.DefaultMeshConfig()
			mc.DefaultProviders = &meshconfig.MeshConfig_DefaultProviders{AccessLogging: tc.defaults}
			var got []string
			for _, m := range AnalyzeObjects(mc, objs, Options{Locator: LocatorFor(map[string][]byte{"in.yaml": []byte(tc.input)})}) {
				if m.Code == "IST0157" {
					got = append(got, m.String())
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}
