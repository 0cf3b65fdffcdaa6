package e2e

import (
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/testenv"
)

// perClientRateLimitKind gives each client address 5 requests per hour on the reviews sidecar's
// inbound port (by: remote.ip; an hour, so that no token comes back during the test).
const perClientRateLimitKind = `apiVersion: extensions.strait.io/v1alpha1
kind: RateLimit
metadata: {name: reviews-per-client, namespace: e2e}
spec:
  selector: {matchLabels: {app: reviews}}
  rules:
  - name: per-client
    by: [remote.ip]
    limit: {requests: 5, per: 1h}
`

// TestRateLimitKindPerClient: a RateLimit rule with by: [remote.ip] gives each client address
// its own budget: two clients from different loopback addresses each get 5 of 20 requests
// answered and 15 × 429 with their own x-ratelimit-* headers.
func TestRateLimitKindPerClient(t *testing.T) {
	skipShort(t)
	const serverIP, clientA, clientB, warmup = "127.0.0.27", "127.0.0.28", "127.0.0.29", "127.0.0.30"
	app := startBackend(t, "127.0.0.1", "reviews", backendOptions{})
	// The server's sidecar: its inbound port on serverIP, and no outbound listeners (egress to
	// an empty namespace), so it binds nothing shared with other tests.
	cfg := staticServiceYAML("reviews.e2e.svc.cluster.local", 9080, "http", "HTTP", "{address: "+serverIP+", labels: {app: reviews}}") +
		"---\n" + explicitSidecarYAML("reviews", "ingress", "defaultEndpoint: "+app.Addr(), "bind: "+serverIP) +
		"  egress:\n  - hosts: [\"istio-system/*\"]\n"
	sd := testenv.StartStraitd(t, map[string]string{"mesh.yaml": cfg, "limit.yaml": perClientRateLimitKind})
	testenv.StartProxy(t, sd.XDS, testenv.ProxyOptions{Mode: "sidecar", Name: "reviews-1", Namespace: "e2e", IP: serverIP,
		Labels: map[string]string{"app": "reviews"}, Extra: []string{"--interception-mode", "NONE"}})

	url := fmt.Sprintf("http://%s:9080/hello", serverIP)
	from := func(src string) *http.Client {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
	}
	// The RateLimit is in force once a request reports the limit; the warm-up client spends
	// only its own budget.
	testenv.Eventually(t, 30*time.Second, func() error {
		rep, err := do(from(warmup), request{URL: url})
		if err != nil {
			return err
		}
		if rep.Header.Get("X-Ratelimit-Limit") != "5" {
			return fmt.Errorf("%d with x-ratelimit-limit %q: the RateLimit is not in force yet", rep.Code, rep.Header.Get("X-Ratelimit-Limit"))
		}
		return nil
	})
	for _, src := range []string{clientA, clientB} {
		c := from(src)
		ok, limited := 0, 0
		for i := range 20 {
			rep, err := do(c, request{URL: url})
			if err != nil {
				t.Fatalf("client %s: request %d: %v", src, i, err)
			}
			switch rep.Code {
			case http.StatusOK:
				ok++
			case http.StatusTooManyRequests:
				limited++
				if rep.Body != "local_rate_limited" || rep.Header.Get("X-Ratelimit-Remaining") != "0" {
					t.Errorf("client %s: 429: body %q, headers %v", src, rep.Body, rep.Header)
				}
			default:
				t.Fatalf("client %s: status %d", src, rep.Code)
			}
			if rep.Header.Get("X-Ratelimit-Limit") != "5" {
				t.Errorf("client %s, request %d: x-ratelimit-limit %q", src, i, rep.Header.Get("X-Ratelimit-Limit"))
			}
		}
		if ok != 5 || limited != 15 {
			t.Errorf("client %s: 20 requests: %d answered, %d limited; want its own 5 and 15", src, ok, limited)
		}
	}
}
