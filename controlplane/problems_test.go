package controlplane

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/mesh/meshtest"
	"github.com/strait-mesh/strait/controlplane/translate"
	"github.com/strait-mesh/strait/internal/node"
)

const (
	seTwoHosts = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: web, namespace: default}
spec:
  hosts: [web.default.svc.cluster.local, ok.default.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{number: 8080, name: http}, {number: 9090, name: http-admin}]
  resolution: STATIC
  endpoints: [{address: 10.17.0.1}]
`
	// drTunnel cannot be translated (tunnel): every proxy reports it, once per port.
	drTunnel = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: default}
spec:
  host: web
  trafficPolicy:
    tunnel: {protocol: CONNECT, targetHost: egress.example.com, targetPort: 8080}
`
)

func snapshotOf(t *testing.T, version uint64, docs ...string) *mesh.Snapshot {
	t.Helper()
	return meshtest.Snapshot(t, "test.yaml", version, config.DefaultMeshConfig(), docs...)
}

func sidecar(name string) *translate.Proxy {
	id := node.NewID(node.Sidecar, "10.0.0.9", name, "default")
	return &translate.Proxy{ID: id, Node: &corev3.Node{Id: id.String()}, Type: node.Sidecar, Namespace: "default",
		IPs: []string{"10.0.0.9"}, WorkloadName: name, InterceptMode: "REDIRECT"}
}

// TestProblemsFollowTheSnapshot checks /debug/configz's untranslated list: each problem is listed
// once however many proxies (and ports) report it, and it goes away when a later snapshot no
// longer has the object that caused it, or when the proxies that reported it disconnect.
func TestProblemsFollowTheSnapshot(t *testing.T) {
	pr := newProblems(slog.New(slog.NewTextHandler(io.Discard, nil)))
	g := pr.generator(translate.New(translate.Options{Report: pr.report}))
	a, b := sidecar("a"), sidecar("b")
	generate := func(snap *mesh.Snapshot, ps ...*translate.Proxy) {
		t.Helper()
		for _, p := range ps {
			if _, err := g.Generate(snap, p); err != nil {
				t.Fatal(err)
			}
		}
	}

	generate(snapshotOf(t, 1, seTwoHosts, drTunnel), a, b)
	got := pr.current()
	if len(got) == 0 {
		t.Fatal("no problems listed for an untranslatable DestinationRule")
	}
	seen := map[string]bool{}
	for _, m := range got {
		if strings.Contains(m, "\n") || seen[m] {
			t.Errorf("listed more than once or joined with others: %q", m)
		}
		seen[m] = true
		if !strings.Contains(m, "tunnel") {
			t.Errorf("unexpected problem %q", m)
		}
	}

	// The DestinationRule is deleted: the next generation clears what it caused.
	generate(snapshotOf(t, 2, seTwoHosts), a, b)
	if got := pr.current(); len(got) != 0 {
		t.Errorf("problems listed after the object that caused them was deleted: %q", got)
	}

	// A proxy that disconnects takes its problems with it.
	generate(snapshotOf(t, 3, seTwoHosts, drTunnel), a)
	if len(pr.current()) == 0 {
		t.Fatal("no problems listed at version 3")
	}
	pr.forget(a)
	if got := pr.current(); len(got) != 0 {
		t.Errorf("problems of a disconnected proxy still listed: %q", got)
	}
}

// TestMultiHostTLSNoFalseConflict generates the multi-host TLS ServiceEntry whose VirtualService
// routes each host by SNI (a case that used to name every chain after the first host): nothing
// is reported as untranslated.
func TestMultiHostTLSNoFalseConflict(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("translate", "testdata", "tls-sni-multihost.input.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	docs := meshtest.Documents(data)[1:] // the first document is the golden test's header
	var specs []string
	for _, d := range docs {
		specs = append(specs, string(d))
	}
	pr := newProblems(slog.New(slog.NewTextHandler(io.Discard, nil)))
	g := pr.generator(translate.New(translate.Options{Report: pr.report}))
	if _, err := g.Generate(snapshotOf(t, 1, specs...), sidecar("client")); err != nil {
		t.Fatal(err)
	}
	if got := pr.current(); len(got) != 0 {
		t.Errorf("untranslated: %q", got)
	}
}
