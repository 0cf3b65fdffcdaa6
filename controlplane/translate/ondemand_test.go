package translate_test

import (
	"slices"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/strait-mesh/strait/controlplane/translate"
)

// TestResolveDemands checks that an on-demand name resolves by Envoy's domain matching, in every
// form a request's :authority takes, and that the catch-all virtual host does not count.
func TestResolveDemands(t *testing.T) {
	vh := func(name string, domains ...string) types.Resource {
		return &routev3.VirtualHost{Name: name, Domains: domains}
	}
	vhosts := []types.Resource{
		vh("80/a.ns.svc.cluster.local:80", "a.ns.svc.cluster.local", "a.ns.svc.cluster.local:80", "a", "a:80", "a.ns", "10.0.0.1"),
		vh("80/wild", "*.example.com"),
		vh("80/longer-wild", "*.api.example.com"),
		vh("80/prefix", "api.*"),
		vh("80/allow_any", "*"),
		vh("8080/a.ns.svc.cluster.local:8080", "a", "a:8080"),
	}
	got := translate.ResolveDemands(vhosts, []string{"80/a", "80/A:80", "80/a.ns.svc.cluster.local", "80/10.0.0.1",
		"80/x.example.com", "80/v1.api.example.com", "80/api.local", "80/b", "8080/a:8080", "9090/a", "80/example.com"})
	want := map[string]string{
		"80/a": "80/a.ns.svc.cluster.local:80", "80/A:80": "80/a.ns.svc.cluster.local:80",
		"80/a.ns.svc.cluster.local": "80/a.ns.svc.cluster.local:80", "80/10.0.0.1": "80/a.ns.svc.cluster.local:80",
		"80/x.example.com": "80/wild", "80/v1.api.example.com": "80/longer-wild", "80/api.local": "80/prefix",
		"80/b": "", "8080/a:8080": "8080/a.ns.svc.cluster.local:8080", "9090/a": "", "80/example.com": "",
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s resolved to %q, want %q", name, got[name], w)
		}
	}
}

// TestOnDemandScope checks an on-demand sidecar's output as its demands grow: virtual hosts,
// clusters and load assignments of the demanded hosts only, listeners and route configurations
// complete; and that a proxy with the same demands gets the same (shared) lists.
func TestOnDemandScope(t *testing.T) {
	snap, p := loadCase(t, "testdata/ondemand-sidecar.input.yaml")
	gen := translate.New(translate.Options{})
	full := *p
	full.OnDemand = false
	all, err := gen.Generate(snap, &full)
	if err != nil {
		t.Fatal(err)
	}
	names := func(res translate.Resources, typ string) []string {
		var out []string
		for _, r := range res[typ] {
			switch m := r.(type) {
			case *routev3.VirtualHost:
				out = append(out, m.GetName())
			case *clusterv3.Cluster:
				out = append(out, m.GetName())
			}
		}
		return out
	}
	db := "outbound|5432||db.default.svc.cluster.local"
	for _, tc := range []struct {
		demanded, clusters []string
		vhosts             []string
		missing            []string // clusters left out
	}{
		{nil, nil, []string{"9080/allow_any"}, []string{out("ratings"), out("reviews"), out("details"), out("productpage"), db}},
		{[]string{"9080/reviews"}, nil, []string{"9080/reviews.default.svc.cluster.local:9080", "9080/allow_any"},
			[]string{out("ratings"), out("details"), out("productpage"), db}},
		{[]string{"9080/reviews", "9080/details.default:9080"}, []string{db}, []string{"9080/details.default.svc.cluster.local:9080", "9080/reviews.default.svc.cluster.local:9080", "9080/allow_any"},
			[]string{out("ratings"), out("productpage")}},
	} {
		q := *p
		q.Demanded, q.DemandedClusters = tc.demanded, tc.clusters
		res, err := gen.Generate(snap, &q)
		if err != nil {
			t.Fatal(err)
		}
		if got := names(res, resource.VirtualHostType); !sameSet(got, tc.vhosts) {
			t.Errorf("demanded %v: virtual hosts %v, want %v", tc.demanded, got, tc.vhosts)
		}
		clusters := names(res, resource.ClusterType)
		for _, c := range tc.missing {
			if slices.Contains(clusters, c) {
				t.Errorf("demanded %v: cluster %s sent", tc.demanded, c)
			}
		}
		for _, c := range []string{"PassthroughCluster", "BlackHoleCluster", "inbound|9080||"} {
			if !slices.Contains(clusters, c) {
				t.Errorf("demanded %v: cluster %s left out", tc.demanded, c)
			}
		}
		if len(clusters)+len(tc.missing) != len(all[resource.ClusterType]) {
			t.Errorf("demanded %v: %d clusters + %d left out, want %d", tc.demanded, len(clusters), len(tc.missing), len(all[resource.ClusterType]))
		}
		if len(res[resource.EndpointType]) != len(all[resource.EndpointType])-len(tc.missing) {
			t.Errorf("demanded %v: %d load assignments, want %d", tc.demanded, len(res[resource.EndpointType]), len(all[resource.EndpointType])-len(tc.missing))
		}
		if !equalLists(res[resource.ListenerType], all[resource.ListenerType]) || len(res[resource.RouteType]) != len(all[resource.RouteType]) {
			t.Errorf("demanded %v: listeners or route configurations differ from the full configuration", tc.demanded)
		}
		again, _ := gen.Generate(snap, &q)
		if &again[resource.ClusterType][0] != &res[resource.ClusterType][0] {
			t.Errorf("demanded %v: equal demands do not share their cluster list", tc.demanded)
		}
	}
}

func out(svc string) string { return "outbound|9080||" + svc + ".default.svc.cluster.local" }

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
