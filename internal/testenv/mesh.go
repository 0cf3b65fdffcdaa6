package testenv

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Straitd is a running control plane.
type Straitd struct {
	*Process
	XDS       string // host:port of ADS
	HTTP      string // host:port of /metrics, /debug, /apis
	ConfigDir string
	DataDir   string
}

var servingRE = regexp.MustCompile(`straitd serving.*xds=(\S+).*http=(\S+)`)

// StartStraitd runs straitd on free loopback ports with a watched config dir holding files
// (name → YAML) and a data dir for the embedded store. extra are more flags.
func StartStraitd(t testing.TB, files map[string]string, extra ...string) *Straitd {
	t.Helper()
	bin := Binaries(t)
	dir := t.TempDir()
	s := &Straitd{ConfigDir: filepath.Join(dir, "config"), DataDir: filepath.Join(dir, "data")}
	if err := os.MkdirAll(s.ConfigDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range files {
		s.WriteConfig(t, name, body)
	}
	args := append([]string{filepath.Join(bin, "straitd"),
		"--config-dir", s.ConfigDir, "--data-dir", s.DataDir,
		"--xds-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--mesh-address", "127.0.0.1:0",
		"--debounce", "10ms", "--debounce-max", "200ms"}, extra...)
	for i := 0; i+1 < len(extra); i++ { // a later --data-dir replaces the default one
		if extra[i] == "--data-dir" {
			s.DataDir = extra[i+1]
		}
	}
	s.Process = Start(t, "straitd", nil, args...)
	m := s.WaitOutput(t, servingRE, 30*time.Second)
	s.XDS, s.HTTP = strings.Trim(m[1], `"`), strings.Trim(m[2], `"`)
	return s
}

// AdminTokenFile is straitd's admin token (<data-dir>/admin-token), which `strait apply`,
// `strait delete` and `strait run` need: pass it as --admin-token-file.
func (s *Straitd) AdminTokenFile() string {
	return filepath.Join(s.DataDir, "admin-token")
}

// WriteConfig writes (or replaces) a file in the watched config dir atomically.
func (s *Straitd) WriteConfig(t testing.TB, name, body string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(s.ConfigDir), "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(s.ConfigDir, name)); err != nil {
		t.Fatal(err)
	}
}

// Proxy is a running strait-proxy.
type Proxy struct {
	*Process
	Admin string // host:port of the admin server
}

// ProxyOptions describe the workload a proxy runs for.
type ProxyOptions struct {
	Mode      string // sidecar or router (default router)
	Name      string // workload name (--workload-name)
	Namespace string // default "default"
	Labels    map[string]string
	IP        string   // workload IP (--ip); strait-proxy defaults to 127.0.0.1
	Extra     []string // more flags
}

// StartProxy runs strait-proxy against straitd's ADS address with its admin interface on a free
// loopback port, and waits until the admin interface answers. It does not wait for /ready (LIVE):
// a proxy whose first config is NACKed never gets there; use WaitReady for that.
func StartProxy(t testing.TB, xds string, o ProxyOptions) *Proxy {
	t.Helper()
	bin := Binaries(t)
	if o.Mode == "" {
		o.Mode = "router"
	}
	if o.Namespace == "" {
		o.Namespace = "default"
	}
	admin := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	args := []string{filepath.Join(bin, "strait-proxy"),
		"--xds-address", xds, "--mode", o.Mode, "--workload-name", o.Name, "--namespace", o.Namespace,
		"--admin-address", admin, "--drain-duration", "1s"}
	var labels []string
	for k, v := range o.Labels {
		labels = append(labels, k+"="+v)
	}
	if len(labels) > 0 {
		args = append(args, "--labels", strings.Join(labels, ","))
	}
	if o.IP != "" {
		args = append(args, "--ip", o.IP)
	}
	args = append(args, o.Extra...)
	p := &Proxy{Process: Start(t, "strait-proxy "+o.Name, nil, args...), Admin: admin}
	Eventually(t, 30*time.Second, func() error {
		select {
		case <-p.Exited():
			t.Fatalf("strait-proxy %s exited:\n%s", o.Name, p.Output())
		default:
		}
		_, _, err := p.AdminGet("/server_info")
		return err
	})
	return p
}

// AdminGet fetches path from the proxy's admin interface and returns status and body.
func (p *Proxy) AdminGet(path string) (int, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return Get(ctx, "http://"+p.Admin+path, nil)
}

// WaitReady waits until the proxy's /ready reports LIVE (its first config was accepted).
func (p *Proxy) WaitReady(t testing.TB, timeout time.Duration) {
	t.Helper()
	Eventually(t, timeout, func() error {
		code, body, err := p.AdminGet("/ready")
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("/ready: %d %s", code, strings.TrimSpace(body))
		}
		return err
	})
}
