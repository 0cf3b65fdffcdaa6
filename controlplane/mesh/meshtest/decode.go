// Package meshtest decodes Istio YAML into config objects and snapshots for tests of the mesh and
// translation packages, with config.Decode, giving objects without a creation timestamp increasing
// timestamps in document order (so "oldest first" is document order).
package meshtest

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	meshconfig "istio.io/api/mesh/v1alpha1"
	"sigs.k8s.io/yaml"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/mesh"
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

// Snapshot decodes docs (YAML documents, joined with "---") from origin with Decode and builds
// snapshot version of them with mesh.New and meshCfg (nil for an empty MeshConfig). It fails t
// when the YAML does not decode or the snapshot has errors.
func Snapshot(t testing.TB, origin string, version uint64, meshCfg *meshconfig.MeshConfig, docs ...string) *mesh.Snapshot {
	t.Helper()
	objs, err := Decode(origin, []byte(strings.Join(docs, "\n---\n")))
	if err != nil {
		t.Fatal(err)
	}
	snap := mesh.New(version, meshCfg, objs)
	if len(snap.Errors) > 0 {
		t.Fatalf("snapshot: %v", snap.Errors)
	}
	return snap
}

// Object is the YAML of a networking.istio.io/v1 object of kind, named name in namespace ns,
// with spec (its fields, indented by two spaces), as the tests write Istio config.
func Object(kind, name, ns, spec string) string {
	return "apiVersion: networking.istio.io/v1\nkind: " + kind + "\nmetadata: {name: " + name + ", namespace: " + ns + "}\nspec:\n" + spec
}
