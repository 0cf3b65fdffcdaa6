package l7

import (
	"net/http"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/stats"
	"github.com/strait-mesh/strait/proxy/telemetry"
	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
	udpatypev1 "github.com/strait-mesh/strait/proxy/xdspb/udpa/type/v1"
)

// istioStatsHTTPFilter is the istio.stats HTTP filter with a PluginConfig given as JSON-like
// values, in a udpa TypedStruct as an EnvoyFilter writes it.
func istioStatsHTTPFilter(t testing.TB, cfg map[string]any) *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{Name: "istio.stats", ConfigType: &hcmv3.HttpFilter_TypedConfig{
		TypedConfig: testenv.MustAny(t, &udpatypev1.TypedStruct{TypeUrl: telemetry.TypeStatsPluginConfig, Value: testenv.MustStruct(t, cfg)})}}
}

// TestIstioStatsOverrides sends requests through a connection manager whose istio.stats filter
// adds a request_host label from request.host and removes request_protocol from
// istio_requests_total, and drops istio_request_bytes; /stats/prometheus shows it.
func TestIstioStatsOverrides(t *testing.T) {
	up := statusUpstream(t)
	env := &testEnv{clusters: map[string]Upstream{"outbound|80||api.shop.svc.cluster.local": newTestUpstream(up, false)}}
	st := stats.NewStore()
	rec := telemetry.New(telemetry.Options{Local: telemetryLocal, Stats: st})
	hcm := inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("outbound|80||api.shop.svc.cluster.local"))),
		istioStatsHTTPFilter(t, map[string]any{
			"disable_host_header_fallback": true,
			"metrics": []any{
				map[string]any{"name": "requests_total", "dimensions": map[string]any{"request_host": "request.host"},
					"tags_to_remove": []any{"request_protocol"}},
				map[string]any{"name": "request_bytes", "drop": true},
				map[string]any{"name": "response_bytes", "dimensions": map[string]any{"response_code": "string(response.code / 100) + \"xx\""}},
			},
		}))
	hcm.StatPrefix = "outbound_0.0.0.0_80"
	h, err := New(hcm, env, Options{Stats: st, Telemetry: rec})
	if err != nil {
		t.Fatal(err)
	}
	addr := serveConns(t, h, loopbackInfo)
	c := h1Client()
	for _, host := range []string{"api.shop:80", "api.shop:80", "api.shop.svc.cluster.local"} {
		for _, code := range []string{"200", "503"} {
			req, _ := http.NewRequest("GET", "http://"+addr+"/"+code, nil)
			req.Host = host
			roundTrip(t, c, req)
		}
	}
	out := prometheusText(t, st)
	count := func(re string) int { return len(regexp.MustCompile(re).FindAllString(out, -1)) }
	// istio_requests_total: the host as a label, request_protocol gone, per code.
	if n := count(`(?m)^istio_requests_total\{[^}]*response_code="200"[^}]*,request_host="api\.shop:80"\} 2$`); n != 1 {
		t.Errorf("want one requests_total series for api.shop:80 (2 requests); output:\n%s", out)
	}
	if n := count(`(?m)^istio_requests_total\{[^}]*response_code="503"[^}]*,request_host="api\.shop\.svc\.cluster\.local"\} 1$`); n != 1 {
		t.Errorf("want one requests_total series for api.shop.svc.cluster.local; output:\n%s", out)
	}
	if n := count(`(?m)^istio_requests_total\{[^}]*request_protocol=`); n != 0 {
		t.Errorf("request_protocol still on istio_requests_total (%d series)", n)
	}
	if n := count(`(?m)^istio_requests_total\{`); n != 4 {
		t.Errorf("%d requests_total series, want 4 (2 hosts x 2 codes)", n)
	}
	// Other families keep Istio's labels (request_protocol) and have no request_host.
	if n := count(`(?m)^istio_request_duration_milliseconds_count\{[^}]*request_protocol="http"[^}]*\} `); n != 2 {
		t.Errorf("%d request_duration series with request_protocol, want 2 (the hosts merge)\n%s", n, out)
	}
	if strings.Contains(out, "istio_request_bytes") {
		t.Errorf("istio_request_bytes is dropped but rendered")
	}
	// A dimension overwrites a standard label in place.
	if n := count(`(?m)^istio_response_bytes_count\{[^}]*response_code="5xx"[^}]*\} 3$`); n != 1 {
		t.Errorf("want response_bytes with response_code=\"5xx\" (3 requests)\n%s", out)
	}
}

// TestIstioStatsDropAll: with an istio.stats filter that drops every metric (how the control
// plane turns metrics off), the connection manager does none of the recording work: no
// recorder, no upstream host report for the source reporter, no series.
func TestIstioStatsDropAll(t *testing.T) {
	up := statusUpstream(t)
	env := &testEnv{clusters: map[string]Upstream{"outbound|80||api.shop.svc.cluster.local": newTestUpstream(up, false)}}
	st := stats.NewStore()
	rec := telemetry.New(telemetry.Options{Local: telemetryLocal, Stats: st})
	hcm := inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("outbound|80||api.shop.svc.cluster.local"))),
		istioStatsHTTPFilter(t, map[string]any{"metrics": []any{map[string]any{"drop": true}}}))
	hcm.StatPrefix = "outbound_0.0.0.0_80"
	h, err := New(hcm, env, Options{Stats: st, Telemetry: rec})
	if err != nil {
		t.Fatal(err)
	}
	if h.opts.Telemetry != nil || h.telemetryNeedsHost() || h.needsHostReport() {
		t.Errorf("every metric dropped, yet the handler keeps the recorder (%v) or asks for the upstream host (%v, %v)",
			h.opts.Telemetry != nil, h.telemetryNeedsHost(), h.needsHostReport())
	}
	addr := serveConns(t, h, loopbackInfo)
	c := h1Client()
	for _, code := range []string{"200", "503"} {
		req, _ := http.NewRequest("GET", "http://"+addr+"/"+code, nil)
		req.Host = "api.shop:80"
		roundTrip(t, c, req)
	}
	if n, m := rec.Series(); n != 0 || m != 0 {
		t.Errorf("recorder has %d HTTP and %d TCP series, want none", n, m)
	}
	if out := prometheusText(t, st); strings.Contains(out, "istio_") {
		t.Errorf("metrics recorded although every metric is dropped:\n%s", out)
	}
}

// TestIstioStatsRefused: what the proxy does not implement in istio.stats is refused by name.
func TestIstioStatsRefused(t *testing.T) {
	for _, tc := range []struct {
		cfg  map[string]any
		want string
	}{
		{map[string]any{"definitions": []any{map[string]any{"name": "x", "value": "1"}}}, "typed_config.definitions: not supported"},
		{map[string]any{"metrics": []any{map[string]any{"name": "requests_total", "match": "true"}}}, "metrics[0].match: not supported"},
		{map[string]any{"metrics": []any{map[string]any{"name": "no-such-metric"}}}, `"no-such-metric" is not a metric name`},
		{map[string]any{"metrics": []any{map[string]any{"name": "requests_total", "dimensions": map[string]any{"x": "request.nope"}}}}, "attribute request.nope: not supported"},
		{map[string]any{"metrics": []any{map[string]any{"name": "requests_total", "dimensions": map[string]any{"bad-label": "request.host"}}}}, `"bad-label" is not a label name`},
		{map[string]any{"tcp_reporting_duration": "0s"}, "tcp_reporting_duration: must be positive"},
		{map[string]any{"tcp_reporting_duration": "-1s"}, "tcp_reporting_duration: must be positive"},
		{map[string]any{"reporter": "SERVER_GATEWAY"}, "reporter: not supported"},
	} {
		hcm := inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("c"))), istioStatsHTTPFilter(t, tc.cfg))
		if _, err := New(hcm, &testEnv{}, Options{}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: New = %v, want an error containing %q", tc.cfg, err, tc.want)
		}
	}
	// A TypedStruct of something else is not istio.stats: refused, or skipped when optional.
	v, _ := structpb.NewStruct(map[string]any{})
	a, _ := anypb.New(&udpatypev1.TypedStruct{TypeUrl: "type.googleapis.com/envoy.extensions.wasm.v3.PluginConfig", Value: v})
	f := &hcmv3.HttpFilter{Name: "wasm", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: a}}
	if _, err := New(inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("c"))), f), &testEnv{}, Options{}); err == nil ||
		!strings.Contains(err.Error(), "typed_config.type_url: not supported") {
		t.Errorf("a wasm TypedStruct: %v", err)
	}
	f.IsOptional = true
	if _, err := New(inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("c"))), f), &testEnv{}, Options{}); err != nil {
		t.Errorf("an optional wasm TypedStruct: %v", err)
	}
}
