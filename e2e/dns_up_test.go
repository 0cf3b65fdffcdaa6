package e2e

import (
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/netns"
	"github.com/strait-mesh/strait/internal/testenv"
)

// TestUpNetnsMeshDNS runs `strait up --mode netns` (root): the bookstore's unmodified services
// run in their own network namespaces and call each other by mesh name (http://details:9080,
// http://reviews:9080, http://ratings:9080), which their sidecars' DNS proxies resolve to
// auto-allocated VIPs. The frontend answers through the ingress with every service
// contributing, and `strait down` removes the namespaces and the bridge.
func TestUpNetnsMeshDNS(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test runs real processes")
	}
	if err := netns.Available(); err != nil {
		t.Skipf("skipping: %v (TestUpDownTwice runs strait up in explicit mode)", err)
	}
	if _, err := exec.LookPath("iptables-restore"); err != nil {
		t.Skip("skipping: iptables-restore not found (Debian package iptables)")
	}
	if c, err := net.DialTimeout("tcp", "127.0.0.1:8080", time.Second); err == nil {
		c.Close()
		t.Skip("skipping: 127.0.0.1:8080 is in use (a strait up already running?)")
	}
	bin := testenv.Binaries(t)
	dir := filepath.Join(t.TempDir(), ".strait")
	strait := filepath.Join(bin, "strait")
	up := startUp(t, "netns", bin, dir, "netns")

	// Every service answers: web calls details and reviews by name, reviews v2 and v3 call
	// ratings by name. Reviews versions rotate, so ask until ratings was seen (bounded).
	seen := map[string]bool{}
	client := &http.Client{Timeout: 10 * time.Second}
	for i := 0; i < 30 && !(seen["details"] && seen["reviews"] && seen["ratings"]); i++ {
		resp, err := client.Get("http://127.0.0.1:8080/api/book/0")
		if err != nil {
			t.Fatalf("bookstore through the ingress: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("bookstore through the ingress: %d", resp.StatusCode)
		}
		for _, kv := range strings.Split(resp.Header.Get("X-Bookstore-Versions"), ",") {
			svc, _, _ := strings.Cut(kv, "=")
			seen[svc] = true
		}
	}
	for _, svc := range []string{"web", "details", "reviews", "ratings"} {
		if !seen[svc] {
			t.Errorf("%s never answered (versions seen: %v)", svc, seen)
		}
	}

	up.down(t, strait, dir)
	for _, wl := range []string{"web-v1", "details-v1", "reviews-v1", "reviews-v2", "reviews-v3", "ratings-v1"} {
		if netns.Exists("strait-default-" + wl) {
			t.Errorf("namespace strait-default-%s left behind", wl)
		}
	}
	if out, _ := netns.IP("link", "show", "strait0"); strings.Contains(out, "strait0") {
		t.Errorf("bridge strait0 left behind:\n%s", out)
	}
}
