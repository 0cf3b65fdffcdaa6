package testenv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// Golden compares got with the golden file at path, or, with update (a test's -update flag),
// rewrites the file with got.
func Golden(t testing.TB, path, got string, update bool) {
	t.Helper()
	if update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run the test with -update)", err)
	}
	if got != string(want) {
		t.Errorf("got differs from %s (run the test with -update and read the diff):\n--- got\n%s--- want\n%s", path, got, want)
	}
}

// GoldenFile is one of straitd's golden xDS files.
type GoldenFile struct {
	Name string // the file's base name, "<case>.golden.yaml"
	YAML []byte
	// Pending is the case's proxyPending list (its input file's header): errors strait-proxy
	// gives on it until the feature they name lands, each matched as a substring.
	Pending []string
}

// PendingError reports whether err is one of the case's pending proxy errors.
func (g GoldenFile) PendingError(err error) bool {
	for _, p := range g.Pending {
		if strings.Contains(err.Error(), p) {
			return true
		}
	}
	return false
}

// ControlPlaneGoldens reads straitd's golden xDS output, the translator's testdata
// (controlplane/translate/testdata/*.golden.yaml; only the files are read, nothing under
// controlplane/ is imported), and skips the test when there is none.
func ControlPlaneGoldens(t testing.TB) []GoldenFile {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join(repoRoot(), "controlplane", "translate", "testdata", "*.golden.yaml"))
	if len(paths) == 0 {
		t.Skip("no control-plane golden files")
	}
	files := make([]GoldenFile, 0, len(paths))
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		gf := GoldenFile{Name: filepath.Base(p), YAML: raw}
		if in, err := os.ReadFile(strings.TrimSuffix(p, ".golden.yaml") + ".input.yaml"); err == nil {
			for _, line := range strings.Split(string(in), "\n") {
				if strings.HasPrefix(line, "proxyPending:") {
					var h struct {
						ProxyPending []string `json:"proxyPending"`
					}
					if err := yaml.Unmarshal([]byte(line), &h); err != nil {
						t.Fatalf("%s: %v", p, err)
					}
					gf.Pending = h.ProxyPending
				}
			}
		}
		files = append(files, gf)
	}
	return files
}
