package translate_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/translate"
)

// byName indexes a generated list by resource name.
func byName(t *testing.T, list []types.Resource) map[string]types.Resource {
	t.Helper()
	out := make(map[string]types.Resource, len(list))
	for _, r := range list {
		out[resourceName(r)] = r
	}
	return out
}

// replaceObject returns objs with the object of the same kind, namespace and name as o replaced.
func replaceObject(objs []*config.Object, o *config.Object) []*config.Object {
	out := slices.Clone(objs)
	for i, x := range out {
		if x.Key() == o.Key() {
			out[i] = o
		}
	}
	return out
}

// moveEndpoint returns a copy of ServiceEntry o with its first endpoint at a new address.
func moveEndpoint(o *config.Object, addr string) *config.Object {
	c := *o
	se := proto.Clone(o.Spec).(*networking.ServiceEntry)
	se.Endpoints[0].Address = addr
	c.Spec = se
	return &c
}

// sameOutput checks that a generator carried over between snapshots produces exactly what a new
// generator produces from a new snapshot of the same inputs (not snap itself: its per-snapshot
// cache holds what g built).
func sameOutput(t *testing.T, g translate.Generator, snap *mesh.Snapshot, p *translate.Proxy) translate.Resources {
	t.Helper()
	got, err := g.Generate(snap, p)
	if err != nil {
		t.Fatal(err)
	}
	var objs []*config.Object
	for _, list := range snap.Configs {
		objs = append(objs, list...)
	}
	want, err := translate.New(translate.Options{}).Generate(mesh.New(snap.Version, snap.Mesh, objs), p)
	if err != nil {
		t.Fatal(err)
	}
	for typ, list := range want {
		if len(got[typ]) != len(list) {
			t.Fatalf("%s: %d resources, a new generator makes %d", typ, len(got[typ]), len(list))
		}
		for i, r := range list {
			if !proto.Equal(got[typ][i], r) {
				t.Errorf("%s %s differs from a new generator's", typ, resourceName(r))
			}
		}
	}
	return got
}

// TestReuseAcrossSnapshotsAndNamespaces checks the sharing contract of the generator: output that
// does not depend on the proxy's namespace is the same objects for every namespace, an
// endpoint-only change rebuilds only the load assignments of the changed service, and a
// DestinationRule change rebuilds only that service's clusters, while the output always equals a
// new generator's.
func TestReuseAcrossSnapshotsAndNamespaces(t *testing.T) {
	objs := benchObjects(40, 8)
	mc := config.DefaultMeshConfig()
	g := translate.New(translate.Options{})
	s1 := mesh.New(1, mc, objs)
	a := sameOutput(t, g, s1, benchProxy(0)) // ns-0
	b := sameOutput(t, g, s1, benchProxy(1)) // ns-1
	for _, typ := range []string{resource.ClusterType, resource.EndpointType} {
		bb := byName(t, b[typ])
		for name, r := range byName(t, a[typ]) {
			// Inbound clusters name the services of the namespace's workload (istio.services
			// metadata): equal content must be the same object, different content may not.
			if bb[name] != r && proto.Equal(bb[name], r) {
				t.Errorf("%s %s: namespaces ns-0 and ns-1 got different objects for the same resource", typ, name)
			}
			if bb[name] != r && !strings.HasPrefix(name, "inbound|") {
				t.Errorf("%s %s: namespaces ns-0 and ns-1 got different resources", typ, name)
			}
		}
	}

	// Endpoint-only change of svc-3.
	var svc3 *config.Object
	for _, o := range objs {
		if o.Kind == config.ServiceEntry && o.Name == "svc-3" {
			svc3 = o
		}
	}
	s2 := mesh.New(2, mc, replaceObject(objs, moveEndpoint(svc3, "10.200.0.9")))
	c := sameOutput(t, g, s2, benchProxy(0))
	for _, typ := range []string{resource.ClusterType, resource.ListenerType, resource.RouteType} {
		cc := byName(t, c[typ])
		for name, r := range byName(t, a[typ]) {
			if cc[name] != r {
				t.Errorf("%s %s was rebuilt after an endpoint-only change", typ, name)
			}
		}
	}
	cc := byName(t, c[resource.EndpointType])
	for name, r := range byName(t, a[resource.EndpointType]) {
		changed := strings.Contains(name, "|svc-3.ns-3.") // its load assignments depend on all its endpoints
		if changed == (cc[name] == r) {
			t.Errorf("load assignment %s: rebuilt %v, want %v", name, cc[name] != r, changed)
		}
	}

	// A DestinationRule change (a new subset for svc-5) rebuilds only svc-5's clusters.
	var dr5 *config.Object
	for _, o := range objs {
		if o.Kind == config.DestinationRule && o.Name == "svc-5" {
			dr5 = o
		}
	}
	nd := *dr5
	spec := proto.Clone(dr5.Spec).(*networking.DestinationRule)
	spec.Subsets = append(spec.Subsets, &networking.Subset{Name: "v3", Labels: map[string]string{"version": "v3"}})
	nd.Spec = spec
	s3 := mesh.New(3, mc, replaceObject(objs, &nd))
	d := sameOutput(t, g, s3, benchProxy(0))
	dd := byName(t, d[resource.ClusterType])
	for name, r := range byName(t, a[resource.ClusterType]) {
		changed := strings.HasSuffix(name, "|svc-5.ns-5.svc.cluster.local")
		if dd[name] == nil {
			t.Errorf("cluster %s is gone", name)
			continue
		}
		if changed == (dd[name] == r) {
			t.Errorf("cluster %s: rebuilt %v, want %v", name, dd[name] != r, changed)
		}
	}
	for _, port := range []int{8080, 9090, 7000} {
		if name := fmt.Sprintf("outbound|%d|v3|svc-5.ns-5.svc.cluster.local", port); dd[name] == nil {
			t.Errorf("cluster %s missing", name)
		}
	}
}
