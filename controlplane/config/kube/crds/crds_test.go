package crds

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/strait-mesh/strait/controlplane/config"
)

// TestResourcesCoverKinds checks that every kind Strait decodes, except Kubernetes' own Secret,
// has a definition in its group that serves every apiVersion the decoder accepts, and that no
// definition is of a kind Strait would not read.
func TestResourcesCoverKinds(t *testing.T) {
	rs, err := Resources()
	if err != nil {
		t.Fatal(err)
	}
	byKind := map[config.Kind]Resource{}
	for _, r := range rs {
		if _, dup := byKind[r.Kind]; dup {
			t.Errorf("two definitions of %s", r.Kind)
		}
		byKind[r.Kind] = r
	}
	for _, k := range config.Kinds {
		if config.GroupFor(k) == "" {
			continue // core group (Secret): built into Kubernetes
		}
		r, ok := byKind[k]
		if !ok {
			t.Errorf("no CustomResourceDefinition for %s", k)
			continue
		}
		delete(byKind, k)
		if r.Group != config.GroupFor(k) {
			t.Errorf("%s: group %s, want %s", k, r.Group, config.GroupFor(k))
		}
		for _, av := range config.APIVersionsFor(k) {
			if !slices.Contains(r.Versions, strings.TrimPrefix(av, r.Group+"/")) {
				t.Errorf("%s: apiVersion %s is not served (served: %v)", k, av, r.Versions)
			}
		}
		if !slices.Contains(r.Versions, r.Storage) {
			t.Errorf("%s: storage version %s is not served", k, r.Storage)
		}
	}
	for k := range byKind {
		t.Errorf("definition of %s, a kind Strait does not decode", k)
	}
}

// TestGeneratedFromRequiredAPI checks that istio.gen.yaml comes from the istio.io/api version the
// main module requires: after a bump, run go generate.
func TestGeneratedFromRequiredAPI(t *testing.T) {
	gomod, err := os.ReadFile("../../../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*istio\.io/api (v\S+)`).FindSubmatch(gomod)
	if m == nil {
		t.Fatal("go.mod requires no istio.io/api")
	}
	if want := "from istio.io/api " + string(m[1]) + " "; !strings.Contains(istioYAML[:200], want) {
		t.Errorf("istio.gen.yaml was not generated from istio.io/api %s: run go generate ./controlplane/config/kube/crds", m[1])
	}
}

func TestYAMLHasEveryResource(t *testing.T) {
	rs, err := Resources()
	if err != nil {
		t.Fatal(err)
	}
	if got := len(splitYAML(YAML())); got != len(rs) {
		t.Errorf("YAML() has %d documents, want %d", got, len(rs))
	}
}
