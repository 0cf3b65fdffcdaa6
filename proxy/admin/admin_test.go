package admin

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/strait-mesh/strait/proxy/stats"
)

// fakeSource is a hand-written Source.
type fakeSource struct {
	ready           atomic.Bool
	drained, quit   atomic.Int32
	inboundOnlySeen atomic.Bool
}

func (f *fakeSource) ConfigDump(resource string) (*adminv3.ConfigDump, error) {
	a, _ := anypb.New(&adminv3.ClustersConfigDump{VersionInfo: "v7"})
	return &adminv3.ConfigDump{Configs: []*anypb.Any{a}}, nil
}

func (f *fakeSource) Ready() (bool, string) {
	if f.ready.Load() {
		return true, "LIVE"
	}
	return false, "PRE_INITIALIZING"
}

func (f *fakeSource) Clusters() *adminv3.Clusters {
	return &adminv3.Clusters{ClusterStatuses: []*adminv3.ClusterStatus{{
		Name: "outbound|80||a.default.svc.cluster.local",
		HostStatuses: []*adminv3.HostStatus{{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: "10.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 8080}}}},
			Weight: 3,
		}, {
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: "10.0.0.2", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 8080}}}},
			HealthStatus: &adminv3.HostHealthStatus{EdsHealthStatus: corev3.HealthStatus_HEALTHY, FailedOutlierCheck: true},
			Weight:       1,
		}},
	}}}
}

func (f *fakeSource) DrainListeners(inboundOnly bool) {
	f.drained.Add(1)
	f.inboundOnlySeen.Store(inboundOnly)
}

func (f *fakeSource) Quit() { f.quit.Add(1) }

func do(t *testing.T, h http.Handler, method, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	b, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(b)
}

func TestAdminEndpoints(t *testing.T) {
	src := &fakeSource{}
	st := stats.NewStore()
	st.Counter("cluster.a.upstream_rq_total", "envoy_cluster_upstream_rq_total", stats.Tag{Name: "envoy_cluster_name", Value: "a"}).Add(4)
	st.Counter("http.in.downstream_rq_2xx", "envoy_http_downstream_rq_xx").Add(2)
	level := new(slog.LevelVar)
	s, err := Listen(Options{Address: "127.0.0.1:0", Source: src, Stats: st, Level: level})
	if err != nil {
		t.Fatal(err)
	}
	defer s.ln.Close()
	h := s.Handler()

	if code, body := do(t, h, "GET", "/ready"); code != 503 || strings.TrimSpace(body) != "PRE_INITIALIZING" {
		t.Fatalf("/ready = %d %q", code, body)
	}
	src.ready.Store(true)
	if code, body := do(t, h, "GET", "/ready"); code != 200 || strings.TrimSpace(body) != "LIVE" {
		t.Fatalf("/ready = %d %q", code, body)
	}
	if code, body := do(t, h, "GET", "/config_dump"); code != 200 || !strings.Contains(strings.ReplaceAll(body, " ", ""), `"@type":"type.googleapis.com/envoy.admin.v3.ClustersConfigDump"`) || !strings.Contains(body, "version_info") {
		t.Fatalf("/config_dump = %d %s", code, body)
	}
	if code, body := do(t, h, "GET", "/stats?filter=cluster."); code != 200 || body != "cluster.a.upstream_rq_total: 4\n" {
		t.Fatalf("/stats = %d %q", code, body)
	}
	st.Counter("cluster.b.upstream_rq_total", "envoy_cluster_upstream_rq_total", stats.Tag{Name: "envoy_cluster_name", Value: "b"})
	if _, body := do(t, h, "GET", "/stats?usedonly&filter=cluster."); body != "cluster.a.upstream_rq_total: 4\n" {
		t.Fatalf("/stats?usedonly = %q", body)
	}
	if _, body := do(t, h, "GET", "/stats/prometheus"); !strings.Contains(body, `envoy_cluster_upstream_rq_total{envoy_cluster_name="a"} 4`) {
		t.Fatalf("/stats/prometheus = %q", body)
	}
	if _, body := do(t, h, "GET", "/clusters"); !strings.Contains(body, "outbound|80||a.default.svc.cluster.local::10.0.0.1:8080::weight::3") ||
		!strings.Contains(body, "::10.0.0.1:8080::health_flags::healthy") || !strings.Contains(body, "::10.0.0.2:8080::health_flags::/failed_outlier_check") {
		t.Fatalf("/clusters = %q", body)
	}
	if code, _ := do(t, h, "GET", "/quitquitquit"); code != http.StatusMethodNotAllowed || src.quit.Load() != 0 {
		t.Fatalf("GET /quitquitquit = %d", code)
	}
	if code, _ := do(t, h, "POST", "/drain_listeners?inboundonly"); code != 200 || src.drained.Load() != 1 || !src.inboundOnlySeen.Load() {
		t.Fatal("/drain_listeners?inboundonly not forwarded")
	}
	if code, _ := do(t, h, "POST", "/quitquitquit"); code != 200 || src.quit.Load() != 1 {
		t.Fatal("/quitquitquit not forwarded")
	}
	if code, body := do(t, h, "POST", "/logging?level=debug"); code != 200 || level.Level() != slog.LevelDebug || !strings.Contains(body, "debug") {
		t.Fatalf("/logging = %d %q level %v", code, body, level.Level())
	}
	if code, _ := do(t, h, "POST", "/logging?level=loud"); code != 400 {
		t.Fatalf("bad level accepted: %d", code)
	}
	if code, _ := do(t, h, "GET", "/logging"); code != 200 {
		t.Fatalf("GET /logging = %d", code)
	}
	if code, _ := do(t, h, "GET", "/healthz"); code != 200 {
		t.Fatalf("/healthz = %d", code)
	}
	if code, _ := do(t, h, "GET", "/nope"); code != 404 {
		t.Fatalf("/nope = %d", code)
	}
}

func TestPprofLoopbackOnly(t *testing.T) {
	s := &Server{opts: Options{Source: &fakeSource{}, Stats: stats.NewStore()}}
	h := s.Handler()
	if code, _ := do(t, h, "GET", "/debug/pprof/"); code != http.StatusForbidden {
		t.Fatalf("/debug/pprof/ from a remote client = %d, want 403", code)
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/debug/pprof/", nil)
	req.RemoteAddr = "127.0.0.1:40000"
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "heap") {
		t.Fatalf("/debug/pprof/ from loopback = %d %q", rec.Code, rec.Body.String())
	}
}
