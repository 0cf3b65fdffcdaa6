package e2e

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/testenv"
)

// lbPolicies maps a path prefix (and service name) to the DestinationRule trafficPolicy of a
// service with the same three endpoints.
var lbPolicies = []struct{ name, policy string }{
	{"rr", "{simple: ROUND_ROBIN}"},
	{"random", "{simple: RANDOM}"},
	{"ring", "{consistentHash: {httpHeaderName: x-user, ringHash: {minimumRingSize: 1024}}}"},
	{"maglev", "{consistentHash: {httpHeaderName: x-user, maglev: {tableSize: 65537}}}"},
	{"query", "{consistentHash: {httpQueryParameterName: user, ringHash: {minimumRingSize: 1024}}}"},
	{"cookie", "{consistentHash: {httpCookie: {name: session, ttl: 600s}, maglev: {}}}"},
	{"source", "{consistentHash: {useSourceIp: true, ringHash: {}}}"},
}

// balanceYAML registers one service per entry of lbPolicies on backends, a least-request service
// on lrBackends, their DestinationRules, and a VirtualService routing /<name> to each.
func balanceYAML(backends, lrBackends []*echoBackend) string {
	var b strings.Builder
	route := func(name string) {
		fmt.Fprintf(&b, "  - match: [{uri: {prefix: /%[1]s}}]\n    route: [{destination: {host: lb-%[1]s.e2e.test}}]\n", name)
	}
	svc := func(name, policy string, eps []*echoBackend) {
		host := "lb-" + name + ".e2e.test"
		b.WriteString(serviceEntryYAML(host, 80, "HTTP", endpoints(eps...)...) + "---\n" +
			trafficPolicyYAML(host, "    loadBalancer: "+policy+"\n") + "---\n")
	}
	for _, p := range lbPolicies {
		svc(p.name, p.policy, backends)
	}
	svc("lr", "{simple: LEAST_REQUEST}", lrBackends)
	b.WriteString(edgeVS("lb", "e2e", `["*"]`, "  http:\n"))
	for _, p := range lbPolicies {
		route(p.name)
	}
	route("lr")
	return b.String()
}

// TestLoadBalancing checks every DestinationRule load balancer through one router proxy: round
// robin spreads evenly, random reaches every endpoint, ring hash and maglev keep each user on
// one endpoint, and least request avoids the endpoint that holds slow requests.
func TestLoadBalancing(t *testing.T) {
	skipShort(t)
	backends := []*echoBackend{
		startBackend(t, "127.0.0.21", "p1", backendOptions{}),
		startBackend(t, "127.0.0.22", "p2", backendOptions{}),
		startBackend(t, "127.0.0.23", "p3", backendOptions{}),
	}
	busy := startBackend(t, "127.0.0.24", "busy", backendOptions{hold: true})
	idle := startBackend(t, "127.0.0.25", "idle", backendOptions{})
	gw := testenv.FreePort(t)
	edge(t, map[string]string{"gateway.yaml": gatewayYAML(gw), "lb.yaml": balanceYAML(backends, []*echoBackend{busy, idle})})
	base := fmt.Sprintf("http://127.0.0.1:%d", gw)
	testenv.Eventually(t, 30*time.Second, func() error {
		for _, p := range append(lbPolicies, struct{ name, policy string }{"lr", ""}) {
			if _, err := backendName(h1Client, request{URL: base + "/" + p.name}); err != nil {
				return err
			}
		}
		return nil
	})

	t.Run("ROUND_ROBIN", func(t *testing.T) {
		const n = 60
		counts := tally(t, h1Client, n, func(int) request { return request{URL: base + "/rr"} })
		for _, be := range backends {
			if c := counts[be.Name]; c < n/3-3 || c > n/3+3 {
				t.Fatalf("round robin over %d requests: %s; want %d±3 each", n, fmtCounts(counts), n/3)
			}
		}
	})

	t.Run("RANDOM", func(t *testing.T) {
		const n = 300
		counts := tally(t, h1Client, n, func(int) request { return request{URL: base + "/random"} })
		t.Logf("random: %s", fmtCounts(counts))
		// Each endpoint is expected 100 times (standard deviation ~8).
		for _, be := range backends {
			if c := counts[be.Name]; c < 60 || c > 140 {
				t.Fatalf("random over %d requests: %s", n, fmtCounts(counts))
			}
		}
	})

	// Each consistent hash case sends `each` requests for each of `users` users; a user must stay
	// on one endpoint, and the users must not all land on the same one (chance 3^-23).
	const users, each = 24, 5
	affinity := func(t *testing.T, name string, client func(u int) *http.Client, mk func(u int) request) {
		t.Helper()
		used := map[string]int{}
		for u := 0; u < users; u++ {
			counts := tally(t, client(u), each, func(int) request { return mk(u) })
			if len(counts) != 1 {
				t.Fatalf("%s: user %d spread over %s, want one endpoint", name, u, fmtCounts(counts))
			}
			for be := range counts {
				used[be]++
			}
		}
		if len(used) < 2 {
			t.Fatalf("%s: all %d users hashed to %s", name, users, fmtCounts(used))
		}
	}
	shared := func(int) *http.Client { return h1Client }
	for _, kind := range []string{"ring", "maglev"} {
		t.Run("consistentHash header "+kind, func(t *testing.T) {
			affinity(t, kind, shared, func(u int) request {
				return request{URL: base + "/" + kind, Header: http.Header{"X-User": {fmt.Sprintf("user-%d", u)}}}
			})
		})
	}
	t.Run("consistentHash query parameter", func(t *testing.T) {
		affinity(t, "query", shared, func(u int) request { return request{URL: fmt.Sprintf("%s/query?user=u%d", base, u)} })
	})
	t.Run("consistentHash source IP", func(t *testing.T) {
		// Each user connects from its own loopback address.
		clients := make([]*http.Client, users)
		for u := range clients {
			src := &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(10+u))}
			tr := &http.Transport{DialContext: (&net.Dialer{LocalAddr: src, Timeout: 5 * time.Second}).DialContext}
			defer tr.CloseIdleConnections()
			clients[u] = &http.Client{Transport: tr, Timeout: 15 * time.Second}
		}
		affinity(t, "source", func(u int) *http.Client { return clients[u] }, func(int) request { return request{URL: base + "/source"} })
	})
	t.Run("consistentHash generated cookie", func(t *testing.T) {
		// Without the cookie the proxy picks an endpoint and sets a cookie that keeps the user
		// there (httpCookie with a ttl).
		cookies := make([]string, users)
		for u := range cookies {
			rep := mustDo(t, h1Client, request{URL: base + "/cookie"})
			c := rep.Header.Get("Set-Cookie")
			if rep.Code != http.StatusOK || !strings.HasPrefix(c, "session=") {
				t.Fatalf("first request: %d, Set-Cookie %q; want a session cookie", rep.Code, c)
			}
			cookies[u], _, _ = strings.Cut(c, ";")
		}
		affinity(t, "cookie", shared, func(u int) request {
			return request{URL: base + "/cookie", Header: http.Header{"Cookie": {cookies[u]}}}
		})
	})

	t.Run("LEAST_REQUEST", func(t *testing.T) {
		// Park slow requests on "busy": requests with hold=1 block there and return at once
		// from "idle". Keep sending until busy holds enough of them.
		const held = 4
		var wg sync.WaitGroup
		defer wg.Wait()
		defer busy.Release()
		deadline := time.Now().Add(20 * time.Second)
		for sent := 0; busy.Active() < held; sent++ {
			if sent >= 100 || time.Now().After(deadline) {
				t.Fatalf("busy holds %d requests after %d attempts", busy.Active(), sent)
			}
			// Read the count before sending: a fast answer must not be counted in prev.
			prev := busy.Hits() + idle.Hits()
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _ = do(h1Client, request{URL: base + "/lr?hold=1"})
			}()
			testenv.Eventually(t, 10*time.Second, func() error {
				if busy.Hits()+idle.Hits() == prev {
					return fmt.Errorf("request not answered yet")
				}
				return nil
			})
		}
		// With two endpoints, power of two choices picks the busy one only when both draws
		// land on it: 1 in 4. Round robin or random would give half.
		const n = 200
		counts := tally(t, h1Client, n, func(int) request { return request{URL: base + "/lr"} })
		t.Logf("least request, %d held on busy: %s", busy.Active(), fmtCounts(counts))
		// Expected 150 (standard deviation ~6); 130 is more than 3 deviations below, and 5 above
		// what random or round robin would give.
		if counts["idle"] < 130 {
			t.Fatalf("least request with %d requests held on busy: %s; want idle ≥ 130 of %d (expected 150)", busy.Active(), fmtCounts(counts), n)
		}
	})
}
