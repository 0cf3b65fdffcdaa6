package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// adminSocket returns the path of the proxy's admin socket, from /server_info.
func (p *proxyProc) adminSocket() string {
	p.t.Helper()
	code, body, err := p.adminGet("/server_info")
	if err != nil || code != 200 {
		p.t.Fatalf("/server_info: %d %v", code, err)
	}
	var info struct {
		AdminSocket string `json:"admin_socket"`
	}
	if err := json.Unmarshal([]byte(body), &info); err != nil || info.AdminSocket == "" {
		p.t.Fatalf("/server_info names no admin socket (%v):\n%s", err, body)
	}
	return info.AdminSocket
}

// adminPost POSTs an admin path on the proxy's admin socket, as the proxy's owner (the
// state-changing endpoints are served only there).
func (p *proxyProc) adminPost(path string) (int, string, error) {
	sock := p.adminSocket()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}
	resp, err := c.Post("http://localhost"+path, "", nil)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	return resp.StatusCode, string(b), err
}

const nobodyUID = 65534

// curlAs runs curl as uid and gid nobody with args and returns the HTTP status it got (0 when
// it could not connect) and the body.
func curlAs(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// -q: no ~/.curlrc; -v: why a connection failed; --max-time: a profile that was not
	// refused must not hang the test.
	cmd := exec.CommandContext(ctx, "curl", append([]string{"-q", "-sSv", "--max-time", "10", "-w", "\n%{http_code}"}, args...)...)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/nonexistent"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobodyUID, Gid: nobodyUID}}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("running curl as nobody: %v", err)
	}
	i := strings.LastIndexByte(string(out), '\n')
	code := 0
	fmt.Sscan(string(out[i+1:]), &code)
	if code == 0 {
		return 0, stderr.String()
	}
	return code, string(out[:max(i, 0)])
}

// requireRootAndCurl skips unless another local user can be impersonated.
func requireRootAndCurl(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs curl as uid nobody (65534) to act as another local user of the proxy's host")
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("needs curl to act as another local user: " + err.Error())
	}
}

// TestAdminLocalUserCannotControlProxy: on a shared host, another local user (nobody) can read
// the proxy's stats over TCP but cannot stop, drain, reconfigure or profile it — neither over
// TCP (403 for everyone there) nor over the admin socket (mode 0600 in a 0700 directory, and,
// should those modes be loosened, the SO_PEERCRED check) — while the proxy's owner can, on the
// socket.
func TestAdminLocalUserCannotControlProxy(t *testing.T) {
	requireRootAndCurl(t)
	base, err := os.MkdirTemp("", "sp-admin")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	os.Chmod(base, 0o755) // nobody may reach the socket's directory, whose mode the proxy sets
	sock := filepath.Join(base, "run", "admin.sock")

	w := newWorld(t)
	p := w.start(t, 2*time.Second, "--admin-socket", sock)
	expectBody(t, w.httpAddr, "/x", "a /x")

	if got := p.adminSocket(); got != sock {
		t.Fatalf("/server_info admin_socket = %q, want %q", got, sock)
	}
	if fi, err := os.Lstat(sock); err != nil || fi.Mode()&fs.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket %s: %v, want a socket of mode 0600", sock, fi.Mode())
	}
	if fi, err := os.Stat(filepath.Dir(sock)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("admin socket directory: %v, want mode 0700", fi.Mode())
	}

	tcp := "http://" + p.admin
	mutating := []struct{ method, path string }{
		{"POST", "/quitquitquit"},
		{"POST", "/drain_listeners"},
		{"POST", "/drain_listeners?inboundonly"},
		{"POST", "/logging?level=error"},
		{"GET", "/debug/pprof/profile?seconds=5"},
		{"GET", "/debug/pprof/heap"},
		{"GET", "/debug/pprof/goroutine?debug=2"},
		{"GET", "/debug/pprof/cmdline"},
	}
	stillServing := func(when string) {
		t.Helper()
		select {
		case <-p.exited:
			t.Fatalf("%s: the proxy exited", when)
		default:
		}
		expectBody(t, w.httpAddr, "/x", "a /x")
		if got, err := echoOnce(w.tcpAdr, "still here"); err != nil || got != "still here" {
			t.Fatalf("%s: tcp listener: %q %v", when, got, err)
		}
		if code, body, _ := p.adminGet("/ready"); code != 200 || !strings.Contains(body, "LIVE") {
			t.Fatalf("%s: /ready = %d %q", when, code, body)
		}
	}

	// Another user, over TCP: read-only endpoints work, the rest is refused and points to the socket.
	for _, path := range []string{"/stats", "/stats/prometheus", "/ready", "/server_info", "/clusters", "/config_dump"} {
		if code, body := curlAs(t, tcp+path); code != 200 {
			t.Errorf("nobody: GET %s over TCP = %d %q, want 200", path, code, body)
		}
	}
	if _, body := curlAs(t, tcp+"/stats?filter=listener_manager"); !strings.Contains(body, "listener_manager.total_listeners_active: 2") {
		t.Errorf("nobody: /stats over TCP:\n%s", body)
	}
	for _, m := range mutating {
		if code, body := curlAs(t, "-X", m.method, tcp+m.path); code != http.StatusForbidden || !strings.Contains(body, sock) {
			t.Errorf("nobody: %s %s over TCP = %d %q, want 403 naming the socket", m.method, m.path, code, body)
		}
	}
	// The owner is refused over TCP too: TCP never changes state.
	if resp, err := http.Post(tcp+"/quitquitquit", "", nil); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("root: POST /quitquitquit over TCP: %v %v, want 403", resp, err)
	} else {
		resp.Body.Close()
	}
	stillServing("after TCP attempts")

	// Another user, on the socket: the file mode keeps it out.
	for _, m := range mutating[:4] {
		if code, msg := curlAs(t, "--unix-socket", sock, "-X", m.method, "http://localhost"+m.path); code != 0 || !strings.Contains(msg, "Permission denied") {
			t.Errorf("nobody: %s %s on the socket = %d %q, want no connection (permission denied)", m.method, m.path, code, msg)
		}
	}
	// An operator loosens the modes by mistake: the peer credential check still refuses nobody.
	os.Chmod(filepath.Dir(sock), 0o755)
	os.Chmod(sock, 0o666)
	for _, m := range append(mutating, struct{ method, path string }{"GET", "/stats"}) {
		if code, body := curlAs(t, "--unix-socket", sock, "-X", m.method, "http://localhost"+m.path); code != http.StatusForbidden || !strings.Contains(body, "uid 65534 may not") {
			t.Errorf("nobody: %s %s on an opened socket = %d %q, want 403", m.method, m.path, code, body)
		}
	}
	stillServing("after socket attempts")
	if code, body, _ := p.adminPost("/logging"); code != 200 || !strings.Contains(body, "strait: debug") {
		t.Fatalf("the log level changed: %d %q", code, body)
	}

	// The owner, on the socket, may do all of it.
	if code, body, err := p.adminPost("/logging?level=warning"); err != nil || code != 200 || !strings.Contains(body, "strait: warn") {
		t.Fatalf("owner: /logging?level=warning = %d %q %v", code, body, err)
	}
	if code, _, err := p.adminPost("/drain_listeners"); err != nil || code != 200 {
		t.Fatalf("owner: /drain_listeners = %d %v", code, err)
	}
	eventuallyRefused(t, "listeners drained", w.httpAddr)
	p.quit() // the owner, on the socket
	if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("admin socket left after exit: %v", err)
	}
}

// TestAdminDefaultSocket: without --admin-socket the proxy serves its socket at the documented
// default (in /var/run/strait for root, or $XDG_RUNTIME_DIR/strait), with mode 0600, named after
// the workload and the admin address; another user cannot connect; the owner stops the proxy
// through it.
func TestAdminDefaultSocket(t *testing.T) {
	requireRootAndCurl(t)
	w := newWorld(t)
	// --admin-socket "" selects the default even if the harness ever passes a socket of its own.
	p := w.start(t, time.Second, "--admin-socket", "")
	sock := p.adminSocket()
	dir := "/var/run/strait"
	if x := os.Getenv("XDG_RUNTIME_DIR"); x != "" {
		dir = filepath.Join(x, "strait")
	}
	host, port, _ := net.SplitHostPort(p.admin)
	if want := filepath.Join(dir, "default.e2e@"+host+"_"+port+".sock"); sock != want {
		t.Fatalf("default admin socket %q, want %q", sock, want)
	}
	if fi, err := os.Lstat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket %s: %v %v, want mode 0600", sock, fi.Mode(), err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm()&0o077 != 0 {
		t.Fatalf("admin socket directory %s: %v %v, want mode 0700", dir, fi.Mode(), err)
	}
	if code, msg := curlAs(t, "--unix-socket", sock, "-X", "POST", "http://localhost/quitquitquit"); code != 0 || !strings.Contains(msg, "Permission denied") {
		t.Fatalf("nobody: POST /quitquitquit on the default admin socket = %d %q, want no connection (permission denied)", code, msg)
	}
	p.quit() // the owner, on the socket
	if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("admin socket left after exit: %v", err)
	}
}
