// Package crds holds the CustomResourceDefinitions of the kinds Strait reads from Kubernetes:
// Istio's own definitions of the Istio kinds Strait decodes (istio.gen.yaml, generated from the
// istio.io/api module by gen.go) and those of Strait's own kinds (strait.yaml). Tests install
// them into their API server, and `strait install` applies them.
package crds

import (
	_ "embed" // the CRD files
	"fmt"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/strait-mesh/strait/controlplane/config"
)

//go:generate go run gen.go

//go:embed istio.gen.yaml
var istioYAML string

//go:embed strait.yaml
var straitYAML string

// Resource is one kind's CustomResourceDefinition, as far as a client needs it.
type Resource struct {
	Kind   config.Kind
	Group  string // e.g. "networking.istio.io"
	Plural string // the resource name, e.g. "virtualservices"
	// Versions are the served versions, e.g. ["v1", "v1alpha3", "v1beta1"].
	Versions []string
	// Storage is the version the API server stores.
	Storage string
	// JSON is the CustomResourceDefinition, as JSON.
	JSON []byte
}

// Name returns the CustomResourceDefinition's name, PLURAL.GROUP.
func (r Resource) Name() string { return r.Plural + "." + r.Group }

// crd is the part of a CustomResourceDefinition Resources reads.
type crd struct {
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Group string `json:"group"`
		Names struct {
			Kind   string `json:"kind"`
			Plural string `json:"plural"`
		} `json:"names"`
		Versions []struct {
			Name    string `json:"name"`
			Served  bool   `json:"served"`
			Storage bool   `json:"storage"`
		} `json:"versions"`
	} `json:"spec"`
}

// Resources returns the definitions of every kind Strait reads from Kubernetes, sorted by kind.
// The embedded files are checked by this package's tests, so an error here means a broken build.
func Resources() ([]Resource, error) {
	var out []Resource
	for _, file := range []struct{ name, text string }{{"istio.gen.yaml", istioYAML}, {"strait.yaml", straitYAML}} {
		for i, doc := range splitYAML(file.text) {
			js, err := yaml.YAMLToJSON([]byte(doc))
			if err != nil {
				return nil, fmt.Errorf("crds: %s document %d: %w", file.name, i+1, err)
			}
			var c crd
			if err := yaml.Unmarshal(js, &c); err != nil {
				return nil, fmt.Errorf("crds: %s document %d: %w", file.name, i+1, err)
			}
			r := Resource{Kind: config.Kind(c.Spec.Names.Kind), Group: c.Spec.Group, Plural: c.Spec.Names.Plural, JSON: js}
			for _, v := range c.Spec.Versions {
				if v.Served {
					r.Versions = append(r.Versions, v.Name)
				}
				if v.Storage {
					r.Storage = v.Name
				}
			}
			if r.Kind == "" || r.Group == "" || r.Plural == "" || r.Storage == "" || c.Metadata.Name != r.Name() {
				return nil, fmt.Errorf("crds: %s document %d: incomplete CustomResourceDefinition %q", file.name, i+1, c.Metadata.Name)
			}
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Kind < out[j].Kind })
	return out, nil
}

// YAML returns every definition as one multi-document YAML stream, for `kubectl apply -f`.
func YAML() string { return istioYAML + "---\n" + straitYAML }

// Documents returns every definition as its own YAML document (for `strait install`).
func Documents() []string { return splitYAML(YAML()) }

// splitYAML splits a stream on "---" lines, dropping documents of only comments and blanks.
func splitYAML(s string) []string {
	var docs []string
	for _, d := range strings.Split("\n"+s, "\n---\n") {
		blank := true
		for _, l := range strings.Split(d, "\n") {
			if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
				blank = false
				break
			}
		}
		if !blank {
			docs = append(docs, d)
		}
	}
	return docs
}
