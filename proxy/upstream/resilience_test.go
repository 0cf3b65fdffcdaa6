package upstream

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/balance"
	clusterv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/cluster/v3"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	endpointv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/endpoint/v3"
)

func TestConnectFailureIsUF(t *testing.T) {
	port := freePort(t) // nothing listens here any more
	c := &clusterv3.Cluster{
		Name:                 "dead",
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(time.Second),
		LoadAssignment: &endpointv3.ClusterLoadAssignment{Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbEndpoints: []*endpointv3.LbEndpoint{lbEndpoint("127.0.0.1", port)},
		}}},
	}
	cl, st := compileT(t, c, Deps{})
	_, err := do(cl, balance.Context{}, "GET", "/")
	if flagOf(err) != FlagConnectFailure {
		t.Fatalf("err = %v, want UF", err)
	}
	if counter(st, "cluster.dead.upstream_cx_connect_fail") != 1 {
		t.Fatal("upstream_cx_connect_fail not counted")
	}
	if _, err := cl.Dial(context.Background(), balance.Context{}); flagOf(err) != FlagConnectFailure {
		t.Fatalf("Dial err = %v, want UF", err)
	}
	if gauge(st, "cluster.dead.upstream_rq_active") != 0 || gauge(st, "cluster.dead.upstream_cx_active") != 0 {
		t.Fatal("active gauges leaked after failures")
	}
}

func TestConnectionClosedBeforeResponseIsUC(t *testing.T) {
	addr := testenv.ServeTCP(t, "127.0.0.1:0", func(conn net.Conn) {
		buf := make([]byte, 4096)
		_, _ = conn.Read(buf) // read the request, then hang up without answering
	})
	port := uint32(netip.MustParseAddrPort(addr).Port())
	c := staticCluster("rst", clusterv3.Cluster_ROUND_ROBIN)
	c.LoadAssignment.Endpoints = []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{lbEndpoint("127.0.0.1", port)}}}
	cl, _ := compileT(t, c, Deps{})
	getFailsWith(t, cl, FlagConnectionTerminate, "")
}

func TestUpstreamTimeoutIsUT(t *testing.T) {
	g := newGate()
	defer g.open()
	a := newBackend(t, "a")
	a.setHandler(func(w http.ResponseWriter, r *http.Request) { g.wait(r) })
	cl, st := compileT(t, staticCluster("slow", clusterv3.Cluster_ROUND_ROBIN, a), Deps{})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := doCtx(ctx, cl, balance.Context{}, "GET", "/"); flagOf(err) != FlagUpstreamTimeout {
		t.Fatalf("err = %v, want UT", err)
	}
	if counter(st, "cluster.slow.upstream_rq_timeout") != 1 {
		t.Fatal("upstream_rq_timeout not counted")
	}
}

func TestCircuitBreakerMaxRequestsIsUO(t *testing.T) {
	a, g := gatedBackend(t, "a")
	cl, st := compileT(t, breakerCluster("cb", a, &clusterv3.CircuitBreakers_Thresholds{MaxRequests: u32(1), TrackRemaining: true}), Deps{})
	done := make(chan error, 1)
	go func() {
		_, err := do(cl, balance.Context{}, "GET", "/slow")
		done <- err
	}()
	testenv.WaitFor(t, "the slow request to reach the backend", 5*time.Second, func() bool { return g.waiting.Load() == 1 })
	getFailsWith(t, cl, FlagOverflow, "second request")
	if counter(st, "cluster.cb.upstream_rq_pending_overflow") != 1 {
		t.Fatal("upstream_rq_pending_overflow not counted")
	}
	if gauge(st, "cluster.cb.circuit_breakers.default.rq_open") != 1 || gauge(st, "cluster.cb.circuit_breakers.default.remaining_rq") != 0 {
		t.Fatal("rq_open / remaining_rq gauges wrong while open")
	}
	g.open()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	get(t, cl, balance.Context{}) // closed again
	if gauge(st, "cluster.cb.circuit_breakers.default.remaining_rq") != 1 {
		t.Fatal("remaining_rq not restored")
	}
}

func TestCircuitBreakerConnectionsAndPending(t *testing.T) {
	a, g := gatedBackend(t, "a")
	cl, st := compileT(t, breakerCluster("cbcx", a, &clusterv3.CircuitBreakers_Thresholds{MaxConnections: u32(1), MaxPendingRequests: u32(1)}), Deps{})
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, err := do(cl, balance.Context{}, "GET", "/slow")
		errs <- err
	}()
	testenv.WaitFor(t, "the slow request", 5*time.Second, func() bool { return g.waiting.Load() == 1 })
	// The second request waits for the only connection (HTTP/1.1: one request at a time).
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, err := do(cl, balance.Context{}, "GET", "/")
		errs <- err
	}()
	testenv.WaitFor(t, "a pending request", 5*time.Second, func() bool { return gauge(st, "cluster.cbcx.upstream_rq_pending_active") == 1 })
	// The third overflows the pending queue.
	getFailsWith(t, cl, FlagOverflow, "third request")
	g.open()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("queued request failed: %v", err)
		}
	}
	if n := a.accepted.Load(); n != 1 {
		t.Fatalf("backend accepted %d connections, max_connections is 1", n)
	}
	if counter(st, "cluster.cbcx.upstream_cx_overflow") == 0 {
		t.Fatal("upstream_cx_overflow not counted")
	}
}

func TestOutlierEjectionAndReturn(t *testing.T) {
	good, bad := newBackend(t, "good"), newBackend(t, "bad")
	bad.status.Store(503)
	c := staticCluster("od", clusterv3.Cluster_ROUND_ROBIN, good, bad)
	c.OutlierDetection = &clusterv3.OutlierDetection{
		Consecutive_5Xx:                    u32(3),
		ConsecutiveGatewayFailure:          u32(3),
		EnforcingConsecutiveGatewayFailure: u32(100),
		EnforcingSuccessRate:               u32(0),
		Interval:                           durationpb.New(50 * time.Millisecond),
		BaseEjectionTime:                   durationpb.New(300 * time.Millisecond),
		MaxEjectionPercent:                 u32(100),
	}
	cl, st := compileT(t, c, Deps{})
	for i := 0; i < 20 && gauge(st, "cluster.od.outlier_detection.ejections_active") == 0; i++ {
		get(t, cl, balance.Context{})
	}
	if gauge(st, "cluster.od.outlier_detection.ejections_active") != 1 {
		t.Fatal("bad host not ejected after consecutive 5xx")
	}
	if h, n := cl.HealthyHosts(); h != 1 || n != 2 {
		t.Fatalf("healthy %d/%d after ejection", h, n)
	}
	if counter(st, "cluster.od.outlier_detection.ejections_enforced_consecutive_5xx") != 1 {
		t.Fatal("ejections_enforced_consecutive_5xx not counted")
	}
	hitsBefore := bad.hits.Load()
	for range 20 {
		if name, _ := get(t, cl, balance.Context{}); name != "good" {
			t.Fatalf("ejected host served a request")
		}
	}
	if bad.hits.Load() != hitsBefore {
		t.Fatal("ejected host got traffic")
	}
	// The host recovers; after base_ejection_time it returns at an interval sweep.
	bad.status.Store(0)
	testenv.WaitFor(t, "the ejected host to return", 10*time.Second, func() bool {
		h, _ := cl.HealthyHosts()
		return h == 2
	})
	if gauge(st, "cluster.od.outlier_detection.ejections_active") != 0 {
		t.Fatal("ejections_active not back to 0")
	}
	seen := tally(t, cl, 10)
	if seen["bad"] != 5 {
		t.Fatalf("after return: %v", seen)
	}
}

func TestOutlierMaxEjectionPercent(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	a.status.Store(500)
	b.status.Store(500)
	c := staticCluster("odmax", clusterv3.Cluster_ROUND_ROBIN, a, b)
	c.OutlierDetection = &clusterv3.OutlierDetection{
		Consecutive_5Xx:  u32(2),
		Interval:         durationpb.New(time.Hour),
		BaseEjectionTime: durationpb.New(time.Hour),
		// Default max_ejection_percent 10: the first ejection is allowed (0% ejected), the
		// second is not (50% ≥ 10%).
	}
	cl, st := compileT(t, c, Deps{})
	for range 12 {
		get(t, cl, balance.Context{})
	}
	if got := gauge(st, "cluster.odmax.outlier_detection.ejections_active"); got != 1 {
		t.Fatalf("ejections_active = %d, want 1", got)
	}
	if counter(st, "cluster.odmax.outlier_detection.ejections_overflow") == 0 {
		t.Fatal("ejections_overflow not counted")
	}
}

func TestCloseReleasesPools(t *testing.T) {
	a := newBackend(t, "a")
	cl, st := compileT(t, staticCluster("closing", clusterv3.Cluster_ROUND_ROBIN, a), Deps{})
	get(t, cl, balance.Context{})
	if gauge(st, "cluster.closing.upstream_cx_active") != 1 {
		t.Fatal("want one pooled connection")
	}
	cl.Close()
	testenv.WaitFor(t, "pooled connection to close", 5*time.Second, func() bool { return gauge(st, "cluster.closing.upstream_cx_active") == 0 })
	getFailsWith(t, cl, FlagNoHealthyUpstream, "closed cluster")
}

func TestCloseLetsInFlightRequestsFinish(t *testing.T) {
	g := newGate()
	defer g.open()
	a := newBackend(t, "a")
	a.setHandler(func(w http.ResponseWriter, r *http.Request) {
		g.wait(r)
		_, _ = w.Write([]byte("done"))
	})
	cl, st := compileT(t, staticCluster("drain", clusterv3.Cluster_ROUND_ROBIN, a), Deps{})
	done := make(chan error, 1)
	go func() {
		resp, err := do(cl, balance.Context{}, "GET", "/")
		if err == nil && resp.StatusCode != 200 {
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		done <- err
	}()
	testenv.WaitFor(t, "request in flight", 5*time.Second, func() bool { return g.waiting.Load() == 1 })
	cl.Close()
	g.open()
	if err := <-done; err != nil {
		t.Fatalf("in-flight request failed after Close: %v", err)
	}
	testenv.WaitFor(t, "connection released after the last request", 5*time.Second, func() bool {
		return gauge(st, "cluster.drain.upstream_cx_active") == 0
	})
}

func TestPanicModeCounted(t *testing.T) {
	a, b, c := newBackend(t, "a"), newBackend(t, "b"), newBackend(t, "c")
	cl, st := compileT(t, &clusterv3.Cluster{
		Name:                 "panic",
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
	}, Deps{})
	cla := assignment("panic", a, b, c)
	cla.Endpoints[0].LbEndpoints[0].HealthStatus = corev3.HealthStatus_UNHEALTHY
	cla.Endpoints[0].LbEndpoints[1].HealthStatus = corev3.HealthStatus_UNHEALTHY
	if err := cl.SetEndpoints(cla); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for range 9 {
		name, _ := get(t, cl, balance.Context{})
		seen[name] = true
	}
	// 1 of 3 healthy is under the 50% panic threshold: Envoy balances over all hosts.
	if len(seen) != 3 || counter(st, "cluster.panic.lb_healthy_panic") != 9 {
		t.Fatalf("panic mode: reached %v, lb_healthy_panic %d", seen, counter(st, "cluster.panic.lb_healthy_panic"))
	}
}

func TestLocalityWeightedEndToEnd(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	cla := assignment("loc", a)
	cla.Endpoints[0].Locality = &corev3.Locality{Region: "r", Zone: "z1"}
	cla.Endpoints[0].LoadBalancingWeight = u32(1)
	second := assignment("loc", b).Endpoints[0]
	second.Locality = &corev3.Locality{Region: "r", Zone: "z2"}
	second.LoadBalancingWeight = u32(3)
	cla.Endpoints = append(cla.Endpoints, second)
	c := &clusterv3.Cluster{
		Name:                 "loc",
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		CommonLbConfig: &clusterv3.Cluster_CommonLbConfig{LocalityConfigSpecifier: &clusterv3.Cluster_CommonLbConfig_LocalityWeightedLbConfig_{
			LocalityWeightedLbConfig: &clusterv3.Cluster_CommonLbConfig_LocalityWeightedLbConfig{}}},
	}
	cl, _ := compileT(t, c, Deps{})
	if err := cl.SetEndpoints(cla); err != nil {
		t.Fatal(err)
	}
	seen := tally(t, cl, 40)
	if seen["a"] != 10 || seen["b"] != 30 {
		t.Fatalf("locality weights 1:3 gave %v", seen)
	}
}

func TestDialRespectsMaxConnections(t *testing.T) {
	a := newBackend(t, "a")
	cl, st := compileT(t, breakerCluster("dialcb", a, &clusterv3.CircuitBreakers_Thresholds{MaxConnections: u32(1)}), Deps{})
	first, err := cl.Dial(context.Background(), balance.Context{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Dial(context.Background(), balance.Context{}); flagOf(err) != FlagOverflow {
		t.Fatalf("second connection: err = %v, want UO", err)
	}
	_ = first.Close()
	second, err := cl.Dial(context.Background(), balance.Context{})
	if err != nil {
		t.Fatalf("after closing the first: %v", err)
	}
	_ = second.Close()
	if counter(st, "cluster.dialcb.upstream_cx_overflow") != 1 {
		t.Fatal("upstream_cx_overflow not counted")
	}
}

func TestHTTP2StreamResetIsUR(t *testing.T) {
	a := newBackend(t, "a", h2cBackend)
	a.setHandler(func(w http.ResponseWriter, r *http.Request) { panic(http.ErrAbortHandler) })
	c := staticCluster("rst2", clusterv3.Cluster_ROUND_ROBIN, a)
	c.TypedExtensionProtocolOptions = protoOptions(t, explicitH2())
	cl, _ := compileT(t, c, Deps{})
	getFailsWith(t, cl, FlagUpstreamReset, "")
}
