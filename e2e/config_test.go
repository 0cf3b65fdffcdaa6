package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/testenv"
)

// twoVersions registers web.e2e.svc.cluster.local on backends a and b with subsets of the same
// names, behind the Gateway "edge" on gwPort.
func twoVersions(gwPort int, a, b *echoBackend) string {
	return gatewayYAML(gwPort) + "---\n" + serviceEntryYAML(webHost, 80, "HTTP", a.Endpoint(), b.Endpoint()) + "---\n" +
		subsetsYAML(webHost, a.Name, b.Name)
}

// routeTo is a VirtualService "web" sending everything to subset, with extra YAML appended to its
// only HTTP route (indented by four spaces).
func routeTo(subset, extra string) string {
	return edgeVS("web", "e2e", `["*"]`, fmt.Sprintf(`  http:
  - route: [{destination: {host: web.e2e.svc.cluster.local, subset: %s}}]
%s`, subset, extra))
}

// syncz is the part of straitd's /debug/syncz the tests read.
type syncz []struct {
	Proxy string `json:"proxy"`
	Types map[string]struct {
		Status string `json:"status"`
	} `json:"types"`
	LastNack *struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"lastNack"`
}

// readSyncz fetches straitd's sync status.
func readSyncz(sd *testenv.Straitd) (syncz, error) {
	rep, err := do(h1Client, request{URL: "http://" + sd.HTTP + "/debug/syncz"})
	if err != nil {
		return nil, err
	}
	if rep.Code != http.StatusOK {
		return nil, fmt.Errorf("/debug/syncz: %d %s", rep.Code, rep.Body)
	}
	var s syncz
	if err := json.Unmarshal([]byte(rep.Body), &s); err != nil {
		return nil, fmt.Errorf("/debug/syncz: %v: %s", err, rep.Body)
	}
	if len(s) != 1 {
		return nil, fmt.Errorf("/debug/syncz lists %d proxies, want 1: %s", len(s), rep.Body)
	}
	return s, nil
}

// waitRDSSynced waits until straitd's /syncz shows the first proxy's RDS SYNCED; when says at
// which step of the test.
func waitRDSSynced(t *testing.T, sd *testenv.Straitd, when string) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, func() error {
		s, err := readSyncz(sd)
		if err == nil && s[0].Types["RDS"].Status != "SYNCED" {
			err = fmt.Errorf("RDS %q %s", s[0].Types["RDS"].Status, when)
		}
		return err
	})
}

// TestNACKKeepsServingTheOldConfig pushes a VirtualService whose translation uses a field
// strait-proxy does not implement (retryRemoteLocalities becomes Envoy's retry_priority
// previous_priorities; when the proxy learns it, pick another unimplemented field). The proxy
// must NACK the update naming the field, straitd and `strait proxy-status` must show it STALE,
// and traffic must keep following the last accepted config until a good one arrives.
func TestNACKKeepsServingTheOldConfig(t *testing.T) {
	skipShort(t)
	a := startBackend(t, "127.0.0.51", "a", backendOptions{})
	b := startBackend(t, "127.0.0.52", "b", backendOptions{})
	gw := testenv.FreePort(t)
	sd, _ := edge(t, map[string]string{"mesh.yaml": twoVersions(gw, a, b), "route.yaml": routeTo("a", "")})
	url := fmt.Sprintf("http://127.0.0.1:%d/", gw)
	waitBackend(t, 30*time.Second, h1Client, request{URL: url}, "a")
	waitRDSSynced(t, sd, "before the bad update")

	sd.WriteConfig(t, "route.yaml", routeTo("b", "    retries: {attempts: 2, retryOn: 5xx, retryRemoteLocalities: true}\n"))
	var nack string
	testenv.Eventually(t, 15*time.Second, func() error {
		s, err := readSyncz(sd)
		if err != nil {
			return err
		}
		if st := s[0].Types["RDS"].Status; st != "STALE" || s[0].LastNack == nil {
			return fmt.Errorf("RDS %q, last NACK %+v; want STALE with a NACK", st, s[0].LastNack)
		}
		nack = s[0].LastNack.Message
		return nil
	})
	if !strings.Contains(nack, "retry_priority") {
		t.Fatalf("NACK %q does not name retry_priority", nack)
	}
	out, err := strait(t, sd, "proxy-status")
	if err != nil || !strings.Contains(out, "STALE") || !strings.Contains(out, "edge-1") {
		t.Fatalf("strait proxy-status: %v\n%s", err, out)
	}
	out, err = strait(t, sd, "proxy-status", "-o", "json")
	if err != nil || !strings.Contains(out, "retry_priority") {
		t.Fatalf("strait proxy-status -o json does not show the NACK: %v\n%s", err, out)
	}

	// The proxy keeps the last accepted routes: everything still goes to a.
	counts := tally(t, h1Client, 20, func(int) request { return request{URL: url} })
	if counts["a"] != 20 {
		t.Fatalf("after the NACK: %s, want all 20 on a", fmtCounts(counts))
	}

	// A good config is accepted again.
	sd.WriteConfig(t, "route.yaml", routeTo("b", "    retries: {attempts: 2, retryOn: 5xx}\n"))
	waitBackend(t, 15*time.Second, h1Client, request{URL: url}, "b")
	waitRDSSynced(t, sd, "after the fix")
}

// TestConfigChurnWithoutFailedRequests rewrites the watched config 50 times while clients send
// requests through the proxy, and requires every request to succeed. The changes alternate the
// route between two subsets (RDS); every fifth one also changes the load balancer (CDS: new
// clusters replace the old ones while requests are in flight), and some of those add or remove
// a second Gateway server (LDS: a listener comes and goes beside the one in use). Each change is waited
// for: the response carries the generation in a header the route sets.
func TestConfigChurnWithoutFailedRequests(t *testing.T) {
	skipShort(t)
	a := startBackend(t, "127.0.0.53", "a", backendOptions{})
	b := startBackend(t, "127.0.0.54", "b", backendOptions{})
	gw := testenv.FreePort(t)
	mesh := twoVersions(gw, a, b)
	route := func(gen int) string {
		subset := []string{"a", "b"}[gen%2]
		return routeTo(subset, fmt.Sprintf("    headers: {response: {set: {x-generation: %q}}}\n", fmt.Sprint(gen)))
	}
	sd, px := edge(t, map[string]string{"mesh.yaml": mesh, "route.yaml": route(0)})
	url := fmt.Sprintf("http://127.0.0.1:%d/churn", gw)
	defer func() {
		if t.Failed() {
			px.DumpGoroutines() // a stuck request shows where it waits
		}
	}()
	waitBackend(t, 30*time.Second, h1Client, request{URL: url}, "a")

	const (
		changes    = 50
		clients    = 4
		maxPerLoop = 20000
	)
	var (
		stop     atomic.Bool
		ok, fail atomic.Int64
		mu       sync.Mutex
		failures []string
		wg       sync.WaitGroup
	)
	loopDeadline := time.Now().Add(90 * time.Second)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			// HTTP/1.1 with keep-alive, HTTP/1.1 with a connection per request, and h2c.
			client := h1Client
			switch c % 4 {
			case 1:
				client = &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			case 2:
				client = h2cClient
			}
			for i := 0; i < maxPerLoop && !stop.Load() && time.Now().Before(loopDeadline); i++ {
				rep, err := do(client, request{URL: url})
				if err == nil && rep.Code == http.StatusOK && rep.Echo != nil {
					ok.Add(1)
					continue
				}
				fail.Add(1)
				mu.Lock()
				if len(failures) < 10 {
					if err != nil {
						failures = append(failures, err.Error())
					} else {
						failures = append(failures, fmt.Sprintf("%d %.100s", rep.Code, rep.Body))
					}
				}
				mu.Unlock()
			}
		}(c)
	}
	defer func() { stop.Store(true); wg.Wait() }()

	extraPort := testenv.FreePort(t)
	for gen := 1; gen <= changes; gen++ {
		if gen%5 == 0 {
			policy := []string{"ROUND_ROBIN", "LEAST_REQUEST"}[gen/5%2]
			m := strings.Replace(mesh, "  subsets:\n", "  trafficPolicy: {loadBalancer: {simple: "+policy+"}}\n  subsets:\n", 1)
			if gen%10 == 0 && gen%20 != 0 {
				// A second Gateway server: a listener comes and goes beside the one in use.
				m = strings.Replace(m, "  servers: [", fmt.Sprintf("  servers: [{port: {number: %d, name: http2, protocol: HTTP}, hosts: [\"*\"]}, ", extraPort), 1)
			}
			sd.WriteConfig(t, "mesh.yaml", m)
		}
		sd.WriteConfig(t, "route.yaml", route(gen))
		want := fmt.Sprint(gen)
		testenv.Eventually(t, 15*time.Second, func() error {
			rep, err := do(h1Client, request{URL: url})
			if err != nil {
				return fmt.Errorf("change %d: %w", gen, err)
			}
			if got := rep.Header.Get("x-generation"); got != want {
				return fmt.Errorf("change %d: response of generation %q", gen, got)
			}
			if rep.Echo == nil || rep.Echo.Backend != []string{"a", "b"}[gen%2] {
				return fmt.Errorf("change %d: answered by %+v", gen, rep.Echo)
			}
			return nil
		})
		if gen%10 == 0 && gen%20 != 0 {
			waitBackend(t, 15*time.Second, h1Client, request{URL: fmt.Sprintf("http://127.0.0.1:%d/extra", extraPort)}, []string{"a", "b"}[gen%2])
		}
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d changes applied; %d requests succeeded, %d failed", changes, ok.Load(), fail.Load())
	if fail.Load() != 0 {
		t.Fatalf("%d of %d requests failed during config changes; first: %q", fail.Load(), ok.Load()+fail.Load(), failures)
	}
	if ok.Load() < changes {
		t.Fatalf("only %d requests ran during %d changes", ok.Load(), changes)
	}
}
