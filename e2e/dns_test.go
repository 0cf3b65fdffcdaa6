package e2e

import (
	"strings"
	"testing"

	"github.com/strait-mesh/strait/internal/testenv"
)

// TestMeshDNSThroughBothSidecars runs services without addresses (straitd auto-allocates their
// VIPs from 240.240.0.0/16) and unmodified clients that call them by mesh name: the client's DNS
// query is redirected to its sidecar's DNS proxy (127.0.0.1:15053), which answers from the name
// table straitd sent; the connection to the VIP is captured and routed by the sidecar (HTTP: the
// virtual host lists the VIP; TCP: the filter chain matches it) to the server's sidecar.
func TestMeshDNSThroughBothSidecars(t *testing.T) {
	h := newMeshHost(t)
	sd := testenv.StartStraitd(t, nil, "--autoregister-grace", "1s")
	server := h.runWorkload(t, sd, "reviews-v2", "http-server 0.0.0.0:9080",
		"--service", "reviews", "--labels", "version=v2", "--port", "9080")
	echo := h.runWorkload(t, sd, "echo-v1", "tcp-echo 0.0.0.0:9000",
		"--service", "echo", "--protocol", "TCP", "--port", "9000")
	waitRegistered(t, sd, "reviews-v2", workloadIP(t, server))
	waitRegistered(t, sd, "echo-v1", workloadIP(t, echo))

	urls := []string{"http://reviews:9080/", "http://reviews." + h.ns + ":9080/", "http://" + h.fqdn("reviews") + ":9080/"}
	client := h.runWorkload(t, sd, "productpage-v1", "get-all "+strings.Join(urls, " "),
		"--service", "productpage", "--port", "9081", "--labels", "version=v1")
	for _, u := range urls {
		got := result(t, client, u)
		if !strings.HasPrefix(got, "200 ") || !strings.Contains(got, "served-by reviews-v2") {
			t.Fatalf("GET %s: %s", u, got)
		}
		if !strings.Contains(strings.ToLower(got), "x-request-id") {
			t.Errorf("GET %s did not pass an HTTP sidecar: %s", u, got)
		}
	}
	if n := h.adminStat(t, "productpage-v1", "cluster.outbound|9080||"+h.fqdn("reviews")+".upstream_rq_total"); n < len(urls) {
		t.Errorf("client sidecar: outbound upstream_rq_total %d, want %d (routed by the VIP, not passed through)", n, len(urls))
	}
	// The names were resolved by the client's sidecar, and none of them went upstream.
	if n := h.adminStat(t, "productpage-v1", "dns.requests"); n < len(urls) {
		t.Errorf("client sidecar answered %d DNS queries, want at least %d", n, len(urls))
	}
	if n := h.adminStat(t, "productpage-v1", "dns.upstream_requests"); n != 0 {
		t.Errorf("client sidecar forwarded %d DNS queries for mesh names, want 0", n)
	}
	if n := h.adminStat(t, "reviews-v2", "http.inbound_0.0.0.0_9080.downstream_rq_total"); n < len(urls) {
		t.Errorf("server sidecar: inbound downstream_rq_total %d", n)
	}

	tcpClient := h.runWorkload(t, sd, "tcpclient-v1", "tcp-send hello echo:9000",
		"--service", "tcpclient", "--port", "9082")
	if got := result(t, tcpClient, "echo:9000"); got != `"hello"` {
		t.Fatalf("TCP to echo:9000: %s", got)
	}
	if n := h.adminStat(t, "tcpclient-v1", "cluster.outbound|9000||"+h.fqdn("echo")+".upstream_cx_total"); n < 1 {
		t.Errorf("TCP client sidecar: outbound upstream_cx_total %d (the VIP's filter chain was not used)", n)
	}
}
