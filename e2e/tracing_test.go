package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/testenv"
)

// tracingProviders is MeshConfig declaring the two collectors as Istio's extensionProviders.
const tracingProviders = `extensionProviders:
- name: otel
  opentelemetry: {service: otel-collector.e2e.svc.cluster.local, port: 4317}
- name: zipkin
  zipkin: {service: zipkin.e2e.svc.cluster.local, port: 9411}
`

// tracingTelemetry is the mesh-wide Telemetry selecting provider with a sampling percentage.
func tracingTelemetry(provider string, percent int) string {
	return fmt.Sprintf(`apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  tracing:
  - providers: [{name: %s}]
    randomSamplingPercentage: %d
`, provider, percent)
}

// collectorYAML registers a collector as a mesh-external service of namespace e2e.
func collectorYAML(host string, port int, protocol, addr string) string {
	h, p, _ := net.SplitHostPort(addr)
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: %[1]s, namespace: e2e}
spec:
  hosts: [%[1]s.e2e.svc.cluster.local]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{number: %[2]d, name: p, protocol: %[3]s}]
  endpoints: [{address: %[4]s, ports: {p: %[5]s}}]
`, strings.Split(host, ".")[0], port, protocol, h, p)
}

// TestTracingAcrossHops runs Istio's Telemetry API tracing through an ingress gateway and two
// sidecars over mutual TLS, with real collectors: an OTLP gRPC receiver and a Zipkin collector.
// One request's spans from every proxy arrive with correct parent/child links; a W3C-only client
// (OpenTelemetry provider) and a B3-only client (Zipkin provider) are both joined to their
// traces; at 10% random sampling, 1,000 requests give 10±3% sampled traces.
func TestTracingAcrossHops(t *testing.T) {
	skipShort(t)
	const clientIP, serverIP, edgeIP = "127.0.0.141", "127.0.0.142", "127.0.0.143"
	otel := testenv.StartOTLPCollector(t, "127.0.0.1")
	zipkin := testenv.StartZipkinCollector(t, "127.0.0.1")
	app := startBackend(t, "127.0.0.1", "reviews", backendOptions{})
	meshFile := filepath.Join(t.TempDir(), "meshconfig.yaml")
	writeFile(t, meshFile, tracingProviders)
	gwPort := testenv.FreePort(t)
	// The collectors are services of the client's Sidecar scope (egress listeners for their
	// ports): a proxy exports spans through its own cluster of the collector service.
	// The server imports the collectors only (on its own address: its default egress would bind
	// 127.0.0.1, which other tests' sidecars bind too).
	more, moreServer := "", ""
	for _, p := range []string{"{number: 4317, protocol: GRPC, name: otlp}", "{number: 9411, protocol: HTTP, name: zipkin}"} {
		more += explicitListener(p, "bind: "+clientIP, `hosts: ["e2e/*"]`)
		moreServer += explicitListener(p, "bind: "+serverIP, `hosts: ["e2e/*"]`)
	}
	pair := strings.Replace(mtlsYAML(clientIP, serverIP, app.Addr()), "    hosts: [\"e2e/*\"]\n", "    hosts: [\"e2e/*\"]\n"+more, 1)
	if !strings.Contains(pair, serverEgressNone) {
		t.Fatal("the sidecar pair's server egress changed; update this test")
	}
	pair = strings.Replace(pair, serverEgressNone, "  egress:\n"+moreServer, 1)
	cfg := pair + "---\n" + gatewayYAML(gwPort) + "---\n" +
		edgeVS("edge", "e2e", `["*"]`, "  http:\n  - route: [{destination: {host: reviews.e2e.svc.cluster.local}}]\n") + "---\n" +
		collectorYAML("otel-collector", 4317, "GRPC", otel.Addr) + "---\n" + collectorYAML("zipkin", 9411, "HTTP", zipkin.Addr)
	sd := testenv.StartStraitd(t, map[string]string{"mesh.yaml": cfg, "telemetry.yaml": tracingTelemetry("otel", 100)},
		"--mesh-config", meshFile)
	var proxies []*testenv.Proxy
	sidecar := func(name, ip, app string) {
		proxies = append(proxies, startSidecar(t, sd, name, ip, appLabels(app), app))
	}
	defer func() { // on failure, each proxy's tracing statistics
		if t.Failed() {
			for _, p := range proxies {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, body, _ := testenv.Get(ctx, "http://"+p.Admin+"/stats?filter=tracing", nil)
				cancel()
				t.Logf("%s tracing stats:\n%s", p.Admin, body)
				ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
				_, body, _ = testenv.Get(ctx, "http://"+p.Admin+"/clusters", nil)
				cancel()
				for _, l := range strings.Split(body, "\n") {
					if strings.Contains(l, "otel") && (strings.Contains(l, "cx_") || strings.Contains(l, "rq_") || strings.Contains(l, "health")) {
						t.Logf("  %s", l)
					}
				}
			}
		}
	}()
	sidecar("reviews-1", serverIP, "reviews")
	sidecar("client-1", clientIP, "client")
	testenv.StartProxy(t, sd.XDS, testenv.ProxyOptions{Mode: "router", Name: "edge-1", Namespace: "e2e", IP: edgeIP,
		Labels: map[string]string{"app": "edge"}, Extra: sd.Identity(t, "e2e", "edge")})

	viaSidecar := func(h http.Header) (int, error) {
		rep, err := do(h1Client, request{URL: "http://" + clientIP + ":9080/hello", Host: "reviews.e2e.svc.cluster.local:9080", Header: h})
		if err != nil {
			return 0, err
		}
		return rep.Code, nil
	}
	viaEdge := func(h http.Header) (int, error) {
		rep, err := do(h1Client, request{URL: fmt.Sprintf("http://%s:%d/hello", edgeIP, gwPort), Host: "reviews.example", Header: h})
		if err != nil {
			return 0, err
		}
		return rep.Code, nil
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		for _, f := range []func(http.Header) (int, error){viaSidecar, viaEdge} {
			if code, err := f(nil); err != nil || code != http.StatusOK {
				return fmt.Errorf("warm-up: %d %v", code, err)
			}
		}
		return nil
	})
	from := func(s testenv.Span) string { // which proxy sent a span: its node_id tag
		for _, ip := range []string{clientIP, serverIP, edgeIP} {
			if strings.Contains(s.Attrs["node_id"], "~"+ip+"~") {
				return ip
			}
		}
		return "?" + s.Attrs["node_id"]
	}
	byProxy := func(spans []testenv.Span) map[string][]testenv.Span {
		by := map[string][]testenv.Span{}
		for _, s := range spans {
			by[from(s)] = append(by[from(s)], s)
		}
		return by
	}
	// waitTrace waits for n spans of a trace in c and returns them by proxy address.
	waitTrace := func(c *testenv.Collector, trace string, n int) map[string][]testenv.Span {
		t.Helper()
		var spans []testenv.Span
		testenv.Eventually(t, 30*time.Second, func() error {
			if spans = c.Trace(trace); len(spans) < n {
				return fmt.Errorf("trace %s: %d spans, want %d: %+v", trace, len(spans), n, spans)
			}
			return nil
		})
		return byProxy(spans)
	}

	t.Run("W3C through both sidecars", func(t *testing.T) {
		const trace, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
		if code, err := viaSidecar(http.Header{"Traceparent": {"00-" + trace + "-" + parent + "-01"}}); err != nil || code != 200 {
			t.Fatalf("request: %d %v", code, err)
		}
		by := waitTrace(otel, trace, 2)
		c, s := by[clientIP], by[serverIP]
		if len(c) != 1 || len(s) != 1 {
			t.Fatalf("spans by proxy: %+v", by)
		}
		if c[0].Kind != "CLIENT" || c[0].Parent != parent {
			t.Errorf("client sidecar's span: kind %s parent %s, want CLIENT child of the caller's %s", c[0].Kind, c[0].Parent, parent)
		}
		if s[0].Kind != "SERVER" || s[0].Parent != c[0].ID {
			t.Errorf("server sidecar's span: kind %s parent %s, want SERVER child of the client sidecar's %s", s[0].Kind, s[0].Parent, c[0].ID)
		}
		if !strings.HasPrefix(s[0].Name, "reviews.e2e.svc.cluster.local:9080") {
			t.Errorf("server span name %q, want the route decorator reviews.e2e.svc.cluster.local:9080/*", s[0].Name)
		}
	})

	t.Run("W3C through the ingress", func(t *testing.T) {
		const trace, parent = "5bf92f3577b34da6a3ce929d0e0e4737", "10f067aa0ba902b8"
		if code, err := viaEdge(http.Header{"Traceparent": {"00-" + trace + "-" + parent + "-01"}}); err != nil || code != 200 {
			t.Fatalf("request: %d %v", code, err)
		}
		// The gateway's server span and its upstream span (Istio spawns one on gateways), and
		// the sidecar's.
		by := waitTrace(otel, trace, 3)
		e, s := by[edgeIP], by[serverIP]
		if len(e) == 0 || len(s) != 1 {
			t.Fatalf("spans by proxy: %+v", by)
		}
		ids := map[string]bool{}
		rooted := false
		for _, sp := range e {
			ids[sp.ID] = true
			rooted = rooted || sp.Parent == parent
		}
		if !rooted {
			t.Errorf("no ingress span is a child of the caller's %s: %+v", parent, e)
		}
		if !ids[s[0].Parent] {
			t.Errorf("server sidecar's span parent %s is not an ingress span: %+v", s[0].Parent, e)
		}
	})

	// The B3 client: switch the mesh to the Zipkin provider, as an operator would.
	writeFile(t, filepath.Join(sd.ConfigDir, "telemetry.yaml"), tracingTelemetry("zipkin", 100))
	t.Run("B3 through both sidecars", func(t *testing.T) {
		const parent = "20f067aa0ba902b9"
		// The sidecars take the Zipkin provider one after the other: each attempt is a trace of
		// its own, until one trace has reached the Zipkin collector from both sidecars.
		var traces []string
		var by map[string][]testenv.Span
		testenv.Eventually(t, 30*time.Second, func() error {
			trace := fmt.Sprintf("6bf92f3577b34da6a3ce929d%08x", len(traces)+1)
			traces = append(traces, trace)
			if code, err := viaSidecar(http.Header{"X-B3-Traceid": {trace}, "X-B3-Spanid": {parent}, "X-B3-Sampled": {"1"}}); err != nil || code != 200 {
				return fmt.Errorf("request: %d %v", code, err)
			}
			time.Sleep(time.Second)
			for _, tr := range traces {
				if by = byProxy(zipkin.Trace(tr)); len(by[clientIP]) > 0 && len(by[serverIP]) > 0 {
					return nil
				}
			}
			return fmt.Errorf("no trace with both sidecars' Zipkin spans yet: %d spans in all", len(zipkin.Spans()))
		})
		c, s := by[clientIP], by[serverIP]
		if len(c) != 1 || len(s) != 1 {
			t.Fatalf("spans by proxy: %+v", by)
		}
		if c[0].Kind != "CLIENT" || c[0].Parent != parent {
			t.Errorf("client sidecar's span: kind %s parent %s, want CLIENT child of the caller's %s", c[0].Kind, c[0].Parent, parent)
		}
		if s[0].Kind != "SERVER" || s[0].Parent != c[0].ID {
			t.Errorf("server sidecar's span: kind %s parent %s, want SERVER child of %s", s[0].Kind, s[0].Parent, c[0].ID)
		}
	})

	// 10% random sampling: the client sidecar decides for each new request (no trace headers).
	writeFile(t, filepath.Join(sd.ConfigDir, "telemetry.yaml"), tracingTelemetry("otel", 10))
	t.Run("10% sampling", func(t *testing.T) {
		// Wait until the new sampling applies: fewer than all of 40 probes sampled.
		testenv.Eventually(t, 30*time.Second, func() error {
			before := len(otel.Spans())
			for i := 0; i < 40; i++ {
				if _, err := viaSidecar(nil); err != nil {
					return err
				}
			}
			time.Sleep(6 * time.Second) // the exporters' batch interval is 5 s
			if got := len(otel.Spans()) - before; got >= 80 {
				return fmt.Errorf("%d spans for 40 requests: still sampling everything", got)
			}
			return nil
		})
		time.Sleep(6 * time.Second)
		before := map[string]bool{}
		for _, s := range otel.Spans() {
			before[s.Trace] = true
		}
		const n = 1000
		deadline := time.Now().Add(90 * time.Second)
		for i := 0; i < n; i++ {
			if time.Now().After(deadline) {
				t.Fatalf("sent only %d of %d requests in time", i, n)
			}
			if code, err := viaSidecar(nil); err != nil || code != 200 {
				t.Fatalf("request %d: %d %v", i, code, err)
			}
		}
		var sampled map[string]bool
		prev := -1
		testenv.Eventually(t, 30*time.Second, func() error { // until the exporters have flushed
			sampled = map[string]bool{}
			for _, s := range otel.Spans() {
				if !before[s.Trace] && from(s) == clientIP && s.Kind == "CLIENT" {
					sampled[s.Trace] = true
				}
			}
			if len(sampled) != prev {
				prev = len(sampled)
				time.Sleep(6 * time.Second)
				return fmt.Errorf("still arriving: %d", prev)
			}
			return nil
		})
		pct := float64(len(sampled)) * 100 / n
		t.Logf("10%% sampling: %d of %d requests traced (%.1f%%)", len(sampled), n, pct)
		if pct < 7 || pct > 13 {
			t.Errorf("%.1f%% of requests sampled, want 10±3%%", pct)
		}
	})
	if t.Failed() {
		if b, err := os.ReadFile(filepath.Join(sd.ConfigDir, "telemetry.yaml")); err == nil {
			t.Logf("telemetry.yaml:\n%s", b)
		}
	}
}
