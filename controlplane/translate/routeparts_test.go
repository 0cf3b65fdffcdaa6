package translate_test

import (
	"fmt"
	"strings"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/translate"
)

// withSpec returns a copy of o with spec.
func withSpec(o *config.Object, spec proto.Message) *config.Object {
	c := *o
	c.Spec = spec
	return &c
}

// TestVirtualHostsCarriedOver checks that a config change rebuilds exactly the virtual hosts whose
// inputs it changes, for VHDS and RDS proxies alike: the others are the previous snapshot's
// objects (so the xDS server neither re-marshals nor re-sends them), also after endpoint-only
// snapshots in between, while the output always equals a new generator's.
func TestVirtualHostsCarriedOver(t *testing.T) {
	objs := benchObjects(40, 8)
	mc := config.DefaultMeshConfig()
	g := translate.New(translate.Options{})
	vhds := benchProxy(0) // ns-0
	vhds.VHDS = true
	version := uint64(0)
	generate := func(objs []*config.Object) translate.Resources {
		t.Helper()
		version++
		return sameOutput(t, g, mesh.New(version, mc, objs), vhds)
	}
	// changes checks which virtual hosts of after are new objects: exactly those for which
	// changed(name) is true (and every name of before is still there unless gone(name)).
	changes := func(step string, before, after translate.Resources, changed func(name string) bool) {
		t.Helper()
		bb, aa := byName(t, before[resource.VirtualHostType]), byName(t, after[resource.VirtualHostType])
		if len(aa) == 0 {
			t.Fatalf("%s: no virtual hosts", step)
		}
		for name, r := range aa {
			if rebuilt := bb[name] != r; rebuilt != changed(name) {
				t.Errorf("%s: virtual host %s: rebuilt %v, want %v", step, name, rebuilt, changed(name))
			}
		}
	}
	a := generate(objs)

	// Two endpoint-only snapshots, then a VirtualService edit (svc-3's weights): only svc-3's
	// virtual hosts are rebuilt (its routes apply on both HTTP ports, 8080 and 9090).
	svc3 := findObject(t, objs, config.ServiceEntry, "ns-3", "svc-3")
	b := generate(replaceObject(objs, moveEndpoint(svc3, "10.200.0.9")))
	changes("endpoint change", a, b, func(string) bool { return false })
	objs = replaceObject(objs, moveEndpoint(svc3, "10.200.0.10"))
	b = generate(objs)
	changes("second endpoint change", a, b, func(string) bool { return false })
	vs3 := findObject(t, objs, config.VirtualService, "ns-3", "svc-3")
	spec := proto.Clone(vs3.Spec).(*networking.VirtualService)
	spec.Http[0].Route[0].Weight, spec.Http[0].Route[1].Weight = 80, 20
	objs = replaceObject(objs, withSpec(vs3, spec))
	c := generate(objs)
	changes("VirtualService edit", a, c, func(name string) bool { return strings.Contains(name, "/svc-3.ns-3.") })

	// A DestinationRule that gives svc-12 (no VirtualService) a hash policy rebuilds only its
	// virtual hosts (the default route carries the hash policy).
	objs = append(objs, &config.Object{Kind: config.DestinationRule, Meta: config.Meta{Name: "svc-12-hash", Namespace: "ns-2"},
		Spec: &networking.DestinationRule{Host: "svc-12.ns-2.svc.cluster.local", TrafficPolicy: &networking.TrafficPolicy{
			LoadBalancer: &networking.LoadBalancerSettings{LbPolicy: &networking.LoadBalancerSettings_ConsistentHash{
				ConsistentHash: &networking.LoadBalancerSettings_ConsistentHashLB{HashKey: &networking.LoadBalancerSettings_ConsistentHashLB_HttpHeaderName{HttpHeaderName: "x-user"}}}}}}})
	d := generate(objs)
	changes("DestinationRule added", c, d, func(name string) bool { return strings.Contains(name, "/svc-12.ns-2.") })

	// A DestinationRule read by a VirtualService's destination (svc-5's, now with a hash
	// policy) rebuilds the virtual hosts that VirtualService routes.
	dr5 := findObject(t, objs, config.DestinationRule, "ns-5", "svc-5")
	drSpec := proto.Clone(dr5.Spec).(*networking.DestinationRule)
	drSpec.TrafficPolicy = proto.Clone(objs[len(objs)-1].Spec.(*networking.DestinationRule).TrafficPolicy).(*networking.TrafficPolicy)
	objs = replaceObject(objs, withSpec(dr5, drSpec))
	e := generate(objs)
	changes("DestinationRule edit", d, e, func(name string) bool { return strings.Contains(name, "/svc-5.ns-5.") })

	// A new service adds its virtual hosts and rebuilds none of the others.
	se := proto.Clone(svc3.Spec).(*networking.ServiceEntry)
	se.Hosts, se.Addresses = []string{"new.ns-0.svc.cluster.local"}, []string{"10.97.0.1"}
	objs = append(objs, &config.Object{Kind: config.ServiceEntry, Meta: config.Meta{Name: "new", Namespace: "ns-0"}, Spec: se})
	f := generate(objs)
	changes("service added", e, f, func(name string) bool { return strings.Contains(name, "/new.ns-0.") })
	for _, port := range []int{8080, 9090} {
		if name := fmt.Sprintf("%d/new.ns-0.svc.cluster.local:%d", port, port); byName(t, f[resource.VirtualHostType])[name] == nil {
			t.Errorf("virtual host %s missing", name)
		}
	}

	// A proxy without VHDS (same scope) gets route configurations of the same virtual hosts.
	rds := benchProxy(10) // ns-0 too
	n := 0
	for _, r := range sameOutput(t, g, mesh.New(version, mc, objs), rds)[resource.RouteType] {
		n += len(r.(*routev3.RouteConfiguration).GetVirtualHosts())
	}
	if n != len(f[resource.VirtualHostType]) {
		t.Errorf("RDS proxy: %d virtual hosts, VHDS proxy %d", n, len(f[resource.VirtualHostType]))
	}
}
