package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/testenv"
)

// globalRateLimitKindBudget is the shared budget of /productpage per minute.
const globalRateLimitKindBudget = 6

// globalRateLimitKind is the first-class equivalent of Istio's global rate limit task
// (globalRateLimitEnvoyFilter and globalRateLimitServiceConfig): every ingress gateway shares
// globalRateLimitKindBudget requests to /productpage per minute, kept by straitd's own rate
// limit service; /warmup has a large budget of its own.
var globalRateLimitKind = fmt.Sprintf(`apiVersion: extensions.strait.io/v1alpha1
kind: RateLimit
metadata: {name: ingress, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  rules:
  - name: productpage
    scope: Global
    match:
      to: [{operation: {paths: [/productpage]}}]
    limit: {requests: %d, per: 1m}
    response:
      headers: {x-limited-by: strait}
  - name: warmup
    scope: Global
    match:
      to: [{operation: {paths: [/warmup]}}]
    limit: {requests: 1000, per: 1m}
`, globalRateLimitKindBudget)

// TestRateLimitKindGlobalSharedBudget: two ingress gateways selected by one RateLimit with
// scope Global share one budget through straitd's in-memory rate limit service, which takes the
// limit from the RateLimit itself (no --ratelimit-config): of 2×budget requests alternating
// between the gateways, budget are answered and budget get 429 with the x-ratelimit-* headers,
// x-envoy-ratelimited and the rule's response header.
func TestRateLimitKindGlobalSharedBudget(t *testing.T) {
	skipShort(t)
	const rlsIP = "127.0.0.236"
	app := startBackend(t, "127.0.0.1", "productpage", backendOptions{})
	portA, portB, rlsPort := testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)

	sd := testenv.StartStraitd(t, map[string]string{"mesh.yaml": twoGatewayMesh(app.Port, portA, portB), "ratelimit.yaml": globalRateLimitKind},
		"--ratelimit-listen", fmt.Sprintf("%s:%d", rlsIP, rlsPort))
	gws, urls := startTwoGateways(t, sd, portA, portB)
	const target = "outbound|9080||productpage.default.svc.cluster.local"

	// Both gateways call the service: /warmup is counted by its own rule.
	for i, gw := range gws {
		testenv.Eventually(t, 30*time.Second, func() error {
			rep, err := do(h1Client, request{URL: urls[i] + "/warmup"})
			if err != nil {
				return err
			}
			if rep.Code != http.StatusOK {
				return fmt.Errorf("status %d", rep.Code)
			}
			if rep.Header.Get("X-Ratelimit-Limit") == "" {
				return fmt.Errorf("gateway %d: no x-ratelimit-limit yet", i)
			}
			_, stats, err := gw.AdminGet("/stats")
			if err != nil {
				return err
			}
			if !strings.Contains(stats, "cluster."+target+".ratelimit.ok: ") {
				return fmt.Errorf("gateway %d: no rate limit call yet", i)
			}
			return nil
		})
	}

	sharedBudgetBurst(t, urls, globalRateLimitKindBudget, func(h http.Header) error {
		if h.Get("X-Envoy-Ratelimited") != "true" || h.Get("X-Limited-By") != "strait" ||
			h.Get("X-Ratelimit-Remaining") != "0" ||
			!strings.HasPrefix(h.Get("X-Ratelimit-Limit"), fmt.Sprint(globalRateLimitKindBudget)) {
			return fmt.Errorf("429 headers: %v", h)
		}
		return nil
	})
	for i, gw := range gws {
		_, stats, err := gw.AdminGet("/stats")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(stats, "cluster."+target+".ratelimit.over_limit: ") {
			t.Errorf("gateway %d: no over_limit counter", i)
		}
	}
}
