package cli

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
)

// stubBrowser replaces openBrowser for a test and records the URLs it was asked to open.
func stubBrowser(t *testing.T, err error) *[]string {
	t.Helper()
	var opened []string
	old := openBrowser
	openBrowser = func(url string) error { opened = append(opened, url); return err }
	t.Cleanup(func() { openBrowser = old })
	return &opened
}

func TestDashboard(t *testing.T) {
	straitd := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/dashboard/api/graph" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(`{"nodes":[],"edges":[]}`))
	}))
	defer straitd.Close()
	addr := strings.TrimPrefix(straitd.URL, "http://")
	want := "http://" + addr + "/dashboard/"

	opened := stubBrowser(t, nil)
	out, err := runCLI(t, "--straitd", addr, "dashboard")
	if err != nil || !strings.Contains(out, "Strait dashboard: "+want+"\n") {
		t.Fatalf("dashboard: %v\n%s", err, out)
	}
	if len(*opened) != 1 || (*opened)[0] != want {
		t.Errorf("opened %q, want %s", *opened, want)
	}
	for _, flag := range []string{"--no-browser", "--browser=false"} {
		opened := stubBrowser(t, nil)
		if _, err := runCLI(t, "--straitd", addr, "dashboard", flag); err != nil || len(*opened) != 0 {
			t.Errorf("%s: %v, opened %q", flag, err, *opened)
		}
	}
	// No browser (a headless machine) is not an error: the URL is printed.
	stubBrowser(t, errNoBrowser)
	if out, err := runCLI(t, "--straitd", addr, "dashboard"); err != nil || !strings.Contains(out, want) {
		t.Errorf("without a browser: %v\n%s", err, out)
	}
	// straitd that does not serve the dashboard, or none at all, is an error.
	straitd.Config.Handler = http.NotFoundHandler()
	if _, err := runCLI(t, "--straitd", addr, "dashboard"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("without the dashboard: %v", err)
	}
	straitd.Close()
	if _, err := runCLI(t, "--straitd", addr, "dashboard"); err == nil || !strings.Contains(err.Error(), "is it running") {
		t.Errorf("without straitd: %v", err)
	}
}

func TestBrowserCommand(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	look := func(found ...string) func(string) (string, error) {
		return func(name string) (string, error) {
			for _, f := range found {
				if f == name {
					return "/usr/bin/" + name, nil
				}
			}
			return "", exec.ErrNotFound
		}
	}
	for _, c := range []struct {
		name    string
		goos    string
		env     map[string]string
		found   []string
		want    string
		noBrows bool
	}{
		{"headless linux", "linux", nil, []string{"xdg-open"}, "", true},
		{"display without xdg-open", "linux", map[string]string{"DISPLAY": ":0"}, nil, "", true},
		{"display", "linux", map[string]string{"DISPLAY": ":0"}, []string{"xdg-open"}, "/usr/bin/xdg-open", false},
		{"wayland", "linux", map[string]string{"WAYLAND_DISPLAY": "wayland-0"}, []string{"xdg-open"}, "/usr/bin/xdg-open", false},
		{"$BROWSER wins", "linux", map[string]string{"BROWSER": "firefox"}, []string{"firefox"}, "/usr/bin/firefox", false},
		{"missing $BROWSER", "linux", map[string]string{"BROWSER": "nothing"}, nil, "", true},
		{"macOS", "darwin", nil, nil, "open", false},
		{"windows", "windows", nil, nil, "rundll32", false},
	} {
		name, _, err := browserCommand(c.goos, env(c.env), look(c.found...))
		if name != c.want || errors.Is(err, errNoBrowser) != c.noBrows {
			t.Errorf("%s: %q, %v; want %q (no browser: %v)", c.name, name, err, c.want, c.noBrows)
		}
	}
}
