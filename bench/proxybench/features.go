package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
)

// The feature pairs: the sidecar pair of sidecar.go (client sidecar → server sidecar → backend,
// plaintext) once per configuration whose cost per request is measured, each on loopback
// addresses of its own. Issue 8 compares telemetry-off with telemetry-full, issue 16
// ratelimit-none with ratelimit-local and ratelimit-global, row by row of the same run.
//
//   - telemetry-off: a Telemetry that disables Istio's standard metrics (prometheus provider,
//     override disabled: true), no access log, no tracing (straitd sends an istio.stats filter
//     that drops every metric; the proxy then records nothing);
//   - telemetry-full: metrics on, an access log in Istio's default TEXT format to a file in the
//     work dir (an envoyFileAccessLog extensionProvider the pair's Telemetry selects), and
//     tracing at 1% (an opentelemetry extensionProvider, randomSamplingPercentage: 1) exporting
//     over OTLP gRPC to the benchmark's own receiver (otlp.go). Its pair uses a second straitd
//     (featureStraitd) whose MeshConfig has the providers;
//   - telemetry-metrics, telemetry-accesslog, telemetry-tracing: one feature of telemetry-full
//     each, so that its cost is attributed: Istio's metrics alone (the main straitd, no
//     Telemetry); the access log alone and 1% tracing alone on the second straitd, with
//     Telemetry resources that select that provider and disable the metrics;
//   - ratelimit-none: the pair as the others, metrics on, no RateLimit;
//   - ratelimit-local: a RateLimit (scope Local) on the server sidecar's inbound port with a limit
//     far above the load (nothing is refused: the cost is measured, not the refusals);
//   - ratelimit-global: the same with scope Global, through straitd's in-memory rate limit
//     service (--ratelimit-listen): one gRPC call per request from the server sidecar;
//   - hop-h1, hop-h2: the pair with Istio's metrics, the hop between the sidecars over pooled
//     HTTP/1.1 (hop-h1) or, through a DestinationRule with h2UpgradePolicy UPGRADE, over
//     HTTP/2 (hop-h2): issue 10 item 3 asks which is cheaper per request.
var (
	telemetryOffPair = sidecarPair{name: "telemetry-off", service: "telemetry-off",
		clientIP: "127.0.0.86", serverIP: "127.0.0.87", clientAdm: 18108, serverAdm: 18109, label: true}
	telemetryFullPair = sidecarPair{name: "telemetry-full", service: "telemetry-full",
		clientIP: "127.0.0.88", serverIP: "127.0.0.89", clientAdm: 18110, serverAdm: 18111, label: true,
		xds: portXDSFeature, imports: []string{benchNamespace + "/" + collectorHost}}
	telemetryMetricsPair = sidecarPair{name: "telemetry-metrics", service: "telemetry-metrics",
		clientIP: "127.0.0.96", serverIP: "127.0.0.97", clientAdm: 18118, serverAdm: 18119, label: true}
	telemetryAccessLogPair = sidecarPair{name: "telemetry-accesslog", service: "telemetry-accesslog",
		clientIP: "127.0.0.98", serverIP: "127.0.0.99", clientAdm: 18120, serverAdm: 18121, label: true, xds: portXDSFeature}
	telemetryTracingPair = sidecarPair{name: "telemetry-tracing", service: "telemetry-tracing",
		clientIP: "127.0.0.100", serverIP: "127.0.0.101", clientAdm: 18122, serverAdm: 18123, label: true,
		xds: portXDSFeature, imports: []string{benchNamespace + "/" + collectorHost}}
	rateLimitNonePair = sidecarPair{name: "ratelimit-none", service: "ratelimit-none",
		clientIP: "127.0.0.90", serverIP: "127.0.0.91", clientAdm: 18112, serverAdm: 18113, label: true}
	rateLimitLocalPair = sidecarPair{name: "ratelimit-local", service: "ratelimit-local",
		clientIP: "127.0.0.92", serverIP: "127.0.0.93", clientAdm: 18114, serverAdm: 18115, label: true}
	rateLimitGlobalPair = sidecarPair{name: "ratelimit-global", service: "ratelimit-global",
		clientIP: "127.0.0.94", serverIP: "127.0.0.95", clientAdm: 18116, serverAdm: 18117, label: true}
	hopH1Pair = sidecarPair{name: "hop-h1", service: "hop-h1",
		clientIP: "127.0.0.102", serverIP: "127.0.0.103", clientAdm: 18124, serverAdm: 18125, label: true}
	hopH2Pair = sidecarPair{name: "hop-h2", service: "hop-h2",
		clientIP: "127.0.0.104", serverIP: "127.0.0.105", clientAdm: 18126, serverAdm: 18127, label: true, h2Upgrade: true}

	// mainFeaturePairs use the main straitd, secondFeaturePairs featureStraitd.
	mainFeaturePairs   = []sidecarPair{telemetryOffPair, telemetryMetricsPair, rateLimitNonePair, rateLimitLocalPair, rateLimitGlobalPair, hopH1Pair, hopH2Pair}
	secondFeaturePairs = []sidecarPair{telemetryAccessLogPair, telemetryTracingPair, telemetryFullPair}

	// telemetryPairs are the telemetry comparison's paths, in the order a round measures them.
	telemetryPairs = []sidecarPair{telemetryOffPair, telemetryMetricsPair, telemetryAccessLogPair, telemetryTracingPair, telemetryFullPair}
	// hopPairs are the hop comparison's: the same pair with Istio's metrics, its client
	// sidecar's requests to the server sidecar over pooled HTTP/1.1 connections (Istio's default
	// for an HTTP port), then multiplexed on HTTP/2 connections.
	hopPairs = []sidecarPair{hopH1Pair, hopH2Pair}
)

// telemetryExpect is what a telemetry path's sidecars must have: Istio's metrics, an access
// log, a tracer. Every other feature pair has the metrics only.
func telemetryExpect(name string) (metrics, accessLog, tracer bool) {
	switch name {
	case telemetryOffPair.name:
		return false, false, false
	case telemetryAccessLogPair.name:
		return false, true, false
	case telemetryTracingPair.name:
		return false, false, true
	case telemetryFullPair.name:
		return true, true, true
	}
	return true, false, false
}

const (
	portXDSFeature     = 18011 // the second straitd's plaintext xDS (telemetry-full)
	portStraitdFeature = 18015 // its HTTP port
	portRateLimit      = 18016 // the main straitd's in-memory rate limit service
	portCollector      = 18017 // the OTLP receiver, on collectorIP
	collectorIP        = "127.0.0.85"
	collectorHost      = "otel-collector.bench.svc.cluster.local"
	// rateLimitRequests per second is far above the load (1,000 rps, or the maximum a pair
	// reaches on this machine): the limit never refuses a request.
	rateLimitRequests = 1000000
)

// featureNames are the feature pairs' path names, for -only.
var featureNames = []string{telemetryOffPair.name, telemetryMetricsPair.name, telemetryAccessLogPair.name, telemetryTracingPair.name,
	telemetryFullPair.name, rateLimitNonePair.name, rateLimitLocalPair.name, rateLimitGlobalPair.name, hopH1Pair.name, hopH2Pair.name}

// wantsFeatures reports whether -only selects any feature pair (empty: all).
func wantsFeatures(only string) bool {
	for _, n := range featureNames {
		if only == "" || strings.Contains(","+only+",", ","+n+",") {
			return true
		}
	}
	return false
}

// featureConfig is the Istio configuration of the main straitd's feature pairs.
func featureConfig() string {
	const header = "apiVersion: %s\nkind: %s\nmetadata: {name: %s, namespace: " + benchNamespace + "}\nspec:\n"
	selector := func(p sidecarPair) string { return "  selector: {matchLabels: {pair: " + p.service + "}}\n" }
	rateLimit := func(p sidecarPair, scope string) string {
		return fmt.Sprintf(header+selector(p)+"  rules: [{name: all, scope: %s, limit: {requests: %d, per: 1s}}]\n",
			"extensions.strait.io/v1alpha1", "RateLimit", p.service, scope, rateLimitRequests)
	}
	parts := []string{
		fmt.Sprintf(header+selector(telemetryOffPair)+"  metrics: [{providers: [{name: prometheus}], overrides: [{disabled: true}]}]\n",
			"telemetry.istio.io/v1", "Telemetry", telemetryOffPair.service),
		rateLimit(rateLimitLocalPair, "Local"),
		rateLimit(rateLimitGlobalPair, "Global"),
	}
	for _, p := range mainFeaturePairs {
		parts = append(parts, sidecarConfig(p))
	}
	return strings.Join(parts, "---\n")
}

// featureMeshConfig is the second straitd's MeshConfig: the providers of the access log file
// and of the trace collector.
func featureMeshConfig(accessLog string) string {
	return fmt.Sprintf(`extensionProviders:
- name: otel
  opentelemetry: {service: %s, port: %d}
- name: file-log
  envoyFileAccessLog: {path: %s}
`, collectorHost, portCollector, accessLog)
}

// featureFullConfig is the second straitd's Istio configuration: its pairs, their Telemetry
// resources (telemetry-full: tracing at 1% to the collector, the access log, metrics on as by
// default; telemetry-accesslog: the access log, metrics off; telemetry-tracing: tracing at 1%,
// metrics off), and the collector.
func featureFullConfig() string {
	const (
		tracing1  = "  tracing: [{providers: [{name: otel}], randomSamplingPercentage: 1}]\n"
		noMetrics = "  metrics: [{providers: [{name: prometheus}], overrides: [{disabled: true}]}]\n"
		fileLog   = "  accessLogging: [{providers: [{name: file-log}]}]\n"
	)
	telemetry := func(p sidecarPair, spec string) string {
		return fmt.Sprintf(`apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: %[1]s, namespace: %[2]s}
spec:
  selector: {matchLabels: {pair: %[1]s}}
`, p.service, benchNamespace) + spec
	}
	parts := []string{
		telemetry(telemetryFullPair, tracing1+fileLog),
		telemetry(telemetryAccessLogPair, fileLog+noMetrics),
		telemetry(telemetryTracingPair, tracing1+noMetrics),
		fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: otel-collector, namespace: %s}
spec:
  hosts: [%s]
  location: MESH_INTERNAL
  ports: [{number: %d, name: grpc-otlp, protocol: GRPC}]
  resolution: STATIC
  endpoints: [{address: %s}]
`, benchNamespace, collectorHost, portCollector, collectorIP),
	}
	for _, p := range secondFeaturePairs {
		parts = append(parts, sidecarConfig(p))
	}
	return strings.Join(parts, "---\n")
}

// featureStraitd starts the second straitd (telemetry-full's MeshConfig) and the OTLP receiver.
func featureStraitd(work, binDir string, must func(*proc, error) *proc) (*otlpCollector, string, error) {
	dir := filepath.Join(work, "feature")
	cfgDir := filepath.Join(dir, "config")
	if err := os.MkdirAll(cfgDir, 0o755); err != nil {
		return nil, "", err
	}
	accessLog := filepath.Join(work, "telemetry-full-access.log")
	mesh := filepath.Join(dir, "mesh.yaml")
	if err := os.WriteFile(mesh, []byte(featureMeshConfig(accessLog)), 0o644); err != nil {
		return nil, "", err
	}
	if err := os.WriteFile(filepath.Join(cfgDir, "bench.yaml"), []byte(featureFullConfig()), 0o644); err != nil {
		return nil, "", err
	}
	col, err := startOTLPCollector(fmt.Sprintf("%s:%d", collectorIP, portCollector))
	if err != nil {
		return nil, "", err
	}
	must(start(work, "straitd-feature", 0, nil, filepath.Join(binDir, "straitd"), "--config-dir", cfgDir,
		"--mesh-config", mesh, "--mesh-address", "", "--xds-listen", fmt.Sprintf("127.0.0.1:%d", portXDSFeature),
		"--http-listen", fmt.Sprintf("127.0.0.1:%d", portStraitdFeature)))
	return col, accessLog, nil
}

// checkFeature checks, after a pair is ready, that its configuration is what its name says, from
// the proxies' admin stats: Istio's metrics, the access log's file statistics and the tracer's
// sampling statistics present or absent as telemetryExpect says, and the rate limit filter
// counting on the server sidecar.
func checkFeature(ctx context.Context, p sidecarPair) error {
	prom := func(admin int) (string, error) {
		code, body, err := get(ctx, fmt.Sprintf("http://127.0.0.1:%d/stats/prometheus", admin), "")
		if err != nil || code != 200 {
			return "", fmt.Errorf("reading /stats/prometheus from the admin port %d: %d %v", admin, code, err)
		}
		return body, nil
	}
	for _, admin := range []int{p.clientAdm, p.serverAdm} {
		body, err := prom(admin)
		if err != nil {
			return err
		}
		wantMetrics, wantLog, wantTracer := telemetryExpect(p.name)
		for _, c := range []struct {
			stat string
			want bool
		}{{"istio_requests_total", wantMetrics}, {"envoy_filesystem_write_completed", wantLog}, {"envoy_http_tracing_not_traceable", wantTracer}} {
			if got := strings.Contains(body, c.stat); got != c.want {
				return fmt.Errorf("%s: %s present %v on the admin port %d, want %v", p.name, c.stat, got, admin, c.want)
			}
		}
		if admin != p.serverAdm {
			continue
		}
		want := map[string]string{rateLimitLocalPair.name: "http_local_rate_limit_ok", rateLimitGlobalPair.name: "ratelimit_ok"}[p.name]
		if want != "" && !strings.Contains(body, want) {
			return fmt.Errorf("%s: no %s statistic on the server sidecar (is the RateLimit applied?)", p.name, want)
		}
	}
	log.Printf("%s: configuration checked on both sidecars", p.name)
	return nil
}

// reportFull logs what the second straitd's pairs produced: spans received, access log size.
func reportFull(col *otlpCollector, accessLog string) {
	if col == nil {
		return
	}
	var size int64
	if fi, err := os.Stat(accessLog); err == nil {
		size = fi.Size()
	}
	log.Printf("telemetry-tracing and -full: %d spans received by the OTLP collector; telemetry-accesslog and -full: access log %s is %d bytes", col.spans.Load(), accessLog, size)
}
