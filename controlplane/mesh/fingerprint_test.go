package mesh_test

import (
	"strings"
	"testing"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/mesh/meshtest"
)

// build decodes YAML documents into a snapshot with the given version.
func build(t *testing.T, version uint64, docs ...string) *mesh.Snapshot {
	t.Helper()
	return meshtest.Snapshot(t, "test", version, nil, docs...)
}

var (
	seReviews = meshtest.Object("ServiceEntry", "reviews", "default", `  hosts: [reviews.default.svc.cluster.local]
  ports: [{number: 9080, name: http}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.1}]`)
	seRatings = meshtest.Object("ServiceEntry", "ratings", "team-a", `  hosts: [ratings.team-a.svc.cluster.local]
  ports: [{number: 9080, name: http}]
  resolution: STATIC
  endpoints: [{address: 10.0.1.1}]`)
	drReviews = meshtest.Object("DestinationRule", "reviews", "default", `  host: reviews
  subsets: [{name: v1, labels: {version: v1}}]`)
	vsReviews = meshtest.Object("VirtualService", "reviews", "default", `  hosts: [reviews]
  http: [{route: [{destination: {host: reviews, subset: v1}}]}]`)
)

// TestFingerprints checks what the content hashes that translation keys its reuse on see: equal
// content hashes equal across snapshots, an endpoint move changes only the endpoint hash, and a
// VirtualService or port change changes the config hash.
func TestFingerprints(t *testing.T) {
	a := build(t, 1, seReviews, seRatings, drReviews, vsReviews)
	b := build(t, 2, seReviews, seRatings, drReviews, vsReviews)
	if a.ConfigHash() != b.ConfigHash() || a.MeshHash() != b.MeshHash() {
		t.Error("equal snapshots have different config or mesh hashes")
	}
	reviews := mesh.ServiceKey{Hostname: "reviews.default.svc.cluster.local", Namespace: "default"}
	ratings := mesh.ServiceKey{Hostname: "ratings.team-a.svc.cluster.local", Namespace: "team-a"}

	moved := build(t, 3, strings.Replace(seReviews, "10.0.0.1", "10.0.0.2", 1), seRatings, drReviews, vsReviews)
	if moved.ConfigHash() != a.ConfigHash() {
		t.Error("an endpoint move changed the config hash")
	}
	if moved.EndpointsHash(reviews) == a.EndpointsHash(reviews) {
		t.Error("an endpoint move did not change the service's endpoint hash")
	}
	if moved.EndpointsHash(ratings) != a.EndpointsHash(ratings) {
		t.Error("an endpoint move changed another service's endpoint hash")
	}
	if moved.ServiceHash(moved.Service(reviews.Hostname, "default")) != a.ServiceHash(a.Service(reviews.Hostname, "default")) {
		t.Error("an endpoint move changed the service hash")
	}

	routed := build(t, 4, seReviews, seRatings, drReviews, strings.Replace(vsReviews, "subset: v1", "subset: v2", 1))
	if routed.ConfigHash() == a.ConfigHash() {
		t.Error("a VirtualService change did not change the config hash")
	}
	ported := build(t, 5, strings.Replace(seReviews, "number: 9080", "number: 9081", 1), seRatings, drReviews, vsReviews)
	if ported.ConfigHash() == a.ConfigHash() {
		t.Error("a service port change did not change the config hash")
	}
	if got, want := a.ObjectHash(a.Configs[config.DestinationRule][0]), b.ObjectHash(b.Configs[config.DestinationRule][0]); got != want {
		t.Error("equal DestinationRules hash differently")
	}
}

// TestNamespaceIndependent checks when a scope's lookups may be shared between namespaces: not
// with a DestinationRule in the namespace, nor with a service exported to some namespaces only.
func TestNamespaceIndependent(t *testing.T) {
	s := build(t, 1, seReviews, seRatings, drReviews)
	if s.NamespaceIndependent(s.DefaultScope("default")) {
		t.Error("default has a DestinationRule, yet its scope is namespace-independent")
	}
	if !s.NamespaceIndependent(s.DefaultScope("team-a")) || !s.NamespaceIndependent(s.DefaultScope("other")) {
		t.Error("namespaces without rules should be namespace-independent")
	}
	a, o := s.DefaultScope("team-a"), s.DefaultScope("other")
	if len(a.Services) != 2 || len(o.Services) != 2 || a.Namespace != "team-a" || o.Key == a.Key {
		t.Errorf("shared default scopes: team-a %d services (%s), other %d (%s)", len(a.Services), a.Key, len(o.Services), o.Key)
	}

	private := build(t, 1, strings.Replace(seRatings, "resolution: STATIC", "resolution: STATIC\n  exportTo: [\".\"]", 1), seReviews)
	if private.NamespaceIndependent(private.DefaultScope("other")) {
		t.Error("a service exported to its own namespace only makes scopes namespace-dependent")
	}
	if n := len(private.DefaultScope("other").Services); n != 1 {
		t.Errorf("other sees %d services, want 1", n)
	}
	if n := len(private.DefaultScope("team-a").Services); n != 2 {
		t.Errorf("team-a sees %d services, want 2", n)
	}
}
