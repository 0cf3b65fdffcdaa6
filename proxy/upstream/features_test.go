package upstream

import (
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/balance"
	clusterv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/cluster/v3"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	endpointv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/endpoint/v3"
	commonv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/outlier_detection_monitors/common/v3"
	consecutivev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/outlier_detection_monitors/consecutive_errors/v3"
	typev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/v3"
)

func TestUnixSocketEndpoint(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "app.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", "unix")
		_, _ = io.WriteString(w, r.Host)
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	c := staticCluster("uds", clusterv3.Cluster_ROUND_ROBIN)
	c.LoadAssignment.Endpoints = []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
		HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: sock}}}}}}}}}
	cl, _ := compileT(t, c, Deps{})
	for range 3 {
		name, resp := get(t, cl, balance.Context{})
		if name != "unix" {
			t.Fatalf("answered by %q (%v)", name, resp.Status)
		}
	}
}

func TestUpstreamBindConfig(t *testing.T) {
	a := newBackend(t, "a")
	var from atomic.Value
	a.setHandler(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		from.Store(host)
	})
	c := staticCluster("bind", clusterv3.Cluster_ROUND_ROBIN, a)
	c.UpstreamBindConfig = &corev3.BindConfig{SourceAddress: &corev3.SocketAddress{
		Address: "127.0.0.6", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 0}}}
	cl, _ := compileT(t, c, Deps{})
	get(t, cl, balance.Context{})
	if got, _ := from.Load().(string); got != "127.0.0.6" {
		t.Fatalf("backend saw the connection from %q, want 127.0.0.6", got)
	}
}

func TestRetryBudget(t *testing.T) {
	a := newBackend(t, "a")
	c := staticCluster("budget", clusterv3.Cluster_ROUND_ROBIN, a)
	c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
		MaxRetries: u32(1000), // ignored: the budget applies
		RetryBudget: &clusterv3.CircuitBreakers_Thresholds_RetryBudget{
			BudgetPercent: &typev3.Percent{Value: 25}, MinRetryConcurrency: u32(2)},
	}}}
	cl, st := compileT(t, c, Deps{})
	// No active requests: the floor of 2 concurrent retries applies.
	if !cl.AcquireRetry() || !cl.AcquireRetry() {
		t.Fatal("retries within min_retry_concurrency refused")
	}
	if cl.AcquireRetry() {
		t.Fatal("third concurrent retry allowed with no active requests")
	}
	if counter(st, "cluster.budget.upstream_rq_retry_overflow") != 1 {
		t.Fatal("upstream_rq_retry_overflow not counted")
	}
	cl.ReleaseRetry()
	if !cl.AcquireRetry() {
		t.Fatal("released retry slot not reusable")
	}
	cl.ReleaseRetry()
	cl.ReleaseRetry()
}

func TestSlowStartRampsNewHost(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	cl, _ := compileT(t, &clusterv3.Cluster{
		Name:                 "slow",
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		LbConfig: &clusterv3.Cluster_RoundRobinLbConfig_{RoundRobinLbConfig: &clusterv3.Cluster_RoundRobinLbConfig{
			SlowStartConfig: &clusterv3.Cluster_SlowStartConfig{SlowStartWindow: durationpb.New(time.Hour)}}},
	}, Deps{})
	if err := cl.SetEndpoints(assignment("slow", a)); err != nil {
		t.Fatal(err)
	}
	// Age the first host past the window, then add b: b starts at min_weight_percent (10%).
	cl.mu.Lock()
	cl.byKey["127.0.0.1:"+itoa(a.port())].created = time.Now().Add(-2 * time.Hour)
	cl.mu.Unlock()
	if err := cl.SetEndpoints(assignment("slow", a, b)); err != nil {
		t.Fatal(err)
	}
	seen := tally(t, cl, 220)
	if seen["a"] != 200 || seen["b"] != 20 {
		t.Fatalf("slow start split %v, want a=200 b=20 (b at 10%% weight)", seen)
	}
	// Once b leaves its window, the split is even.
	cl.mu.Lock()
	cl.byKey["127.0.0.1:"+itoa(b.port())].created = time.Now().Add(-2 * time.Hour)
	cl.rebuildLocked()
	cl.mu.Unlock()
	seen = map[string]int{}
	for range 20 {
		name, _ := get(t, cl, balance.Context{})
		seen[name]++
	}
	if seen["a"] != 10 || seen["b"] != 10 {
		t.Fatalf("after the window: %v", seen)
	}
}

func TestOutlierSplitLocalOriginAndMonitors(t *testing.T) {
	good := newBackend(t, "good")
	dead := freePort(t)
	c := staticCluster("split", clusterv3.Cluster_ROUND_ROBIN, good)
	c.LoadAssignment.Endpoints[0].LbEndpoints = append(c.LoadAssignment.Endpoints[0].LbEndpoints, lbEndpoint("127.0.0.1", dead))
	c.OutlierDetection = &clusterv3.OutlierDetection{
		SplitExternalLocalOriginErrors:         true,
		ConsecutiveLocalOriginFailure:          u32(2),
		EnforcingConsecutiveLocalOriginFailure: u32(100),
		Consecutive_5Xx:                        u32(100),
		EnforcingSuccessRate:                   u32(0),
		EnforcingLocalOriginSuccessRate:        u32(0),
		Interval:                               durationpb.New(time.Hour),
		MaxEjectionPercent:                     u32(100),
	}
	cl, st := compileT(t, c, Deps{})
	for i := 0; i < 10 && gauge(st, "cluster.split.outlier_detection.ejections_active") == 0; i++ {
		_, _ = do(cl, balance.Context{}, "GET", "/")
	}
	if counter(st, "cluster.split.outlier_detection.ejections_enforced_consecutive_local_origin_failure") != 1 {
		t.Fatal("connect failures did not eject the dead host as local-origin failures")
	}
	for range 5 {
		if name, _ := get(t, cl, balance.Context{}); name != "good" {
			t.Fatal("ejected host still picked")
		}
	}

	// A consecutive_errors monitor over 429s ejects a host the 5xx detectors would keep.
	limited, ok := newBackend(t, "limited"), newBackend(t, "ok")
	limited.status.Store(429)
	ce := &consecutivev3.ConsecutiveErrors{Name: "rate-limited", Threshold: wrapperspb.UInt32(3), Enforcing: wrapperspb.UInt32(100),
		ErrorBuckets: &commonv3.ErrorBuckets{HttpErrors: []*commonv3.HttpErrors{{Range: &typev3.Int32Range{Start: 429, End: 430}}}}}
	c = staticCluster("monitor", clusterv3.Cluster_ROUND_ROBIN, limited, ok)
	c.OutlierDetection = &clusterv3.OutlierDetection{
		EnforcingSuccessRate: u32(0),
		Interval:             durationpb.New(time.Hour),
		MaxEjectionPercent:   u32(100),
		Monitors:             []*corev3.TypedExtensionConfig{{Name: "envoy.outlier_detection_monitors.consecutive_errors", TypedConfig: testenv.MustAny(t, ce)}},
	}
	cl, st = compileT(t, c, Deps{})
	for range 10 {
		get(t, cl, balance.Context{})
	}
	if counter(st, "cluster.monitor.outlier_detection.ejections_enforced_consecutive_errors") != 1 {
		t.Fatal("429s did not eject through the consecutive_errors monitor")
	}
	if h, _ := cl.HealthyHosts(); h != 1 {
		t.Fatalf("healthy hosts %d, want 1", h)
	}
}

func TestOutlierSuccessRateAndFailurePercentage(t *testing.T) {
	cases := []struct {
		name string
		od   *clusterv3.OutlierDetection
		stat string
	}{
		{"success-rate", &clusterv3.OutlierDetection{
			SuccessRateMinimumHosts: u32(5), SuccessRateRequestVolume: u32(5),
		}, "ejections_enforced_success_rate"},
		{"failure-percentage", &clusterv3.OutlierDetection{
			EnforcingSuccessRate: u32(0), EnforcingFailurePercentage: u32(100),
			FailurePercentageThreshold: u32(50), FailurePercentageMinimumHosts: u32(5), FailurePercentageRequestVolume: u32(5),
		}, "ejections_enforced_failure_percentage"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var bs []*backend
			for i := range 5 {
				bs = append(bs, newBackend(t, string(rune('a'+i))))
			}
			bs[0].status.Store(500) // the outlier: every request fails
			c := staticCluster("rate-"+tc.name, clusterv3.Cluster_ROUND_ROBIN, bs...)
			tc.od.Consecutive_5Xx = u32(100000) // keep the consecutive detector out of it
			tc.od.Interval = durationpb.New(200 * time.Millisecond)
			tc.od.BaseEjectionTime = durationpb.New(time.Hour)
			tc.od.MaxEjectionPercent = u32(100)
			c.OutlierDetection = tc.od
			cl, st := compileT(t, c, Deps{})
			stat := "cluster.rate-" + tc.name + ".outlier_detection." + tc.stat
			// The loop must span at least one 200 ms sweep whatever the
			// machine's speed: it stops on the ejection, bounded by time and
			// by a count no machine reaches before the first sweep.
			deadline := time.Now().Add(10 * time.Second)
			for i := 0; i < 500000 && counter(st, stat) == 0 && time.Now().Before(deadline); i++ {
				get(t, cl, balance.Context{})
			}
			if counter(st, stat) != 1 {
				t.Fatalf("%s = %d, want 1", stat, counter(st, stat))
			}
			// The sweep counts the ejection, then publishes the new host set.
			testenv.WaitFor(t, "the host set without the outlier", 5*time.Second, func() bool {
				h, n := cl.HealthyHosts()
				return h == 4 && n == 5
			})
			for range 10 {
				if name, _ := get(t, cl, balance.Context{}); name == "a" {
					t.Fatal("ejected host picked")
				}
			}
		})
	}
}
