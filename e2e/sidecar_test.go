package e2e

import (
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/testenv"
)

// sidecarYAML registers reviews (port 9080) on the server sidecar's address, and gives each
// workload a Sidecar in explicit mode (captureMode NONE): the client's sidecar listens for
// outbound traffic on its own address, the server's sidecar takes inbound traffic on its
// address and hands it to the application.
func sidecarYAML(clientIP, serverIP, appAddr string) string {
	return sidecarPairYAML(clientIP, serverIP, appAddr, "{address: "+serverIP+", labels: {app: reviews}}")
}

// serverEgressNone is the sidecar pair's server egress: no services imported.
const serverEgressNone = "  egress:\n  - hosts: [\"istio-system/*\"]\n"

// sidecarPairYAML is sidecarYAML with endpoint (a YAML object) as the server's endpoint.
func sidecarPairYAML(clientIP, serverIP, appAddr, endpoint string) string {
	return staticServiceYAML("reviews.e2e.svc.cluster.local", 9080, "http", "HTTP", endpoint) + "---\n" +
		explicitSidecarYAML("client", "egress", "bind: "+clientIP, `hosts: ["e2e/*"]`) + "---\n" +
		// The server imports no services: its default egress would bind 127.0.0.1:9080 in capture
		// mode NONE, which other tests' sidecars bind too (an LDS NACK when they run at once).
		sidecarResourceYAML("reviews", "app: reviews", "  ingress:\n"+explicitListener(httpPort, "defaultEndpoint: "+appAddr, "bind: "+serverIP)+
			serverEgressNone) + "---\n" +
		virtualServiceYAML("reviews", "e2e", `  hosts: [reviews.e2e.svc.cluster.local]
  http:
  - match: [{uri: {prefix: /hello}}]
    headers: {request: {set: {x-routed-by: client-sidecar}}}
    route: [{destination: {host: reviews.e2e.svc.cluster.local}}]
  - route: [{destination: {host: reviews.e2e.svc.cluster.local}}]
`)
}

// TestSidecarPair sends a request from a client application through its sidecar (outbound) and
// the server's sidecar (inbound) to the server application, in explicit mode on loopback
// addresses: the client-proxy → server-proxy path of a mesh.
func TestSidecarPair(t *testing.T) {
	skipShort(t)
	const clientIP, serverIP = "127.0.0.91", "127.0.0.92"
	app := startBackend(t, "127.0.0.1", "reviews", backendOptions{}) // Istio: defaultEndpoint is on loopback
	sd := testenv.StartStraitd(t, map[string]string{"mesh.yaml": sidecarYAML(clientIP, serverIP, app.Addr())})
	sidecar := func(name, ip, app string) *testenv.Proxy {
		return testenv.StartProxy(t, sd.XDS, testenv.ProxyOptions{Mode: "sidecar", Name: name, Namespace: "e2e", IP: ip,
			Labels: map[string]string{"app": app}, Extra: []string{"--interception-mode", "NONE"}})
	}
	server := sidecar("reviews-1", serverIP, "reviews")
	client := sidecar("client-1", clientIP, "client")

	url := fmt.Sprintf("http://%s:9080/hello", clientIP)
	host := "reviews.e2e.svc.cluster.local:9080"
	var rep *reply
	testenv.Eventually(t, 30*time.Second, func() (err error) {
		rep, err = do(h1Client, request{URL: url, Host: host})
		if err == nil && (rep.Code != http.StatusOK || rep.Echo == nil) {
			err = fmt.Errorf("%d %.200s", rep.Code, rep.Body)
		}
		return err
	})
	if rep.Echo.Backend != "reviews" || rep.Echo.Path != "/hello" || rep.Echo.Headers["x-routed-by"] != "client-sidecar" {
		t.Fatalf("answer %+v; want reviews at /hello with the client sidecar's route header", rep.Echo)
	}

	// Both proxies counted the request: the client's outbound cluster and the server's inbound.
	counter := func(p *testenv.Proxy, cluster string) int {
		t.Helper()
		_, stats, err := p.AdminGet("/stats")
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta("cluster."+cluster+".upstream_rq_total: ") + `(\d+)$`).FindStringSubmatch(stats)
		if m == nil {
			t.Fatalf("%s has no upstream_rq_total for %s", p.Name, cluster)
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	before := app.Hits()
	for i := 0; i < 5; i++ {
		if name, err := backendName(h1Client, request{URL: url, Host: host}); err != nil || name != "reviews" {
			t.Fatalf("request %d: %q, %v", i, name, err)
		}
	}
	if app.Hits()-before != 5 {
		t.Fatalf("the application saw %d of 5 requests", app.Hits()-before)
	}
	if n := counter(client, "outbound|9080||reviews.e2e.svc.cluster.local"); n < 5 {
		t.Errorf("client sidecar outbound requests: %d, want ≥ 5", n)
	}
	if n := counter(server, "inbound|9080||"); n < 5 {
		t.Errorf("server sidecar inbound requests: %d, want ≥ 5", n)
	}
}
