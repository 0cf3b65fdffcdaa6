package e2e

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/testenv"
)

// nonRootPrefix returns the argv prefix that runs a command as nobody (setpriv) when this test
// runs as root, so that `strait run` takes its non-root path; none when not root.
func nonRootPrefix(t *testing.T) []string {
	t.Helper()
	if os.Geteuid() != 0 {
		return nil
	}
	path, err := exec.LookPath("setpriv")
	if err != nil {
		t.Log("setpriv not found: running strait run --mode explicit as root")
		return nil
	}
	return []string{path, "--reuid=65534", "--regid=65534", "--clear-groups", "--"}
}

// worldExecutable copies this test binary where any user can run it.
func worldExecutable(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		return self
	}
	dir, err := os.MkdirTemp("", "strait-e2e-app-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "e2e.test")
	if err := os.WriteFile(path, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// adminTokenFor returns straitd's admin token file for `strait run`; asNobody: a copy owned by
// nobody (65534, mode 0600, in a directory only nobody can enter), for `strait run` under
// nonRootPrefix, as an operator would hand the token to the user that runs workloads.
func adminTokenFor(t *testing.T, sd *testenv.Straitd, asNobody bool) string {
	t.Helper()
	if !asNobody {
		return sd.AdminTokenFile()
	}
	b, err := os.ReadFile(sd.AdminTokenFile())
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "strait-e2e-token-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "admin-token")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, dir} {
		if err := os.Chown(p, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

// runExplicit starts `strait run` without root privileges (explicit mode) and returns it with
// the workload's address; it is stopped with SIGINT (Ctrl-C) at cleanup.
func runExplicit(t *testing.T, sd *testenv.Straitd, app, self, name string, args ...string) (*testenv.Process, string) {
	t.Helper()
	bin := testenv.Binaries(t)
	argv := append(nonRootPrefix(t), filepath.Join(bin, "strait"), "run", "--straitd", sd.HTTP,
		"--admin-token-file", adminTokenFor(t, sd, len(nonRootPrefix(t)) > 0),
		"--name", name, "--proxy-bin", filepath.Join(bin, "strait-proxy"))
	if os.Geteuid() == 0 && len(nonRootPrefix(t)) == 0 {
		argv = append(argv, "--mode", "explicit")
	}
	argv = append(append(argv, args...), "--", self, "-test.run=^$")
	p := testenv.Start(t, "strait run "+name, []string{appEnv + "=" + app, "TMPDIR=/tmp"}, argv...)
	t.Cleanup(func() {
		p.Signal(syscall.SIGINT)
		select {
		case <-p.Exited():
		case <-time.After(30 * time.Second):
			t.Errorf("strait run %s did not exit on SIGINT", name)
		}
	})
	m := p.WaitOutput(t, regexp.MustCompile(`explicit mode .*: \S+ listens on (127\.19\.\d+\.\d+):`), 60*time.Second)
	return p, m[1]
}

// statAt reads a counter from the admin interface at addr.
func statAt(t *testing.T, addr, stat string) int {
	t.Helper()
	_, body, err := testenv.Get(t.Context(), "http://"+addr+"/stats", http.Header{})
	if err != nil {
		t.Fatal(err)
	}
	return statIn(t, addr, body, stat)
}

// TestExplicitHTTPThroughBothSidecars is TestInterceptedHTTPThroughBothSidecars without root:
// `strait run` (as nobody when the test is root) gives each workload its own 127.19.N.1 address
// and a sidecar with INTERCEPTION_MODE=NONE; the client calls the service at its sidecar's
// outbound address by host name, and the request reaches the server through the server's
// sidecar (inbound at 127.19.N.1:15006).
func TestExplicitHTTPThroughBothSidecars(t *testing.T) {
	sd := testenv.StartStraitd(t, nil, "--autoregister-grace", "1s")
	self := worldExecutable(t)
	_, server := runExplicit(t, sd, "http-server $STRAIT_WORKLOAD_IP:9080", self, "reviews-v2",
		"--service", "reviews", "--labels", "version=v2", "--port", "9080")
	waitListening(t, server+":9080")
	client, clientIP := runExplicit(t, sd, "get http://$STRAIT_OUTBOUND_IP:9080/ reviews.default.svc.cluster.local", self, "productpage-v1",
		"--service", "productpage", "--port", "9080", "--labels", "version=v1")
	got := result(t, client, "")
	t.Logf("client got %s", got)
	if !strings.HasPrefix(got, "200 ") || !strings.Contains(got, "served-by reviews-v2") {
		t.Fatalf("client got %s", got)
	}
	statsAtLeast(t, "client sidecar", func(s string) int { return statAt(t, clientIP+":15000", s) },
		map[string]int{"cluster.outbound|9080||reviews.default.svc.cluster.local.upstream_rq_total": 1})
	statsAtLeast(t, "server sidecar", func(s string) int { return statAt(t, server+":15000", s) },
		map[string]int{"cluster.inbound|15006||.upstream_rq_total": 1})

	// The outbound listener doubles as an HTTP proxy: an absolute-form request is routed by its
	// host, the service's name.
	proxied, _ := runExplicit(t, sd, "get-via http://$STRAIT_OUTBOUND_IP:9080 http://reviews.default.svc.cluster.local:9080/", self, "details-v1",
		"--service", "details", "--port", "9080")
	if got := result(t, proxied, ""); !strings.HasPrefix(got, "200 ") || !strings.Contains(got, "served-by reviews-v2") {
		t.Fatalf("client through the outbound listener as an HTTP proxy got %s", got)
	}
}

// waitListening waits (bounded) until addr accepts TCP connections: the workload's app has
// started, so a first request does not race its start-up.
func waitListening(t *testing.T, addr string) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
}
