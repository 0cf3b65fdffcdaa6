package mesh_test

import (
	"testing"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/mesh"
)

// TestDiff checks the change set between two snapshots: changed, added and removed objects and
// services, endpoints, MeshConfig, and nothing else.
func TestDiff(t *testing.T) {
	se := func(name, addr string) *config.Object {
		return &config.Object{Kind: config.ServiceEntry, Meta: config.Meta{Name: name, Namespace: "ns"}, Spec: &networking.ServiceEntry{
			Hosts: []string{name + ".ns.svc.cluster.local"}, Resolution: networking.ServiceEntry_STATIC,
			Ports:     []*networking.ServicePort{{Number: 80, Name: "http"}},
			Endpoints: []*networking.WorkloadEntry{{Address: addr}}}}
	}
	vs := func(name, host string) *config.Object {
		return &config.Object{Kind: config.VirtualService, Meta: config.Meta{Name: name, Namespace: "ns"},
			Spec: &networking.VirtualService{Hosts: []string{host}}}
	}
	a := mesh.New(1, nil, []*config.Object{se("a", "10.0.0.1"), se("b", "10.0.0.2"), vs("x", "a"), vs("y", "b")})
	if c := a.ChangesSince(nil); c != nil {
		t.Errorf("no predecessor: %+v, want nil", c)
	}
	// Same content, new objects: nothing changed.
	b := mesh.New(2, nil, []*config.Object{se("a", "10.0.0.1"), se("b", "10.0.0.2"), vs("x", "a"), vs("y", "b")})
	if c := b.ChangesSince(a); len(c.Objects)+len(c.Services)+len(c.Endpoints) > 0 || c.Mesh || c.From != 1 || c.To != 2 {
		t.Errorf("equal snapshots: %+v", c)
	}
	if !b.ChangesSince(a).OnlyKinds() {
		t.Error("equal snapshots: OnlyKinds() false")
	}
	// b's endpoint moved, y edited, x removed, z added, service c added.
	c := mesh.New(3, config.DefaultMeshConfig(), []*config.Object{se("a", "10.0.0.1"), se("b", "10.0.0.9"), se("c", "10.0.0.3"), vs("y", "c"), vs("z", "a")})
	ch := c.ChangesSince(b)
	if ch != c.ChangesSince(b) {
		t.Error("change set computed twice")
	}
	if !ch.Mesh {
		t.Error("MeshConfig change not seen")
	}
	cKey := mesh.ServiceKey{Hostname: "c.ns.svc.cluster.local", Namespace: "ns"}
	bKey := mesh.ServiceKey{Hostname: "b.ns.svc.cluster.local", Namespace: "ns"}
	if len(ch.Services) != 1 || !ch.Services[cKey] || !ch.Hosts[cKey.Hostname] || len(ch.Hosts) != 1 {
		t.Errorf("services %v hosts %v, want only c", ch.Services, ch.Hosts)
	}
	if len(ch.Endpoints) != 2 || !ch.Endpoints[bKey] || !ch.Endpoints[cKey] {
		t.Errorf("endpoints %v, want b and c", ch.Endpoints)
	}
	for _, name := range []string{"x", "y", "z"} {
		if !ch.Object(config.VirtualService, "ns", name) {
			t.Errorf("VirtualService %s not in the change set", name)
		}
	}
	if ch.Object(config.ServiceEntry, "ns", "a") || !ch.Object(config.ServiceEntry, "ns", "b") {
		t.Errorf("ServiceEntries: %v", ch.Objects)
	}
	if x := ch.Objects[mesh.ObjectRef{Kind: config.VirtualService, Namespace: "ns", Name: "x"}]; x.Old == nil || x.New != nil {
		t.Errorf("removed VirtualService: %+v", x)
	}
	if ch.OnlyKinds(config.VirtualService, config.ServiceEntry) {
		t.Error("OnlyKinds true with a MeshConfig and service change")
	}
	if !ch.Kinds[config.VirtualService] || ch.Kinds[config.DestinationRule] {
		t.Errorf("kinds %v", ch.Kinds)
	}
}
