package l7

import (
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/strait-mesh/strait/proxy/stats"
	"github.com/strait-mesh/strait/proxy/telemetry"
)

var telemetryLocal = telemetry.Workload{Name: "web-v1", Namespace: "shop", App: "web", Version: "v1",
	CanonicalService: "web", CanonicalRevision: "v1", Cluster: "Kubernetes"}

// startTelemetryProxy serves hcm with Istio metrics recorded into the returned store; conn
// gives each connection its ConnInfo.
func startTelemetryProxy(t *testing.T, prefix string, env Env, conn func(net.Conn) ConnInfo) (string, *stats.Store) {
	t.Helper()
	st := stats.NewStore()
	rec := telemetry.New(telemetry.Options{Local: telemetryLocal, Stats: st})
	hcm := inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("outbound|80||api.shop.svc.cluster.local"))))
	hcm.StatPrefix = prefix
	h, err := New(hcm, env, Options{Stats: st, Telemetry: rec})
	if err != nil {
		t.Fatal(err)
	}
	return serveConns(t, h, conn), st
}

func prometheusText(t *testing.T, st *stats.Store) string {
	t.Helper()
	var b strings.Builder
	if err := st.WritePrometheus(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// statusUpstream answers /<code> with that status and a body of 10 bytes.
func statusUpstream(t *testing.T) string {
	return startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/"))
		if err != nil {
			code = 200
		}
		w.WriteHeader(code)
		io.WriteString(w, "0123456789")
	}), false)
}

func TestTelemetrySourceReporter(t *testing.T) {
	up := statusUpstream(t)
	env := &testEnv{clusters: map[string]Upstream{"outbound|80||api.shop.svc.cluster.local": newTestUpstream(up, false)}}
	addr, st := startTelemetryProxy(t, "outbound_0.0.0.0_80", env, loopbackInfo)
	c := h1Client()
	sent := map[int]int{200: 3, 404: 2, 503: 1}
	for code, n := range sent {
		for i := 0; i < n; i++ {
			req, _ := http.NewRequest("POST", "http://"+addr+"/"+strconv.Itoa(code), strings.NewReader("hello"))
			req.Host = "api.shop:80"
			resp, _ := roundTrip(t, c, req)
			if resp.StatusCode != code {
				t.Fatalf("got %d, want %d", resp.StatusCode, code)
			}
		}
	}
	series := func(code int) string {
		return `reporter="source",source_workload="web-v1",source_canonical_service="web",source_canonical_revision="v1",` +
			`source_workload_namespace="shop",source_principal="unknown",source_app="web",source_version="v1",source_cluster="Kubernetes",` +
			`destination_workload="unknown",destination_workload_namespace="unknown",destination_principal="unknown",` +
			`destination_app="unknown",destination_version="unknown",destination_service="api.shop.svc.cluster.local",` +
			`destination_canonical_service="unknown",destination_canonical_revision="latest",destination_service_name="api",` +
			`destination_service_namespace="shop",destination_cluster="unknown",request_protocol="http",response_code="` +
			strconv.Itoa(code) + `",grpc_response_status="",response_flags="-",connection_security_policy="unknown"`
	}
	// finish runs after the response went out: wait until every request is counted.
	waitFor(t, "6 requests counted", func() bool {
		out := prometheusText(t, st)
		for code, n := range sent {
			if !strings.Contains(out, "istio_requests_total{"+series(code)+"} "+strconv.Itoa(n)+"\n") {
				return false
			}
		}
		return true
	})
	out := prometheusText(t, st)
	if n := strings.Count(out, "\nistio_requests_total{"); n != 3 {
		t.Errorf("%d istio_requests_total series, want 3:\n%s", n, out)
	}
	for _, line := range []string{
		"istio_request_bytes_bucket{" + series(200) + `,le="1"} 0`,
		"istio_request_bytes_bucket{" + series(200) + `,le="5"} 3`,
		"istio_request_bytes_sum{" + series(200) + "} 15",
		"istio_response_bytes_bucket{" + series(404) + `,le="10"} 2`,
		"istio_response_bytes_count{" + series(404) + "} 2",
		"istio_request_duration_milliseconds_count{" + series(503) + "} 1",
		`istio_request_duration_milliseconds_bucket{` + series(503) + `,le="+Inf"} 1`,
	} {
		if !strings.Contains(out, line+"\n") {
			t.Errorf("output lacks %s", line)
		}
	}
	if t.Failed() {
		t.Log(out)
	}
}

func TestTelemetryDestinationReporter(t *testing.T) {
	up := statusUpstream(t)
	env := &testEnv{clusters: map[string]Upstream{"outbound|80||api.shop.svc.cluster.local": newTestUpstream(up, false)}}
	id := func(s string) *x509.Certificate {
		u, _ := url.Parse(s)
		return &x509.Certificate{URIs: []*url.URL{u}}
	}
	peer, me := id("spiffe://cluster.local/ns/front/sa/gateway"), id("spiffe://cluster.local/ns/shop/sa/web")
	// The listener's TLS handshake is represented by the ConnInfo it hands over.
	mtls := func(c net.Conn) ConnInfo {
		ci := loopbackInfo(c)
		ci.TLS, ci.PeerCertificates, ci.LocalCertificate = true, []*x509.Certificate{peer}, me
		return ci
	}
	addr, st := startTelemetryProxy(t, "inbound_0.0.0.0_8080", env, mtls)
	plainAddr, plainSt := startTelemetryProxy(t, "inbound_0.0.0.0_8080", env, loopbackInfo)
	c := h1Client()
	for i := 0; i < 2; i++ {
		req, _ := http.NewRequest("GET", "http://"+addr+"/200", nil)
		req.Host = "web.shop.svc.cluster.local:8080"
		roundTrip(t, c, req)
	}
	req, _ := http.NewRequest("GET", "http://"+plainAddr+"/500", nil)
	req.Host = "web.shop.svc.cluster.local:8080"
	roundTrip(t, c, req)

	want := `istio_requests_total{reporter="destination",source_workload="unknown",source_canonical_service="unknown",` +
		`source_canonical_revision="latest",source_workload_namespace="front",source_principal="spiffe://cluster.local/ns/front/sa/gateway",` +
		`source_app="unknown",source_version="unknown",source_cluster="unknown",destination_workload="web-v1",` +
		`destination_workload_namespace="shop",destination_principal="spiffe://cluster.local/ns/shop/sa/web",destination_app="web",` +
		`destination_version="v1",destination_service="web.shop.svc.cluster.local",destination_canonical_service="web",` +
		`destination_canonical_revision="v1",destination_service_name="web",destination_service_namespace="shop",` +
		`destination_cluster="Kubernetes",request_protocol="http",response_code="200",grpc_response_status="",response_flags="-",` +
		`connection_security_policy="mutual_tls"} 2` + "\n"
	waitFor(t, "mTLS requests counted", func() bool { return strings.Contains(prometheusText(t, st), want) })
	plain := `source_workload_namespace="unknown",source_principal="unknown",`
	waitFor(t, "plaintext request counted", func() bool {
		out := prometheusText(t, plainSt)
		return strings.Contains(out, plain) && strings.Contains(out, `response_code="500",grpc_response_status="",response_flags="-",connection_security_policy="none"} 1`+"\n")
	})
}

func TestTelemetryNoRouteFlag(t *testing.T) {
	st := stats.NewStore()
	rec := telemetry.New(telemetry.Options{Local: telemetryLocal, Stats: st})
	hcm := inlineHCM(oneVhost(fwdRoute("r", pfx("/only"), toCluster("c"))))
	hcm.StatPrefix = "outbound_0.0.0.0_80"
	h, err := New(hcm, &testEnv{}, Options{Stats: st, Telemetry: rec})
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	h.serveHTTP(w, httptest.NewRequest("GET", "http://a.example/x", nil))
	if w.Code != 404 {
		t.Fatalf("status %d", w.Code)
	}
	out := prometheusText(t, st)
	// No cluster: the passthrough form, named by the (empty) cluster, the authority as service.
	if !strings.Contains(out, `destination_service="a.example",`) ||
		!strings.Contains(out, `response_code="404",grpc_response_status="",response_flags="NR",connection_security_policy="unknown"} 1`+"\n") {
		t.Errorf("no NR series:\n%s", out)
	}
}

// BenchmarkHandlerTelemetry is BenchmarkHandler with Istio's standard metrics off and on
// (one known label combination: the steady state).
func BenchmarkHandlerTelemetry(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "off"
		if on {
			name = "on"
		}
		b.Run(name, func(b *testing.B) {
			env := &testEnv{clusters: map[string]Upstream{"c": cannedUpstream{}}}
			st := stats.NewStore()
			opts := Options{Stats: st}
			if on {
				opts.Telemetry = telemetry.New(telemetry.Options{Stats: st})
			}
			hcm := inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("c"))))
			hcm.StatPrefix = "outbound_0.0.0.0_80"
			h, err := New(hcm, env, opts)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				r := httptest.NewRequest("GET", "http://svc.test/api/items?id=1", nil)
				w := httptest.NewRecorder()
				h.serveHTTP(w, r)
				if w.Code != 200 {
					b.Fatal(w.Code)
				}
			}
		})
	}
}
