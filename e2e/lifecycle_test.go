package e2e

import (
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/testenv"
)

// inFlight sends r with c in the background and waits until backend b holds it. The function it
// returns waits up to 15 s for the answer and fails the test (naming the request what) unless
// the backend answered 200.
func inFlight(t *testing.T, b *echoBackend, c *http.Client, r request, what string) (wait func()) {
	t.Helper()
	type result struct {
		rep *reply
		err error
	}
	done := make(chan result, 1)
	// Arrivals, not the active count: a request answered just before may still be counted
	// active when this starts, and its end would pass for this one's arrival.
	hits := b.Hits()
	go func() {
		rep, err := do(c, r)
		done <- result{rep, err}
	}()
	testenv.Eventually(t, 10*time.Second, func() error {
		if b.Hits() == hits {
			return fmt.Errorf("slow request not at the backend yet")
		}
		return nil
	})
	return func() {
		t.Helper()
		select {
		case r := <-done:
			if r.err != nil || r.rep.Code != http.StatusOK || r.rep.Echo == nil {
				t.Fatalf("%s: %v %+v", what, r.err, r.rep)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("%s did not complete", what)
		}
	}
}

// TestAdminAndDrainOnSIGTERM checks the proxy's admin interface against the traffic it carried
// (/ready, /config_dump, /stats, /stats/prometheus); removes a Gateway server while a slow
// request is in flight on its listener (the request completes, the port closes); then sends
// SIGTERM while a slow request is in flight: the request must complete and the proxy must exit.
func TestAdminAndDrainOnSIGTERM(t *testing.T) {
	skipShort(t)
	a := startBackend(t, "127.0.0.61", "a", backendOptions{})
	b := startBackend(t, "127.0.0.62", "b", backendOptions{})
	gw, extra := testenv.FreePort(t), testenv.FreePort(t)
	mesh := twoVersions(gw, a, b)
	withExtra := strings.Replace(mesh, "  servers: [", fmt.Sprintf("  servers: [{port: {number: %d, name: http2, protocol: HTTP}, hosts: [\"*\"]}, ", extra), 1)
	sd := testenv.StartStraitd(t, map[string]string{"mesh.yaml": withExtra, "route.yaml": routeTo("a", "")})
	// A drain period longer than the slow requests below (testenv's default is 1 s).
	px := testenv.StartProxy(t, sd.XDS, testenv.ProxyOptions{Mode: "router", Name: "edge-1", Namespace: "e2e",
		Labels: map[string]string{"app": "edge"}, Extra: []string{"--drain-duration", "5s"}})
	url := fmt.Sprintf("http://127.0.0.1:%d/", gw)
	waitBackend(t, 30*time.Second, h1Client, request{URL: url}, "a")
	waitBackend(t, 30*time.Second, h1Client, request{URL: fmt.Sprintf("http://127.0.0.1:%d/", extra)}, "a")
	px.WaitReady(t, 10*time.Second)

	// A listener removed by the config drains: its open request finishes, then it closes.
	removed := inFlight(t, a, &http.Client{Timeout: 15 * time.Second}, request{URL: fmt.Sprintf("http://127.0.0.1:%d/slow?sleep=2s", extra)},
		"request in flight on a removed listener")
	// The listener stops accepting (long before the 2 s request ends), and the request
	// still completes.
	sd.WriteConfig(t, "mesh.yaml", mesh)
	testenv.Eventually(t, 15*time.Second, func() error {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", extra), time.Second)
		if err == nil {
			c.Close()
			return fmt.Errorf("the removed listener still accepts connections")
		}
		return nil
	})
	removed()
	waitBackend(t, 10*time.Second, h1Client, request{URL: url}, "a")

	const n = 7
	for i := 0; i < n; i++ {
		if name, err := backendName(h1Client, request{URL: url}); err != nil || name != "a" {
			t.Fatalf("request %d: %q, %v", i, name, err)
		}
	}
	cluster := "outbound|80|a|" + webHost
	if code, dump, err := px.AdminGet("/config_dump"); err != nil || code != http.StatusOK {
		t.Errorf("/config_dump: %d, %v: %.500s", code, err, dump)
	} else {
		for _, want := range []string{cluster, fmt.Sprintf("0.0.0.0_%d", gw), "type.googleapis.com/envoy.admin.v3.RoutesConfigDump"} {
			if !strings.Contains(dump, want) {
				t.Errorf("/config_dump lacks %q", want)
			}
		}
	}
	// Requests counted per cluster: at least the n above (more from waiting for the route).
	code, stats, err := px.AdminGet("/stats")
	if err != nil || code != http.StatusOK {
		t.Fatalf("/stats: %d, %v", code, err)
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta("cluster."+cluster+".upstream_rq_total: ") + `(\d+)$`).FindStringSubmatch(stats)
	if m == nil {
		t.Fatalf("/stats has no upstream_rq_total for %s:\n%.3000s", cluster, stats)
	}
	if v, _ := strconv.Atoi(m[1]); int64(v) < n || int64(v) > a.Hits() {
		t.Errorf("upstream_rq_total = %d; backend a saw %d requests, the test sent at least %d", v, a.Hits(), n)
	}
	if code, prom, err := px.AdminGet("/stats/prometheus"); err != nil || code != http.StatusOK || !strings.Contains(prom, "envoy_cluster_upstream_rq_total") {
		t.Errorf("/stats/prometheus: %d, %v, envoy_cluster_upstream_rq_total missing", code, err)
	}

	// SIGTERM with a request in flight: it completes, then the proxy exits.
	done := inFlight(t, a, h1Client, request{URL: url + "slow?sleep=700ms"}, "request in flight at SIGTERM")
	px.Signal(syscall.SIGTERM)
	done()
	select {
	case <-px.Exited():
	case <-time.After(15 * time.Second):
		t.Fatal("proxy did not exit after SIGTERM and its drain period")
	}
}
