package translate_test

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/mesh/meshtest"
	"github.com/strait-mesh/strait/controlplane/translate"
	"github.com/strait-mesh/strait/internal/node"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.yaml")

// goldenRateLimitService is where the golden cases' proxies reach straitd's rate limit service
// (translate.Options.RateLimitService), for RateLimits' Global rules.
const goldenRateLimitService = "10.96.0.15:8081"

// header is the first document of a NAME.input.yaml: the proxy to generate for and the mesh
// config. Every other document is Istio config.
type header struct {
	Proxy struct {
		Type          string            `json:"type"` // sidecar (default), router
		IP            string            `json:"ip"`
		Name          string            `json:"name"`
		Namespace     string            `json:"namespace"`
		Labels        map[string]string `json:"labels"`
		InterceptMode string            `json:"interceptMode"`
		Proxyless     bool              `json:"proxyless"`
		Locality      string            `json:"locality"`
		// VHDS: the proxy announces node.FeatureVHDS (its virtual hosts come through VHDS).
		VHDS bool `json:"vhds"`
		// OnDemand and Demanded: the proxy is served on-demand configuration and demanded these
		// VHDS names ("<route config>/<authority>").
		OnDemand bool     `json:"onDemand"`
		Demanded []string `json:"demanded"`
	} `json:"proxy"`
	Mesh json.RawMessage `json:"mesh"`
	// ProxyPending lists what strait-proxy does not accept yet in this case's output (a
	// substring of the compile error, such as "http_connection_manager.tracing"): see
	// TestProxyCompiles.
	ProxyPending []string `json:"proxyPending"`
}

// caseHeader reads the header of an input file.
func caseHeader(t testing.TB, path string) header {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var h header
	if docs := meshtest.Documents(data); len(docs) > 0 {
		if err := yaml.Unmarshal(docs[0], &h); err != nil {
			t.Fatalf("%s: header: %v", path, err)
		}
	}
	return h
}

// loadCase reads an input file into a snapshot and a proxy.
func loadCase(t testing.TB, path string) (*mesh.Snapshot, *translate.Proxy) {
	t.Helper()
	return loadCaseAt(t, path, 1)
}

// loadCaseAt is loadCase with the given snapshot version.
func loadCaseAt(t testing.TB, path string, version uint64) (*mesh.Snapshot, *translate.Proxy) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	docs := meshtest.Documents(data)
	if len(docs) == 0 {
		t.Fatalf("%s: empty", path)
	}
	var h header
	if err := yaml.Unmarshal(docs[0], &h); err != nil {
		t.Fatalf("%s: header: %v", path, err)
	}
	mc, err := config.ParseMeshConfig(path, h.Mesh)
	if err != nil {
		t.Fatalf("%s: header mesh: %v", path, err)
	}
	objs, err := meshtest.Decode(path, []byte(strings.Join(func() []string {
		var s []string
		for _, d := range docs[1:] {
			s = append(s, string(d))
		}
		return s
	}(), "\n---\n")))
	if err != nil {
		t.Fatal(err)
	}
	snap := mesh.New(version, mc, objs)
	if len(snap.Errors) > 0 {
		t.Fatalf("%s: snapshot: %v", path, snap.Errors)
	}
	hp := h.Proxy
	if hp.Type == "" {
		hp.Type = "sidecar"
	}
	if hp.Namespace == "" {
		hp.Namespace = "default"
	}
	if hp.Name == "" {
		hp.Name = "test"
	}
	if hp.IP == "" {
		hp.IP = "10.0.0.1"
	}
	id := node.NewID(node.Type(hp.Type), hp.IP, hp.Name, hp.Namespace)
	n := &corev3.Node{Id: id.String()}
	if hp.Locality != "" {
		parts := append(strings.SplitN(hp.Locality, "/", 3), "", "")
		n.Locality = &corev3.Locality{Region: parts[0], Zone: parts[1], SubZone: parts[2]}
	}
	mode := hp.InterceptMode
	if mode == "" {
		mode = "REDIRECT"
	}
	p := &translate.Proxy{ID: id, Node: n, Type: id.Type, Namespace: hp.Namespace, Labels: hp.Labels,
		IPs: []string{hp.IP}, WorkloadName: hp.Name, InterceptMode: mode, Proxyless: hp.Proxyless, VHDS: hp.VHDS,
		OnDemand: hp.OnDemand, Demanded: hp.Demanded}
	return snap, p
}

type validator interface{ Validate() error }

// render generates, validates every resource, and renders resources and reports as YAML.
func render(t testing.TB, snap *mesh.Snapshot, p *translate.Proxy) []byte {
	t.Helper()
	r := newReporter()
	return renderWith(t, translate.New(translate.Options{Report: r.report, RateLimitService: goldenRateLimitService}), r, snap, p)
}

// reporter collects a generator's reports.
type reporter struct {
	mu      sync.Mutex
	reports []string
}

func newReporter() *reporter { return &reporter{} }

func (r *reporter) report(_ *translate.Proxy, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range config.Errors(err) {
		r.reports = append(r.reports, e.Error())
	}
}

// take returns the reports collected so far and forgets them.
func (r *reporter) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.reports
	r.reports = nil
	return out
}

// renderWith is render with a given generator, whose reports r collects.
func renderWith(t testing.TB, g translate.Generator, r *reporter, snap *mesh.Snapshot, p *translate.Proxy) []byte {
	t.Helper()
	r.take()
	res, err := g.Generate(snap, p)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	out := map[string]any{}
	types := map[string]string{resource.ClusterType: "clusters", resource.EndpointType: "endpoints",
		resource.ListenerType: "listeners", resource.RouteType: "routes"}
	if len(res[resource.SecretType]) > 0 {
		types[resource.SecretType] = "secrets" // routers' credentials (test keys only)
	}
	if len(res[resource.VirtualHostType]) > 0 {
		types[resource.VirtualHostType] = "virtualHosts" // VHDS
	}
	for typ, key := range types {
		list := []any{}
		for _, r := range res[typ] {
			if err := r.(validator).Validate(); err != nil {
				t.Errorf("%s %s: Validate: %v", key, resourceName(r), err)
			}
			b, err := protojson.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			var v any
			if err := json.Unmarshal(b, &v); err != nil {
				t.Fatal(err)
			}
			if typ == resource.SecretType {
				describeInline(v)
			}
			list = append(list, v)
		}
		out[key] = list
	}
	reports := r.take()
	sort.Strings(reports)
	if len(reports) > 0 {
		out["reports"] = reports
	}
	j, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	y, err := yaml.JSONToYAML(j)
	if err != nil {
		t.Fatal(err)
	}
	return y
}

func resourceName(r proto.Message) string {
	if n, ok := r.(interface{ GetName() string }); ok {
		return n.GetName()
	}
	if n, ok := r.(interface{ GetClusterName() string }); ok {
		return n.GetClusterName()
	}
	return "?"
}

// TestGoldenSharedGenerator translates every golden input twice, in turn, with one generator and
// increasing snapshot versions, as the xDS server does: output carried over from the previous
// snapshot (see memo.go) must never leak into a different one, and a repeated snapshot must give
// the same output.
func TestGoldenSharedGenerator(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*.input.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r := newReporter()
	g := translate.New(translate.Options{Report: r.report, RateLimitService: goldenRateLimitService})
	version := uint64(0)
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".input.yaml")
		want, err := os.ReadFile(filepath.Join("testdata", name+".golden.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		for pass := range 2 {
			version++
			snap, p := loadCaseAt(t, in, version)
			if got := renderWith(t, g, r, snap, p); string(got) != string(want) {
				t.Errorf("%s (pass %d, shared generator): output differs from the golden file", name, pass+1)
			}
		}
	}
}

// TestGolden translates every testdata/NAME.input.yaml and compares with NAME.golden.yaml.
// Regenerate with: go test ./controlplane/translate/ -run TestGolden -update
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*.input.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) == 0 {
		t.Fatal("no golden inputs")
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".input.yaml")
		t.Run(name, func(t *testing.T) {
			snap, p := loadCase(t, in)
			got := render(t, snap, p)
			golden := filepath.Join("testdata", name+".golden.yaml")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if errors.Is(err, os.ErrNotExist) {
				t.Fatalf("%s missing: run with -update", golden)
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Errorf("%s differs from generated output; rerun with -update and review the diff", golden)
			}
		})
	}
}

// describeInline replaces the inline PEM of a rendered SDS Secret with what it holds (the
// certificates' subjects, the key's type and size), so that a golden file reads as what is
// served and holds no key material.
func describeInline(v any) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if s, ok := e.(string); ok && k == "inlineBytes" {
				b, err := base64.StdEncoding.DecodeString(s)
				if err == nil {
					x[k] = describePEM(b)
				}
				continue
			}
			describeInline(e)
		}
	case []any:
		for _, e := range x {
			describeInline(e)
		}
	}
}

// describePEM lists the PEM blocks of b: "CERTIFICATE CN=a.example", "PRIVATE KEY (138 bytes)".
func describePEM(b []byte) []string {
	var out []string
	for {
		block, rest := pem.Decode(b)
		if block == nil {
			break
		}
		d := fmt.Sprintf("%s (%d bytes)", block.Type, len(block.Bytes))
		if block.Type == "CERTIFICATE" {
			if c, err := x509.ParseCertificate(block.Bytes); err == nil {
				d = "CERTIFICATE " + c.Subject.String()
			}
		}
		out = append(out, d)
		b = rest
	}
	if len(out) == 0 {
		out = append(out, fmt.Sprintf("not PEM (%d bytes)", len(b)))
	}
	return out
}
