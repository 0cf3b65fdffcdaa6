package e2e

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

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
	for _, w := range []struct {
		p    *testenv.Process
		name string
	}{{server, "reviews-v2"}, {echo, "echo-v1"}} {
		ip := w.p.WaitOutput(t, regexp.MustCompile(`at (198\.19\.\d+\.\d+) `), 5*time.Second)[1]
		entry := w.name + "-" + strings.ReplaceAll(ip, ".", "-")
		testenv.Eventually(t, 30*time.Second, func() error {
			if list := workloadEntries(t, sd); !strings.Contains(list, entry) {
				return fmt.Errorf("no auto-registered WorkloadEntry %s in %s", entry, list)
			}
			return nil
		})
	}

	urls := []string{"http://reviews:9080/", "http://reviews." + h.ns + ":9080/", "http://" + h.fqdn("reviews") + ":9080/"}
	client := h.runWorkload(t, sd, "productpage-v1", "get-all "+strings.Join(urls, " "),
		"--service", "productpage", "--port", "9081", "--labels", "version=v1")
	for _, u := range urls {
		m := client.WaitOutput(t, regexp.MustCompile(`RESULT `+regexp.QuoteMeta(u)+` (.*)`), 30*time.Second)
		if !strings.HasPrefix(m[1], "200 ") || !strings.Contains(m[1], "served-by reviews-v2") {
			t.Fatalf("GET %s: %s", u, m[1])
		}
		if !strings.Contains(strings.ToLower(m[1]), "x-request-id") {
			t.Errorf("GET %s did not pass an HTTP sidecar: %s", u, m[1])
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
	m := tcpClient.WaitOutput(t, regexp.MustCompile(`RESULT echo:9000 (.*)`), 30*time.Second)
	if m[1] != `"hello"` {
		t.Fatalf("TCP to echo:9000: %s", m[1])
	}
	if n := h.adminStat(t, "tcpclient-v1", "cluster.outbound|9000||"+h.fqdn("echo")+".upstream_cx_total"); n < 1 {
		t.Errorf("TCP client sidecar: outbound upstream_cx_total %d (the VIP's filter chain was not used)", n)
	}
}
