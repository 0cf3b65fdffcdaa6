package cli

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGetUnknownKind: `strait get` of an unknown kind lists the kinds, without asking straitd.
func TestGetUnknownKind(t *testing.T) {
	_, err := cliRun(t, "127.0.0.1:1", "get", "virtualservise")
	if err == nil || !strings.Contains(err.Error(), `unknown kind "virtualservise": want one of virtualservice (vs), destinationrule (dr),`) {
		t.Errorf("error = %v", err)
	}
}

// TestApplyNoObjects: an apply of files that hold no object names them, before asking straitd.
func TestApplyNoObjects(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.yaml")
	if err := os.WriteFile(empty, []byte("# nothing here\n---\n"), 0o644); err != nil {
		t.Fatal(err)
	}
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

// TestAnalyzeRemovedField: websocketUpgrade is accepted with IST0002, not refused.
func TestAnalyzeRemovedField(t *testing.T) {
	file := filepath.Join(t.TempDir(), "ws.yaml")
	doc := "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: ws, namespace: default}\nspec:\n  hosts: [ws.example.com]\n  http:\n  - websocketUpgrade: true\n    route: [{destination: {host: ws.example.com}}]\n" +
		"---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: ws, namespace: default}\nspec: {hosts: [ws.example.com], ports: [{name: http, number: 80, protocol: HTTP}], resolution: DNS}\n"
	if err := os.WriteFile(file, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	out, stderr, err := analyzeRun(t, "127.0.0.1:1", "-f", file)
	if err != nil || stderr != "" {
		t.Errorf("error %v, stderr %s", err, stderr)
	}
	if !strings.Contains(out, "Warning [IST0002] (VirtualService default/ws "+file+":7) Deprecated: spec.http[0].websocketUpgrade: field \"websocketUpgrade\" of HTTPRoute is deprecated") {
		t.Errorf("out:\n%s", out)
	}
}
