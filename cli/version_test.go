package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/strait-mesh/strait/internal/version"
)

// TestVersion reads a fake straitd's /version and /debug/syncz and prints istioctl's lines.
func TestVersion(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/version":
			_ = json.NewEncoder(w).Encode(version.Info{Version: "dev", Revision: "0123456789abcdef", GoVersion: "go1.x"})
		case "/debug/syncz":
			w.Write([]byte(`[{"proxy":"sidecar~10.0.0.1~a.ns~ns.svc.cluster.local","version":"dev-0123456789ab"},
				{"proxy":"sidecar~10.0.0.2~b.ns~ns.svc.cluster.local","version":"dev-0123456789ab"},
				{"proxy":"router~10.0.0.3~gw.ns~ns.svc.cluster.local"}]`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	var out, errb bytes.Buffer
	if code := Run(t.Context(), []string{"--straitd", strings.TrimPrefix(srv.URL, "http://"), "version"}, nil, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	want := "client version: " + version.Get().String() + "\n" +
		"control plane version: dev-0123456789ab\n" +
		"data plane version: dev-0123456789ab (2 proxies), unknown (1 proxies)\n"
	if out.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", out.String(), want)
	}
	out.Reset()
	if code := Run(t.Context(), []string{"--straitd", "127.0.0.1:1", "version", "-o", "json"}, nil, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var v meshVersions
	if err := json.Unmarshal(out.Bytes(), &v); err != nil || v.Unreachable == "" || v.Client.Version == "" {
		t.Errorf("straitd down, -o json: %v %+v", err, v)
	}
}

// TestWait follows a fake straitd: the object appears at mesh version 7, then the proxies
// acknowledge it; a missing object times out naming what is missing.
func TestWait(t *testing.T) {
	var calls int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		switch r.URL.Path {
		case "/debug/configz":
			w.Write([]byte(`{"version":7,"objects":[{"kind":"VirtualService","namespace":"default","name":"reviews","resourceVersion":"3"}]}`))
		case "/debug/syncz":
			mv := 6
			if calls > 4 {
				mv = 7
			}
			fmt.Fprintf(w, `[{"meshVersion":%d,"types":{"CDS":{"status":"SYNCED"},"LDS":{"status":"SYNCED"}}},{"meshVersion":8,"types":{"RDS":{"status":"SYNCED"}}}]`, mv)
		}
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	var out, errb bytes.Buffer
	if code := Run(t.Context(), []string{"--straitd", addr, "wait", "vs", "reviews.default", "--resource-version", "3"}, nil, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if want := "VirtualService reviews.default present on 2 out of 2 proxies (mesh version 7)\n"; out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
	errb.Reset()
	if code := Run(t.Context(), []string{"--straitd", addr, "wait", "vs", "ratings.default", "--timeout", "300ms"}, nil, &out, &errb); code == 0 ||
		!strings.Contains(errb.String(), "VirtualService ratings.default is not served yet") {
		t.Errorf("missing object: exit %d, %q", code, errb.String())
	}
}

// TestGetStatusColumns: strait get's table shows what straitd's analysis says of each object and
// where it came from; an object stored but not served says so.
func TestGetStatusColumns(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/apis/v1/objects":
			w.Write([]byte(`{"items":[
				{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"reviews","namespace":"default"}},
				{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"ratings","namespace":"default"}},
				{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"broken","namespace":"default"}}]}`))
		case "/debug/configz":
			w.Write([]byte(`{"version":3,"objects":[
				{"kind":"VirtualService","namespace":"default","name":"reviews","origin":"/cfg/reviews.yaml"},
				{"kind":"VirtualService","namespace":"default","name":"ratings","origin":"store"}],
				"analysis":[{"code":"IST0101","level":"Error","resource":{"kind":"VirtualService","namespace":"default","name":"reviews"}},
				{"code":"IST0002","level":"Warning","resource":{"kind":"VirtualService","namespace":"default","name":"reviews"}}]}`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	var out, errb bytes.Buffer
	if code := Run(t.Context(), []string{"--straitd", strings.TrimPrefix(srv.URL, "http://"), "get", "vs"}, nil, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	want := `NAME      AGE         STATUS          ORIGIN
reviews   <unknown>   Error IST0101   /cfg/reviews.yaml
ratings   <unknown>   OK              store
broken    <unknown>   not served      -
`
	if out.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", out.String(), want)
	}
}

// TestGetUnknownKind: `strait get` of an unknown kind lists the kinds, without asking straitd.
func TestGetUnknownKind(t *testing.T) {
	_, err := cliRun(t, "127.0.0.1:1", "get", "virtualservise")
	if err == nil || !strings.Contains(err.Error(), `unknown kind "virtualservise": want one of virtualservice (vs), destinationrule (dr),`) {
		t.Errorf("error = %v", err)
	}
}

// TestApplyNoObjects: an apply of files that hold no object names them, before asking straitd.
func TestApplyNoObjects(t *testing.T) {
	empty := tempFile(t, "empty.yaml", "# nothing here\n---\n")
	_, err := cliRun(t, "127.0.0.1:1", "apply", "-f", empty)
	if err == nil || err.Error() != "no objects to apply: "+empty+" contain(s) no objects (only comments or empty documents)" {
		t.Errorf("error = %v", err)
	}
}

// TestProxyStatusFormats: -o json and yaml print straitd's sync status; another format is an error.
func TestProxyStatusFormats(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte(`[{"proxy":"sidecar~127.0.0.11~a.default~default.svc.cluster.local","protocol":"delta","types":{"CDS":{"status":"SYNCED"}}}]`))
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	out, err := cliRun(t, addr, "proxy-status", "-o", "yaml")
	if want := "- protocol: delta\n  proxy: sidecar~127.0.0.11~a.default~default.svc.cluster.local\n  types:\n    CDS:\n      status: SYNCED\n"; err != nil || out != want {
		t.Errorf("yaml: %v\n%s\nwant:\n%s", err, out, want)
	}
	if out, err = cliRun(t, addr, "proxy-status", "-o", "json"); err != nil || !strings.HasPrefix(out, "[\n    {\n") {
		t.Errorf("json: %v\n%s", err, out)
	}
	if _, err = cliRun(t, addr, "proxy-status", "-o", "xml"); err == nil || !strings.Contains(err.Error(), `unknown output format "xml"`) {
		t.Errorf("xml: %v", err)
	}
}
