package l7

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/stats"
	"github.com/strait-mesh/strait/proxy/tracing"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
	tracev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/trace/v3"
	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
	tagv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/tracing/v3"
	typev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/v3"
)

// waitSpan returns the span of trace (hex) that c received, waiting for it.
func waitSpan(t *testing.T, c *testenv.Collector, trace string) testenv.Span {
	t.Helper()
	var found []testenv.Span
	waitFor(t, "span of trace "+trace, func() bool {
		found = c.Trace(trace)
		return len(found) > 0
	})
	return found[0]
}

// headerRecorder is an upstream that remembers the propagation headers it received.
type headerRecorder struct {
	mu  sync.Mutex
	got []http.Header
}

func (u *headerRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.got = append(u.got, r.Header.Clone())
	u.mu.Unlock()
	io.WriteString(w, "ok")
}

func (u *headerRecorder) last() http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.got[len(u.got)-1]
}

func anyOf(t *testing.T, name string, cfg interface {
	ProtoMessage()
}) *tracev3.Tracing_Http {
	t.Helper()
	var a *anypb.Any
	var err error
	switch c := cfg.(type) {
	case *tracev3.OpenTelemetryConfig:
		a, err = anypb.New(c)
	case *tracev3.ZipkinConfig:
		a, err = anypb.New(c)
	}
	if err != nil {
		t.Fatal(err)
	}
	return &tracev3.Tracing_Http{Name: name, ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: a}}
}

// tracedProxy serves an HCM with tracing cfg routing to cluster "app" under stat prefix
// prefix (Istio's inbound_/outbound_ names set the direction).
func tracedProxy(t *testing.T, env *testEnv, prefix string, cfg *hcmv3.HttpConnectionManager_Tracing, batch int) (string, *stats.Store) {
	t.Helper()
	rt := fwdRoute("r", pfx("/"), toCluster("app"))
	rt.Decorator = &routev3.Decorator{Operation: "app.ns.svc.cluster.local:80/*"}
	hcm := inlineHCM(oneVhost(rt))
	hcm.StatPrefix = prefix
	hcm.Tracing = cfg
	st := stats.NewStore()
	h, err := New(hcm, env, Options{Stats: st, Tracing: TracingOptions{NodeID: "sidecar~127.0.0.1~app-1.ns~ns.svc.cluster.local",
		LocalCluster: "app.ns", LocalAddress: "127.0.0.1", Batch: batch, FlushInterval: 20 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	return serveConns(t, h, loopbackInfo), st
}

// otelEnv is a testEnv with the clusters app (serving app) and otel (an OTLP gRPC collector,
// returned).
func otelEnv(t *testing.T, app http.Handler) (*testEnv, *testenv.Collector) {
	recv := testenv.StartOTLPCollector(t, "127.0.0.1")
	return &testEnv{clusters: map[string]Upstream{
		"app":  newTestUpstream(startUpstream(t, app, false), false),
		"otel": newTestUpstream(recv.Addr, true),
	}}, recv
}

func otelGRPC(t *testing.T, cluster string) *tracev3.Tracing_Http {
	return anyOf(t, tracing.OpenTelemetryName, &tracev3.OpenTelemetryConfig{ServiceName: "app.ns",
		GrpcService: &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: cluster}}}})
}

func TestTracingOpenTelemetryW3C(t *testing.T) {
	app := &headerRecorder{}
	env, recv := otelEnv(t, app)
	addr, _ := tracedProxy(t, env, "inbound_0.0.0.0_80", &hcmv3.HttpConnectionManager_Tracing{
		Provider: otelGRPC(t, "otel"), RandomSampling: &typev3.Percent{Value: 100},
		CustomTags: []*tagv3.CustomTag{{Tag: "req", Type: &tagv3.CustomTag_Value{Value: "%REQ(:METHOD)% %REQ(x-user)% %RESPONSE_CODE%"}}}}, 1)
	c := h1Client()

	// A W3C client is joined to its trace.
	const trace, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	req, _ := http.NewRequest("GET", "http://"+addr+"/items?id=1", nil)
	req.Header.Set("traceparent", "00-"+trace+"-"+parent+"-01")
	req.Header.Set("tracestate", "vendor=x")
	req.Header.Set("x-user", "ana")
	resp, _ := roundTrip(t, c, req)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if got := resp.Header.Get("X-Envoy-Decorator-Operation"); got != "app.ns.svc.cluster.local:80/*" {
		t.Errorf("inbound response decorator header %q", got)
	}
	sp := waitSpan(t, recv, trace)
	if sp.Parent != parent || sp.Kind != "SERVER" || sp.Name != "app.ns.svc.cluster.local:80/*" || sp.TraceState != "vendor=x" {
		t.Errorf("span: parent %s kind %s name %q state %q", sp.Parent, sp.Kind, sp.Name, sp.TraceState)
	}
	a := sp.Attrs
	for k, want := range map[string]string{"http.method": "GET", "http.status_code": "200", "component": "proxy",
		"upstream_cluster": "app", "response_flags": "-", "http.protocol": "HTTP/1.1", "response_size": "2",
		"node_id": "sidecar~127.0.0.1~app-1.ns~ns.svc.cluster.local", "http.url": "http://" + addr + "/items?id=1",
		"user_agent": "Go-http-client/1.1", "downstream_cluster": "-", "req": "GET ana 200"} {
		if a[k] != want {
			t.Errorf("attribute %s = %q, want %q", k, a[k], want)
		}
	}
	if a["guid:x-request-id"] == "" || !strings.HasPrefix(a["peer.address"], "127.0.0.1:") {
		t.Errorf("attributes %v", a)
	}
	if sp.Start.UnixNano() == 0 || sp.End.Before(sp.Start) {
		t.Errorf("times %v..%v", sp.Start, sp.End)
	}
	up := app.last()
	if want := "00-" + trace + "-" + sp.ID + "-01"; up.Get("Traceparent") != want {
		t.Errorf("upstream traceparent %q, want %q", up.Get("Traceparent"), want)
	}
	if up.Get("Tracestate") != "vendor=x" {
		t.Errorf("upstream tracestate %q", up.Get("Tracestate"))
	}
	if sp.Service != "app.ns" {
		t.Errorf("service.name %q", sp.Service)
	}

	// Without headers (and with a malformed traceparent) a new trace starts: the upstream gets
	// its context and the span is a root.
	for _, tp := range []string{"", "00-zzzz-01"} {
		req, _ = http.NewRequest("GET", "http://"+addr+"/", nil)
		if tp != "" {
			req.Header.Set("traceparent", tp)
		}
		if resp, _ := roundTrip(t, c, req); resp.StatusCode != 200 {
			t.Fatalf("traceparent %q: status %d", tp, resp.StatusCode)
		}
		sc, ok := tracing.ParseTraceparent(app.last().Get("Traceparent"))
		if !ok || !sc.Sampled {
			t.Fatalf("traceparent %q: upstream got %q", tp, app.last().Get("Traceparent"))
		}
		root := waitSpan(t, recv, sc.TraceID.String())
		if root.Parent != "" || root.ID != sc.SpanID.String() {
			t.Errorf("traceparent %q: root span parent %s id %s", tp, root.Parent, root.ID)
		}
	}
}

// TestTracingSpawnUpstreamSpan: with spawn_upstream_span the connection manager's span is a
// SERVER span even on egress and the upstream sees a CLIENT child span's context.
func TestTracingSpawnUpstreamSpan(t *testing.T) {
	app := &headerRecorder{}
	env, recv := otelEnv(t, app)
	addr, _ := tracedProxy(t, env, "outbound_0.0.0.0_80", &hcmv3.HttpConnectionManager_Tracing{
		Provider: otelGRPC(t, "otel"), SpawnUpstreamSpan: wrapperspb.Bool(true)}, 1)
	if resp, _ := roundTrip(t, h1Client(), mustGet(t, "http://"+addr+"/")); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	sc, _ := tracing.ParseTraceparent(app.last().Get("Traceparent"))
	waitFor(t, "2 spans", func() bool { return len(recv.Spans()) == 2 })
	var server, client *testenv.Span
	spans := recv.Spans()
	for i := range spans {
		switch spans[i].Kind {
		case "SERVER":
			server = &spans[i]
		case "CLIENT":
			client = &spans[i]
		}
	}
	if server == nil || client == nil || client.ID != sc.SpanID.String() || client.Parent != server.ID || client.Name != "router app egress" {
		t.Fatalf("server %v client %v, upstream context %+v", server, client, sc)
	}
	if app.last().Get("X-Envoy-Decorator-Operation") != "app.ns.svc.cluster.local:80/*" {
		t.Errorf("egress request lacks the decorator header: %v", app.last())
	}
}

func mustGet(t *testing.T, url string) *http.Request {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestTracingZipkinB3(t *testing.T) {
	col := testenv.StartZipkinCollector(t, "127.0.0.1")
	app := &headerRecorder{}
	env := &testEnv{clusters: map[string]Upstream{
		"app":    newTestUpstream(startUpstream(t, app, false), false),
		"zipkin": newTestUpstream(col.Addr, false),
	}}
	addr, st := tracedProxy(t, env, "outbound_0.0.0.0_80", &hcmv3.HttpConnectionManager_Tracing{
		Provider: anyOf(t, tracing.ZipkinName, &tracev3.ZipkinConfig{CollectorCluster: "zipkin", CollectorEndpoint: "/api/v2/spans",
			CollectorEndpointVersion: tracev3.ZipkinConfig_HTTP_JSON, TraceId_128Bit: true}),
	}, 1)
	c := h1Client()
	const trace, parent, grand = "463ac35c9f6413ad48485a3953bb6124", "a2fb4a1d1a96d312", "0020000000000001"

	// B3 multiple headers.
	req := mustGet(t, "http://"+addr+"/")
	req.Header.Set("X-B3-TraceId", trace)
	req.Header.Set("X-B3-SpanId", parent)
	req.Header.Set("X-B3-ParentSpanId", grand)
	req.Header.Set("X-B3-Sampled", "1")
	if resp, _ := roundTrip(t, c, req); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	sp := waitSpan(t, col, trace)
	if sp.Parent != parent || sp.Kind != "CLIENT" || sp.Shared || sp.Service != "app.ns" ||
		sp.Attrs["http.status_code"] != "200" || sp.Name != "app.ns.svc.cluster.local:80/*" {
		t.Errorf("zipkin span %+v", sp)
	}
	up := app.last()
	if up.Get("X-B3-Traceid") != trace || up.Get("X-B3-Spanid") != sp.ID || up.Get("X-B3-Parentspanid") != parent || up.Get("X-B3-Sampled") != "1" {
		t.Errorf("upstream B3 headers %v", up)
	}

	// B3 single header in: joined, and the upstream gets the multiple headers (as Envoy).
	const trace2 = "80f198ee56343ba864fe8b2a57d3eff7"
	req = mustGet(t, "http://"+addr+"/")
	req.Header.Set("b3", trace2+"-"+parent+"-1")
	roundTrip(t, c, req)
	sp = waitSpan(t, col, trace2)
	if sp.Parent != parent || app.last().Get("X-B3-Traceid") != trace2 || app.last().Get("X-B3-Spanid") != sp.ID {
		t.Errorf("b3 single: span %+v, upstream %v", sp, app.last())
	}

	// A malformed B3 header starts a new trace; the request is served.
	req = mustGet(t, "http://"+addr+"/")
	req.Header.Set("X-B3-TraceId", "not-hex")
	req.Header.Set("X-B3-SpanId", parent)
	if resp, _ := roundTrip(t, c, req); resp.StatusCode != 200 {
		t.Fatalf("malformed: status %d", resp.StatusCode)
	}
	if tr := app.last().Get("X-B3-Traceid"); len(tr) != 32 || tr == trace || app.last().Get("X-B3-Parentspanid") != "" {
		t.Errorf("malformed: upstream %v", app.last())
	}
	if reqs := col.Requests(); len(reqs) == 0 || reqs[0] != "POST zipkin/api/v2/spans" {
		t.Errorf("collector requests %v", reqs)
	}
	waitFor(t, "reports_sent", func() bool { return st.Counter("tracing.zipkin.reports_sent", "").Value() >= 1 })
}

// TestTracingRandomSampling: at random_sampling 10%, 1,000 requests without trace context are
// sampled 10±3% of the time (the upstream's traceparent says which, and the collector gets
// exactly those spans).
func TestTracingRandomSampling(t *testing.T) {
	env, recv := otelEnv(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.Header.Get("Traceparent")) }))
	addr, st := tracedProxy(t, env, "inbound_0.0.0.0_80", &hcmv3.HttpConnectionManager_Tracing{
		Provider: otelGRPC(t, "otel"), RandomSampling: &typev3.Percent{Value: 10}}, 50)
	c := h1Client()
	deadline := time.Now().Add(60 * time.Second)
	sampled := 0
	const n = 1000
	for i := 0; i < n && time.Now().Before(deadline); i++ {
		resp, body := roundTrip(t, c, mustGet(t, "http://"+addr+"/"))
		sc, ok := tracing.ParseTraceparent(body)
		if resp.StatusCode != 200 || !ok {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
		if sc.Sampled {
			sampled++
		}
	}
	// Binomial(1000, 0.1): mean 100, standard deviation 9.5; ±5 deviations fails a fair
	// sampler about once in 3 million runs (±3 did once in a CI run: 69).
	if sampled < 52 || sampled > 148 {
		t.Fatalf("%d of %d sampled, want 10%% (52..148)", sampled, n)
	}
	waitFor(t, "the sampled spans", func() bool { return len(recv.Spans()) == sampled })
	if got := st.Counter("http.inbound_0.0.0.0_80.tracing.random_sampling", "").Value(); got != uint64(sampled) {
		t.Errorf("tracing.random_sampling %d, want %d", got, sampled)
	}
}
