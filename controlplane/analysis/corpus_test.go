package analysis

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strait-mesh/strait/controlplane/config"
)

// corpusDir is Istio's own sample and test configuration (see controlplane/config's corpus test).
const corpusDir = "../config/testdata/istio-corpus"

// TestCorpusNeverFails analyzes every file of Istio's corpus, alone and all together, with every
// option on: no analyzer may fail (IST0001), and every message names its object.
func TestCorpusNeverFails(t *testing.T) {
	files := map[string][]byte{}
	var all []*config.Object
	err := filepath.WalkDir(corpusDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if ext := filepath.Ext(path); ext != ".yaml" && ext != ".yml" && ext != ".json" {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files[path] = data
		objs, _ := config.Load(path, data)
		all = append(all, objs...)
		check(t, path, objs, files)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no corpus files in %s", corpusDir)
	}
	check(t, "the whole corpus", all, files)
}

func check(t *testing.T, what string, objs []*config.Object, files map[string][]byte) {
	t.Helper()
	opts := Options{CheckGatewaySelectors: true, Locator: LocatorFor(files),
		Workloads: []Workload{{Name: "ingress", Namespace: "istio-system", Labels: map[string]string{"istio": "ingressgateway"}}}}
	for _, m := range AnalyzeObjects(nil, objs, opts) {
		if m.Code == "IST0001" || m.Resource.Name == "" || m.Resource.Kind == "" {
			t.Errorf("%s: %s", what, m)
		}
		if !strings.HasPrefix(m.String(), m.Level.String()+" ["+m.Code+"] (") {
			t.Errorf("%s: malformed message %q", what, m)
		}
	}
}

// TestLocatorNeverFails feeds the locator odd documents: it must return a line or 0, never panic.
func TestLocatorNeverFails(t *testing.T) {
	for _, doc := range []string{
		"", "---", "- - -\n  - x", "kind: VirtualService\nmetadata: {name: a}\n", "a:\n- b:\n  - [c\n",
		"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: a\nspec:\n  hosts: [a]\n  http:\n  -\n    route:\n    - destination:\n        host: a\n",
	} {
		l := LocatorFor(map[string][]byte{"f.yaml": []byte(doc)})
		for _, field := range []string{"", "spec", "spec.http[0].route[0].destination.host", "spec.http[9]", "[0]", "spec..x[", "spec.http[99999999999999999999]"} {
			if n := l.Line("f.yaml", config.Key{Kind: config.VirtualService, Namespace: "default", Name: "a"}, field); n < 0 {
				t.Errorf("%q %q: line %d", doc, field, n)
			}
		}
	}
	l := LocatorFor(map[string][]byte{"f.yaml": []byte("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: a\nspec:\n  hosts: [a]\n  http:\n  -\n    route:\n    - destination:\n        host: a\n")})
	if n := l.Line("f.yaml", config.Key{Kind: config.VirtualService, Namespace: "default", Name: "a"}, "spec.http[0].route[0].destination.host"); n != 11 {
		t.Errorf("line of host = %d, want 11", n)
	}
}
