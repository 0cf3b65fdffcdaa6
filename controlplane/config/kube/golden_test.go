package kube_test

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/config/kube"
	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/mesh/meshtest"
	"github.com/strait-mesh/strait/controlplane/translate"
	"github.com/strait-mesh/strait/internal/node"
)

// goldenInputs are translate's golden cases (controlplane/translate/testdata): between them they
// hold every kind the source reads, Secrets of both types included.
const goldenInputs = "../../translate/testdata/*.input.yaml"

// goldenHeader is the first document of a golden input: the proxy and the mesh config, as
// translate's golden test reads them.
type goldenHeader struct {
	Proxy struct {
		Type          string            `json:"type"`
		IP            string            `json:"ip"`
		Name          string            `json:"name"`
		Namespace     string            `json:"namespace"`
		Labels        map[string]string `json:"labels"`
		InterceptMode string            `json:"interceptMode"`
		Proxyless     bool              `json:"proxyless"`
		Locality      string            `json:"locality"`
	} `json:"proxy"`
	Mesh json.RawMessage `json:"mesh"`
}

// TestGoldenCasesThroughKubernetes checks that config read from the API server produces the same
// xDS as the same YAML read from files: each case's objects are created in the API server, read
// back by the source, and translated; the result must equal the translation of what the file
// source serves of the same YAML (config.Load, which translate's golden test's decoding equals
// for valid input), and the objects refused must be refused with the same errors.
func TestGoldenCasesThroughKubernetes(t *testing.T) {
	c, objs, ctx := cluster(t)
	src, changed := run(t, ctx, c, kube.Options{})
	inputs, err := filepath.Glob(goldenInputs)
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no golden inputs %s: %v", goldenInputs, err)
	}
	for _, path := range inputs {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".input.yaml"), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			docs := meshtest.Documents(data)
			var h goldenHeader
			if err := yaml.Unmarshal(docs[0], &h); err != nil {
				t.Fatalf("header: %v", err)
			}
			mc, err := config.ParseMeshConfig(path, h.Mesh)
			if err != nil {
				t.Fatal(err)
			}
			var body []string
			for _, d := range docs[1:] {
				body = append(body, string(d))
			}
			yamlBody := strings.Join(body, "\n---\n")
			// What straitd's --config-dir serves of the file: what decodes and validates.
			fromFile, fileErrs := config.Load(path, []byte(yamlBody))

			created, err := objs.Create(ctx, yamlBody)
			t.Cleanup(func() {
				if err := objs.Delete(ctx, yamlBody); err != nil {
					t.Error(err)
				}
				eventually(t, src, changed, "an empty source", func() bool { return len(src.List())+len(src.Errors()) == 0 })
			})
			if err != nil {
				t.Fatal(err)
			}
			want := map[config.Key]string{} // resourceVersion
			for _, u := range created {
				want[config.Key{Kind: config.Kind(u.GetKind()), Namespace: u.GetNamespace(), Name: u.GetName()}] = u.GetResourceVersion()
			}
			// Every object is read: served at its version, or refused.
			eventually(t, src, changed, fmt.Sprintf("the case's objects %v", want), func() bool {
				seen := map[config.Key]bool{}
				for _, o := range src.List() {
					if want[o.Key()] != o.ResourceVersion {
						return false
					}
					seen[o.Key()] = true
				}
				for _, e := range src.Errors() {
					var ce *config.Error
					if errors.As(e, &ce) {
						if k, ok := ce.Key(); ok {
							seen[k] = true
						}
					}
				}
				return len(seen) == len(want)
			})
			if got, want := errorTexts(src.Errors()), errorTexts(fileErrs); !slices.Equal(got, want) {
				t.Errorf("errors from Kubernetes:\n%s\nfrom the file:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			// Objects from files get creation times in document order, as meshtest.Decode gives
			// them (Istio's tie-break between conflicting objects); the API server's have
			// one-second resolution. Give the Kubernetes objects the same times, on copies.
			base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			createdAt := map[config.Key]time.Time{}
			for i, o := range fromFile {
				o.CreationTimestamp = base.Add(time.Duration(i) * time.Second)
				createdAt[o.Key()] = o.CreationTimestamp
			}
			var fromKube []*config.Object
			for _, o := range src.List() {
				cp := *o
				cp.CreationTimestamp = createdAt[o.Key()]
				fromKube = append(fromKube, &cp)
			}

			p := goldenProxy(h)
			fileSnap, kubeSnap := mesh.New(1, mc, fromFile), mesh.New(1, mc, fromKube)
			if len(fileSnap.Errors)+len(kubeSnap.Errors) > 0 {
				t.Fatalf("snapshot errors: files %v, kubernetes %v", fileSnap.Errors, kubeSnap.Errors)
			}
			// A generator of its own for each snapshot: a generator reuses its output between
			// snapshots by version, and these two are both version 1.
			gen := func() translate.Generator {
				return translate.New(translate.Options{RateLimitService: "10.96.0.15:8081"}) // as the golden test's
			}
			wantRes, err := gen().Generate(fileSnap, p)
			if err != nil {
				t.Fatal(err)
			}
			gotRes, err := gen().Generate(kubeSnap, p)
			if err != nil {
				t.Fatal(err)
			}
			compareResources(t, wantRes, gotRes)
		})
	}
}

// goldenProxy is the proxy of a golden case, with translate's golden test's defaults.
func goldenProxy(h goldenHeader) *translate.Proxy {
	hp := h.Proxy
	hp.Type, hp.Namespace = cmp.Or(hp.Type, "sidecar"), cmp.Or(hp.Namespace, "default")
	hp.Name, hp.IP = cmp.Or(hp.Name, "test"), cmp.Or(hp.IP, "10.0.0.1")
	id := node.NewID(node.Type(hp.Type), hp.IP, hp.Name, hp.Namespace)
	n := &corev3.Node{Id: id.String()}
	if hp.Locality != "" {
		parts := append(strings.SplitN(hp.Locality, "/", 3), "", "")
		n.Locality = &corev3.Locality{Region: parts[0], Zone: parts[1], SubZone: parts[2]}
	}
	return &translate.Proxy{ID: id, Node: n, Type: id.Type, Namespace: hp.Namespace, Labels: hp.Labels,
		IPs: []string{hp.IP}, WorkloadName: hp.Name, InterceptMode: cmp.Or(hp.InterceptMode, "REDIRECT"), Proxyless: hp.Proxyless}
}

// errorTexts renders config errors without their origin and line, which differ between a file
// and the API server, sorted.
func errorTexts(errs []error) []string {
	var out []string
	for _, e := range errs {
		var ce *config.Error
		if !errors.As(e, &ce) {
			out = append(out, e.Error())
			continue
		}
		c := *ce
		c.Origin, c.Line, c.Doc = "", 0, 0
		out = append(out, c.Error())
	}
	slices.Sort(out)
	return out
}

// compareResources fails t where two generations differ, naming the resource.
func compareResources(t *testing.T, want, got translate.Resources) {
	t.Helper()
	types := map[string]bool{}
	for typ := range want {
		types[typ] = true
	}
	for typ := range got {
		types[typ] = true
	}
	for typ := range types {
		w, g := byName(want[typ]), byName(got[typ])
		if len(w) != len(g) {
			t.Errorf("%s: %d resources from files, %d from Kubernetes", typ, len(w), len(g))
		}
		for name, wr := range w {
			gr, ok := g[name]
			if !ok {
				t.Errorf("%s %s: missing from Kubernetes", typ, name)
				continue
			}
			// As JSON: proto.Equal compares the bytes of Anys, whose maps marshal in random order.
			if w, g := protojson.Format(wr), protojson.Format(gr); w != g {
				t.Errorf("%s %s differs:\nfiles:      %s\nkubernetes: %s", typ, name, short(w), short(g))
			}
		}
	}
	if len(types) == 0 {
		t.Error("no resources generated")
	}
}

func byName(rs []types.Resource) map[string]proto.Message {
	out := map[string]proto.Message{}
	for _, r := range rs {
		name := ""
		if n, ok := r.(interface{ GetName() string }); ok {
			name = n.GetName()
		}
		if n, ok := r.(interface{ GetClusterName() string }); ok && name == "" {
			name = n.GetClusterName()
		}
		out[name] = r
	}
	return out
}

func short(s string) string {
	if len(s) > 2000 {
		return s[:2000] + "..."
	}
	return s
}
