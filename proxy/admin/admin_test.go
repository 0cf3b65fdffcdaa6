package admin

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/protobuf/types/known/anypb"

	"github.com/strait-mesh/strait/proxy/stats"
	adminv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/admin/v3"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
)

// quiet discards the logs of refused requests, which tests make on purpose.
var quiet = slog.New(slog.DiscardHandler)

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

// do sends one request to h with no peer credentials (as over TCP).
func do(t *testing.T, h http.Handler, method, path string) (int, string) {
	t.Helper()
	return doReq(t, h, httptest.NewRequest(method, path, nil))
}

// doAs sends one request to h as an admin socket peer of uid.
func doAs(t *testing.T, h http.Handler, uid uint32, method, path string) (int, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	return doReq(t, h, req.WithContext(context.WithValue(req.Context(), peerKey{}, peer{uid: uid, pid: 42})))
}

func doReq(t *testing.T, h http.Handler, req *http.Request) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	b, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(b)
}

func TestAdminEndpoints(t *testing.T) {
	src := &fakeSource{}
	st := stats.NewStore()
	st.Counter("cluster.a.upstream_rq_total", "envoy_cluster_upstream_rq_total", stats.Tag{Name: "envoy_cluster_name", Value: "a"}).Add(4)
	st.Counter("http.in.downstream_rq_2xx", "envoy_http_downstream_rq_xx").Add(2)
	level := new(slog.LevelVar)
	s, err := Listen(Options{Address: "127.0.0.1:0", Source: src, Stats: st, Level: level, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer s.tcpLn.Close()
	h := s.tcpHandler()
	owner := s.socketHandler()
	me := uint32(os.Geteuid())

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
	if code, body := do(t, h, "GET", "/server_info"); code != 200 || !strings.Contains(body, `"state": "LIVE"`) {
		t.Fatalf("/server_info = %d %q", code, body)
	}
	if code, _ := doAs(t, owner, me, "GET", "/quitquitquit"); code != http.StatusMethodNotAllowed || src.quit.Load() != 0 {
		t.Fatalf("GET /quitquitquit = %d", code)
	}
	if code, _ := doAs(t, owner, me, "POST", "/drain_listeners?inboundonly"); code != 200 || src.drained.Load() != 1 || !src.inboundOnlySeen.Load() {
		t.Fatal("/drain_listeners?inboundonly not forwarded")
	}
	if code, _ := doAs(t, owner, me, "POST", "/quitquitquit"); code != 200 || src.quit.Load() != 1 {
		t.Fatal("/quitquitquit not forwarded")
	}
	if code, body := doAs(t, owner, me, "POST", "/logging?level=debug"); code != 200 || level.Level() != slog.LevelDebug || !strings.Contains(body, "debug") {
		t.Fatalf("/logging = %d %q level %v", code, body, level.Level())
	}
	if code, _ := doAs(t, owner, me, "POST", "/logging?level=loud"); code != 400 {
		t.Fatalf("bad level accepted: %d", code)
	}
	if code, _ := doAs(t, owner, me, "GET", "/logging"); code != 200 {
		t.Fatalf("GET /logging = %d", code)
	}
	if code, body := doAs(t, owner, me, "GET", "/debug/pprof/"); code != 200 || !strings.Contains(body, "heap") {
		t.Fatalf("/debug/pprof/ on the socket = %d", code)
	}
	if code, _ := doAs(t, owner, me, "GET", "/stats"); code != 200 {
		t.Fatalf("/stats on the socket = %d", code)
	}
	if code, _ := do(t, h, "GET", "/healthz"); code != 200 {
		t.Fatalf("/healthz = %d", code)
	}
	if code, _ := do(t, h, "GET", "/nope"); code != 404 {
		t.Fatalf("/nope = %d", code)
	}
}

// ownerOnly lists every endpoint a user who is not the proxy's must not reach: what changes
// state (Envoy's POST commands) and the profiler.
var ownerOnly = []string{
	"/quitquitquit", "/drain_listeners", "/drain_listeners?inboundonly", "/logging", "/logging?level=debug",
	"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/goroutine?debug=2", "/debug/pprof/cmdline",
	"/debug/pprof/profile?seconds=1", "/debug/pprof/symbol", "/debug/pprof/trace?seconds=1",
}

// TestOwnerOnlyRefusedOverTCP: over TCP every owner-only endpoint answers 403 naming the socket,
// whatever the method, and nothing reaches the proxy.
func TestOwnerOnlyRefusedOverTCP(t *testing.T) {
	src := &fakeSource{}
	level := new(slog.LevelVar)
	s := &Server{opts: Options{Source: src, Stats: stats.NewStore(), Level: level, Logger: quiet}, socketPath: "/run/x/admin.sock"}
	h := s.tcpHandler()
	for _, path := range ownerOnly {
		for _, method := range []string{"GET", "POST", "PUT"} {
			code, body := do(t, h, method, path)
			if code != http.StatusForbidden || !strings.Contains(body, "--unix-socket /run/x/admin.sock") {
				t.Errorf("%s %s over TCP = %d %q, want 403 naming the socket", method, path, code, body)
			}
		}
	}
	if src.quit.Load() != 0 || src.drained.Load() != 0 || level.Level() != slog.LevelInfo {
		t.Fatalf("a refused request reached the proxy: quit %d drain %d level %v", src.quit.Load(), src.drained.Load(), level.Level())
	}
	if _, body := do(t, h, "GET", "/"); !strings.Contains(body, "/quitquitquit: exit the server after draining (admin socket only)") {
		t.Errorf("index does not say where /quitquitquit is served:\n%s", body)
	}
	s.socketPath = ""
	if code, body := do(t, h, "POST", "/quitquitquit"); code != http.StatusForbidden || !strings.Contains(body, "no admin socket") {
		t.Errorf("POST /quitquitquit without a socket = %d %q", code, body)
	}
}

// TestSocketServesOnlyOwnerAndRoot: on the socket the proxy's uid and root are served; another
// uid, or a peer whose credentials are unknown, gets 403 for every endpoint, read-only ones too.
func TestSocketServesOnlyOwnerAndRoot(t *testing.T) {
	src := &fakeSource{}
	s := &Server{opts: Options{Source: src, Stats: stats.NewStore(), Level: new(slog.LevelVar), Logger: quiet}, ownerUID: 1337}
	h := s.socketHandler()
	for _, path := range append([]string{"/stats", "/ready"}, ownerOnly...) {
		if code, body := doAs(t, h, 1000, "POST", path); code != http.StatusForbidden || !strings.Contains(body, "uid 1000 may not") {
			t.Errorf("POST %s as uid 1000 = %d %q, want 403", path, code, body)
		}
		if code, _ := do(t, h, "POST", path); code != http.StatusForbidden {
			t.Errorf("POST %s without peer credentials = %d, want 403", path, code)
		}
	}
	if src.quit.Load() != 0 || src.drained.Load() != 0 {
		t.Fatal("a refused peer reached the proxy")
	}
	if code, _ := doAs(t, h, 1337, "POST", "/drain_listeners"); code != 200 || src.drained.Load() != 1 {
		t.Fatalf("the proxy's uid: /drain_listeners = %d", code)
	}
	if code, _ := doAs(t, h, 0, "POST", "/quitquitquit"); code != 200 || src.quit.Load() != 1 {
		t.Fatalf("root: /quitquitquit = %d", code)
	}
}
