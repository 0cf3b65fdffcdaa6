package cli

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strait-mesh/strait/controlplane/analysis"
	"github.com/strait-mesh/strait/internal/testenv"
)

// analyzeRun runs `strait analyze ARGS` against straitd at addr and returns stdout, stderr and
// the command's error.
func analyzeRun(t *testing.T, addr string, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	g := &globals{addr: addr, stdin: strings.NewReader(""), stdout: &out, stderr: &errb}
	err := executeQuiet(newAnalyze(g), &errb, args)
	return out.String(), errb.String(), err
}

// tempFile writes data to a file name in a new temporary directory and returns its path.
func tempFile(t *testing.T, name, data string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestAnalyzeGolden checks the exact output of `strait analyze -f` on a file full of mistakes,
// as istioctl's lines, JSON and YAML, for every namespace and for one.
func TestAnalyzeGolden(t *testing.T) {
	input := filepath.Join("testdata", "analyze-input.yaml")
	for _, c := range []struct {
		golden string
		args   []string
	}{
		{"analyze", []string{"-A"}},
		{"analyze-namespace", []string{"-n", "other"}},
		{"analyze-json", []string{"-A", "-o", "json"}},
		{"analyze-yaml", []string{"-n", "other", "-o", "yaml"}},
	} {
		t.Run(c.golden, func(t *testing.T) {
			out, stderr, err := analyzeRun(t, "127.0.0.1:1", append([]string{"-f", input}, c.args...)...)
			if err == nil || !strings.Contains(err.Error(), "error(s)") {
				t.Errorf("error = %v, want the count of errors", err)
			}
			if stderr != "" {
				t.Errorf("stderr: %s", stderr)
			}
			testenv.Golden(t, filepath.Join("testdata", c.golden+".golden"), out, *update)
		})
	}
}

// TestAnalyzeClean: a namespace without findings gets istioctl's line and exit code 0.
func TestAnalyzeClean(t *testing.T) {
	out, _, err := analyzeRun(t, "127.0.0.1:1", "-f", filepath.Join("testdata", "analyze-input.yaml"), "-n", "nothing-here")
	if err != nil {
		t.Fatal(err)
	}
	if want := "✔ No validation issues found when analyzing namespace: nothing-here.\n"; out != want {
		t.Errorf("out = %q, want %q", out, want)
	}
}

// TestAnalyzeBookstoreWrongSubset: the bookstore sample with a route to a subset that no
// DestinationRule defines yields IST0101 offline, and nothing else.
func TestAnalyzeBookstoreWrongSubset(t *testing.T) {
	route, err := os.ReadFile(filepath.Join("..", "samples", "bookstore", "scenarios", "reviews-v1.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	wrong := strings.Replace(string(route), "subset: v1", "subset: v9", 1)
	if wrong == string(route) {
		t.Fatal("reviews-v1.yaml routes to no subset v1")
	}
	file := tempFile(t, "reviews-v9.yaml", wrong)
	samples := filepath.Join("..", "samples", "bookstore")
	out, _, err := analyzeRun(t, "127.0.0.1:1", "-f", filepath.Join(samples, "config"), "-f", filepath.Join(samples, "register"), "-f", file)
	if err == nil {
		t.Error("no error for a wrong subset")
	}
	want := `Error [IST0101] (VirtualService default/reviews ` + file + `:9) Referenced host+subset in destinationrule not found: "reviews+v9"` + "\n"
	if out != want {
		t.Errorf("out:\n%s\nwant:\n%s", out, want)
	}
	// The sample as it is has nothing to report.
	out, _, err = analyzeRun(t, "127.0.0.1:1", "-f", filepath.Join(samples, "config"), "-f", filepath.Join(samples, "register"), "-f", filepath.Join(samples, "scenarios", "reviews-v1.yaml"))
	if err != nil || !strings.HasPrefix(out, "✔") {
		t.Errorf("bookstore: %v\n%s", err, out)
	}
}

// TestAnalyzeLive reads the analysis from straitd's /debug/configz and filters it by namespace.
func TestAnalyzeLive(t *testing.T) {
	msgs := []analysis.Message{
		{Code: "IST0101", Name: "ReferencedResourceNotFound", Level: analysis.Error,
			Resource: analysis.Resource{Kind: "VirtualService", Namespace: "default", Name: "reviews"},
			Origin:   "/etc/strait/reviews.yaml", Line: 9, Text: `Referenced host+subset in destinationrule not found: "reviews+v9"`},
		{Code: "IST0174", Name: "UnknownDestinationRuleHost", Level: analysis.Warning,
			Resource: analysis.Resource{Kind: "DestinationRule", Namespace: "other", Name: "x"},
			Origin:   "store", Text: "The host x defined in the DestinationRule does not match any services in the mesh."},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/debug/configz" {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"version": 3, "analysis": msgs})
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")

	out, _, err := analyzeRun(t, addr)
	if err == nil || err.Error() != "analysis found 1 error(s)" {
		t.Errorf("error = %v", err)
	}
	if want := `Error [IST0101] (VirtualService default/reviews /etc/strait/reviews.yaml:9) Referenced host+subset in destinationrule not found: "reviews+v9"` + "\n"; out != want {
		t.Errorf("default namespace:\n%s\nwant:\n%s", out, want)
	}
	out, _, err = analyzeRun(t, addr, "-n", "other")
	if err != nil {
		t.Errorf("warnings only: %v", err)
	}
	if want := "Warning [IST0174] (DestinationRule other/x) The host x defined in the DestinationRule does not match any services in the mesh.\n"; out != want {
		t.Errorf("namespace other:\n%s\nwant:\n%s", out, want)
	}
}

// TestAnalyzeRemovedField: websocketUpgrade is accepted with IST0002, not refused.
func TestAnalyzeRemovedField(t *testing.T) {
	file := tempFile(t, "ws.yaml", "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: ws, namespace: default}\nspec:\n  hosts: [ws.example.com]\n  http:\n  - websocketUpgrade: true\n    route: [{destination: {host: ws.example.com}}]\n"+
		"---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: ws, namespace: default}\nspec: {hosts: [ws.example.com], ports: [{name: http, number: 80, protocol: HTTP}], resolution: DNS}\n")
	out, stderr, err := analyzeRun(t, "127.0.0.1:1", "-f", file)
	if err != nil || stderr != "" {
		t.Errorf("error %v, stderr %s", err, stderr)
	}
	if !strings.Contains(out, "Warning [IST0002] (VirtualService default/ws "+file+":7) Deprecated: spec.http[0].websocketUpgrade: field \"websocketUpgrade\" of HTTPRoute is deprecated") {
		t.Errorf("out:\n%s", out)
	}
}
