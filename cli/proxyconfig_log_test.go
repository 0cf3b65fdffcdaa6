package cli

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
)

// fakeLoggingProxy is an admin interface shaped like strait-proxy's: /logging is refused over
// TCP and served on the admin socket, whose path /server_info reports.
type fakeLoggingProxy struct {
	admin, socket string
	level         string
}

func newFakeLoggingProxy(t *testing.T) *fakeLoggingProxy {
	t.Helper()
	p := &fakeLoggingProxy{socket: filepath.Join(t.TempDir(), "admin.sock"), level: "info"}
	tcp := http.NewServeMux()
	tcp.HandleFunc("/server_info", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, `{"version": "strait-proxy", "state": "LIVE", "admin_socket": "`+p.socket+`"}`)
	})
	tcp.HandleFunc("/logging", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "/logging is served only on the admin socket", http.StatusForbidden)
	})
	srv := httptest.NewServer(tcp)
	t.Cleanup(srv.Close)
	p.admin = strings.TrimPrefix(srv.URL, "http://")

	ln, err := net.Listen("unix", p.socket)
	if err != nil {
		t.Skipf("no unix socket: %v", err)
	}
	sock := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/logging" {
			http.NotFound(w, r)
			return
		}
		if lv := r.URL.Query().Get("level"); lv != "" {
			if r.Method != http.MethodPost {
				http.Error(w, "This endpoint requires POST", http.StatusMethodNotAllowed)
				return
			}
			p.level = lv
		}
		io.WriteString(w, "active loggers:\n  strait: "+p.level+"\n")
	})}
	go sock.Serve(ln)
	t.Cleanup(func() { sock.Close() })
	return p
}

func TestProxyConfigLog(t *testing.T) {
	p := newFakeLoggingProxy(t)
	out, err := pcRun(t, "127.0.0.1:1", "log", p.admin)
	if err != nil || out != "active loggers:\n  strait: info\n" {
		t.Fatalf("show: %v %q", err, out)
	}
	if out, err = pcRun(t, "127.0.0.1:1", "log", p.admin, "--level", "strait:debug"); err != nil || out != "active loggers:\n  strait: debug\n" {
		t.Fatalf("set: %v %q", err, out)
	}
	if out, err = pcRun(t, "127.0.0.1:1", "log", p.admin, "--admin-socket", p.socket, "--level", "WARNING"); err != nil || out != "active loggers:\n  strait: warning\n" {
		t.Fatalf("set through --admin-socket: %v %q", err, out)
	}
	for _, c := range []struct{ level, want string }{
		{"loud", `unknown log level "loud"`},
		{"http:debug", `unknown logger "http"`},
	} {
		if _, err := pcRun(t, "127.0.0.1:1", "log", p.admin, "--level", c.level); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("--level %s: %v, want %q", c.level, err, c.want)
		}
	}
	// Without a socket, the admin address is asked, and its refusal is shown.
	if _, err := pcRun(t, "127.0.0.1:1", "log", p.admin, "--admin-socket", ""); err != nil {
		t.Logf("empty --admin-socket: %v", err)
	}
	noSock := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "/logging is served only on the admin socket", http.StatusForbidden)
	}))
	defer noSock.Close()
	if _, err := pcRun(t, "127.0.0.1:1", "log", strings.TrimPrefix(noSock.URL, "http://")); err == nil || !strings.Contains(err.Error(), "403 Forbidden for /logging: /logging is served only on the admin socket") {
		t.Errorf("no socket: %v", err)
	}
}

// TestProxyConfigBootstrapLive: read from a live admin interface, the short form names the
// address it was read from.
func TestProxyConfigBootstrapLive(t *testing.T) {
	f := newPCFixture(t)
	out, err := pcRun(t, "127.0.0.1:1", "bootstrap", f.admin)
	if err != nil {
		t.Fatal(err)
	}
	flat := strings.Join(strings.Fields(out), " ")
	for _, want := range []string{"Node ID: sidecar~127.42.0.1~productpage-v1.default~default.svc.cluster.local", "xDS server: 127.0.0.1:15010 (DELTA_GRPC)", "Admin address: " + f.admin + " "} {
		if !strings.Contains(flat, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
}
