package e2e

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/testenv"
)

// peerMetricsYAML: the service reviews (HTTP 9080, TCP 9090) selects the WorkloadEntry
// reviews-v2 at serverIP; the client is the WorkloadEntry productpage-v1 at clientIP. Both run
// sidecars in explicit mode (Sidecar resources binding their addresses) with identities
// e2e/client and e2e/reviews.
func peerMetricsYAML(clientIP, serverIP, appAddr, tcpAddr string) string {
	tcpPort := sidecarPort(9090, "TCP")
	return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: e2e}
spec:
  hosts: [reviews.e2e.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}, {number: 9090, name: tcp, protocol: TCP}]
  resolution: STATIC
  workloadSelector: {labels: {app: reviews}}
---
` + workloadEntryYAML("reviews-v2", serverIP, "reviews", "app: reviews, version: v2") + "---\n" +
		workloadEntryYAML("productpage-v1", clientIP, "client", "app: productpage, version: v1") + "---\n" +
		sidecarResourceYAML("productpage", "app: productpage", "  egress:\n"+
			explicitListener(httpPort, "bind: "+clientIP, `hosts: ["e2e/*"]`)+explicitListener(tcpPort, "bind: "+clientIP, `hosts: ["e2e/*"]`)) + "---\n" +
		sidecarResourceYAML("reviews", "app: reviews", "  ingress:\n"+
			explicitListener(httpPort, "bind: "+serverIP, "defaultEndpoint: "+appAddr)+explicitListener(tcpPort, "bind: "+serverIP, "defaultEndpoint: "+tcpAddr))
}

// metricLine returns the first line of a Prometheus page that starts with prefix and has every
// one of pairs, or "".
func metricLine(page, prefix string, pairs ...string) string {
	for _, line := range strings.Split(page, "\n") {
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		ok := true
		for _, p := range pairs {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			return line
		}
	}
	return ""
}

// TestPeerWorkloadMetrics runs a client workload (productpage-v1) and a server workload
// (reviews-v2) with sidecars and identities, and checks that both proxies' standard metrics name
// the peer workload from the workload table straitd pushes: the server's (reporter destination)
// the client by its mutual TLS identity, the client's (reporter source) the server by the
// upstream host its cluster picked, for HTTP (istio_requests_total) and TCP (istio_tcp_*).
func TestPeerWorkloadMetrics(t *testing.T) {
	skipShort(t)
	const clientIP, serverIP = "127.0.0.161", "127.0.0.162"
	app := startBackend(t, "127.0.0.1", "reviews", backendOptions{})
	tcpPort := startTCPEcho(t, "127.0.0.1", "reviews-tcp")
	sd := testenv.StartStraitd(t, map[string]string{"mesh.yaml": peerMetricsYAML(clientIP, serverIP, app.Addr(), fmt.Sprintf("127.0.0.1:%d", tcpPort))})
	server := startSidecar(t, sd, "reviews-v2-1", serverIP, map[string]string{"app": "reviews", "version": "v2"}, "reviews")
	client := startSidecar(t, sd, "productpage-v1-1", clientIP, map[string]string{"app": "productpage", "version": "v1"}, "client")

	clientPeer := []string{`source_workload="productpage-v1"`, `source_canonical_service="productpage"`, `source_canonical_revision="v1"`,
		`source_workload_namespace="e2e"`, `source_principal="spiffe://cluster.local/ns/e2e/sa/client"`, `source_app="productpage"`,
		`source_version="v1"`, `connection_security_policy="mutual_tls"`}
	serverPeer := []string{`destination_workload="reviews-v2"`, `destination_workload_namespace="e2e"`, `destination_app="reviews"`,
		`destination_version="v2"`, `destination_canonical_service="reviews"`, `destination_canonical_revision="v2"`}
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

	// HTTP: a request through both sidecars; the tables may arrive after the first requests,
	// whose peers are then unknown, so requests go on until the labels show.
	testenv.Eventually(t, 30*time.Second, func() error {
		rep, err := do(h1Client, request{URL: fmt.Sprintf("http://%s:9080/hello", clientIP), Host: "reviews.e2e.svc.cluster.local:9080"})
		if err != nil {
			return err
		}
		if rep.Code != http.StatusOK {
			return fmt.Errorf("request: %d", rep.Code)
		}
		if err := check(server, `istio_requests_total{reporter="destination"`, append(clientPeer, `destination_app="reviews"`, `response_code="200"`)); err != nil {
			return fmt.Errorf("server: %w", err)
		}
		return check(client, `istio_requests_total{reporter="source"`, append(serverPeer, `source_workload="productpage-v1-1"`, `response_code="200"`))
	})

	// TCP: one echoed line through both sidecars per attempt.
	testenv.Eventually(t, 30*time.Second, func() error {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(clientIP, "9090"), 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := fmt.Fprintf(c, "hi\n"); err != nil {
			return err
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || line != "reviews-tcp: hi\n" {
			return fmt.Errorf("echo: %q %v", line, err)
		}
		if err := check(server, `istio_tcp_connections_opened_total{reporter="destination"`, clientPeer); err != nil {
			return fmt.Errorf("server: %w", err)
		}
		return check(client, `istio_tcp_connections_opened_total{reporter="source"`, append(serverPeer, `request_protocol="tcp"`))
	})
}
