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

// localRateLimitKind is the first-class equivalent of localRateLimitEnvoyFilter
// (envoyfilter_test.go): 5 requests per 10 s on the reviews sidecar's inbound port, answered 429
// with the x-ratelimit-* headers and x-local-rate-limit: true.
const localRateLimitKind = `apiVersion: extensions.strait.io/v1alpha1
kind: RateLimit
metadata:
  name: reviews
  namespace: istio-system
spec:
  selector:
    matchLabels:
      app: reviews
  rules:
  - limit: {requests: 5, per: 10s}
    response:
      headers: {x-local-rate-limit: "true"}
`

// TestRateLimitKindMatchesEnvoyFilter drives Istio's local rate limit EnvoyFilter and the
// equivalent RateLimit against the same sidecar, one after the other, and checks the same
// behaviour: of 20 requests sent at once 5 are answered and 15 get 429 "local_rate_limited" with
// x-ratelimit-limit 5, x-ratelimit-remaining 0, the configured header and the access log flag RL.
// Between the two, with neither applied, requests are not limited.
func TestRateLimitKindMatchesEnvoyFilter(t *testing.T) {
	skipShort(t)
	const serverIP, client = "127.0.0.231", "127.0.0.232"
	app := startBackend(t, "127.0.0.1", "reviews", backendOptions{})
	meshFile := filepath.Join(t.TempDir(), "meshconfig.yaml")
	if err := os.WriteFile(meshFile, []byte("accessLogFile: /dev/stdout\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The server's sidecar: its inbound port on serverIP, and no outbound listeners (egress to
	// an empty namespace), so it binds nothing shared with other tests.
	cfg := staticServiceYAML("reviews.e2e.svc.cluster.local", 9080, "http", "HTTP", "{address: "+serverIP+", labels: {app: reviews}}") +
		"---\n" + explicitSidecarYAML("reviews", "ingress", "defaultEndpoint: "+app.Addr(), "bind: "+serverIP) +
		"  egress:\n  - hosts: [\"istio-system/*\"]\n"
	sd := testenv.StartStraitd(t, map[string]string{"mesh.yaml": cfg, "limit.yaml": localRateLimitEnvoyFilter}, "--mesh-config", meshFile)
	server := testenv.StartProxy(t, sd.XDS, testenv.ProxyOptions{Mode: "sidecar", Name: "reviews-1", Namespace: "e2e", IP: serverIP,
		Labels: map[string]string{"app": "reviews"}, Extra: []string{"--interception-mode", "NONE"}})

	url := fmt.Sprintf("http://%s:9080/hello", serverIP)
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(client)}, Timeout: 5 * time.Second}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
	// limited waits until requests are (want) or are not limited: x-ratelimit-limit present or not.
	limited := func(want bool, what string) {
		t.Helper()
		testenv.Eventually(t, 30*time.Second, func() error {
			rep, err := do(c, request{URL: url})
			if err != nil {
				return err
			}
			if got := rep.Header.Get("X-Ratelimit-Limit") != ""; got != want {
				return fmt.Errorf("%d with x-ratelimit-limit %q: %s is not in force yet", rep.Code, rep.Header.Get("X-Ratelimit-Limit"), what)
			}
			return nil
		})
	}
	// check sends 20 requests (bounded, one after the other) on a fresh bucket and checks the
	// answers and the access log.
	check := func(what string, logged int) {
		t.Helper()
		time.Sleep(10 * time.Second) // the fill interval: the bucket is full again
		ok, refused := 0, 0
		var last *reply
		for range 20 {
			rep, err := do(c, request{URL: url})
			if err != nil {
				t.Fatalf("%s: request: %v", what, err)
			}
			switch rep.Code {
			case http.StatusOK:
				ok++
			case http.StatusTooManyRequests:
				refused++
				last = rep
			}
		}
		if ok != 5 || refused != 15 {
			t.Fatalf("%s: 20 requests: %d answered, %d limited; want 5 and 15", what, ok, refused)
		}
		if last.Body != "local_rate_limited" || last.Header.Get("X-Ratelimit-Limit") != "5" ||
			last.Header.Get("X-Ratelimit-Remaining") != "0" || last.Header.Get("X-Local-Rate-Limit") != "true" {
			t.Errorf("%s: 429: body %q, headers %v", what, last.Body, last.Header)
		}
		re := regexp.MustCompile(`"GET /hello HTTP/1.1" 429 RL local_rate_limited `)
		testenv.Eventually(t, 20*time.Second, func() error {
			if n := len(re.FindAllString(server.Output(), -1)); n < logged {
				return fmt.Errorf("%d access log lines with 429 RL, want %d", n, logged)
			}
			return nil
		})
	}

	limited(true, "the EnvoyFilter")
	check("EnvoyFilter", 15)

	sd.WriteConfig(t, "limit.yaml", "# no limit\n")
	limited(false, "the EnvoyFilter's removal")

	sd.WriteConfig(t, "limit.yaml", localRateLimitKind)
	limited(true, "the RateLimit")
	check("RateLimit", 30)
}
