package l7

import (
	"context"
	"io"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/strait-mesh/strait/internal/workloadtable"
	"github.com/strait-mesh/strait/proxy/accesslog"
	"github.com/strait-mesh/strait/proxy/stats"
	"github.com/strait-mesh/strait/proxy/telemetry"
	"github.com/strait-mesh/strait/proxy/tracing"
	accesslogv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/accesslog/v3"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	tracev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/trace/v3"
	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
	uuidv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/request_id/uuid/v3"
	metadatav3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/metadata/v3"
	tagv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/tracing/v3"
	typev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/v3"
)

// telemetryFeatures selects the telemetry of a benchmarked connection manager.
type telemetryFeatures struct {
	metrics, accessLog, tracing bool
}

// telemetryCases are the per-feature configurations of BenchmarkTelemetryPipeline, the same
// set bench/proxybench measures through a sidecar pair: off, each feature alone, and all three
// (Istio's standard metrics, Istio's TEXT access log, 1% tracing to an OpenTelemetry collector).
var telemetryCases = []struct {
	name string
	f    telemetryFeatures
}{
	{"off", telemetryFeatures{}},
	{"metrics", telemetryFeatures{metrics: true}},
	{"accesslog", telemetryFeatures{accessLog: true}},
	{"tracing", telemetryFeatures{tracing: true}},
	{"full", telemetryFeatures{metrics: true, accessLog: true, tracing: true}},
}

// istioTracing is the tracing block istiod sends a sidecar with a Telemetry of 1% sampling to
// an OpenTelemetry provider: the UUID request id packs the trace reason and samples on it,
// and Istio's custom tags (RBAC dry-run metadata, literals, an environment variable).
func istioTracing(tb testing.TB, collector string) *hcmv3.HttpConnectionManager_Tracing {
	cfg, err := anypb.New(&tracev3.OpenTelemetryConfig{ServiceName: "reviews.default",
		GrpcService: &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: collector}}}})
	if err != nil {
		tb.Fatal(err)
	}
	tags := []*tagv3.CustomTag{}
	for _, k := range []string{"allow_shadow_effective_policy_id", "allow_shadow_engine_result", "deny_shadow_effective_policy_id", "deny_shadow_engine_result"} {
		tags = append(tags, &tagv3.CustomTag{Tag: "istio.authorization.dry_run." + k, Type: &tagv3.CustomTag_Metadata_{Metadata: &tagv3.CustomTag_Metadata{
			Kind:        &metadatav3.MetadataKind{Kind: &metadatav3.MetadataKind_Request_{Request: &metadatav3.MetadataKind_Request{}}},
			MetadataKey: &metadatav3.MetadataKey{Key: "envoy.filters.http.rbac", Path: []*metadatav3.MetadataKey_PathSegment{{Segment: &metadatav3.MetadataKey_PathSegment_Key{Key: "istio_dry_run_" + k}}}}}}})
	}
	for k, v := range map[string]string{"istio.canonical_revision": "v1", "istio.canonical_service": "reviews", "istio.cluster_id": "Kubernetes",
		"istio.mesh_id": "cluster.local", "istio.namespace": "default"} {
		tags = append(tags, &tagv3.CustomTag{Tag: k, Type: &tagv3.CustomTag_Literal_{Literal: &tagv3.CustomTag_Literal{Value: v}}})
	}
	tags = append(tags, &tagv3.CustomTag{Tag: "pod", Type: &tagv3.CustomTag_Environment_{Environment: &tagv3.CustomTag_Environment{Name: "POD_NAME", DefaultValue: "unknown"}}})
	return &hcmv3.HttpConnectionManager_Tracing{
		Provider:       &tracev3.Tracing_Http{Name: tracing.OpenTelemetryName, ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: cfg}},
		ClientSampling: &typev3.Percent{Value: 100}, RandomSampling: &typev3.Percent{Value: 1}, OverallSampling: &typev3.Percent{Value: 100},
		MaxPathTagLength: wrapperspb.UInt32(256), CustomTags: tags,
	}
}

// telemetryHandler compiles a sidecar's connection manager (stat prefix prefix: Istio's
// outbound_ or inbound_) with the features f, its access log written to a discarding file and
// its spans exported to a collector cluster that accepts and discards them. The returned
// function closes the access log files.
func telemetryHandler(tb testing.TB, prefix string, f telemetryFeatures) (*Handler, func()) {
	env := &testEnv{clusters: map[string]Upstream{"c": cannedUpstream{}, "otel": cannedUpstream{}}}
	hcm := inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("c"))))
	hcm.StatPrefix = prefix
	rid, err := anypb.New(&uuidv3.UuidRequestIdConfig{PackTraceReason: wrapperspb.Bool(true), UseRequestIdForTraceSampling: wrapperspb.Bool(true)})
	if err != nil {
		tb.Fatal(err)
	}
	hcm.RequestIdExtension = &hcmv3.RequestIDExtension{TypedConfig: rid}
	st := stats.NewStore()
	// The proxy's own settings (accesslog.Shared): the default queue, Envoy's 1 s flush.
	files := accesslog.NewFiles(accesslog.FilesOptions{Stats: st, FlushInterval: accesslog.DefaultFlushInterval,
		Open: func(string) (io.WriteCloser, error) { return discard{}, nil }})
	opts := Options{Stats: st, AccessLogFiles: files,
		Tracing: TracingOptions{NodeID: "sidecar~10.0.0.7~reviews-v1-abc.default~default.svc.cluster.local", LocalCluster: "reviews.default", LocalAddress: "10.0.0.7"}}
	if f.metrics {
		rec := telemetry.New(telemetry.Options{Stats: st, Local: telemetry.NodeWorkload("reviews-v1", "default", "Kubernetes",
			map[string]string{workloadtable.LabelApp: "reviews", workloadtable.LabelVersion: "v1"}, nil)})
		rec.SetPeers(telemetry.CompilePeers(workloadtable.Table{TrustDomains: []string{"cluster.local"}, Workloads: []workloadtable.Workload{
			{Name: "productpage-v1", Namespace: "default", ServiceAccount: "productpage", Addresses: []string{"10.0.0.9"}, App: "productpage", Version: "v1",
				CanonicalService: "productpage", CanonicalRevision: "v1", Cluster: "Kubernetes", Sidecar: true}}}, nil))
		opts.Telemetry = rec
	}
	if f.accessLog {
		hcm.AccessLog = []*accesslogv3.AccessLog{fileAccessLog(tb, "/discard", accesslog.IstioTextFormat)}
	}
	if f.tracing {
		hcm.Tracing = istioTracing(tb, "otel")
	}
	h, err := New(hcm, env, opts)
	if err != nil {
		tb.Fatal(err)
	}
	return h, func() { files.Close() }
}

// BenchmarkTelemetryPipeline drives one request at a time through a sidecar's connection
// manager (admission, request id, route, router, an in-memory upstream, finish) with each
// telemetry feature alone, all of them, and none, on the client sidecar's outbound side and
// the server sidecar's inbound side: the per-request CPU and garbage each feature adds.
// bench/proxybench -instructions counts its instructions under valgrind, which this shared
// machine's noise does not move.
func BenchmarkTelemetryPipeline(b *testing.B) {
	for _, side := range []string{"outbound_0.0.0.0_9080", "inbound_0.0.0.0_9080"} {
		for _, tc := range telemetryCases {
			b.Run(strings.SplitN(side, "_", 2)[0]+"/"+tc.name, func(b *testing.B) {
				h, done := telemetryHandler(b, side, tc.f)
				defer done()
				cs := &connState{info: ConnInfo{Source: netip.MustParseAddrPort("10.0.0.9:43210"), OriginalDst: netip.MustParseAddrPort("10.0.0.7:9080")}}
				ctx := context.WithValue(context.Background(), connInfoKey{}, cs)
				b.ReportAllocs()
				for b.Loop() {
					r := httptest.NewRequestWithContext(ctx, "GET", "http://reviews.default.svc.cluster.local:9080/reviews/0", nil)
					r.Header.Set("User-Agent", "fortio.org/fortio-1.69.0")
					w := httptest.NewRecorder()
					h.serveHTTP(w, r)
					if w.Code != 200 {
						b.Fatal(w.Code)
					}
					// A request on a socket waits for I/O, which lets the access log's writer
					// and the span exporter run (with one P they would otherwise wait for
					// preemption, and lines pile up or are dropped).
					runtime.Gosched()
				}
			})
		}
	}
}
