package admin

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/appprobe"
	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/stats"
)

// TestStatusListeners: Istio's 15020 merges the proxy's Prometheus statistics with the
// application's and answers /healthz/ready with the proxy's readiness; 15090 has the proxy's
// statistics only.
func TestStatusListeners(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "# TYPE app_orders_total counter\napp_orders_total 42")
	}))
	defer app.Close()
	st := stats.NewStore()
	st.Counter("cluster.x.upstream_rq_total", "envoy_cluster_upstream_rq_total").Add(3)
	src := &fakeSource{}
	status, prom := "127.0.0.1:"+strconv.Itoa(testenv.FreePort(t)), "127.0.0.1:"+strconv.Itoa(testenv.FreePort(t))
	health := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	ss, err := ListenStatus(StatusOptions{Address: status, PrometheusAddress: prom, HealthAddress: health, AppMetricsURL: app.URL,
		Source: src, Stats: st, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer ss.Close()
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, addr := range []string{status, health} {
		if code, _ := get("http://" + addr + "/healthz/ready"); code != http.StatusServiceUnavailable {
			t.Errorf("%s/healthz/ready before the proxy is ready: %d, want 503", addr, code)
		}
	}
	src.ready.Store(true)
	for _, addr := range []string{status, health} {
		if code, body := get("http://" + addr + "/healthz/ready"); code != http.StatusOK || !strings.Contains(body, "LIVE") {
			t.Errorf("%s/healthz/ready when ready: %d %q", addr, code, body)
		}
	}
	if code, _ := get("http://" + health + "/stats/prometheus"); code != http.StatusNotFound {
		t.Errorf("15021 serves metrics: %d", code)
	}
	_, merged := get("http://" + status + "/stats/prometheus")
	if !strings.Contains(merged, "envoy_cluster_upstream_rq_total") || !strings.HasSuffix(merged, "app_orders_total 42\n") {
		t.Errorf("merged metrics lack the proxy's or the application's:\n%s", merged)
	}
	_, own := get("http://" + prom + "/stats/prometheus")
	if !strings.Contains(own, "envoy_cluster_upstream_rq_total") || strings.Contains(own, "app_orders_total") {
		t.Errorf("15090 metrics:\n%s", own)
	}
	if _, err := ListenStatus(StatusOptions{Address: status, Source: src}); err == nil {
		t.Error("a second listener on the same address started")
	}
}

// TestStatusAppHealth: a probe the injector rewrote to /app-health/... on 15020 runs the
// application's original probe and answers with its result.
func TestStatusAppHealth(t *testing.T) {
	var failing atomic.Bool
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if failing.Load() {
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	defer app.Close()
	_, p, _ := strings.Cut(app.Listener.Addr().String(), "127.0.0.1:")
	probers, err := appprobe.Parse(`{"/app-health/web/readyz":{"httpGet":{"path":"/ready","port":` + p + `}}}`)
	if err != nil {
		t.Fatal(err)
	}
	status := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	ss, err := ListenStatus(StatusOptions{Address: status, AppProbers: probers, PodIP: "127.0.0.1", Source: &fakeSource{},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer ss.Close()
	code := func(path string) int {
		t.Helper()
		resp, err := http.Get("http://" + status + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := code("/app-health/web/readyz"); c != http.StatusOK {
		t.Errorf("healthy application: %d", c)
	}
	failing.Store(true)
	if c := code("/app-health/web/readyz"); c != http.StatusServiceUnavailable {
		t.Errorf("failing application: %d, want 503", c)
	}
	if c := code("/app-health/web/livez"); c != http.StatusNotFound {
		t.Errorf("a path with no probe: %d, want 404", c)
	}
}

// TestWaitReady: `strait-proxy wait` returns once the health endpoint answers 200, and fails
// with the last answer when the deadline passes first.
func TestWaitReady(t *testing.T) {
	var ready atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := WaitReady(ctx, srv.URL, 5*time.Millisecond); err == nil || !strings.Contains(err.Error(), "not ready in time") {
		t.Errorf("never ready: %v", err)
	}
	ready.Store(true)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	if err := WaitReady(ctx2, srv.URL, 5*time.Millisecond); err != nil {
		t.Errorf("ready: %v", err)
	}
}
