package tracing

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	gtracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	ghcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/strait-mesh/strait/proxy/accesslog"
	"github.com/strait-mesh/strait/proxy/attributes"
	"github.com/strait-mesh/strait/proxy/stats"
	"github.com/strait-mesh/strait/proxy/xdsfield"
	"github.com/strait-mesh/strait/proxy/xdspb"
	tracev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/trace/v3"
	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
	uuidv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/request_id/uuid/v3"
	tagv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/tracing/v3"
	typev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/v3"
)

func otelProvider(t testing.TB) *tracev3.Tracing_Http {
	a, err := anypb.New(&tracev3.OpenTelemetryConfig{ServiceName: "svc.ns"})
	if err != nil {
		t.Fatal(err)
	}
	return &tracev3.Tracing_Http{Name: OpenTelemetryName, ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: a}}
}

func zipkinProvider(t testing.TB, c proto.Message) *tracev3.Tracing_Http {
	a, err := anypb.New(c)
	if err != nil {
		t.Fatal(err)
	}
	return &tracev3.Tracing_Http{Name: ZipkinName, ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: a}}
}

func compile(t testing.TB, cfg *hcmv3.HttpConnectionManager_Tracing, rid *uuidv3.UuidRequestIdConfig, d Deps) *Tracer {
	t.Helper()
	tr, err := Compile("tracing", cfg, rid, d)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

const uuid = "1f2e3d4c-5b6a-4978-8a9b-0c1d2e3f4a5b"

func TestSample(t *testing.T) {
	pct := func(v float64) *typev3.Percent { return &typev3.Percent{Value: v} }
	none := &hcmv3.HttpConnectionManager_Tracing{RandomSampling: pct(0)}
	all := &hcmv3.HttpConnectionManager_Tracing{}
	for _, c := range []struct {
		name     string
		cfg      *hcmv3.HttpConnectionManager_Tracing
		rid      *uuidv3.UuidRequestIdConfig
		hdr      http.Header
		internal bool
		want     Reason
		wantID   string
	}{
		{"random 100%", all, nil, http.Header{"X-Request-Id": {uuid}}, false, Sampled, strings.Replace(uuid, "-4978", "-9978", 1)},
		{"random 0%", none, nil, http.Header{"X-Request-Id": {uuid}}, false, NoTrace, uuid},
		{"packed reason stands", none, nil, http.Header{"X-Request-Id": {strings.Replace(uuid, "-4978", "-9978", 1)}}, false, Sampled, ""},
		{"packed forced", none, nil, http.Header{"X-Request-Id": {strings.Replace(uuid, "-4978", "-a978", 1)}}, false, ServiceForced, ""},
		{"pack_trace_reason off ignores the nibble", none, &uuidv3.UuidRequestIdConfig{PackTraceReason: wrapperspb.Bool(false)},
			http.Header{"X-Request-Id": {strings.Replace(uuid, "-4978", "-9978", 1)}}, false, NoTrace, ""},
		{"client trace id", none, nil, http.Header{"X-Request-Id": {uuid}, "X-Client-Trace-Id": {"x"}}, false, ClientForced, strings.Replace(uuid, "-4978", "-b978", 1)},
		{"client sampling 0", &hcmv3.HttpConnectionManager_Tracing{RandomSampling: pct(0), ClientSampling: pct(0)}, nil,
			http.Header{"X-Request-Id": {uuid}, "X-Client-Trace-Id": {"x"}}, false, NoTrace, uuid},
		{"force trace internal", none, nil, http.Header{"X-Request-Id": {uuid}, "X-Envoy-Force-Trace": {"1"}}, true, ServiceForced, ""},
		{"force trace external ignored", none, nil, http.Header{"X-Request-Id": {uuid}, "X-Envoy-Force-Trace": {"1"}}, false, NoTrace, ""},
		{"overall veto", &hcmv3.HttpConnectionManager_Tracing{OverallSampling: pct(0)}, nil,
			http.Header{"X-Request-Id": {strings.Replace(uuid, "-4978", "-9978", 1)}}, false, NoTrace, uuid},
		{"no request id", all, nil, http.Header{}, false, Sampled, ""},
	} {
		tr := compile(t, c.cfg, c.rid, Deps{})
		if got := tr.Sample(c.hdr, c.internal); got != c.want {
			t.Errorf("%s: reason %d, want %d", c.name, got, c.want)
		}
		if c.wantID != "" && c.hdr.Get("X-Request-Id") != c.wantID {
			t.Errorf("%s: x-request-id %s, want %s", c.name, c.hdr.Get("X-Request-Id"), c.wantID)
		}
	}
}

// TestSampleStableOnRequestID: with use_request_id_for_trace_sampling (the default) the
// decision follows the request id's first 8 hex digits, so every proxy decides alike.
func TestSampleStableOnRequestID(t *testing.T) {
	tr := compile(t, &hcmv3.HttpConnectionManager_Tracing{RandomSampling: &typev3.Percent{Value: 10}}, nil, Deps{})
	// 0x000003e7 = 999 < 1000 (10% of 10,000): sampled; 0x000003e8 = 1000: not.
	in := http.Header{"X-Request-Id": {"000003e7-5b6a-4978-8a9b-0c1d2e3f4a5b"}}
	out := http.Header{"X-Request-Id": {"000003e8-5b6a-4978-8a9b-0c1d2e3f4a5b"}}
	for i := 0; i < 20; i++ {
		a, b := in.Clone(), out.Clone()
		if tr.Sample(a, false) != Sampled || tr.Sample(b, false) != NoTrace {
			t.Fatal("decision is not stable on the request id")
		}
	}
}

func TestStartOTel(t *testing.T) {
	tr := compile(t, &hcmv3.HttpConnectionManager_Tracing{Provider: otelProvider(t)}, nil, Deps{NodeID: "sidecar~1.2.3.4~a.ns~ns.svc.cluster.local"})
	now := time.Now()
	// A parent's sampled flag overrides the decision.
	sp := tr.Start(http.Header{"Traceparent": {"00-" + tid + "-" + sid + "-00"}, "Tracestate": {"k=v"}}, "op", Sampled, now)
	if sp.TraceID.String() != tid || sp.ParentID.String() != sid || sp.Sampled || sp.SpanID.String() == sid || sp.Kind != KindServer || sp.TraceState != "k=v" {
		t.Fatalf("child span: %+v", sp)
	}
	if v, _ := sp.Tag("node_id"); !strings.HasPrefix(v, "sidecar~") {
		t.Fatalf("node_id %q", v)
	}
	h := http.Header{}
	sp.Inject(h)
	if h.Get("Traceparent") != "00-"+tid+"-"+sp.SpanID.String()+"-00" || h.Get("Tracestate") != "k=v" {
		t.Fatalf("injected %v", h)
	}
	// A malformed traceparent starts a new trace with the decision.
	sp = tr.Start(http.Header{"Traceparent": {"00-zz"}, "Tracestate": {"k=v"}}, "op", Sampled, now)
	if sp.TraceID.String() == tid || !sp.ParentID.IsZero() || !sp.Sampled || sp.TraceState != "" || !sp.TraceID.High64() {
		t.Fatalf("new trace: %+v", sp)
	}
}

// TestFormatTags: custom tags of the value kind render the access log's command operators from
// the request's record, with a missing value as the empty string (and an empty result sets no
// tag); the other kinds are not rendered by FormatTags, nor value tags by CustomTags. A bad
// format is refused naming the tag's field.
func TestFormatTags(t *testing.T) {
	value := func(tag, v string) *tagv3.CustomTag {
		return &tagv3.CustomTag{Tag: tag, Type: &tagv3.CustomTag_Value{Value: v}}
	}
	tr := compile(t, &hcmv3.HttpConnectionManager_Tracing{Provider: otelProvider(t), CustomTags: []*tagv3.CustomTag{
		value("route", "%ROUTE_NAME%"),
		value("user", "user=%REQ(x-user)%;code=%RESPONSE_CODE%"),
		value("absent", "%REQ(x-none)%"),
		{Tag: "lit", Type: &tagv3.CustomTag_Literal_{Literal: &tagv3.CustomTag_Literal{Value: "v"}}},
	}}, nil, Deps{})
	if !tr.HasFormatTags() {
		t.Fatal("HasFormatTags is false with value tags")
	}
	sp := tr.Start(http.Header{}, "op", Sampled, time.Now())
	h := http.Header{"X-User": {"ana"}}
	sp.CustomTags(h, nil)
	if _, ok := sp.Tag("route"); ok {
		t.Error("CustomTags set a value tag")
	}
	sp.FormatTags(&accesslog.Entry{RouteName: "r1", ResponseCode: 200, RequestHeaders: attributes.HTTPHeaders(h)})
	for k, want := range map[string]string{"route": "r1", "user": "user=ana;code=200", "lit": "v"} {
		if v, _ := sp.Tag(k); v != want {
			t.Errorf("tag %s = %q, want %q", k, v, want)
		}
	}
	if v, ok := sp.Tag("absent"); ok {
		t.Errorf("a value tag whose value is missing is set: %q", v)
	}
	if compile(t, &hcmv3.HttpConnectionManager_Tracing{Provider: otelProvider(t)}, nil, Deps{}).HasFormatTags() {
		t.Error("HasFormatTags without value tags")
	}
	_, err := Compile("tracing", &hcmv3.HttpConnectionManager_Tracing{CustomTags: []*tagv3.CustomTag{value("x", "%NO_SUCH_OPERATOR%")}}, nil, Deps{})
	if err == nil || !strings.Contains(err.Error(), "tracing.custom_tags[0].value") {
		t.Errorf("a bad format: %v", err)
	}
}

func TestStartZipkin(t *testing.T) {
	ingress := compile(t, &hcmv3.HttpConnectionManager_Tracing{Provider: zipkinProvider(t, &tracev3.ZipkinConfig{
		CollectorCluster: "zipkin", CollectorEndpoint: "/api/v2/spans", CollectorEndpointVersion: tracev3.ZipkinConfig_HTTP_JSON})}, nil, Deps{})
	egress := compile(t, &hcmv3.HttpConnectionManager_Tracing{Provider: zipkinProvider(t, &tracev3.ZipkinConfig{
		CollectorCluster: "zipkin", CollectorEndpoint: "/api/v2/spans", TraceId_128Bit: true})}, nil, Deps{Egress: true})
	h := http.Header{"X-B3-Traceid": {tid}, "X-B3-Spanid": {sid}, "X-B3-Parentspanid": {sid2}, "X-B3-Sampled": {"1"}}
	sp := ingress.Start(h, "op", NoTrace, time.Now())
	if !sp.Shared || sp.SpanID.String() != sid || sp.ParentID.String() != sid2 || !sp.Sampled || sp.Kind != KindServer {
		t.Fatalf("shared server span: %+v", sp)
	}
	sp = egress.Start(h, "op", NoTrace, time.Now())
	if sp.Shared || sp.SpanID.String() == sid || sp.ParentID.String() != sid || sp.Kind != KindClient {
		t.Fatalf("client span: %+v", sp)
	}
	out := http.Header{}
	sp.Inject(out)
	if out.Get("X-B3-Traceid") != tid || out.Get("X-B3-Parentspanid") != sid || out.Get("X-B3-Spanid") != sp.SpanID.String() || out.Get("X-B3-Sampled") != "1" {
		t.Fatalf("injected %v", out)
	}
	// b3 single header in, multiple headers out.
	sp = egress.Start(http.Header{"B3": {tid + "-" + sid + "-0"}}, "op", Sampled, time.Now())
	if sp.TraceID.String() != tid || sp.Sampled {
		t.Fatalf("b3 single: %+v", sp)
	}
	// No context: a new 64-bit (trace_id_128bit false) or 128-bit trace.
	if sp := ingress.Start(http.Header{}, "op", Sampled, time.Now()); sp.TraceID.High64() || !sp.Sampled {
		t.Fatalf("new 64-bit trace: %+v", sp)
	}
	if sp := egress.Start(http.Header{}, "op", NoTrace, time.Now()); !sp.TraceID.High64() || sp.Sampled {
		t.Fatalf("new 128-bit trace: %+v", sp)
	}
}

func TestCompileRefuses(t *testing.T) {
	zip := func(c proto.Message) *hcmv3.HttpConnectionManager_Tracing {
		return &hcmv3.HttpConnectionManager_Tracing{Provider: zipkinProvider(t, c)}
	}
	other, _ := anypb.New(&gtracev3.DatadogConfig{CollectorCluster: "dd"})
	for name, c := range map[string]struct {
		cfg   proto.Message // go-control-plane's types where a field strait-proxy does not read is set
		field string
	}{
		"verbose":      {&hcmv3.HttpConnectionManager_Tracing{Verbose: true}, "tracing.verbose"},
		"other tracer": {&hcmv3.HttpConnectionManager_Tracing{Provider: &tracev3.Tracing_Http{Name: "envoy.tracers.datadog", ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: other}}}, "tracing.provider.typed_config"},
		"zipkin proto": {zip(&tracev3.ZipkinConfig{CollectorCluster: "z", CollectorEndpoint: "/a", CollectorEndpointVersion: tracev3.ZipkinConfig_HTTP_PROTO}), "collector_endpoint_version"},
		"zipkin split": {zip(&gtracev3.ZipkinConfig{CollectorCluster: "z", CollectorEndpoint: "/a", SplitSpansForRequest: true}), "split_spans_for_request"},
		"zipkin w3c":   {zip(&gtracev3.ZipkinConfig{CollectorCluster: "z", CollectorEndpoint: "/a", TraceContextOption: gtracev3.ZipkinConfig_USE_B3_WITH_W3C_PROPAGATION}), "trace_context_option"},
		"upstream op":  {&ghcmv3.HttpConnectionManager_Tracing{Operation: "x"}, "tracing.operation"},
		"zipkin no ep": {zip(&tracev3.ZipkinConfig{CollectorCluster: "z"}), "collector_endpoint"},
		"zipkin no cl": {zip(&tracev3.ZipkinConfig{CollectorEndpoint: "/a"}), "collector_cluster"},
	} {
		_, err := Compile("tracing", xdspb.MustFrom[*hcmv3.HttpConnectionManager_Tracing](c.cfg), nil, Deps{})
		if err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: got %v, want an error naming %s", name, err, c.field)
		}
		var ue *xdsfield.UnsupportedError
		_ = errors.As(err, &ue)
	}
}

// fakeSend records batches.
type fakeSend struct {
	mu      sync.Mutex
	batches [][]*Span
	block   chan struct{}
}

func (f *fakeSend) send(_ context.Context, spans []*Span) error {
	if f.block != nil {
		<-f.block
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.batches = append(f.batches, append([]*Span(nil), spans...))
	return nil
}

func (f *fakeSend) count() (batches, spans int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range f.batches {
		spans += len(b)
	}
	return len(f.batches), spans
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestExporterBatches(t *testing.T) {
	st := stats.NewStore()
	f := &fakeSend{}
	es := newExporterStats(st, "tracing.opentelemetry.")
	e := newExporter(f.send, es, Deps{Batch: 5, FlushInterval: 50 * time.Millisecond})
	for i := 0; i < 12; i++ {
		e.enqueue(&Span{})
	}
	// Two full batches go at once; the remaining two on the timer.
	waitFor(t, "12 spans", func() bool { _, n := f.count(); return n == 12 })
	if b, _ := f.count(); b != 3 {
		t.Fatalf("%d batches, want 3", b)
	}
	if es.spansSent.Value() != 12 {
		t.Fatalf("spans_sent %d", es.spansSent.Value())
	}
	// The goroutine stops once idle and a later span starts it again.
	waitFor(t, "the exporter to go idle", func() bool { return !e.running.Load() })
	e.enqueue(&Span{})
	waitFor(t, "13 spans", func() bool { _, n := f.count(); return n == 13 })
}

func TestExporterDropsWhenFull(t *testing.T) {
	st := stats.NewStore()
	f := &fakeSend{block: make(chan struct{})}
	es := newExporterStats(st, "tracing.zipkin.")
	e := newExporter(f.send, es, Deps{Batch: 1, FlushInterval: time.Hour, QueueSpans: 4})
	e.enqueue(&Span{})
	waitFor(t, "the first send to block", func() bool { return len(e.queue) == 0 })
	for i := 0; i < 10; i++ { // 4 fit in the queue, 6 are dropped; none waits
		e.enqueue(&Span{})
	}
	if got := es.spansDropped.Value(); got != 6 {
		t.Fatalf("spans_dropped %d, want 6", got)
	}
	close(f.block)
	waitFor(t, "5 spans", func() bool { _, n := f.count(); return n == 5 })
}
