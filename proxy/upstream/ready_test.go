package upstream

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/balance"
	clusterv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/cluster/v3"
)

// TestHTTP1ReadyConnectionsMostRecentFirst: an HTTP/1.1 pool hands out its idle connections
// most recently released first (p.ready), as Envoy's pools do, and forgets them as they close.
func TestHTTP1ReadyConnectionsMostRecentFirst(t *testing.T) {
	a := newBackend(t, "a")
	a.setHandler(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Peer", r.RemoteAddr)
	})
	cl, st := compileT(t, staticCluster("ready", clusterv3.Cluster_ROUND_ROBIN, a), Deps{})
	// open sends a request and reads its response to the end, but keeps its connection
	// (the body is not closed).
	open := func() (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest("GET", "http://svc.test/", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := cl.RoundTrip(req, balance.Context{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadAll(resp.Body); err != nil {
			t.Fatal(err)
		}
		return resp, resp.Header.Get("X-Peer")
	}
	r1, c1 := open()
	r2, c2 := open()
	r3, c3 := open()
	if c1 == c2 || c2 == c3 || c1 == c3 || a.accepted.Load() != 3 {
		t.Fatalf("3 requests held open used connections %q %q %q (%d accepted), want 3", c1, c2, c3, a.accepted.Load())
	}
	// Released in the order 3, 1, 2: taken again in the order 2, 1, 3 (newest first by
	// creation would be 3, 2, 1).
	for _, r := range []*http.Response{r3, r1, r2} {
		r.Body.Close()
	}
	var held []*http.Response
	for i, want := range []string{c2, c1, c3} {
		r, got := open()
		held = append(held, r)
		if got != want {
			t.Fatalf("request %d after the releases went over %q, want %q (released %d-th to last)", i, got, want, i+1)
		}
	}
	if n := a.accepted.Load(); n != 3 {
		t.Fatalf("%d connections accepted, want 3", n)
	}
	for _, r := range held {
		r.Body.Close()
	}
	if got := gauge(st, "cluster.ready.upstream_rq_active"); got != 0 {
		t.Fatalf("upstream_rq_active = %d after every body closed, want 0", got)
	}
	p := cl.set.Load().eps[0].pools[poolH1].Load()
	p.mu.Lock()
	n := len(p.ready)
	p.mu.Unlock()
	if n != 3 {
		t.Fatalf("%d ready connections, want 3", n)
	}
	// Closing the cluster closes the idle connections, and the pool forgets them.
	cl.Close()
	testenv.WaitFor(t, "the closed connections to leave the ready list", 5*time.Second, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.ready) == 0 && len(p.conns) == 0
	})
	if got := gauge(st, "cluster.ready.upstream_cx_active"); got != 0 {
		t.Fatalf("upstream_cx_active = %d after the cluster closed, want 0", got)
	}
}

// TestHTTP1PoolUnderContention: requests from many goroutines share two connections (the
// max_connections breaker), so that releases race with requests taking the pool's lock and
// with requests waiting for a connection: every request is served, on no more than the two
// connections, and the pool ends with both idle and ready. Run with -race, it checks the
// ownership of h1Client.busy (the pool's lock).
func TestHTTP1PoolUnderContention(t *testing.T) {
	a := newBackend(t, "a")
	cl, st := compileT(t, breakerCluster("busy", a, &clusterv3.CircuitBreakers_Thresholds{
		MaxConnections: u32(2), MaxPendingRequests: u32(100)}), Deps{})
	const workers, each = 8, 40
	errs := make(chan error, workers)
	for range workers {
		go func() {
			for range each {
				resp, err := do(cl, balance.Context{}, "GET", "/")
				if err != nil {
					errs <- err
					return
				}
				resp.Body.Close()
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := a.accepted.Load(); n > 2 {
		t.Fatalf("%d connections accepted, want at most 2", n)
	}
	if got := counter(st, "cluster.busy.upstream_rq_2xx"); got != workers*each {
		t.Fatalf("upstream_rq_2xx = %d, want %d", got, workers*each)
	}
	p := cl.set.Load().eps[0].pools[poolH1].Load()
	testenv.WaitFor(t, "both connections to be ready", 5*time.Second, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.ready) == len(p.conns) && p.waiters == 0
	})
	if g := gauge(st, "cluster.busy.upstream_rq_active"); g != 0 {
		t.Fatalf("upstream_rq_active = %d, want 0", g)
	}
}
