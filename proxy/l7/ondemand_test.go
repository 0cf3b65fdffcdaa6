package l7

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/strait-mesh/strait/proxy/route"
	"github.com/strait-mesh/strait/proxy/stats"
	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
)

// demandEnv is a testEnv that demands: each demand is recorded, then answered by answer (which
// may block, and may install tables and clusters before it returns, as the xDS client applies
// an answer before Demand returns).
type demandEnv struct {
	testEnv
	mu     sync.Mutex
	calls  []string // "host <rc>/<authority>" or "cluster <name>"
	answer func(ctx context.Context, call string) (bool, error)
}

func (e *demandEnv) Demander() Demander { return e }

func (e *demandEnv) Demand(ctx context.Context, rc, authority string) (bool, error) {
	return e.call(ctx, "host "+rc+"/"+authority)
}

func (e *demandEnv) DemandCluster(ctx context.Context, name string) (bool, error) {
	return e.call(ctx, "cluster "+name)
}

func (e *demandEnv) call(ctx context.Context, c string) (bool, error) {
	e.mu.Lock()
	e.calls = append(e.calls, c)
	e.mu.Unlock()
	return e.answer(ctx, c)
}

func (e *demandEnv) demanded() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.calls...)
}

// setTable installs the route table "80" built from virtual hosts.
func (e *demandEnv) setTable(t *testing.T, vhs ...*routev3.VirtualHost) {
	t.Helper()
	tb, err := route.Compile(&routev3.RouteConfiguration{Name: "80", VirtualHosts: vhs})
	if err != nil {
		t.Fatal(err)
	}
	e.testEnv.mu.Lock()
	defer e.testEnv.mu.Unlock()
	if e.tables == nil {
		e.tables = map[string]*route.Table{}
	}
	e.tables["80"] = tb
}

func (e *demandEnv) setCluster(name string, u Upstream) {
	e.testEnv.mu.Lock()
	defer e.testEnv.mu.Unlock()
	if e.clusters == nil {
		e.clusters = map[string]Upstream{}
	}
	e.clusters[name] = u
}

// catchAll is Istio's allow_any virtual host as a direct response that tells it apart.
func catchAll() *routev3.VirtualHost {
	return &routev3.VirtualHost{Name: "allow_any", Domains: []string{"*"}, Routes: []*routev3.Route{{
		Match:  pfx("/"),
		Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 418}},
	}}}
}

func serviceVhost(host, cluster string) *routev3.VirtualHost {
	return &routev3.VirtualHost{Name: host, Domains: []string{host, host + ":80"},
		Routes: []*routev3.Route{fwdRoute("r", pfx("/"), toCluster(cluster))}}
}

// startOnDemand serves an RDS connection manager (route configuration "80") over env.
func startOnDemand(t *testing.T, env Env, timeout time.Duration) (addr string, st *stats.Store) {
	t.Helper()
	st = stats.NewStore()
	hcm := inlineHCM(nil)
	hcm.RouteSpecifier = &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: "80"}}
	h, err := New(hcm, env, Options{Stats: st, DemandTimeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	return serveConns(t, h, loopbackInfo), st
}

// get sends GET / with host to addr and returns the status.
func get(t *testing.T, addr, host string) int {
	t.Helper()
	code, err := tryGet(addr, host)
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// tryGet is get for other goroutines than the test's.
func tryGet(addr, host string) (int, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
	if err != nil {
		return 0, err
	}
	req.Host = host
	resp, err := h1Client().Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, err
}

// TestOnDemandHoldThenServe: a request for a host the proxy has no virtual host for (only the
// catch-all) is held while its virtual host is demanded, then routed to it; requests for the
// same host at once are all held and all served by the one answer, and a later request for it
// does not demand again once the table has it.
func TestOnDemandHoldThenServe(t *testing.T) {
	up := newTestUpstream(startUpstream(t, echoHandler(), false), false)
	env := &demandEnv{}
	env.setTable(t, catchAll())
	release := make(chan struct{})
	held := make(chan string, 16)
	env.answer = func(ctx context.Context, c string) (bool, error) {
		held <- c
		select {
		case <-release:
		case <-ctx.Done():
			return false, ctx.Err()
		}
		env.setCluster("outbound|80||a.ns.svc.cluster.local", up)
		env.setTable(t, catchAll(), serviceVhost("a.ns.svc.cluster.local", "outbound|80||a.ns.svc.cluster.local"))
		return true, nil
	}
	addr, st := startOnDemand(t, env, time.Minute)

	const n = 4
	codes := make(chan int, n)
	for range n {
		go func() {
			code, err := tryGet(addr, "a.ns.svc.cluster.local")
			if err != nil {
				t.Error(err)
			}
			codes <- code
		}()
	}
	for range n {
		select {
		case c := <-held:
			if c != "host 80/a.ns.svc.cluster.local" {
				t.Errorf("demanded %q", c)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("requests were not held for a demand")
		}
	}
	select {
	case c := <-codes:
		t.Fatalf("a request was answered (%d) before the demand was", c)
	default:
	}
	close(release)
	for range n {
		if c := <-codes; c != 200 {
			t.Errorf("held request: %d, want 200 from the demanded virtual host", c)
		}
	}
	if code := get(t, addr, "a.ns.svc.cluster.local:80"); code != 200 {
		t.Errorf("after the answer: %d", code)
	}
	if got := len(env.demanded()); got != n {
		t.Errorf("%d demands, want %d (the host's virtual host is held now)", got, n)
	}
	if v := st.Counter("http.test.on_demand.found", "").Value(); v != n {
		t.Errorf("on_demand.found = %d, want %d", v, n)
	}
}

// TestOnDemandNotFound: a host the control plane has no virtual host for gets what a miss gets
// without on-demand configuration: the catch-all, or 404 NR without one.
func TestOnDemandNotFound(t *testing.T) {
	env := &demandEnv{answer: func(context.Context, string) (bool, error) { return false, nil }}
	env.setTable(t, catchAll())
	addr, st := startOnDemand(t, env, time.Minute)
	if code := get(t, addr, "nope.example.com"); code != 418 {
		t.Errorf("not found with a catch-all: %d, want the catch-all's 418", code)
	}
	env.setTable(t, serviceVhost("other", "x"))
	if code := get(t, addr, "nope.example.com:8080"); code != 404 {
		t.Errorf("not found without a catch-all: %d, want 404", code)
	}
	want := []string{"host 80/nope.example.com", "host 80/nope.example.com:8080"}
	if got := env.demanded(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("demanded %q, want %q", got, want)
	}
	if v := st.Counter("http.test.on_demand.not_found", "").Value(); v != 2 {
		t.Errorf("on_demand.not_found = %d, want 2", v)
	}
}

// TestOnDemandTimeout: a demand that is not answered within the demand timeout lets the request
// go on as a miss.
func TestOnDemandTimeout(t *testing.T) {
	env := &demandEnv{answer: func(ctx context.Context, _ string) (bool, error) {
		<-ctx.Done()
		return false, ctx.Err()
	}}
	env.setTable(t, catchAll())
	addr, st := startOnDemand(t, env, 20*time.Millisecond)
	if code := get(t, addr, "slow.ns"); code != 418 {
		t.Errorf("timed-out demand: %d, want the catch-all's 418", code)
	}
	if v := st.Counter("http.test.on_demand.failed", "").Value(); v != 1 {
		t.Errorf("on_demand.failed = %d, want 1", v)
	}
}

// TestOnDemandWhatIsDemanded: hosts with a virtual host of their own, IP literals and malformed
// hosts are not demanded.
func TestOnDemandWhatIsDemanded(t *testing.T) {
	env := &demandEnv{answer: func(context.Context, string) (bool, error) { return false, nil }}
	env.setTable(t, catchAll(), &routev3.VirtualHost{Name: "known", Domains: []string{"known.ns"}, Routes: []*routev3.Route{{
		Match:  pfx("/"),
		Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 204}},
	}}})
	addr, _ := startOnDemand(t, env, time.Minute)
	for host, want := range map[string]int{"known.ns": 204, "10.96.0.5": 418, "10.96.0.5:80": 418, "[fd00::5]:80": 418} {
		if code := get(t, addr, host); code != want {
			t.Errorf("%s: %d, want %d", host, code, want)
		}
	}
	if got := env.demanded(); len(got) != 0 {
		t.Errorf("demanded %q, want nothing", got)
	}
}

func TestDemandable(t *testing.T) {
	for host, want := range map[string]bool{
		"reviews": true, "reviews:9080": true, "reviews.default.svc.cluster.local": true, "my_svc.ns": true,
		"10.0.0.1": false, "10.0.0.1:80": false, "[::1]:80": false, "::1": false, "": false,
		"a:b": false, "a:99999": false, "a b": false, "a/b": false, "123": false, "1.2.3": false,
	} {
		if got := demandable(host); got != want {
			t.Errorf("demandable(%q) = %v, want %v", host, got, want)
		}
	}
}

// TestOnDemandCluster: a route to a cluster the proxy does not hold demands it before answering
// 503 NC.
func TestOnDemandCluster(t *testing.T) {
	up := newTestUpstream(startUpstream(t, echoHandler(), false), false)
	env := &demandEnv{}
	env.answer = func(_ context.Context, c string) (bool, error) {
		if c != "cluster b" {
			return false, nil
		}
		env.setCluster("b", up)
		return true, nil
	}
	env.setTable(t, serviceVhost("b.ns", "b"), serviceVhost("c.ns", "c"))
	addr, _ := startOnDemand(t, env, time.Minute)
	if code := get(t, addr, "b.ns"); code != 200 {
		t.Errorf("demanded cluster: %d, want 200", code)
	}
	if code := get(t, addr, "c.ns"); code != 503 {
		t.Errorf("cluster not found: %d, want 503 NC", code)
	}
	want := []string{"cluster b", "cluster c"}
	if got := env.demanded(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("demanded %q, want %q", got, want)
	}
}

// TestOnDemandOff: an Env without a Demander never holds a request.
func TestOnDemandOff(t *testing.T) {
	env := &testEnv{}
	tb, err := route.Compile(&routev3.RouteConfiguration{Name: "80", VirtualHosts: []*routev3.VirtualHost{catchAll()}})
	if err != nil {
		t.Fatal(err)
	}
	env.tables = map[string]*route.Table{"80": tb}
	addr, _ := startOnDemand(t, env, time.Minute)
	if code := get(t, addr, "a.ns"); code != 418 {
		t.Errorf("%d, want the catch-all's 418", code)
	}
}
