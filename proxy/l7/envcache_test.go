package l7

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strait-mesh/strait/proxy/route"
	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
)

// snapEnv is a testEnv that is a SnapshotEnv: every change (set) makes a new Snapshot, and it
// counts the lookups by name.
type snapEnv struct {
	testEnv
	snap            atomic.Pointer[Snapshot]
	routes, cluster atomic.Int64
}

func newSnapEnv() *snapEnv {
	e := &snapEnv{testEnv: testEnv{tables: map[string]*route.Table{}, clusters: map[string]Upstream{}}}
	e.snap.Store(new(Snapshot))
	return e
}

func (e *snapEnv) Snapshot() *Snapshot { return e.snap.Load() }

func (e *snapEnv) Route(name string) *route.Table {
	e.routes.Add(1)
	return e.testEnv.Route(name)
}

func (e *snapEnv) Cluster(name string) Upstream {
	e.cluster.Add(1)
	return e.testEnv.Cluster(name)
}

// set changes the configuration: the route table "r" (nil: kept) and the clusters named in
// ups (a nil Upstream removes one), then publishes a new Snapshot.
func (e *snapEnv) set(tb *route.Table, ups map[string]Upstream) {
	e.mu.Lock()
	if tb != nil {
		e.tables["r"] = tb
	}
	for n, u := range ups {
		if u == nil {
			delete(e.clusters, n)
		} else {
			e.clusters[n] = u
		}
	}
	e.mu.Unlock()
	e.snap.Store(new(Snapshot))
}

var _ SnapshotEnv = (*snapEnv)(nil)

// envCacheSetup starts upstreams A, B and C and a proxy with RDS table "r" from env.
func envCacheSetup(t *testing.T, env *snapEnv) (ups map[string]Upstream, compile func(cluster string) *route.Table, p *proxy) {
	ups = map[string]Upstream{}
	for _, n := range []string{"A", "B", "C"} {
		n := n
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Up", n)
		}))
		t.Cleanup(srv.Close)
		ups[n] = newTestUpstream(srv.Listener.Addr().String(), false)
	}
	compile = func(cluster string) *route.Table {
		vh := &routev3.VirtualHost{Name: "any", Domains: []string{"*"},
			Routes: []*routev3.Route{fwdRoute("r", pfx("/"), toCluster(cluster))}}
		tb, err := route.Compile(&routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{vh}})
		if err != nil {
			t.Fatal(err)
		}
		return tb
	}
	hcm := inlineHCM(nil)
	hcm.RouteSpecifier = &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: "r"}}
	return ups, compile, startProxy(t, hcm, env, false)
}

// TestSnapshotEnvCache: with a SnapshotEnv, requests on one keep-alive connection reach the
// route table and cluster of the current Snapshot, looking them up by name only once per
// Snapshot; a cluster replaced under the same name, a table swapped for another, and a cluster
// removed (503, cluster_not_found) are seen by the next request.
func TestSnapshotEnvCache(t *testing.T) {
	env := newSnapEnv()
	ups, compile, p := envCacheSetup(t, env)
	tA := compile("cX")
	env.set(tA, map[string]Upstream{"cX": ups["A"], "cY": ups["C"]})

	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(c)
	get := func(step string) (int, string) {
		t.Helper()
		if _, err := fmt.Fprintf(c, "GET /%s HTTP/1.1\r\nHost: x\r\n\r\n", step); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("X-Up")
	}
	want := func(step string, code int, up string) {
		t.Helper()
		if gc, gu := get(step); gc != code || gu != up {
			t.Errorf("%s: %d from %q, want %d from %q", step, gc, gu, code, up)
		}
	}
	r0, c0 := env.routes.Load(), env.cluster.Load()
	for i := range 5 {
		want(fmt.Sprint("a", i), 200, "A")
	}
	if r, cl := env.routes.Load()-r0, env.cluster.Load()-c0; r != 1 || cl != 1 {
		t.Errorf("5 requests in one Snapshot: %d route table and %d cluster lookups, want 1 and 1", r, cl)
	}
	env.set(nil, map[string]Upstream{"cX": ups["B"]}) // the same name, another cluster
	want("b", 200, "B")
	want("b2", 200, "B")
	env.set(compile("cY"), nil) // another table
	want("c", 200, "C")
	env.set(tA, nil) // the first table again: its target's entry is of an old Snapshot
	want("d", 200, "B")
	env.set(nil, map[string]Upstream{"cX": nil}) // removed
	want("e", http.StatusServiceUnavailable, "")
	env.set(nil, map[string]Upstream{"cX": ups["A"]}) // back
	want("f", 200, "A")
}

// TestSnapshotEnvSwapUnderLoad: clients keep sending while the configuration moves the route
// from cluster A to cluster B; every request sent after the swap returned is answered by B.
func TestSnapshotEnvSwapUnderLoad(t *testing.T) {
	env := newSnapEnv()
	ups, compile, p := envCacheSetup(t, env)
	env.set(compile("cA"), map[string]Upstream{"cA": ups["A"], "cB": ups["B"]})
	tB := compile("cB")
	var swapped atomic.Bool
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 8)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := &http.Client{Timeout: 10 * time.Second}
			for i := 0; i < 2000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				after := swapped.Load()
				resp, err := cl.Get("http://" + p.addr + "/")
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if up := resp.Header.Get("X-Up"); resp.StatusCode != 200 || after && up != "B" {
					errs <- fmt.Errorf("request sent after the swap (%v): %d from %q", after, resp.StatusCode, up)
					return
				}
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	env.set(tB, nil)
	swapped.Store(true)
	time.Sleep(100 * time.Millisecond)
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
