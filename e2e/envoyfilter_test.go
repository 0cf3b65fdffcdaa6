package e2e

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/testenv"
)

// localRateLimitEnvoyFilter is Istio's "Enabling Rate Limits using Envoy" local rate limit
// EnvoyFilter as the task writes it (the filter inserted in the inbound connection managers, a
// TypedStruct; the limit merged into the routes of inbound|http|9080), here 5 requests per 10 s
// with the x-ratelimit-* headers, and a second bucket of 5 per client address through a
// remote_address descriptor on the route named "per-client" (none here unless a test merges
// rate_limits too).
const localRateLimitEnvoyFilter = `apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: filter-local-ratelimit-svc
  namespace: istio-system
spec:
  workloadSelector:
    labels:
      app: reviews
  configPatches:
    - applyTo: HTTP_FILTER
      match:
        context: SIDECAR_INBOUND
        listener:
          filterChain:
            filter:
              name: "envoy.filters.network.http_connection_manager"
      patch:
        operation: INSERT_BEFORE
        value:
          name: envoy.filters.http.local_ratelimit
          typed_config:
            "@type": type.googleapis.com/udpa.type.v1.TypedStruct
            type_url: type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
            value:
              stat_prefix: http_local_rate_limiter
    - applyTo: HTTP_ROUTE
      match:
        context: SIDECAR_INBOUND
        routeConfiguration:
          vhost:
            name: "inbound|http|9080"
            route:
              action: ANY
      patch:
        operation: MERGE
        value:
          typed_per_filter_config:
            envoy.filters.http.local_ratelimit:
              "@type": type.googleapis.com/udpa.type.v1.TypedStruct
              type_url: type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
              value:
                stat_prefix: http_local_rate_limiter
                enable_x_ratelimit_headers: DRAFT_VERSION_03
                token_bucket:
                  max_tokens: 5
                  tokens_per_fill: 5
                  fill_interval: 10s
                filter_enabled:
                  runtime_key: local_rate_limit_enabled
                  default_value:
                    numerator: 100
                    denominator: HUNDRED
                filter_enforced:
                  runtime_key: local_rate_limit_enforced
                  default_value:
                    numerator: 100
                    denominator: HUNDRED
                response_headers_to_add:
                  - append_action: OVERWRITE_IF_EXISTS_OR_ADD
                    header:
                      key: x-local-rate-limit
                      value: 'true'
`

// perClientEnvoyFilter gives each client address its own bucket of 5 per 10 s (descriptors on
// remote_address for the two clients), under a listener-wide bucket large enough not to limit:
// Istio's samples/ratelimit shape.
func perClientEnvoyFilter(clientA, clientB string) string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: per-client
  namespace: e2e
spec:
  workloadSelector:
    labels:
      app: reviews
  priority: 10
  configPatches:
    - applyTo: HTTP_ROUTE
      match:
        context: SIDECAR_INBOUND
        routeConfiguration:
          vhost:
            name: "inbound|http|9080"
      patch:
        operation: MERGE
        value:
          route:
            rate_limits:
              - actions:
                  - remote_address: {}
          typed_per_filter_config:
            envoy.filters.http.local_ratelimit:
              "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
              stat_prefix: per_client
              enable_x_ratelimit_headers: DRAFT_VERSION_03
              token_bucket: {max_tokens: 1000, tokens_per_fill: 1000, fill_interval: 10s}
              filter_enabled: {default_value: {numerator: 100, denominator: HUNDRED}, runtime_key: e}
              filter_enforced: {default_value: {numerator: 100, denominator: HUNDRED}, runtime_key: f}
              descriptors:
                - entries: [{key: remote_address, value: "%s"}]
                  token_bucket: {max_tokens: 5, tokens_per_fill: 5, fill_interval: 10s}
                - entries: [{key: remote_address, value: "%s"}]
                  token_bucket: {max_tokens: 5, tokens_per_fill: 5, fill_interval: 10s}
`, clientA, clientB)
}

// TestEnvoyFilterLocalRateLimit applies Istio's local rate limit EnvoyFilter unchanged to a
// sidecar's inbound port: of 20 requests sent at once 5 are answered and 15 get 429 with the
// x-ratelimit-* headers and the access log flag RL. A second EnvoyFilter (higher priority, so
// applied after it) gives each client address its own bucket: two clients get 5 each.
func TestEnvoyFilterLocalRateLimit(t *testing.T) {
	skipShort(t)
	const serverIP, clientA, clientB = "127.0.0.201", "127.0.0.202", "127.0.0.203"
	app := startBackend(t, "127.0.0.1", "reviews", backendOptions{})
	meshFile := filepath.Join(t.TempDir(), "meshconfig.yaml")
	if err := os.WriteFile(meshFile, []byte("accessLogFile: /dev/stdout\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The server's sidecar: its inbound port on serverIP, and no outbound listeners (egress to
	// an empty namespace), so it binds nothing shared with other tests.
	cfg := staticServiceYAML("reviews.e2e.svc.cluster.local", 9080, "http", "HTTP", "{address: "+serverIP+", labels: {app: reviews}}") +
		"---\n" + explicitSidecarYAML("reviews", "ingress", "defaultEndpoint: "+app.Addr(), "bind: "+serverIP) +
		"  egress:\n  - hosts: [\"istio-system/*\"]\n---\n" + localRateLimitEnvoyFilter
	sd := testenv.StartStraitd(t, map[string]string{"mesh.yaml": cfg}, "--mesh-config", meshFile)
	server := testenv.StartProxy(t, sd.XDS, testenv.ProxyOptions{Mode: "sidecar", Name: "reviews-1", Namespace: "e2e", IP: serverIP,
		Labels: map[string]string{"app": "reviews"}, Extra: []string{"--interception-mode", "NONE"}})

	url := fmt.Sprintf("http://%s:9080/hello", serverIP)
	from := func(src string) *http.Client {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
	}
	// burst sends n requests (bounded, one after the other) and counts the answers by status.
	burst := func(c *http.Client, n int) (ok, limited int, last *reply) {
		for range n {
			rep, err := do(c, request{URL: url})
			if err != nil {
				t.Fatalf("request: %v", err)
			}
			switch rep.Code {
			case http.StatusOK:
				ok++
			case http.StatusTooManyRequests:
				limited++
				last = rep
			}
		}
		return ok, limited, last
	}
	// Wait for the EnvoyFilter to be in force: a request that reports the limit's headers.
	testenv.Eventually(t, 30*time.Second, func() error {
		rep, err := do(from(clientA), request{URL: url})
		if err != nil {
			return err
		}
		if rep.Header.Get("X-Ratelimit-Limit") == "" {
			return fmt.Errorf("%d without x-ratelimit-limit: the EnvoyFilter is not applied yet", rep.Code)
		}
		return nil
	})
	// A fresh bucket: the fill interval is 10 s; wait for the next refill to be safe.
	time.Sleep(10 * time.Second)
	ok, limited, last := burst(from(clientA), 20)
	if ok != 5 || limited != 15 {
		t.Fatalf("20 requests: %d answered, %d limited; want 5 and 15", ok, limited)
	}
	if last.Body != "local_rate_limited" || last.Header.Get("X-Ratelimit-Limit") == "" ||
		last.Header.Get("X-Ratelimit-Remaining") != "0" || last.Header.Get("X-Local-Rate-Limit") != "true" {
		t.Errorf("429: body %q, headers %v", last.Body, last.Header)
	}
	server.WaitOutput(t, regexp.MustCompile(`"GET /hello HTTP/1.1" 429 RL local_rate_limited `), 20*time.Second)

	// Per client address: add the second EnvoyFilter to straitd's config directory.
	sd.WriteConfig(t, "per-client.yaml", perClientEnvoyFilter(clientA, clientB))
	testenv.Eventually(t, 30*time.Second, func() error {
		rep, err := do(from(clientB), request{URL: url})
		if err != nil {
			return err
		}
		if rep.Header.Get("X-Ratelimit-Limit") != "5" {
			return fmt.Errorf("x-ratelimit-limit %q: the per-client EnvoyFilter is not applied yet", rep.Header.Get("X-Ratelimit-Limit"))
		}
		return nil
	})
	time.Sleep(10 * time.Second)
	okA, limitedA, _ := burst(from(clientA), 10)
	okB, limitedB, _ := burst(from(clientB), 10)
	if okA != 5 || limitedA != 5 || okB != 5 || limitedB != 5 {
		t.Errorf("10 requests from each client: A %d answered %d limited, B %d answered %d limited; want 5 and 5 each",
			okA, limitedA, okB, limitedB)
	}
}
