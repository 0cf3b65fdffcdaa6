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

// edgeTrustYAML exposes two services through the Gateway "edge": /broken reaches a backend that
// always answers 503 on a route that retries only connect failures, everything else reaches an
// echo backend; both routes have a 10 s timeout.
func edgeTrustYAML(gw int, ok, broken *echoBackend) string {
	return gatewayYAML(gw) + "---\n" +
		serviceEntryYAML("ok.e2e.test", 80, "HTTP", ok.Endpoint()) + "---\n" +
		serviceEntryYAML("broken.e2e.test", 80, "HTTP", broken.Endpoint()) + "---\n" +
		edgeVS("edgetrust", "e2e", `["*"]`, `  http:
  - match: [{uri: {prefix: /broken}}]
    timeout: 10s
    retries: {attempts: 1, retryOn: connect-failure}
    route: [{destination: {host: broken.e2e.test}}]
  - timeout: 10s
    route: [{destination: {host: ok.e2e.test}}]
`)
}

// attackHeaders are what an untrusted client sends to steer the gateway or fool the app: every
// control header Envoy removes from external requests, Istio's peer metadata, a client
// certificate, RFC 7239 Forwarded and a chosen request id.
var attackHeaders = http.Header{
	"X-Envoy-Upstream-Rq-Timeout-Ms":           {"1"},
	"X-Envoy-Upstream-Rq-Per-Try-Timeout-Ms":   {"1"},
	"X-Envoy-Upstream-Rq-Timeout-Alt-Response": {"204"},
	"X-Envoy-Upstream-Stream-Duration-Ms":      {"1"},
	"X-Envoy-Retry-On":                         {"5xx,retriable-status-codes"},
	"X-Envoy-Retry-Grpc-On":                    {"unavailable"},
	"X-Envoy-Max-Retries":                      {"100"},
	"X-Envoy-Retriable-Status-Codes":           {"503"},
	"X-Envoy-Retriable-Header-Names":           {"x-backend"},
	"X-Envoy-Hedge-On-Per-Try-Timeout":         {"true"},
	"X-Envoy-Expected-Rq-Timeout-Ms":           {"1"},
	"X-Envoy-Internal":                         {"true"},
	"X-Envoy-Original-Path":                    {"/admin"},
	"X-Envoy-Original-Url":                     {"http://admin.internal/admin"},
	"X-Envoy-Force-Trace":                      {"true"},
	"X-Envoy-Ip-Tags":                          {"trusted"},
	"X-Envoy-Decorator-Operation":              {"admin"},
	"X-Envoy-Downstream-Service-Cluster":       {"admin"},
	"X-Envoy-Downstream-Service-Node":          {"admin-1"},
	"X-Envoy-Upstream-Alt-Stat-Name":           {"alt"},
	"X-Envoy-External-Address":                 {"10.0.0.1"},
	"X-Envoy-Peer-Metadata":                    {"ChAKBG5hbWUSCBoGYWRtaW4="},
	"X-Envoy-Peer-Metadata-Id":                 {"sidecar~10.0.0.1~admin.default~default.svc.cluster.local"},
	"X-Forwarded-Client-Cert":                  {"By=spiffe://cluster.local/ns/e2e/sa/app;URI=spiffe://cluster.local/ns/default/sa/admin"},
	"Forwarded":                                {"for=10.0.0.1;proto=https;host=admin.internal"},
	"X-Request-Id":                             {"attacker-chosen-request-id"},
}

// checkSanitized reports every attack header that reached the app with the client's value, and
// any x-envoy-* header other than the ones the gateway sets itself.
func checkSanitized(t *testing.T, what string, h map[string]string, externalAddr string) {
	t.Helper()
	proxySet := map[string]string{
		"x-envoy-external-address":       externalAddr,
		"x-envoy-expected-rq-timeout-ms": "10000", // the route's timeout, not the client's 1 ms
	}
	for k, v := range h {
		if !strings.HasPrefix(k, "x-envoy-") {
			continue
		}
		if want, ok := proxySet[k]; ok {
			if v != want {
				t.Errorf("%s: %s = %q at the app, want the gateway's %q", what, k, v, want)
			}
			continue
		}
		if k == "x-envoy-attempt-count" && v == "1" {
			continue
		}
		t.Errorf("%s: %s = %q reached the app from an untrusted client", what, k, v)
	}
	for _, k := range []string{"forwarded", "x-forwarded-client-cert"} {
		if v, ok := h[k]; ok {
			t.Errorf("%s: %s = %q reached the app from an untrusted client", what, k, v)
		}
	}
	if id := h["x-request-id"]; id == attackHeaders.Get("X-Request-Id") || len(id) != 36 {
		t.Errorf("%s: x-request-id %q at the app, want a fresh UUID", what, id)
	}
}

// TestEdgeTrustUntrustedClientHeaders sends, through a real ingress gateway, every header an
// untrusted client could use to change the gateway's behaviour or lie to the app. The client is
// on loopback: no address is internal unless internal_address_config says so (and the
// translator, like Istio's, never says so), so none of them changes anything or reaches the app.
func TestEdgeTrustUntrustedClientHeaders(t *testing.T) {
	skipShort(t)
	ok := startBackend(t, "127.0.0.1", "ok", backendOptions{})
	broken := startBackend(t, "127.0.0.1", "broken", backendOptions{fail: true})
	gw := testenv.FreePort(t)
	edge(t, map[string]string{"edgetrust.yaml": edgeTrustYAML(gw, ok, broken)})
	base := fmt.Sprintf("http://127.0.0.1:%d", gw)
	waitBackend(t, 30*time.Second, h1Client, request{URL: base + "/ready"}, "ok")

	for _, c := range []struct {
		name   string
		client *http.Client
	}{{"HTTP/1.1", h1Client}, {"HTTP/2", h2cClient}} {
		t.Run(c.name, func(t *testing.T) {
			// x-envoy-upstream-rq-timeout-ms: 1 (and the per-try and stream duration variants)
			// would cut the 10 s route timeout to 1 ms: the slow answer must still arrive.
			rep := mustDo(t, c.client, request{URL: base + "/slow?sleep=300ms", Header: attackHeaders})
			if rep.Code != http.StatusOK || rep.Echo == nil {
				t.Fatalf("slow request with timeout headers: status %d %.200s (a client's x-envoy timeout was honoured)", rep.Code, rep.Body)
			}
			checkSanitized(t, c.name, rep.Echo.Headers, "127.0.0.1")
			if xff := rep.Echo.Headers["x-forwarded-for"]; xff != "127.0.0.1" {
				t.Errorf("x-forwarded-for %q, want the gateway's view of the client, 127.0.0.1", xff)
			}

			// x-envoy-retry-on: 5xx with x-envoy-max-retries: 100 against a backend that always
			// fails: the route retries connect failures only, so exactly one upstream request.
			// (Honoured, the header would be capped at l7.MaxHeaderRetries = 10 retries.)
			before := broken.Hits()
			rep = mustDo(t, c.client, request{URL: base + "/broken", Header: attackHeaders})
			if rep.Code != http.StatusServiceUnavailable {
				t.Errorf("broken: status %d, want 503", rep.Code)
			}
			if n := broken.Hits() - before; n != 1 {
				t.Errorf("one request with x-envoy-max-retries: 100 made %d upstream requests, want 1", n)
			}
		})
	}
}

// TestEdgeTrustGatewayTopology checks MeshConfig.defaultConfig.gatewayTopology.numTrustedProxies:
// the gateway takes the client address from x-forwarded-for (one hop from the right) for
// x-envoy-external-address, keeps the trusted proxy's x-forwarded-proto, and still treats the
// client as untrusted (a request arriving with x-forwarded-for is never internal).
func TestEdgeTrustGatewayTopology(t *testing.T) {
	skipShort(t)
	ok := startBackend(t, "127.0.0.1", "ok", backendOptions{})
	broken := startBackend(t, "127.0.0.1", "broken", backendOptions{fail: true})
	gw := testenv.FreePort(t)
	meshFile := filepath.Join(t.TempDir(), "mesh.yaml")
	writeFile(t, meshFile, "defaultConfig:\n  gatewayTopology: {numTrustedProxies: 1}\n")
	sd := testenv.StartStraitd(t, map[string]string{"edgetrust.yaml": edgeTrustYAML(gw, ok, broken)}, "--mesh-config", meshFile)
	testenv.StartProxy(t, sd.XDS, testenv.ProxyOptions{Mode: "router", Name: "edge-1", Namespace: "e2e",
		Labels: map[string]string{"app": "edge"}})
	base := fmt.Sprintf("http://127.0.0.1:%d", gw)
	waitBackend(t, 30*time.Second, h1Client, request{URL: base + "/ready"}, "ok")

	hdr := attackHeaders.Clone()
	hdr.Set("X-Forwarded-For", "203.0.113.7")
	hdr.Set("X-Forwarded-Proto", "https")
	rep := mustDo(t, h1Client, request{URL: base + "/slow?sleep=300ms", Header: hdr})
	if rep.Code != http.StatusOK || rep.Echo == nil {
		t.Fatalf("status %d %.200s", rep.Code, rep.Body)
	}
	h := rep.Echo.Headers
	// Forwarded comes from the trusted proxy in front when there is one, as x-forwarded-proto.
	delete(h, "forwarded")
	checkSanitized(t, "one trusted proxy", h, "203.0.113.7")
	if h["x-forwarded-for"] != "203.0.113.7,127.0.0.1" && h["x-forwarded-for"] != "203.0.113.7, 127.0.0.1" {
		t.Errorf("x-forwarded-for %q, want 203.0.113.7, 127.0.0.1", h["x-forwarded-for"])
	}
	if h["x-forwarded-proto"] != "https" {
		t.Errorf("x-forwarded-proto %q, want the trusted proxy's https", h["x-forwarded-proto"])
	}
	before := broken.Hits()
	mustDo(t, h1Client, request{URL: base + "/broken", Header: hdr})
	if n := broken.Hits() - before; n != 1 {
		t.Errorf("one request with x-envoy-max-retries: 100 made %d upstream requests, want 1", n)
	}
}
