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

// resilienceYAML registers two services behind the Gateway: "outlier" (two good endpoints and
// one that always fails, with outlier detection and no retries) and "breaker" (one endpoint
// with a one-connection pool and room for one pending request).
func resilienceYAML(gw int, good1, good2, broken, held *echoBackend) string {
	return gatewayYAML(gw) + "---\n" +
		serviceEntryYAML("outlier.e2e.test", 80, "HTTP", good1.Endpoint(), good2.Endpoint(), broken.Endpoint()) + "---\n" +
		serviceEntryYAML("breaker.e2e.test", 80, "HTTP", held.Endpoint()) + "---\n" +
		trafficPolicyYAML("outlier.e2e.test", `    loadBalancer: {simple: ROUND_ROBIN}
    outlierDetection: {consecutive5xxErrors: 2, interval: 100ms, baseEjectionTime: 5m, maxEjectionPercent: 100}
`) + "---\n" +
		trafficPolicyYAML("breaker.e2e.test", `    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 0}
`) + "---\n" +
		edgeVS("resilience", "e2e", `["*"]`, `  http:
  - match: [{uri: {prefix: /outlier}}]
    retries: {attempts: 0}
    route: [{destination: {host: outlier.e2e.test}}]
  - match: [{uri: {prefix: /breaker}}]
    retries: {attempts: 0}
    route: [{destination: {host: breaker.e2e.test}}]
`)
}

// TestOutlierDetectionAndCircuitBreaker checks that outlier detection ejects an endpoint that
// keeps failing, and that a connection pool limit answers 503 overflow (UO) once its pending
// queue is full.
func TestOutlierDetectionAndCircuitBreaker(t *testing.T) {
	skipShort(t)
	good1 := startBackend(t, "127.0.0.101", "good1", backendOptions{})
	good2 := startBackend(t, "127.0.0.102", "good2", backendOptions{})
	broken := startBackend(t, "127.0.0.103", "broken", backendOptions{fail: true})
	held := startBackend(t, "127.0.0.104", "held", backendOptions{hold: true})
	gw := testenv.FreePort(t)
	edge(t, map[string]string{"resilience.yaml": resilienceYAML(gw, good1, good2, broken, held)})
	base := fmt.Sprintf("http://127.0.0.1:%d", gw)
	testenv.Eventually(t, 30*time.Second, func() error {
		_, err := backendName(h1Client, request{URL: base + "/breaker"})
		return err
	})

	t.Run("outlier detection", func(t *testing.T) {
		// "broken" answers 503 to everything; once ejected, no request reaches it.
		n := 0
		testenv.Eventually(t, 20*time.Second, func() error {
			// 20 requests in a row without a failure: the broken endpoint is ejected.
			for i := 0; i < 20; i++ {
				n++
				rep, err := do(h1Client, request{URL: base + "/outlier"})
				if err != nil {
					return err
				}
				if rep.Code != http.StatusOK {
					if rep.Header.Get("x-backend") != "broken" {
						return fmt.Errorf("a good endpoint failed: %d %v", rep.Code, rep.Header)
					}
					return fmt.Errorf("request %d failed on broken", n)
				}
			}
			return nil
		})
		before := broken.Hits()
		counts := tally(t, h1Client, 30, func(int) request { return request{URL: base + "/outlier"} })
		if broken.Hits() != before || counts["good1"] == 0 || counts["good2"] == 0 {
			t.Fatalf("after ejection: %s, broken got %d more", fmtCounts(counts), broken.Hits()-before)
		}
	})

	t.Run("circuit breaker", func(t *testing.T) {
		// One request holds the only connection, a second waits as the only pending request;
		// a third overflows.
		var wg sync.WaitGroup
		defer wg.Wait()
		defer held.Release()
		for i := 0; i < 2; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _ = do(h1Client, request{URL: base + "/breaker?hold=1"})
			}()
		}
		testenv.Eventually(t, 10*time.Second, func() error {
			if held.Active() != 1 {
				return fmt.Errorf("held backend has %d active requests, want 1", held.Active())
			}
			return nil
		})
		var rep *reply
		testenv.Eventually(t, 10*time.Second, func() (err error) {
			// Until the second request is queued, a probe may queue itself: bounded by the
			// client timeout, so use a short one.
			c := &http.Client{Timeout: 2 * time.Second}
			rep, err = do(c, request{URL: base + "/breaker"})
			if err == nil && rep.Code != http.StatusServiceUnavailable {
				err = fmt.Errorf("third request: %d", rep.Code)
			}
			return err
		})
		if rep.Echo != nil || !strings.Contains(rep.Body, "overflow") {
			t.Fatalf("overflow answer: %d %.100s; want the proxy's overflow reply", rep.Code, rep.Body)
		}
		// Envoy's router marks requests dropped by circuit breaking.
		if rep.Header.Get("x-envoy-overloaded") != "true" {
			t.Errorf("overflow answer lacks x-envoy-overloaded: true: %v", rep.Header)
		}
	})
}
