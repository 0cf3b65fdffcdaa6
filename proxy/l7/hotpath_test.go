package l7

// Tests for the request path's shortcuts: lazily re-armed kept timers, shared clock readings,
// per-connection caches (cluster stats, virtual host), and the Stream's reuse.

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strait-mesh/strait/proxy/route"
	"github.com/strait-mesh/strait/proxy/stats"
	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/durationpb"
)

// waitFired waits (bounded) until n reaches want.
func waitFired(t *testing.T, n *atomic.Int32, want int32) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for n.Load() < want && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := n.Load(); got != want {
		t.Fatalf("fired %d times, want %d", got, want)
	}
}

// rtState returns rt's runtime timer's fire time and the current deadline.
func rtState(rt *routeTimer) (when, by int64) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.when, rt.by
}

// TestRouteTimerLazyReuse checks the Stream's kept route timer across requests: a stopped
// request's pending runtime timer never calls that request's fire; the next request reuses
// it when it fires earlier than the new deadline (and fires no sooner than that deadline),
// and resets it when it would fire too late.
func TestRouteTimerLazyReuse(t *testing.T) {
	var s Stream
	var old, cur atomic.Int32
	var early atomic.Bool
	// Request 1 arms 20 ms and ends at once: its runtime timer stays pending.
	rt := s.routeTimer(20*time.Millisecond, func() { old.Add(1) })
	rt.start()
	if !rt.stop() {
		t.Fatal("stop of a pending route timer reports that it fired")
	}
	// Request 2 (60 ms) reuses the pending timer, which fires first and re-arms.
	var by atomic.Int64
	by.Store(sinceBase() + int64(60*time.Millisecond))
	rt = s.routeTimer(60*time.Millisecond, func() {
		if sinceBase() < by.Load() {
			early.Store(true)
		}
		cur.Add(1)
	})
	rt.start()
	if when, rby := rtState(rt); when >= rby {
		t.Fatalf("request 2 did not reuse the pending timer (when %d, by %d)", when, rby)
	}
	waitFired(t, &cur, 1)
	if early.Load() {
		t.Error("the route timer fired before the request's deadline")
	}
	if rt.stop() {
		t.Error("stop of a fired route timer reports that it could not fire")
	}
	if old.Load() != 0 {
		t.Error("a stopped request's route timer fired")
	}
	// A timer that fired is not reused by the Stream's owner (forwardDone drops it); a fresh
	// one left pending far out is reset for a shorter deadline.
	s.rtimer = nil
	rt = s.routeTimer(time.Hour, func() { old.Add(1) })
	rt.start()
	rt.stop()
	cur.Store(0)
	rt = s.routeTimer(5*time.Millisecond, func() { cur.Add(1) })
	rt.start()
	if when, rby := rtState(rt); when != rby {
		t.Fatalf("a pending timer firing after the new deadline was kept (when %d, by %d)", when, rby)
	}
	waitFired(t, &cur, 1)
	if old.Load() != 0 {
		t.Error("a stopped request's route timer fired")
	}
}

// TestIdleTimerLazyReuse checks the Stream's kept idle timer across requests, as
// TestRouteTimerLazyReuse the route timer's.
func TestIdleTimerLazyReuse(t *testing.T) {
	var s Stream
	var old, cur atomic.Int32
	it := s.idleTimer(20*time.Millisecond, func() { old.Add(1) })
	if !it.stop() {
		t.Fatal("stop of a pending idle timer reports that it fired")
	}
	start := sinceBase()
	var early atomic.Bool
	it2 := s.idleTimer(60*time.Millisecond, func() {
		if sinceBase()-start < int64(60*time.Millisecond) {
			early.Store(true)
		}
		cur.Add(1)
	})
	if it2 != it {
		t.Fatal("the Stream's idle timer was not kept")
	}
	it.mu.Lock()
	reused := it.when < start+int64(60*time.Millisecond)
	it.mu.Unlock()
	if !reused {
		t.Error("the pending idle timer was reset instead of reused")
	}
	waitFired(t, &cur, 1)
	if early.Load() {
		t.Error("the idle timer fired before the stream was idle for its period")
	}
	if it.stop() {
		t.Error("stop of a fired idle timer reports that it could not fire")
	}
	if old.Load() != 0 {
		t.Error("a stopped request's idle timer fired")
	}
	// Far out pending, shorter period: reset.
	s.idleT = nil
	it = s.idleTimer(time.Hour, func() { old.Add(1) })
	it.stop()
	cur.Store(0)
	s.idleTimer(5*time.Millisecond, func() { cur.Add(1) })
	waitFired(t, &cur, 1)
	if old.Load() != 0 {
		t.Error("a stopped request's idle timer fired")
	}
	it.stop()
	// A timer that is not the Stream's (tunnels) stops its runtime timer.
	st := newIdleTimer(time.Hour, func() {})
	st.stop()
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.when != 0 {
		t.Error("a tunnel's idle timer was left pending")
	}
}

// TestUpstreamServiceTimeSpansExchange checks that the upstream service time, measured from
// the router's shared clock readings (the timers' start for a bodiless request, the body
// prefetch's end otherwise), covers the upstream's whole exchange and fits in the request's
// duration, and that the route timeout still runs from those readings.
func TestUpstreamServiceTimeSpansExchange(t *testing.T) {
	const wait = 30 * time.Millisecond
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		d := wait
		if r.URL.Query().Has("slow") {
			d = 2 * time.Second
		}
		select {
		case <-time.After(d):
		case <-r.Context().Done():
		}
		w.Write([]byte("ok"))
	}), false)
	env := &testEnv{clusters: map[string]Upstream{"c": staticCluster(t, "c", up, false)}}
	p := startProxy(t, inlineHCM(oneVhost(fwdRoute("r", pfx("/"), &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "c"},
		Timeout:          durationpb.New(500 * time.Millisecond),
	}))), env, false)
	c := h1Client()
	for _, method := range []string{"GET", "POST"} {
		for _, path := range []string{"/", "/?slow=1"} {
			var body io.Reader
			if method == "POST" {
				body = strings.NewReader("hello")
			}
			req, _ := http.NewRequest(method, p.url(path), body)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			ri := p.nextInfo(t)
			if path != "/" {
				if resp.StatusCode != http.StatusGatewayTimeout || ri.Flags&FlagUpstreamRequestTimeout == 0 {
					t.Errorf("%s %s: status %d, flags %v: the route timeout did not fire", method, path, resp.StatusCode, ri.Flags)
				}
				continue
			}
			if resp.StatusCode != 200 {
				t.Fatalf("%s: status %d", method, resp.StatusCode)
			}
			if ri.UpstreamServiceTime < wait || ri.UpstreamServiceTime > ri.Duration {
				t.Errorf("%s: upstream service time %v, upstream waited %v, request took %v",
					method, ri.UpstreamServiceTime, wait, ri.Duration)
			}
		}
	}
}

// TestReleaseLeavesKeptOnly checks that a released Stream holds only what it keeps for the next
// request: serve takes pooled Streams as they are.
func TestReleaseLeavesKeptOnly(t *testing.T) {
	s := &Stream{}
	s.method, s.path, s.Cluster, s.grpc, s.setCookie, s.retrying = "GET", "/x", "c", true, "a=b", true
	s.Info.Status, s.Info.Attempts = 200, 2
	rt := s.routeTimer(time.Hour, func() {})
	s.release()
	if s.method != "" || s.path != "" || s.Cluster != "" || s.grpc || s.setCookie != "" || s.retrying ||
		s.Info.Status != 0 || s.Info.Attempts != 0 {
		t.Errorf("released Stream keeps request state: %+v", s.Info)
	}
	if s.rtimer != rt {
		t.Error("released Stream dropped its route timer")
	}
}

// TestClusterStatsCaches checks the per-connection cluster stats and the last-code counter:
// hits return the same counters a lookup by name would, misses switch.
func TestClusterStatsCaches(t *testing.T) {
	newH := func() *Handler {
		h, err := New(inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("a")))), &testEnv{}, Options{Stats: stats.NewStore()})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	h, h2 := newH(), newH()
	cs := &connState{}
	s := &Stream{}
	s.cs, s.Cluster = cs, "a"
	a := h.streamClusterStats(s)
	if a != h.clusterStats("a") || h.streamClusterStats(s) != a {
		t.Fatal("cluster a's stats differ from the lookup by name")
	}
	s.Cluster = "b"
	if b := h.streamClusterStats(s); b != h.clusterStats("b") || b == a {
		t.Fatal("switching clusters kept the last cluster's stats")
	}
	// Another connection manager (its own stats store) on the same connection state.
	if b2 := h2.streamClusterStats(s); b2 != h2.clusterStats("b") {
		t.Fatal("another handler got the first handler's cluster stats")
	}
	for _, c := range []int{200, 200, 503, 200, 503, 503, 404} {
		a.code(c)
	}
	for code, want := range map[int]uint64{200: 3, 503: 3, 404: 1} {
		name := "cluster.a.upstream_rq_" + strconv.Itoa(code)
		if got := h.opts.Stats.Counter(name, "").Value(); got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
}

// TestVirtualHostPerConnection checks the connection's last virtual host: reused for the same
// table and authority, looked up again when either changes.
func TestVirtualHostPerConnection(t *testing.T) {
	rc := oneVhost(fwdRoute("r", pfx("/"), toCluster("c")))
	rc.VirtualHosts[0].Domains = []string{"a.test"}
	rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{Name: "b", Domains: []string{"b.test"},
		Routes: []*routev3.Route{fwdRoute("rb", pfx("/"), toCluster("c"))}})
	h, err := New(inlineHCM(rc), &testEnv{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t1 := h.routeTable()
	t2, err := route.Compile(rc)
	if err != nil {
		t.Fatal(err)
	}
	s := &Stream{}
	s.cs = &connState{}
	for _, c := range []struct {
		table     *route.Table
		authority string
	}{
		{t1, "a.test"}, {t1, "a.test"}, {t1, "B.test"}, {t1, "none.test"}, {t1, "a.test"},
		{t2, "a.test"}, {t2, "b.test"}, {nil, "a.test"},
	} {
		s.Table, s.authority = c.table, c.authority
		if got, want := h.virtualHost(s), c.table.VirtualHost(c.authority); got != want {
			t.Errorf("%p %s: virtual host %p, want %p", c.table, c.authority, got, want)
		}
	}
}

// TestLatencyHistogramCumulative: downstream_rq_time's buckets are cumulative when rendered
// (each observation counted in its own bucket only, summed at render time), typed counter, and
// count and sums follow the observations.
func TestLatencyHistogramCumulative(t *testing.T) {
	s := stats.NewStore()
	l := newLatency(s, "http.t.downstream_rq_time", "envoy_http_downstream_rq_time", stats.Tag{Name: "envoy_http_conn_manager_prefix", Value: "t"})
	for _, d := range []time.Duration{300 * time.Microsecond, 500 * time.Microsecond, 700 * time.Microsecond, 3 * time.Millisecond, 2 * time.Hour} {
		l.observe(d)
	}
	var b strings.Builder
	if err := s.WriteText(&b, "downstream_rq_time"); err != nil {
		t.Fatal(err)
	}
	text := b.String()
	for _, want := range []string{
		"http.t.downstream_rq_time_bucket.le_0.5: 2\n", // 0.5 ms is within le=0.5
		"http.t.downstream_rq_time_bucket.le_1: 3\n",
		"http.t.downstream_rq_time_bucket.le_5: 4\n",
		"http.t.downstream_rq_time_bucket.le_3600000: 4\n",
		"http.t.downstream_rq_time_bucket.le_inf: 5\n",
		"http.t.downstream_rq_time_count: 5\n",
		"http.t.downstream_rq_time_sum_us: 7200004500\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("missing %q in\n%s", want, text)
		}
	}
	b.Reset()
	if err := s.WritePrometheus(&b); err != nil {
		t.Fatal(err)
	}
	prom := b.String()
	for _, want := range []string{
		"# TYPE envoy_http_downstream_rq_time_bucket counter\n",
		`envoy_http_downstream_rq_time_bucket{envoy_http_conn_manager_prefix="t",le="1"} 3` + "\n",
		`envoy_http_downstream_rq_time_bucket{envoy_http_conn_manager_prefix="t",le="+Inf"} 5` + "\n",
	} {
		if !strings.Contains(prom, want) {
			t.Errorf("missing %q in\n%s", want, prom)
		}
	}
}

// TestHCMStatsSharedAcrossHandlers: a connection manager built later with the same stat
// prefix and store (a listener update) adds to the same downstream_rq_time buckets the
// rendered functions read, and downstream_rq_total, _completed and _active follow every
// manager's requests.
func TestHCMStatsSharedAcrossHandlers(t *testing.T) {
	s := stats.NewStore()
	first := newHCMStats(s, "t")
	second := newHCMStats(s, "t")
	first.rqHTTP1.Inc()
	first.rqTime.observe(200 * time.Microsecond) // ended
	first.status(200)
	for _, d := range []time.Duration{time.Millisecond, 1001 * time.Microsecond} {
		second.rqHTTP2.Inc()
		second.rqTime.observe(d)
		second.status(503)
	}
	second.rqHTTP1.Inc() // still running
	var b strings.Builder
	if err := s.WriteText(&b, "downstream_rq"); err != nil {
		t.Fatal(err)
	}
	text := b.String()
	for _, want := range []string{
		"http.t.downstream_rq_total: 4\n",
		"http.t.downstream_rq_completed: 3\n",
		"http.t.downstream_rq_active: 1\n",
		"http.t.downstream_rq_time_count: 3\n",
		"http.t.downstream_rq_time_bucket.le_0.5: 1\n",
		"http.t.downstream_rq_time_bucket.le_1: 2\n", // 1 ms is within le=1, 1.001 ms is not
		"http.t.downstream_rq_time_bucket.le_5: 3\n",
		"http.t.downstream_rq_5xx: 2\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("missing %q in\n%s", want, text)
		}
	}
	if first.rqActive() != 1 || second.rqActive() != 1 {
		t.Errorf("rqActive: %d, %d; want 1", first.rqActive(), second.rqActive())
	}
}
