package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/testenv"
)

// gatewayPeerYAML: the service reviews (HTTP 9080) selects the WorkloadEntry reviews-v2 at
// serverIP (a sidecar, identity e2e/reviews); the Gateway ingress on gwPort, for the router
// proxies labelled istio=ingressgateway, routes every request to it. The gateway proxy is not
// registered anywhere: straitd knows it only as a connected proxy.
func gatewayPeerYAML(serverIP, appAddr string, gwPort int) string {
	return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: e2e}
spec:
  hosts: [reviews.e2e.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector: {labels: {app: reviews}}
---
` + workloadEntryYAML("reviews-v2", serverIP, "reviews", "app: reviews, version: v2") + "---\n" +
		sidecarResourceYAML("reviews", "app: reviews", "  ingress:\n"+explicitListener(httpPort, "bind: "+serverIP, "defaultEndpoint: "+appAddr)) +
		fmt.Sprintf(`---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: ingress, namespace: e2e}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: %d, name: http, protocol: HTTP}, hosts: ["*"]}]
---
`, gwPort) + virtualServiceYAML("ingress", "e2e", "  hosts: [\"*\"]\n  gateways: [ingress]\n  http:\n  - route: [{destination: {host: reviews.e2e.svc.cluster.local}}]\n")
}

// TestGatewayPeerMetrics runs an ingress gateway (a router with an identity from straitd's CA,
// registered nowhere) in front of a sidecar, over mutual TLS. straitd lists the connected
// gateway in the workload table, so the sidecar's destination-reported requests name the
// gateway's workload and app from its node's labels, as Istio's do (istio-ingressgateway, not
// unknown); and the gateway's own source-reported requests name the sidecar's workload.
func TestGatewayPeerMetrics(t *testing.T) {
	skipShort(t)
	const gwIP, serverIP = "127.0.0.241", "127.0.0.242"
	app := startBackend(t, "127.0.0.1", "reviews", backendOptions{})
	gwPort := testenv.FreePort(t)
	sd := testenv.StartStraitd(t, map[string]string{"mesh.yaml": gatewayPeerYAML(serverIP, app.Addr(), gwPort)})
	server := startSidecar(t, sd, "reviews-v2-1", serverIP, map[string]string{"app": "reviews", "version": "v2"}, "reviews")
	gw := testenv.StartProxy(t, sd.XDS, testenv.ProxyOptions{Mode: "router", Name: "istio-ingressgateway", Namespace: "e2e", IP: gwIP,
		Labels: map[string]string{"app": "istio-ingressgateway", "istio": "ingressgateway"}, Extra: sd.Identity(t, "e2e", "ingress")})

	gatewayPeer := []string{`source_workload="istio-ingressgateway"`, `source_workload_namespace="e2e"`, `source_app="istio-ingressgateway"`,
		`source_canonical_service="istio-ingressgateway"`, `source_principal="spiffe://cluster.local/ns/e2e/sa/ingress"`,
		`connection_security_policy="mutual_tls"`}
	serverPeer := []string{`destination_workload="reviews-v2"`, `destination_workload_namespace="e2e"`, `destination_app="reviews"`,
		`destination_version="v2"`, `destination_canonical_service="reviews"`}
	check := func(p *testenv.Proxy, prefix string, pairs []string) error {
		code, page, err := p.AdminGet("/stats/prometheus")
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("/stats/prometheus: %d %v", code, err)
		}
		if metricLine(page, prefix, pairs...) == "" {
			return fmt.Errorf("no %s line with %s; have:\n%s", prefix, strings.Join(pairs, ","), metricLine(page, prefix))
		}
		return nil
	}
	// The table with the gateway arrives after the gateway connects (coalesced, one debounce
	// period): requests go on until the labels show, within a bounded count and time.
	attempts := 0
	var last error
	testenv.Eventually(t, 30*time.Second, func() (err error) {
		if attempts++; attempts > 300 {
			t.Fatalf("300 requests without the expected labels; last: %v", last)
		}
		defer func() { last = err }()
		rep, err := do(h1Client, request{URL: fmt.Sprintf("http://%s:%d/hello", gwIP, gwPort), Host: "reviews.example"})
		if err != nil {
			return err
		}
		if rep.Code != http.StatusOK {
			return fmt.Errorf("request: %d", rep.Code)
		}
		if err := check(server, `istio_requests_total{reporter="destination"`, append(gatewayPeer, `destination_app="reviews"`, `response_code="200"`)); err != nil {
			return fmt.Errorf("sidecar: %w", err)
		}
		return check(gw, `istio_requests_total{reporter="source"`, append(serverPeer, `source_workload="istio-ingressgateway"`, `response_code="200"`))
	})
}
