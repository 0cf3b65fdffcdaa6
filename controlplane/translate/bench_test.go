package translate_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/translate"
	"github.com/strait-mesh/strait/internal/node"
)

// benchObjects builds a mesh of nServices services (3 ports each: HTTP, gRPC, TCP; 2 endpoints,
// versions v1/v2) spread over 10 namespaces, and nVS VirtualServices splitting traffic 90/10
// between subsets declared by a DestinationRule per routed service.
func benchObjects(nServices, nVS int) []*config.Object {
	var objs []*config.Object
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < nServices; i++ {
		ns := fmt.Sprintf("ns-%d", i%10)
		host := fmt.Sprintf("svc-%d.%s.svc.cluster.local", i, ns)
		objs = append(objs, &config.Object{Kind: config.ServiceEntry, Meta: config.Meta{Name: fmt.Sprintf("svc-%d", i), Namespace: ns,
			CreationTimestamp: t0.Add(time.Duration(i) * time.Second)},
			Spec: &networking.ServiceEntry{
				Hosts:      []string{host},
				Addresses:  []string{fmt.Sprintf("10.96.%d.%d", i/250, i%250+1)},
				Location:   networking.ServiceEntry_MESH_INTERNAL,
				Resolution: networking.ServiceEntry_STATIC,
				Ports: []*networking.ServicePort{{Number: 8080, Name: "http"}, {Number: 9090, Name: "grpc"},
					{Number: 7000, Name: "tcp"}},
				Endpoints: []*networking.WorkloadEntry{
					{Address: fmt.Sprintf("10.%d.%d.1", 1+i/250, i%250), Labels: map[string]string{"version": "v1"}},
					{Address: fmt.Sprintf("10.%d.%d.2", 1+i/250, i%250), Labels: map[string]string{"version": "v2"}},
				},
			}})
		if i < nVS {
			objs = append(objs, &config.Object{Kind: config.DestinationRule, Meta: config.Meta{Name: fmt.Sprintf("svc-%d", i), Namespace: ns,
				CreationTimestamp: t0}, Spec: &networking.DestinationRule{
				Host: host,
				Subsets: []*networking.Subset{{Name: "v1", Labels: map[string]string{"version": "v1"}},
					{Name: "v2", Labels: map[string]string{"version": "v2"}}},
			}})
			objs = append(objs, &config.Object{Kind: config.VirtualService, Meta: config.Meta{Name: fmt.Sprintf("svc-%d", i), Namespace: ns,
				CreationTimestamp: t0}, Spec: &networking.VirtualService{
				Hosts: []string{host},
				Http: []*networking.HTTPRoute{{
					Match: []*networking.HTTPMatchRequest{{Uri: &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{Prefix: "/api"}}}},
					Route: []*networking.HTTPRouteDestination{
						{Destination: &networking.Destination{Host: host, Subset: "v1", Port: &networking.PortSelector{Number: 8080}}, Weight: 90},
						{Destination: &networking.Destination{Host: host, Subset: "v2", Port: &networking.PortSelector{Number: 8080}}, Weight: 10},
					},
				}, {
					Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: host, Subset: "v1", Port: &networking.PortSelector{Number: 8080}}}},
				}},
			}})
		}
	}
	return objs
}

func benchProxy(i int) *translate.Proxy {
	ip := fmt.Sprintf("10.%d.%d.1", 1+i/250, i%250)
	id := node.NewID(node.Sidecar, ip, fmt.Sprintf("svc-%d-pod", i), fmt.Sprintf("ns-%d", i%10))
	return &translate.Proxy{ID: id, Node: &corev3.Node{Id: id.String()}, Type: node.Sidecar, Namespace: id.Namespace,
		Labels: map[string]string{"app": fmt.Sprintf("svc-%d", i), "version": "v1"}, IPs: []string{ip},
		WorkloadName: id.Name, InterceptMode: "REDIRECT"}
}

// BenchmarkTranslate measures Generate for one sidecar in a mesh of 1,000 services x 3 ports and
// 200 VirtualServices (with 200 DestinationRules):
//
//   - cold: a new generator and snapshot per iteration, so nothing is shared or carried over
//     (the first proxy after straitd starts);
//   - endpoint-change: one generator, a new snapshot per iteration in which one service's endpoint
//     moved (the first proxy after an endpoint change: unchanged output is carried over from the
//     previous snapshot, only that service's load assignments are rebuilt);
//   - vs-change: the same with one VirtualService changed (routes and listeners of every scope are
//     rebuilt, clusters and endpoints carried over);
//   - warm: one snapshot, a different proxy per iteration (every proxy after the first: outbound
//     clusters, endpoints, listeners and routes come from the snapshot's per-scope cache; only the
//     inbound side is looked up).
//
// Run: go test ./controlplane/translate/ -run '^$' -bench BenchmarkTranslate -benchmem
func BenchmarkTranslate(b *testing.B) {
	objs := benchObjects(1000, 200)
	mc := config.DefaultMeshConfig()
	count := func(b *testing.B, res translate.Resources) {
		n := 0
		for _, l := range res {
			n += len(l)
		}
		b.ReportMetric(float64(n), "resources/op")
	}
	b.Run("cold", func(b *testing.B) {
		b.ReportAllocs()
		var res translate.Resources
		for i := 0; i < b.N; i++ {
			g := translate.New(translate.Options{})
			snap := mesh.New(uint64(i), mc, objs)
			var err error
			if res, err = g.Generate(snap, benchProxy(i%1000)); err != nil {
				b.Fatal(err)
			}
		}
		count(b, res)
	})
	// changed returns objs with object i (a ServiceEntry or VirtualService) changed in a way
	// that depends on n.
	changed := func(kind config.Kind, n int) []*config.Object {
		out := slices.Clone(objs)
		seen := 0
		for j, o := range out {
			if o.Kind != kind {
				continue
			}
			if seen++; seen != 1+n%200 {
				continue
			}
			c := *o
			switch spec := proto.Clone(o.Spec).(type) {
			case *networking.ServiceEntry:
				spec.Endpoints[0].Address = fmt.Sprintf("10.250.%d.%d", n/250%250, n%250)
				c.Spec = spec
			case *networking.VirtualService:
				spec.Http[0].Route[0].Weight = int32(1 + n%89)
				spec.Http[0].Route[1].Weight = 100 - spec.Http[0].Route[0].Weight
				c.Spec = spec
			}
			out[j] = &c
			break
		}
		return out
	}
	for _, tc := range []struct {
		name string
		kind config.Kind
	}{{"endpoint-change", config.ServiceEntry}, {"vs-change", config.VirtualService}} {
		b.Run(tc.name, func(b *testing.B) {
			g := translate.New(translate.Options{})
			if _, err := g.Generate(mesh.New(1, mc, objs), benchProxy(0)); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			var res translate.Resources
			for i := 0; i < b.N; i++ {
				b.StopTimer() // building the snapshot is mesh.New's cost, not translation's
				snap := mesh.New(uint64(i+2), mc, changed(tc.kind, i))
				b.StartTimer()
				var err error
				if res, err = g.Generate(snap, benchProxy(0)); err != nil {
					b.Fatal(err)
				}
			}
			count(b, res)
		})
	}
	b.Run("warm", func(b *testing.B) {
		g := translate.New(translate.Options{})
		snap := mesh.New(1, mc, objs)
		for i := 0; i < 10; i++ { // one proxy per namespace fills the per-scope cache
			if _, err := g.Generate(snap, benchProxy(i)); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportAllocs()
		b.ResetTimer()
		var res translate.Resources
		for i := 0; i < b.N; i++ {
			var err error
			if res, err = g.Generate(snap, benchProxy(i%1000)); err != nil {
				b.Fatal(err)
			}
		}
		count(b, res)
	})
}
