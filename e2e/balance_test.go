package e2e

import (
	"fmt"
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
}

// balanceYAML registers one service per entry of lbPolicies on backends, a least-request service
// on lrBackends, their DestinationRules, and a VirtualService routing /<name> to each.
func balanceYAML(backends, lrBackends []*echoBackend) string {
	var b strings.Builder
	route := func(name string) {
		fmt.Fprintf(&b, "  - match: [{uri: {prefix: /%[1]s}}]\n    route: [{destination: {host: lb-%[1]s.e2e.test}}]\n", name)
	}
	svc := func(name, policy string, eps []*echoBackend) {
		b.WriteString(serviceEntryYAML("lb-"+name, "lb-"+name+".e2e.test", 80, "HTTP", endpoints(eps...)...))
		fmt.Fprintf(&b, `---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: lb-%s, namespace: e2e}
spec:
  host: lb-%[1]s.e2e.test
  trafficPolicy: {loadBalancer: %s}
---
`, name, policy)
	}
	for _, p := range lbPolicies {
		svc(p.name, p.policy, backends)
	}
	svc("lr", "{simple: LEAST_REQUEST}", lrBackends)
	b.WriteString(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: lb, namespace: e2e}
spec:
  hosts: ["*"]
  gateways: [edge]
  http:
`)
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

	for _, kind := range []string{"ring", "maglev"} {
		t.Run("consistentHash "+kind, func(t *testing.T) {
			const users, each = 24, 5
			used := map[string]int{}
			for u := 0; u < users; u++ {
				user := fmt.Sprintf("user-%d", u)
				counts := tally(t, h1Client, each, func(int) request {
					return request{URL: base + "/" + kind, Header: http.Header{"X-User": {user}}}
				})
				if len(counts) != 1 {
					t.Fatalf("%s: %s spread over %s, want one endpoint", kind, user, fmtCounts(counts))
				}
				for name := range counts {
					used[name]++
				}
			}
			// 24 users on one endpoint out of three would be a broken hash (chance 3^-23).
			if len(used) < 2 {
				t.Fatalf("%s: all %d users hashed to %s", kind, users, fmtCounts(used))
			}
		})
	}

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
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _ = do(h1Client, request{URL: base + "/lr?hold=1"})
			}()
			prev := busy.Hits() + idle.Hits()
			testenv.Eventually(t, 10*time.Second, func() error {
				if busy.Hits()+idle.Hits() == prev {
					return fmt.Errorf("request not answered yet")
				}
				return nil
			})
		}
		// With two endpoints, power of two choices picks the busy one only when both draws
		// land on it: 1 in 4. Round robin or random would give 50%.
		const n = 100
		counts := tally(t, h1Client, n, func(int) request { return request{URL: base + "/lr"} })
		t.Logf("least request, %d held on busy: %s", busy.Active(), fmtCounts(counts))
		if counts["idle"] < 62 {
			t.Fatalf("least request with %d requests held on busy: %s; want idle ≥ 62 of %d (expected 75)", busy.Active(), fmtCounts(counts), n)
		}
	})
}
