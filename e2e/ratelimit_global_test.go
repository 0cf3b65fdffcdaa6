package e2e

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/testenv"
)

// globalRateLimitEnvoyFilter is Istio's "Enabling Rate Limits using Envoy" task, global part, as
// the task writes it: the global rate limit filter before the router of the ingress gateways'
// connection managers, calling the rate limit service's mesh cluster, and the :path as
// descriptor PATH on every virtual host. failureModeDeny is the task's true, or false.
func globalRateLimitEnvoyFilter(failureModeDeny bool) string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: filter-ratelimit
  namespace: istio-system
spec:
  workloadSelector:
    # select by label in the same namespace
    labels:
      istio: ingressgateway
  configPatches:
    # The Envoy config you want to modify
    - applyTo: HTTP_FILTER
      match:
        context: GATEWAY
        listener:
          filterChain:
            filter:
              name: "envoy.filters.network.http_connection_manager"
              subFilter:
                name: "envoy.filters.http.router"
      patch:
        operation: INSERT_BEFORE
        # Adds the Envoy Rate Limit Filter in HTTP filter chain.
        value:
          name: envoy.filters.http.ratelimit
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit
            # domain can be anything! Match it to the ratelimter service config
            domain: ratelimit
            failure_mode_deny: %t
            timeout: 10s
            rate_limit_service:
              grpc_service:
                envoy_grpc:
                  cluster_name: outbound|8081||ratelimit.default.svc.cluster.local
                  authority: ratelimit.default.svc.cluster.local
              transport_api_version: V3
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: filter-ratelimit-svc
  namespace: istio-system
spec:
  workloadSelector:
    labels:
      istio: ingressgateway
  configPatches:
    - applyTo: VIRTUAL_HOST
      match:
        context: GATEWAY
        routeConfiguration:
          vhost:
            name: ""
            route:
              action: ANY
      patch:
        operation: MERGE
        # Applies the rate limit rules.
        value:
          rate_limits:
            - actions: # any actions in here
              - request_headers:
                  header_name: ":path"
                  descriptor_key: "PATH"
`, failureModeDeny)
}

// globalRateLimitBudget is the shared budget of /productpage per minute.
const globalRateLimitBudget = 6

// globalRateLimitServiceConfig is the task's rate limit service config (its ConfigMap), with
// /productpage at globalRateLimitBudget per minute.
var globalRateLimitServiceConfig = fmt.Sprintf(`domain: ratelimit
descriptors:
  - key: PATH
    value: "/productpage"
    rate_limit:
      unit: minute
      requests_per_unit: %d
  - key: PATH
    rate_limit:
      unit: minute
      requests_per_unit: 1000
`, globalRateLimitBudget)

// TestGlobalRateLimitSharedBudget: two ingress gateways (routers) share one budget through
// straitd's in-memory rate limit service, configured by Istio's global rate-limit EnvoyFilter
// applied unchanged; with the service stopped, requests fail with 500 (the task's
// failure_mode_deny: true) or pass (false).
func TestGlobalRateLimitSharedBudget(t *testing.T) {
	skipShort(t)
	const rlsIP = "127.0.0.221"
	rlsPort := testenv.FreePort(t)

	// The rate limit service: a straitd of its own, so that it can be stopped alone.
	rlsDir := t.TempDir()
	rlsConfig := filepath.Join(rlsDir, "ratelimit.yaml")
	writeFile(t, rlsConfig, globalRateLimitServiceConfig)
	rls := testenv.StartStraitd(t, map[string]string{"empty.yaml": ""}, "--mesh-address", "",
		"--ratelimit-listen", fmt.Sprintf("%s:%d", rlsIP, rlsPort), "--ratelimit-config", rlsConfig)
	globalRateLimitTask(t, rlsIP, rlsPort, func() { rls.Stop(5 * time.Second) })
}

// globalRateLimitTask runs Istio's global rate-limit task (globalRateLimitEnvoyFilter) against
// the rate limit service at rlsIP:rlsPort, which must serve globalRateLimitServiceConfig: two
// ingress gateways share its budget of /productpage; then stopService stops the service and
// requests fail with 500 (failure_mode_deny: true) or pass (false).
func globalRateLimitTask(t *testing.T, rlsIP string, rlsPort int, stopService func()) {
	t.Helper()
	app := startBackend(t, "127.0.0.1", "productpage", backendOptions{})
	portA, portB := testenv.FreePort(t), testenv.FreePort(t)
	cfg := twoGatewayMesh(app.Port, portA, portB) + "---\n" + staticServiceYAML("ratelimit.default.svc.cluster.local", 8081, "grpc", "GRPC",
		fmt.Sprintf("{address: %s, ports: {grpc: %d}}", rlsIP, rlsPort))
	sd := testenv.StartStraitd(t, map[string]string{"mesh.yaml": cfg, "ratelimit.yaml": globalRateLimitEnvoyFilter(true)})
	gws, urls := startTwoGateways(t, sd, portA, portB)
	const target = "outbound|9080||productpage.default.svc.cluster.local"

	// Both gateways call the service: /warmup has its own large budget.
	for i, gw := range gws {
		testenv.Eventually(t, 30*time.Second, func() error {
			rep, err := do(h1Client, request{URL: urls[i] + "/warmup"})
			if err != nil {
				return err
			}
			if rep.Code != http.StatusOK {
				return fmt.Errorf("status %d", rep.Code)
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

	sharedBudgetBurst(t, urls, globalRateLimitBudget, func(h http.Header) error {
		if h.Get("X-Envoy-Ratelimited") != "true" {
			return fmt.Errorf("429 without x-envoy-ratelimited: %v", h)
		}
		return nil
	})

	// The service stopped: failure_mode_deny: true answers 500 (flag RLSE).
	stopService()
	for _, u := range urls {
		if rep := mustDo(t, h1Client, request{URL: u + "/productpage"}); rep.Code != http.StatusInternalServerError {
			t.Errorf("service down, failure_mode_deny true: status %d, want 500", rep.Code)
		}
	}
	// failure_mode_deny: false lets requests through.
	sd.WriteConfig(t, "ratelimit.yaml", globalRateLimitEnvoyFilter(false))
	for _, u := range urls {
		testenv.Eventually(t, 30*time.Second, func() error {
			rep, err := do(h1Client, request{URL: u + "/productpage"})
			if err != nil {
				return err
			}
			if rep.Code != http.StatusOK {
				return fmt.Errorf("service down, failure_mode_deny false: status %d, want 200", rep.Code)
			}
			return nil
		})
	}
	for i, gw := range gws {
		_, stats, err := gw.AdminGet("/stats")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(stats, "cluster."+target+".ratelimit.failure_mode_allowed: ") {
			t.Errorf("gateway %d: no failure_mode_allowed counter", i)
		}
	}
}

// sharedBudgetBurst sends 2×budget requests alternating between two gateways that share one
// global budget of budget per minute: exactly budget are answered and budget get 429, each 429
// passing check. Windows are calendar minutes, so the burst keeps away from a minute's end.
func sharedBudgetBurst(t *testing.T, urls []string, budget int, check func(http.Header) error) {
	t.Helper()
	if s := time.Now().Second(); s > 45 {
		time.Sleep(time.Duration(61-s) * time.Second)
	}
	ok, limited := 0, 0
	for i := range 2 * budget {
		rep := mustDo(t, h1Client, request{URL: urls[i%2] + "/productpage"})
		switch rep.Code {
		case http.StatusOK:
			ok++
		case http.StatusTooManyRequests:
			limited++
			if err := check(rep.Header); err != nil {
				t.Error(err)
			}
		default:
			t.Fatalf("status %d: %.200s", rep.Code, rep.Body)
		}
	}
	if ok != budget || limited != budget {
		t.Fatalf("%d requests alternating between the gateways: %d answered, %d limited; want %d and %d",
			2*budget, ok, limited, budget, budget)
	}
}

// twoGatewayMesh is the mesh of the global rate-limit tests: productpage (listening on appPort)
// behind two ingress gateways, gw-a on portA and gw-b on portB, routed by one VirtualService.
func twoGatewayMesh(appPort, portA, portB int) string {
	gateway := func(name string, port int) string {
		return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: %s, namespace: istio-system}
spec:
  selector: {gateway: %s}
  servers: [{port: {number: %d, name: http, protocol: HTTP}, hosts: ["*"]}]
`, name, name, port)
	}
	return staticServiceYAML("productpage.default.svc.cluster.local", 9080, "http", "HTTP",
		fmt.Sprintf("{address: 127.0.0.1, ports: {http: %d}}", appPort)) +
		"---\n" + gateway("gw-a", portA) + "---\n" + gateway("gw-b", portB) +
		"---\n" + virtualServiceYAML("bookinfo", "istio-system", `  hosts: ["*"]
  gateways: [gw-a, gw-b]
  http:
  - route: [{destination: {host: productpage.default.svc.cluster.local, port: {number: 9080}}}]
`)
}

// startTwoGateways starts the two ingress gateways of twoGatewayMesh and returns them with
// their URLs.
func startTwoGateways(t *testing.T, sd *testenv.Straitd, portA, portB int) ([]*testenv.Proxy, []string) {
	t.Helper()
	gws := []*testenv.Proxy{
		testenv.StartProxy(t, sd.XDS, testenv.ProxyOptions{Mode: "router", Name: "ingressgateway-a", Namespace: "istio-system",
			Labels: map[string]string{"istio": "ingressgateway", "gateway": "gw-a"}}),
		testenv.StartProxy(t, sd.XDS, testenv.ProxyOptions{Mode: "router", Name: "ingressgateway-b", Namespace: "istio-system",
			Labels: map[string]string{"istio": "ingressgateway", "gateway": "gw-b"}}),
	}
	return gws, []string{fmt.Sprintf("http://127.0.0.1:%d", portA), fmt.Sprintf("http://127.0.0.1:%d", portB)}
}
