package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/testenv"
)

// tcpRateLimitEnvoyFilter limits TCP connections on two ports of the edge gateway, each filter
// inserted before tcp_proxy (NETWORK_FILTER INSERT_BEFORE): Envoy's network local rate limit
// filter on localPort (3 connections per hour on this proxy), and its network global rate limit
// filter on globalPort (domain tcp, descriptor generic_key=tcp-echo, straitd's rate limit
// service through its mesh cluster) with failure_mode_deny as given.
func tcpRateLimitEnvoyFilter(localPort, globalPort int, failureModeDeny bool) string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: tcp-ratelimit
  namespace: e2e
spec:
  workloadSelector:
    labels:
      app: edge
  configPatches:
    - applyTo: NETWORK_FILTER
      match:
        context: GATEWAY
        listener:
          portNumber: %d
          filterChain:
            filter:
              name: envoy.filters.network.tcp_proxy
      patch:
        operation: INSERT_BEFORE
        value:
          name: envoy.filters.network.local_ratelimit
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit
            stat_prefix: tcp_local
            token_bucket:
              max_tokens: 3
              tokens_per_fill: 3
              fill_interval: 3600s
    - applyTo: NETWORK_FILTER
      match:
        context: GATEWAY
        listener:
          portNumber: %d
          filterChain:
            filter:
              name: envoy.filters.network.tcp_proxy
      patch:
        operation: INSERT_BEFORE
        value:
          name: envoy.filters.network.ratelimit
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.filters.network.ratelimit.v3.RateLimit
            stat_prefix: tcp_global
            domain: tcp
            failure_mode_deny: %t
            timeout: 5s
            descriptors:
              - entries:
                  - {key: generic_key, value: tcp-echo}
            rate_limit_service:
              grpc_service:
                envoy_grpc:
                  cluster_name: outbound|8081||ratelimit.default.svc.cluster.local
                  authority: ratelimit.default.svc.cluster.local
              transport_api_version: V3
`, localPort, globalPort, failureModeDeny)
}

// tcpRateLimitBudget is the rate limit service's budget of connections for the descriptor.
const tcpRateLimitBudget = 3

// TestTCPRateLimit: TCP connections through a gateway to a TCP echo backend, limited by
// EnvoyFilters inserting Envoy's network rate limit filters before tcp_proxy. The local filter
// serves 3 of 6 connections and closes the others; the global filter asks straitd's in-memory
// rate limit service once per connection (3 a day for the descriptor): 3 of 6 served, the
// others closed before reaching the backend. With the service stopped a connection is closed
// (failure_mode_deny: true) or served (false).
func TestTCPRateLimit(t *testing.T) {
	skipShort(t)
	const echoIP, rlsIP = "127.0.0.48", "127.0.0.49"
	echoPort := startTCPEcho(t, echoIP, "echo")
	rlsPort := testenv.FreePort(t)
	rlsConfig := filepath.Join(t.TempDir(), "ratelimit.yaml")
	writeFile(t, rlsConfig, fmt.Sprintf(`domain: tcp
descriptors:
  - key: generic_key
    value: tcp-echo
    rate_limit: {unit: day, requests_per_unit: %d}
`, tcpRateLimitBudget))
	rls := testenv.StartStraitd(t, map[string]string{"empty.yaml": ""}, "--mesh-address", "",
		"--ratelimit-listen", fmt.Sprintf("%s:%d", rlsIP, rlsPort), "--ratelimit-config", rlsConfig)

	localPort, globalPort := testenv.FreePort(t), testenv.FreePort(t)
	gw := fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge, namespace: e2e}
spec:
  selector: {app: edge}
  servers:
  - {port: {number: %d, name: tcp-local, protocol: TCP}, hosts: ["*"]}
  - {port: {number: %d, name: tcp-global, protocol: TCP}, hosts: ["*"]}
---
`, localPort, globalPort) + edgeVS("tcp", "e2e", `["*"]`, fmt.Sprintf(`  tcp:
  - match: [{port: %d}, {port: %d}]
    route: [{destination: {host: echo.e2e.test, port: {number: 9000}}}]
`, localPort, globalPort))
	cfg := strings.Join([]string{
		gw,
		serviceEntryYAML("echo.e2e.test", 9000, "TCP", endpoint{"echo", echoIP, echoPort}),
		staticServiceYAML("ratelimit.default.svc.cluster.local", 8081, "grpc", "GRPC",
			fmt.Sprintf("{address: %s, ports: {grpc: %d}}", rlsIP, rlsPort)),
	}, "---\n")
	sd, px := edge(t, map[string]string{"tcp.yaml": cfg, "ratelimit.yaml": tcpRateLimitEnvoyFilter(localPort, globalPort, true)})
	stat := func(name string) int {
		_, body, err := px.AdminGet("/stats")
		if err != nil {
			t.Fatal(err)
		}
		return statIn(t, "the gateway", body, name)
	}
	// The filters are in force when their statistics exist: the gateway's listeners had them
	// from their first configuration, so no connection was served without them.
	// And the listeners serve once the proxy is LIVE: connecting earlier is refused.
	testenv.Eventually(t, 30*time.Second, func() error {
		if code, body, err := px.AdminGet("/ready"); err != nil || code != http.StatusOK {
			return fmt.Errorf("proxy not ready: %d %q %v", code, body, err)
		}
		_, body, err := px.AdminGet("/stats")
		if err != nil {
			return err
		}
		for _, s := range []string{"local_rate_limit.tcp_local.rate_limited: ", "ratelimit.tcp_global.total: "} {
			if !strings.Contains(body, s) {
				return fmt.Errorf("no %s yet", strings.TrimSuffix(s, ": "))
			}
		}
		return nil
	})

	// burst opens n connections one after the other and counts those the backend answered.
	burst := func(port, n int) (served int) {
		for i := range n {
			if tcpEchoServed(t, port, fmt.Sprintf("hello %d", i)) {
				served++
			}
		}
		return served
	}
	if served := burst(localPort, 6); served != 3 {
		t.Errorf("local: %d of 6 connections served, want 3", served)
	}
	if n := stat("local_rate_limit.tcp_local.rate_limited"); n != 3 {
		t.Errorf("local_rate_limit.tcp_local.rate_limited = %d, want 3", n)
	}

	if served := burst(globalPort, 2*tcpRateLimitBudget); served != tcpRateLimitBudget {
		t.Errorf("global: %d of %d connections served, want %d", served, 2*tcpRateLimitBudget, tcpRateLimitBudget)
	}
	for name, want := range map[string]int{"total": 6, "ok": 3, "over_limit": 3, "cx_closed": 3, "error": 0} {
		if got := stat("ratelimit.tcp_global." + name); got != want {
			t.Errorf("ratelimit.tcp_global.%s = %d, want %d", name, got, want)
		}
	}

	// The service stopped: failure_mode_deny: true closes the connection.
	rls.Stop(5 * time.Second)
	if tcpEchoServed(t, globalPort, "service down") {
		t.Error("service down, failure_mode_deny true: the connection was served")
	}
	if stat("ratelimit.tcp_global.error") != 1 || stat("ratelimit.tcp_global.cx_closed") != 4 {
		t.Errorf("service down: error %d, cx_closed %d; want 1 and 4", stat("ratelimit.tcp_global.error"), stat("ratelimit.tcp_global.cx_closed"))
	}
	// failure_mode_deny: false lets connections through.
	sd.WriteConfig(t, "ratelimit.yaml", tcpRateLimitEnvoyFilter(localPort, globalPort, false))
	testenv.Eventually(t, 30*time.Second, func() error {
		if !tcpEchoServed(t, globalPort, "service down") {
			return errors.New("service down, failure_mode_deny false: the connection was closed")
		}
		return nil
	})
	if stat("ratelimit.tcp_global.failure_mode_allowed") < 1 {
		t.Error("no failure_mode_allowed")
	}
}

// tcpEchoServed opens a connection to the gateway's port, sends msg and reports whether the echo
// backend answered it; a connection the proxy closes (end of stream or reset) is not served.
func tcpEchoServed(t *testing.T, port int, msg string) bool {
	t.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(c, "%s\n", msg); err != nil && !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("write: %v", err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("no answer and no close within 10 s")
		}
		return false
	}
	if line != "echo: "+msg+"\n" {
		t.Fatalf("answer %q", line)
	}
	return true
}
