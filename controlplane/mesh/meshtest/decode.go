// Package meshtest decodes Istio YAML into config objects for tests of the mesh and translation
// packages, with config.Decode, giving objects without a creation timestamp increasing
// timestamps in document order (so "oldest first" is document order).
package meshtest

import (
	"errors"
	"regexp"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/strait-mesh/strait/controlplane/config"
)

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// Documents splits multi-document YAML into documents, dropping empty ones.
func Documents(data []byte) [][]byte {
	var out [][]byte
	for _, d := range docSep.Split(string(data), -1) {
		if j, err := yaml.YAMLToJSON([]byte(d)); err == nil && string(j) == "null" {
			continue
		}
		out = append(out, []byte(d))
	}
	return out
}

// Decode decodes Istio networking objects from multi-document YAML with config.Decode. Objects
// without a namespace are put in "default".
func Decode(origin string, data []byte) ([]*config.Object, error) {
	objs, errs := config.Decode(origin, data)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, o := range objs {
		if o.Namespace == "" {
			o.Namespace = "default"
		}
		if o.CreationTimestamp.IsZero() {
			o.CreationTimestamp = base.Add(time.Duration(i) * time.Second)
		}
	}
	return objs, nil
}
