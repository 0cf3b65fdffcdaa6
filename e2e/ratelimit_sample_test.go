package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/testenv"
)

// istioLocalRateLimitSample is Istio's samples/ratelimit/local-rate-limit-service.yaml, kept
// unchanged in the corpus of Istio's YAML.
const istioLocalRateLimitSample = "../controlplane/config/testdata/istio-corpus/samples/ratelimit/local-rate-limit-service.yaml"

// TestIstioLocalRateLimitSample applies Istio's samples/ratelimit/local-rate-limit-service.yaml
// unchanged to a productpage sidecar serving port 8000, and checks what the sample promises:
// /productpage is limited to 10 requests per minute (429 with x-local-rate-limit: true and the
// x-ratelimit-* headers, flag RL), while other paths have the larger budget of 100 per minute.
func TestIstioLocalRateLimitSample(t *testing.T) {
	skipShort(t)
	sample, err := os.ReadFile(istioLocalRateLimitSample)
	if err != nil {
		t.Fatal(err)
	}
	const serverIP = "127.0.0.55"
	app := startBackend(t, "127.0.0.1", "productpage", backendOptions{})
	meshFile := filepath.Join(t.TempDir(), "meshconfig.yaml")
	writeFile(t, meshFile, "accessLogFile: /dev/stdout\n")
	cfg := staticServiceYAML("productpage.e2e.svc.cluster.local", 8000, "http", "HTTP", "{address: "+serverIP+", labels: {app: productpage}}") +
		"---\n" + sidecarResourceYAML("productpage", "app: productpage", "  ingress:\n"+
		explicitListener(sidecarPort(8000, "HTTP"), "defaultEndpoint: "+app.Addr(), "bind: "+serverIP)) +
		"  egress:\n  - hosts: [\"istio-system/*\"]\n"
	sd := testenv.StartStraitd(t, map[string]string{"mesh.yaml": cfg, "sample.yaml": string(sample)}, "--mesh-config", meshFile)
	server := testenv.StartProxy(t, sd.XDS, testenv.ProxyOptions{Mode: "sidecar", Name: "productpage-1", Namespace: "e2e", IP: serverIP,
		Labels: map[string]string{"app": "productpage"}, Extra: []string{"--interception-mode", "NONE"}})

	base := fmt.Sprintf("http://%s:8000", serverIP)
	// In force when a request to another path reports the overall budget (it takes none of
	// /productpage's tokens).
	testenv.Eventually(t, 30*time.Second, func() error {
		rep, err := do(h1Client, request{URL: base + "/reviews"})
		if err != nil {
			return err
		}
		if rep.Code != http.StatusOK || rep.Header.Get("X-Ratelimit-Limit") != "100" {
			return fmt.Errorf("%d, x-ratelimit-limit %q: the sample is not applied yet", rep.Code, rep.Header.Get("X-Ratelimit-Limit"))
		}
		return nil
	})

	// The bucket refills continuously (10 per minute: one token per 6 s), so a slow burst may
	// find a token or two more than 10.
	start := time.Now()
	ok, limited := 0, 0
	var last *reply
	for range 15 {
		rep := mustDo(t, h1Client, request{URL: base + "/productpage"})
		switch rep.Code {
		case http.StatusOK:
			ok++
		case http.StatusTooManyRequests:
			limited++
			last = rep
		default:
			t.Fatalf("/productpage: status %d", rep.Code)
		}
	}
	refilled := int(time.Since(start) / (6 * time.Second))
	if ok < 10 || ok > 10+refilled || ok+limited != 15 {
		t.Fatalf("15 requests to /productpage: %d answered, %d limited; want 10 (+%d refilled) answered", ok, limited, refilled)
	}
	if last.Body != "local_rate_limited" || last.Header.Get("X-Local-Rate-Limit") != "true" ||
		last.Header.Get("X-Ratelimit-Limit") != "10" || last.Header.Get("X-Ratelimit-Remaining") != "0" {
		t.Errorf("429: body %q, headers %v", last.Body, last.Header)
	}
	// Other paths still have their budget.
	if rep := mustDo(t, h1Client, request{URL: base + "/reviews"}); rep.Code != http.StatusOK {
		t.Errorf("/reviews after /productpage's limit: %d", rep.Code)
	}
	server.WaitOutput(t, regexp.MustCompile(`"GET /productpage HTTP/1.1" 429 RL local_rate_limited `), 20*time.Second)
}
