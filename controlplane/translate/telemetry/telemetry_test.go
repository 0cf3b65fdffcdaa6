package telemetry

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"
	meshconfig "istio.io/api/mesh/v1alpha1"
	tpb "istio.io/api/telemetry/v1alpha1"
	typev1beta1 "istio.io/api/type/v1beta1"

	"github.com/strait-mesh/strait/controlplane/config"
)

func tel(ns, name string, age int, sel map[string]string, spec *tpb.Telemetry) *config.Object {
	if sel != nil {
		spec.Selector = &typev1beta1.WorkloadSelector{MatchLabels: sel}
	}
	return &config.Object{Kind: config.Telemetry, Meta: config.Meta{Namespace: ns, Name: name,
		CreationTimestamp: time.Unix(int64(age), 0)}, Spec: spec}
}

func logs(providers ...string) *tpb.Telemetry {
	var refs []*tpb.ProviderRef
	for _, p := range providers {
		refs = append(refs, &tpb.ProviderRef{Name: p})
	}
	return &tpb.Telemetry{AccessLogging: []*tpb.AccessLogging{{Providers: refs}}}
}

// TestApplicable checks Istio's inheritance: root namespace, namespace, then the oldest
// Telemetry whose selector matches; other namespaces' and selectors in other namespaces never.
func TestApplicable(t *testing.T) {
	in := Inputs{Mesh: &meshconfig.MeshConfig{RootNamespace: "istio-system"}, Telemetries: []*config.Object{
		tel("istio-system", "mesh", 1, nil, logs("a")),
		tel("istio-system", "root-selector", 1, map[string]string{"app": "x"}, logs("ignored")),
		tel("other", "other", 1, nil, logs("ignored")),
		tel("ns", "ns", 1, nil, logs("b")),
		tel("ns", "newer", 3, map[string]string{"app": "x"}, logs("ignored")),
		tel("ns", "older", 2, map[string]string{"app": "x"}, logs("c")),
		tel("ns", "nomatch", 1, map[string]string{"app": "y"}, logs("ignored")),
	}}
	got := applicable(in, Workload{Namespace: "ns", Labels: map[string]string{"app": "x"}})
	if strings.Join(got.names, " ") != "istio-system/mesh ns/ns ns/older" {
		t.Errorf("applicable = %v", got.names)
	}
	// In the root namespace, its selector-less Telemetry counts once, and its selectors select.
	got = applicable(in, Workload{Namespace: "istio-system", Labels: map[string]string{"app": "x"}})
	if strings.Join(got.names, " ") != "istio-system/mesh istio-system/root-selector" {
		t.Errorf("applicable in the root namespace = %v", got.names)
	}
}

// TestMergeLogs checks provider selection by mode, inheritance of the parent's providers by an
// entry without providers, and disabling.
func TestMergeLogs(t *testing.T) {
	mc := &meshconfig.MeshConfig{DefaultProviders: &meshconfig.MeshConfig_DefaultProviders{AccessLogging: []string{"envoy"}}}
	filter := &tpb.AccessLogging_Filter{Expression: "response.code >= 400"}
	ap := applied{specs: []*tpb.Telemetry{
		{AccessLogging: []*tpb.AccessLogging{{Providers: []*tpb.ProviderRef{{Name: "a"}, {Name: "b"}}, Filter: filter}}},
		{AccessLogging: []*tpb.AccessLogging{{Match: &tpb.AccessLogging_LogSelector{Mode: tpb.WorkloadMode_SERVER}, Disabled: wrapperspb.Bool(true)}}},
	}}
	render := func(m map[string]logSpec) string {
		var out []string
		for n, s := range m {
			switch {
			case s.disabled:
				n += ":off"
			case s.filter != nil:
				n += ":filtered"
			}
			out = append(out, n)
		}
		sort.Strings(out)
		return strings.Join(out, " ")
	}
	if got := render(mergeLogs(ap, mc, tpb.WorkloadMode_CLIENT)); got != "a:filtered b:filtered" {
		t.Errorf("client: %s", got)
	}
	if got := render(mergeLogs(ap, mc, tpb.WorkloadMode_SERVER)); got != "a:off b:off" {
		t.Errorf("server: %s", got)
	}
	if got := render(mergeLogs(applied{}, mc, tpb.WorkloadMode_SERVER)); got != "envoy" {
		t.Errorf("defaults: %s", got)
	}
}

// TestMergeMetrics checks that overrides accumulate per metric and mode, and that disabling
// ALL_METRICS turns a mode off until a later override turns it on again.
func TestMergeMetrics(t *testing.T) {
	client := &tpb.MetricSelector{Mode: tpb.WorkloadMode_CLIENT}
	entries := []*tpb.Metrics{
		{Overrides: []*tpb.MetricsOverrides{{Disabled: wrapperspb.Bool(true)}}}, // all metrics, both modes
		{Overrides: []*tpb.MetricsOverrides{{Match: &tpb.MetricSelector{Mode: client.Mode,
			MetricMatch: &tpb.MetricSelector_Metric{Metric: tpb.MetricSelector_REQUEST_COUNT}},
			TagOverrides: map[string]*tpb.MetricsOverrides_TagOverride{"a": {Value: "request.host"}}}}},
	}
	m := mergeMetrics(entries, []string{"prometheus"})["prometheus"]
	if m == nil || !m.modes[tpb.WorkloadMode_SERVER].disabled || m.modes[tpb.WorkloadMode_CLIENT].disabled {
		t.Fatalf("modes: %+v", m)
	}
	if o := m.modes[tpb.WorkloadMode_CLIENT].overrides["REQUEST_COUNT"]; o == nil || o.tags["a"].GetValue() != "request.host" {
		t.Errorf("client REQUEST_COUNT override: %+v", o)
	}
}

// TestStatsDimensionLimit checks that Telemetries which together give a mode more distinct tag
// values than strait-proxy's istio.stats filter evaluates are reported, and that mode's metric
// overrides left out rather than sent to be refused; the other mode keeps its filter.
func TestStatsDimensionLimit(t *testing.T) {
	tags := func(from, to int, mode tpb.WorkloadMode) *tpb.Telemetry {
		o := &tpb.MetricsOverrides{Match: &tpb.MetricSelector{Mode: mode,
			MetricMatch: &tpb.MetricSelector_Metric{Metric: tpb.MetricSelector_REQUEST_COUNT}},
			TagOverrides: map[string]*tpb.MetricsOverrides_TagOverride{}}
		for i := from; i < to; i++ {
			o.TagOverrides[fmt.Sprintf("t%d", i)] = &tpb.MetricsOverrides_TagOverride{Value: fmt.Sprintf("request.headers['x-%d']", i)}
		}
		return &tpb.Telemetry{Metrics: []*tpb.Metrics{{Overrides: []*tpb.MetricsOverrides{o}}}}
	}
	mc := &meshconfig.MeshConfig{RootNamespace: "istio-system", ExtensionProviders: []*meshconfig.MeshConfig_ExtensionProvider{{
		Name: "prometheus", Provider: &meshconfig.MeshConfig_ExtensionProvider_Prometheus{Prometheus: &meshconfig.MeshConfig_ExtensionProvider_PrometheusMetricsProvider{}}}}}
	in := Inputs{Mesh: mc, Telemetries: []*config.Object{
		tel("istio-system", "mesh", 1, nil, tags(0, 5, tpb.WorkloadMode_CLIENT_AND_SERVER)),
		tel("ns", "ns", 1, nil, tags(5, 9, tpb.WorkloadMode_CLIENT)),
	}}
	r := Build(in, Workload{Namespace: "ns"})
	if r.Client.HTTPStats != nil || r.Client.TCPStats != nil {
		t.Error("client: the istio.stats filter with 9 dimensions is sent")
	}
	if r.Server.HTTPStats == nil {
		t.Error("server: the istio.stats filter with 5 dimensions is left out")
	}
	if len(r.Errs) != 1 || !strings.Contains(r.Errs[0].Error(), "9 distinct tagOverrides values apply to mode CLIENT") {
		t.Errorf("errs = %v", r.Errs)
	}
}
