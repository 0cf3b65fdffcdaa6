package translate_test

import (
	"sync"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/translate"
)

// TestSharedOutput checks that proxies of one scope share outbound resources, and that a
// workload-selecting DestinationRule gives the selected proxy its own.
func TestSharedOutput(t *testing.T) {
	snap, p := loadCase(t, "testdata/dr-workload-selector.input.yaml")
	g := translate.New(translate.Options{})
	special, err := g.Generate(snap, p)
	if err != nil {
		t.Fatal(err)
	}
	other := *p
	other.Labels = map[string]string{"app": "plain"}
	plain1, err := g.Generate(snap, &other)
	if err != nil {
		t.Fatal(err)
	}
	other2 := other
	other2.IPs = []string{"10.0.0.99"}
	plain2, err := g.Generate(snap, &other2)
	if err != nil {
		t.Fatal(err)
	}
	first := func(r translate.Resources) *clusterv3.Cluster { return r[resource.ClusterType][0].(*clusterv3.Cluster) }
	if first(plain1) != first(plain2) {
		t.Error("proxies with the same scope do not share outbound clusters")
	}
	if first(special) == first(plain1) {
		t.Error("the proxy selected by a DestinationRule shares clusters with unselected proxies")
	}
	if got := first(special).GetLbPolicy(); got != clusterv3.Cluster_ROUND_ROBIN {
		t.Errorf("selected proxy: lb policy %v, want ROUND_ROBIN", got)
	}
	if got := first(plain1).GetLbPolicy(); got != clusterv3.Cluster_RANDOM {
		t.Errorf("unselected proxy: lb policy %v, want RANDOM", got)
	}
}

func TestUnknownProxyType(t *testing.T) {
	snap, p := loadCase(t, "testdata/bookinfo-sidecar.input.yaml")
	q := *p
	q.Type = "ztunnel"
	if _, err := translate.New(translate.Options{}).Generate(snap, &q); err == nil {
		t.Error("ztunnel proxy: want an error")
	}
}

// TestConcurrentGenerate generates for many proxies at once on one snapshot (run with -race):
// the per-snapshot caches must be safe and give every proxy the same shared output.
func TestConcurrentGenerate(t *testing.T) {
	snap := mesh.New(1, config.DefaultMeshConfig(), benchObjects(50, 20))
	g := translate.New(translate.Options{})
	var wg sync.WaitGroup
	results := make([]translate.Resources, 16)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := g.Generate(snap, benchProxy(i*10)) // all in namespace ns-0
			if err != nil {
				t.Error(err)
				return
			}
			results[i] = res
		}()
	}
	wg.Wait()
	outbound := func(r translate.Resources) *clusterv3.Cluster { return r[resource.ClusterType][0].(*clusterv3.Cluster) }
	for i, r := range results {
		if r == nil || results[0] == nil {
			continue
		}
		if outbound(r) != outbound(results[0]) {
			t.Errorf("proxy %d does not share the outbound clusters of proxy 0", i)
		}
	}
}
