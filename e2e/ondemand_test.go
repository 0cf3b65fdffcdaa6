package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/testenv"
)

// TestOnDemand runs straitd --on-demand and a client sidecar with strait-proxy --on-demand in
// explicit mode: it starts without any service's virtual host or cluster, the first request to
// a service is held while the proxy demands it and is answered by the service, the proxy then
// holds that service only, a request to an unknown host gets the block_all answer
// (REGISTRY_ONLY) as without on-demand configuration, and a TCP service's cluster is demanded by
// its first connection.
//
// The client has no Sidecar resource (a proxy with one is not scoped on-demand: its egress hosts
// are sent up front), so in capture mode NONE its egress listeners bind 127.0.0.1 on the
// services' ports: the ports below are used by no other test.
func TestOnDemand(t *testing.T) {
	skipShort(t)
	const clientIP = "127.0.0.123"
	const httpPort, tcpPort = 17123, 17125
	alpha := startBackend(t, "127.0.0.124", "alpha", backendOptions{})
	beta := startBackend(t, "127.0.0.125", "beta", backendOptions{})
	echo := testenv.ServeTCP(t, "127.0.0.126:0", func(c net.Conn) {
		_, _ = c.Write([]byte("gamma:"))
		buf := make([]byte, 4) // "ping"
		n, _ := io.ReadFull(c, buf)
		_, _ = c.Write(buf[:n])
	})
	_, echoPort, err := net.SplitHostPort(echo)
	if err != nil {
		t.Fatal(err)
	}
	ep := func(b *echoBackend) string {
		return fmt.Sprintf("{address: %s, ports: {http: %d}}", b.IP, b.Port)
	}
	cfg := staticServiceYAML("alpha.e2e.svc.cluster.local", httpPort, "http", "HTTP", ep(alpha)) + "---\n" +
		staticServiceYAML("beta.e2e.svc.cluster.local", httpPort, "http", "HTTP", ep(beta)) + "---\n" +
		staticServiceYAML("gamma.e2e.svc.cluster.local", tcpPort, "tcp", "TCP",
			fmt.Sprintf("{address: 127.0.0.126, ports: {tcp: %s}}", echoPort))
	meshFile := filepath.Join(t.TempDir(), "meshconfig.yaml")
	if err := os.WriteFile(meshFile, []byte("outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sd := testenv.StartStraitd(t, map[string]string{"mesh.yaml": cfg}, "--on-demand", "--mesh-config", meshFile)
	client := testenv.StartProxy(t, sd.XDS, testenv.ProxyOptions{Mode: "sidecar", Name: "client-1", Namespace: "e2e", IP: clientIP,
		Labels: map[string]string{"app": "client"}, Extra: []string{"--interception-mode", "NONE", "--on-demand"}})
	client.WaitReady(t, 30*time.Second)

	clusters := func() string {
		t.Helper()
		code, body, err := client.AdminGet("/clusters")
		if err != nil || code != http.StatusOK {
			t.Fatalf("/clusters: %d %v", code, err)
		}
		return body
	}
	has := func(body, host string, port int) bool {
		return strings.Contains(body, fmt.Sprintf("outbound|%d||%s.e2e.svc.cluster.local::", port, host))
	}
	if c := clusters(); has(c, "alpha", httpPort) || has(c, "beta", httpPort) || has(c, "gamma", tcpPort) {
		t.Fatalf("before any request the proxy holds a service's cluster:\n%s", c)
	}
	// The listener for the port exists before any demand (listeners are all sent); wait until it
	// accepts, without sending a request through it.
	listener := fmt.Sprintf("127.0.0.1:%d", httpPort)
	testenv.Eventually(t, 30*time.Second, func() error {
		c, err := net.DialTimeout("tcp", listener, time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})

	get := func(host string) (*reply, time.Duration) {
		t.Helper()
		start := time.Now()
		rep, err := do(h1Client, request{URL: "http://" + listener + "/first", Host: fmt.Sprintf("%s:%d", host, httpPort)})
		if err != nil {
			t.Fatalf("GET via %s for %s: %v", listener, host, err)
		}
		return rep, time.Since(start)
	}
	rep, first := get("alpha.e2e.svc.cluster.local")
	if rep.Code != http.StatusOK || rep.Echo == nil || rep.Echo.Backend != "alpha" {
		t.Fatalf("first request to alpha: %d %.200s, want 200 from alpha", rep.Code, rep.Body)
	}
	rep, again := get("alpha.e2e.svc.cluster.local")
	if rep.Code != http.StatusOK || rep.Echo == nil || rep.Echo.Backend != "alpha" {
		t.Fatalf("second request to alpha: %d %.200s", rep.Code, rep.Body)
	}
	t.Logf("alpha: first request (held for its demand) %v, second %v", first, again)
	if c := clusters(); !has(c, "alpha", httpPort) || has(c, "beta", httpPort) || has(c, "gamma", tcpPort) {
		t.Fatalf("after demanding alpha the proxy should hold alpha's cluster only:\n%s", c)
	}

	rep, first = get("beta.e2e.svc.cluster.local")
	if rep.Code != http.StatusOK || rep.Echo == nil || rep.Echo.Backend != "beta" {
		t.Fatalf("first request to beta: %d %.200s, want 200 from beta", rep.Code, rep.Body)
	}
	t.Logf("beta: first request %v", first)

	rep, first = get("nowhere.e2e.svc.cluster.local")
	if rep.Code != http.StatusBadGateway {
		t.Fatalf("unknown host: %d %.200s, want REGISTRY_ONLY's 502", rep.Code, rep.Body)
	}
	t.Logf("unknown host: answered 502 after %v", first)

	// TCP: the listener names gamma's cluster, which the first connection demands.
	start := time.Now()
	got, err := testenv.Exchange(t, fmt.Sprintf("127.0.0.1:%d", tcpPort), 0, "ping")
	if string(got) != "gamma:ping" {
		t.Fatalf("first TCP connection to gamma: %q (%v), want gamma:ping", got, err)
	}
	t.Logf("gamma: first TCP connection (held for its cluster) %v", time.Since(start))
	if c := clusters(); !has(c, "gamma", tcpPort) || !has(c, "beta", httpPort) {
		t.Fatalf("after the demands the proxy should hold alpha, beta and gamma:\n%s", c)
	}
	_, stats, err := client.AdminGet("/stats")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"on_demand.found: 2", "on_demand.not_found: 1"} {
		if !strings.Contains(stats, want) {
			t.Errorf("stats lack %q", want)
		}
	}
}
