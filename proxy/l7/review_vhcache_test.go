package l7

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/strait-mesh/strait/proxy/route"
	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
)

// TestReviewVirtualHostCacheOneConnection sends requests on one keep-alive connection
// through a proxy whose RDS table is swapped between requests, with authorities that differ
// in case, a trailing dot (strip_trailing_host_dot) and a port (strip_any_host_port): each
// request reaches the cluster the current table gives its authority, and the per-connection
// cluster stats count each response for the cluster that served it (no defect found).
func TestReviewVirtualHostCacheOneConnection(t *testing.T) {
	ups := map[string]string{}
	for _, n := range []string{"A", "B", "C"} {
		n := n
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Up", n)
		}))
		t.Cleanup(srv.Close)
		ups["c"+n] = srv.Listener.Addr().String()
	}
	env := &testEnv{clusters: map[string]Upstream{}}
	for n, addr := range ups {
		env.clusters[n] = newTestUpstream(addr, false)
	}
	vh := func(name, cluster string, domains ...string) *routev3.VirtualHost {
		return &routev3.VirtualHost{Name: name, Domains: domains, Routes: []*routev3.Route{fwdRoute(name, pfx("/"), toCluster(cluster))}}
	}
	compile := func(vhs ...*routev3.VirtualHost) *route.Table {
		tb, err := route.Compile(&routev3.RouteConfiguration{Name: "r", VirtualHosts: vhs})
		if err != nil {
			t.Fatal(err)
		}
		return tb
	}
	t1 := compile(vh("a", "cA", "a.test"), vh("b", "cB", "b.test"), vh("any", "cC", "*"))
	t2 := compile(vh("a", "cB", "a.test"), vh("b", "cA", "b.test"), vh("any", "cC", "*"))
	env.tables = map[string]*route.Table{"r": t1}
	hcm := inlineHCM(nil)
	hcm.RouteSpecifier = &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: "r"}}
	hcm.StripTrailingHostDot = true
	hcm.StripPortMode = &hcmv3.HttpConnectionManager_StripAnyHostPort{StripAnyHostPort: true}
	p := startProxy(t, hcm, env, false)

	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(c)
	want200 := map[string]uint64{}
	for i, step := range []struct {
		table     *route.Table
		authority string
		up        string
	}{
		{t1, "a.test", "A"}, {t1, "a.test", "A"}, {t1, "b.test", "B"}, {t1, "a.test", "A"},
		{t1, "A.TEST", "A"}, {t1, "a.test.", "A"}, {t1, "A.Test.:8080", "A"}, {t1, "a.test:1", "A"},
		{t1, "other.test", "C"}, {t1, "a.test", "A"},
		{t2, "a.test", "B"}, {t2, "a.test", "B"}, {t2, "b.test", "A"}, {t2, "A.TEST.", "B"},
		{t1, "a.test", "A"}, {t1, "a.test", "A"}, {t2, "a.test:80", "B"}, {t1, "b.test", "B"},
	} {
		env.mu.Lock()
		env.tables["r"] = step.table
		env.mu.Unlock()
		if _, err := fmt.Fprintf(c, "GET /%d HTTP/1.1\r\nHost: %s\r\n\r\n", i, step.authority); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if got := resp.Header.Get("X-Up"); resp.StatusCode != 200 || got != step.up {
			t.Errorf("step %d (%s): %d from %q, want 200 from %q", i, step.authority, resp.StatusCode, got, step.up)
		}
		want200["c"+step.up]++
	}
	for n, want := range want200 {
		if got := p.st.Counter("cluster."+n+".upstream_rq_200", "envoy_cluster_upstream_rq").Value(); got != want {
			t.Errorf("cluster %s: upstream_rq_200 %d, want %d", n, got, want)
		}
	}
}
