package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/testenv"
)

// upProc is a running `strait up`.
type upProc struct {
	name   string // for failures
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has exited; err is then its exit status
	err    error
	after  chan string // output lines after "ready"
}

// startUp runs `strait up` for dir with the binaries in bin in mode, and waits (up to 2 minutes)
// until it prints "ready". One still running at the end of the test is interrupted (SIGINT, as
// Ctrl-C), and killed after a minute.
func startUp(t *testing.T, name, bin, dir, mode string) *upProc {
	t.Helper()
	u := &upProc{name: name, exited: make(chan struct{}), after: make(chan string, 1000)}
	u.cmd = exec.Command(filepath.Join(bin, "strait"), "up", "--dir", dir, "--bin", bin, "--mode", mode)
	u.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdout, err := u.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	u.cmd.Stderr = u.cmd.Stdout
	if err := u.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		u.err = u.cmd.Wait()
		close(u.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-u.exited:
			return
		default:
		}
		_ = syscall.Kill(-u.cmd.Process.Pid, syscall.SIGINT)
		select {
		case <-u.exited:
		case <-time.After(60 * time.Second):
			_ = syscall.Kill(-u.cmd.Process.Pid, syscall.SIGKILL)
		}
	})
	var output []string
	timeout := time.After(2 * time.Minute)
	for ready := false; !ready; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("%s: strait up exited before ready:\n%s", name, strings.Join(output, "\n"))
			}
			output = append(output, l)
			ready = l == "ready"
		case <-timeout:
			t.Fatalf("%s: strait up not ready in 2m:\n%s", name, strings.Join(output, "\n"))
		}
	}
	go func() {
		for l := range lines {
			select {
			case u.after <- l:
			default: // nobody reads: drop
			}
		}
	}()
	return u
}

// waitLine waits (up to timeout) for an output line of strait up containing s.
func (u *upProc) waitLine(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case l := <-u.after:
			if strings.Contains(l, s) {
				return
			}
		case <-deadline:
			t.Fatalf("%s: strait up did not print %q in %s", u.name, s, timeout)
		}
	}
}

// down runs `strait down` for dir and waits (up to a minute) for `strait up` to exit, without an
// error.
func (u *upProc) down(t *testing.T, strait, dir string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, strait, "down", "--dir", dir).CombinedOutput(); err != nil {
		t.Fatalf("%s: strait down: %v\n%s", u.name, err, out)
	}
	select {
	case <-u.exited:
		if u.err != nil {
			t.Fatalf("%s: strait up exited with %v", u.name, u.err)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("%s: strait up still running after down", u.name)
	}
}

// TestUpDownTwice runs `strait up` and `strait down` twice in a row: each time the bookstore
// answers through the ingress on :8080 with every service contributing, and after `down` no
// process, port or pid file is left over, so the second `up` works.
func TestUpDownTwice(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test runs real processes")
	}
	bin := testenv.Binaries(t)
	dir := filepath.Join(t.TempDir(), ".strait")
	strait := filepath.Join(bin, "strait")
	for round := 1; round <= 2; round++ {
		up := startUp(t, fmt.Sprintf("round %d", round), bin, dir, "explicit")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		code, body, err := testenv.Get(ctx, "http://127.0.0.1:8080/api/book/0", nil)
		cancel()
		if err != nil || code != 200 || !strings.Contains(body, "reviews") {
			t.Fatalf("round %d: bookstore through the ingress: %d %v\n%s", round, code, err, body)
		}

		if round == 1 {
			// The demo's mesh config turns access logs on: the ingress logs Istio's line.
			testenv.Eventually(t, 10*time.Second, func() error {
				b, err := os.ReadFile(filepath.Join(dir, "logs", "ingress.log"))
				if err != nil || !strings.Contains(string(b), `"GET /api/book/0 HTTP/1.1" 200 - via_upstream`) {
					return fmt.Errorf("no access log line in the ingress's log (%v)", err)
				}
				return nil
			})
			proxiesHaveCertificates(t, dir)
			everyHopIsMTLS(t, dir)
			canary(t, strait, dir)
			cliOnLiveMesh(t, strait, dir)
			prometheusOnLiveMesh(t, dir)
			straitdCrash(t, up, bin, dir)
		}

		up.down(t, strait, dir)
		// Nothing left: no process of the group, no listener on the mesh's ports, no pid file.
		if err := syscall.Kill(-up.cmd.Process.Pid, 0); err == nil {
			t.Errorf("round %d: processes of strait up's group still run", round)
		}
		for _, addr := range []string{"127.0.0.1:8080", "127.0.0.1:15010", "127.0.0.1:15012", "127.0.0.1:15014", "127.0.0.1:15000"} {
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				c.Close()
				t.Errorf("round %d: %s still accepts connections after down", round, addr)
			}
		}
		if _, err := os.Stat(filepath.Join(dir, "up.pid")); !os.IsNotExist(err) {
			t.Errorf("round %d: pid file left: %v", round, err)
		}
		if out, _ := exec.Command("pgrep", "-f", bin).Output(); len(strings.TrimSpace(string(out))) > 0 {
			t.Errorf("round %d: processes from %s still run: %s", round, bin, out)
		}
		fmt.Fprintf(os.Stderr, "round %d: up and down ok\n", round)
	}
}

// reviewsVersion asks the bookstore through the ingress which reviews version answered.
// proxiesHaveCertificates checks that the ingress and every sidecar got a workload certificate
// from straitd's CA: each one's /stats/prometheus has the agent's expiry gauge.
func proxiesHaveCertificates(t *testing.T, dir string) {
	t.Helper()
	admins := map[string]string{}
	for name, ip := range upProxyIPs(t, dir) {
		admins[name] = ip + ":15000"
	}
	gauge := regexp.MustCompile(`(?m)^istio_agent_cert_expiry_seconds\{resource_name="default"\} [1-9][0-9]*$`)
	for name, addr := range admins {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		code, body, err := testenv.Get(ctx, "http://"+addr+"/stats/prometheus", nil)
		cancel()
		if err != nil || code != 200 || !gauge.MatchString(body) {
			t.Errorf("%s: no certificate expiry gauge at %s: %d %v", name, addr, code, err)
		}
	}
}

// everyHopIsMTLS checks the demo's mesh-wide STRICT PeerAuthentication: every hop of a page
// (ingress → web → details and reviews → ratings) is mutual TLS, each server-side sidecar having
// verified its caller's SPIFFE ID (web reports them in X-Bookstore-Callers); and each sidecar's
// inbound address presents its own workload's SPIFFE ID and refuses plaintext and TLS without a
// mesh client certificate.
func everyHopIsMTLS(t *testing.T, dir string) {
	t.Helper()
	const sa = "spiffe://cluster.local/ns/default/sa/"
	want := map[string]string{"web": sa + "default", "details": sa + "web", "reviews": sa + "web", "ratings": sa + "reviews"}
	seen := map[string]bool{}
	// reviews v1 calls no ratings: ask until a page shows every service.
	for i := 0; i < 50 && len(seen) < len(want); i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:8080/api/book/0", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		resp.Body.Close()
		cancel()
		for _, kv := range strings.Split(resp.Header.Get("X-Bookstore-Callers"), ",") {
			svc, caller, _ := strings.Cut(kv, "=")
			if svc == "" {
				continue
			}
			if want[svc] != caller {
				t.Fatalf("%s was called by %q, want %q (X-Bookstore-Callers %q)", svc, caller, want[svc], resp.Header.Get("X-Bookstore-Callers"))
			}
			seen[svc] = true
		}
	}
	if len(seen) != len(want) {
		t.Fatalf("hops seen as mutual TLS: %v, want all of %v", seen, want)
	}
	listens := regexp.MustCompile(`its sidecar receives mesh traffic at ([0-9.]+:[0-9]+)`)
	for _, wl := range []string{"details-v1", "ratings-v1", "reviews-v1", "web-v1"} {
		b, _ := os.ReadFile(filepath.Join(dir, "logs", wl+".log"))
		m := listens.FindSubmatch(b)
		if m == nil {
			t.Fatalf("%s: no inbound address in its log:\n%s", wl, b)
		}
		addr := string(m[1])
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, _, err := testenv.Get(ctx, "http://"+addr+"/healthz", nil)
		cancel()
		if err == nil {
			t.Errorf("%s: plaintext to its sidecar (%s) was accepted under STRICT", wl, addr)
		}
		var served []string
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true,
			VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
				c, err := x509.ParseCertificate(raw[0])
				if err == nil {
					for _, u := range c.URIs {
						served = append(served, u.String())
					}
				}
				return err
			}})
		if err == nil {
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			conn.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"))
			if _, rerr := conn.Read(make([]byte, 1)); rerr == nil {
				t.Errorf("%s: TLS without a client certificate was served", wl)
			}
			conn.Close()
		}
		svc, _, _ := strings.Cut(wl, "-")
		if len(served) != 1 || served[0] != sa+svc {
			t.Errorf("%s: its sidecar presented %v, want exactly %s", wl, served, sa+svc)
		}
	}
}

func reviewsVersion(t *testing.T, client *http.Client) string {
	t.Helper()
	resp, err := client.Get("http://127.0.0.1:8080/api/book/0")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	for _, kv := range strings.Split(resp.Header.Get("X-Bookstore-Versions"), ",") {
		if v, ok := strings.CutPrefix(kv, "reviews="); ok {
			return v
		}
	}
	return ""
}

// canary applies the 90/10 scenario with `strait apply` and checks that 1,000 requests through
// the ingress split 90±5% to reviews v1, the rest to v2. It logs how long the shift took to show.
func canary(t *testing.T, strait, dir string) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	applied := time.Now()
	out, err := exec.Command(strait, "apply", "--admin-token-file", filepath.Join(dir, "data", "admin-token"),
		"-f", filepath.Join(dir, "scenarios", "reviews-canary-90-10.yaml")).CombinedOutput()
	if err != nil {
		t.Fatalf("strait apply canary: %v\n%s", err, out)
	}
	// The shift has landed when 50 requests in a row see no v3 (which the canary excludes).
	testenv.Eventually(t, 20*time.Second, func() error {
		for i := 0; i < 50; i++ {
			if v := reviewsVersion(t, client); v == "v3" {
				return fmt.Errorf("reviews v3 still answers")
			}
		}
		return nil
	})
	t.Logf("canary visible %.2fs after strait apply returned", time.Since(applied).Seconds())
	counts := map[string]int{}
	for i := 0; i < 1000; i++ {
		counts[reviewsVersion(t, client)]++
	}
	if counts["v1"] < 850 || counts["v1"] > 950 || counts["v1"]+counts["v2"] != 1000 {
		t.Fatalf("canary split over 1,000 requests = %v, want v1 900±50 and the rest v2", counts)
	}
	t.Logf("canary split over 1,000 requests: %v", counts)
}

// straitdCrash kills straitd with SIGKILL while a bounded load runs through the ingress: strait
// up restarts it, no request fails meanwhile (the proxies serve their last configuration), and
// after the restart the canary applied before the crash still decides where reviews go.
func straitdCrash(t *testing.T, up *upProc, bin, dir string) {
	t.Helper()
	out, err := exec.Command("pgrep", "-f", filepath.Join(bin, "straitd")+" --config-dir "+filepath.Join(dir, "config")).Output()
	pid, _ := strconv.Atoi(strings.Fields(string(out) + " 0")[0])
	if err != nil || pid <= 0 {
		t.Fatalf("finding straitd: %v %q", err, out)
	}
	stop := make(chan struct{})
	type result struct {
		sent, failed int
		first        string // the first failure
	}
	res := make(chan result)
	go func() { // bounded: at most 20,000 requests or until stopped
		client := &http.Client{Timeout: 5 * time.Second}
		var r result
		for r.sent < 20000 {
			select {
			case <-stop:
				res <- r
				return
			default:
			}
			r.sent++
			resp, err := client.Get("http://127.0.0.1:8080/api/book/0")
			if err != nil {
				if r.failed++; r.first == "" {
					r.first = err.Error()
				}
				continue
			}
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				if r.failed++; r.first == "" {
					r.first = fmt.Sprintf("%d %s", resp.StatusCode, body)
				}
			}
		}
		<-stop
		res <- r
	}()
	time.Sleep(500 * time.Millisecond)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("killing straitd (pid %d): %v", pid, err)
	}
	up.waitLine(t, "straitd is back", 90*time.Second)
	// Serve a little longer on the restarted control plane, then stop the load.
	time.Sleep(2 * time.Second)
	close(stop)
	r := <-res
	if r.failed != 0 || r.sent < 10 {
		t.Errorf("through straitd's crash and restart: %d of %d requests failed, the first: %s", r.failed, r.sent, r.first)
	}
	t.Logf("straitd killed and restarted under load: %d requests, %d failed", r.sent, r.failed)
	client := &http.Client{Timeout: 5 * time.Second}
	testenv.Eventually(t, 30*time.Second, func() error { // the proxies are back on straitd
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, body, err := testenv.Get(ctx, "http://127.0.0.1:15014/debug/syncz", nil)
		if err != nil || strings.Count(body, `"proxy"`) < 7 {
			return fmt.Errorf("proxies reconnected: %v %.200s", err, body)
		}
		return nil
	})
	for i := 0; i < 50; i++ {
		if v := reviewsVersion(t, client); v == "v3" {
			t.Fatalf("after straitd's restart reviews v3 answers: the canary applied before the crash is lost")
		}
	}
}

// cliOnLiveMesh runs every operator command against the live mesh of strait up, as a user would
// after the README's tour, and checks the part of each answer that proves it read the mesh. A
// VirtualService routing to a subset that does not exist is reported IST0101 by strait analyze
// offline, by strait apply, by straitd's /debug/configz and by strait analyze live.
func cliOnLiveMesh(t *testing.T, strait, dir string) {
	t.Helper()
	token := filepath.Join(dir, "data", "admin-token")
	run := func(wantErr bool, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, strait, append([]string{"--admin-token-file", token}, args...)...).CombinedOutput()
		if (err != nil) != wantErr {
			t.Errorf("strait %s: error %v, want error %v\n%s", strings.Join(args, " "), err, wantErr, out)
		}
		return string(out)
	}
	expect := func(out, what string, wants ...string) {
		t.Helper()
		for _, w := range wants {
			if !strings.Contains(out, w) {
				t.Errorf("%s: output lacks %q:\n%.2000s", what, w, out)
			}
		}
	}
	const ingress = "127.0.0.1:15000"
	expect(run(false, "version"), "version", "client version: ", "control plane version: ", "(7 proxies)")
	expect(run(false, "proxy-status"), "proxy-status", "SYNCED")
	expect(run(false, "proxy-status", "-o", "json"), "proxy-status -o json", `"proxy"`)
	expect(run(false, "analyze"), "analyze (live, clean)", "No validation issues found")
	expect(run(false, "describe", "service", "reviews"), "describe service", "Service: reviews.default.svc.cluster.local", "Endpoints:", "DestinationRule: default/reviews")
	expect(run(false, "describe", "workload", "reviews-v1"), "describe workload", "reviews")
	for _, sub := range []string{"cluster", "listener", "route", "endpoint", "secret", "bootstrap", "all"} {
		expect(run(false, "proxy-config", sub, ingress), "proxy-config "+sub, "")
	}
	expect(run(false, "proxy-config", "cluster", ingress), "proxy-config cluster", "reviews.default.svc.cluster.local")
	expect(run(false, "proxy-config", "bootstrap", ingress), "proxy-config bootstrap", "router~")
	expect(run(false, "proxy-config", "log", ingress), "proxy-config log", "active loggers")
	expect(run(false, "explain", ingress, "--port", "8080", "--path", "/api/book/0"), "explain", "Decision:      ALLOWED")
	expect(run(false, "get", "virtualservice", "-A"), "get", "reviews")

	// A route to a subset that does not exist: IST0101 everywhere.
	bad := filepath.Join(t.TempDir(), "reviews-v9.yaml")
	body, err := os.ReadFile(filepath.Join(dir, "scenarios", "reviews-v1.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte(strings.ReplaceAll(string(body), "subset: v1", "subset: v9")), 0o644); err != nil {
		t.Fatal(err)
	}
	ist := `IST0101`
	expect(run(true, "analyze", "-f", bad, "-f", filepath.Join(dir, "config")), "analyze offline", ist, `"reviews+v9"`)
	expect(run(false, "apply", "-f", bad), "apply", ist)
	expect(run(false, "wait", "virtualservice", "reviews.default"), "wait", "present on 7 out of 7 proxies")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	_, configz, err := testenv.Get(ctx, "http://127.0.0.1:15014/debug/configz", nil)
	cancel()
	if err != nil || !strings.Contains(configz, ist) {
		t.Errorf("/debug/configz lacks %s: %v", ist, err)
	}
	expect(run(true, "analyze"), "analyze (live)", ist)
	// Put the canary back for what follows.
	expect(run(false, "apply", "-f", filepath.Join(dir, "scenarios", "reviews-canary-90-10.yaml")), "apply canary", "")
}
