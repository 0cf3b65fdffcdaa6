package translate_test

import (
	"testing"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/buildcache"
	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/translate"
	"github.com/strait-mesh/strait/internal/testenv"
)

// TestCachesBoundedOverChangeCycles runs the generator through 1,000 change cycles (a
// VirtualService weight edit each: a new snapshot, every proxy regenerated) and checks that the
// entries its caches hold and the heap stay flat: every cache's entries are evicted once no
// snapshot or proxy uses them.
func TestCachesBoundedOverChangeCycles(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 generations")
	}
	objs := benchObjects(20, 5)
	var vs *config.Object
	for _, o := range objs {
		if o.Kind == config.VirtualService {
			vs = o
			break
		}
	}
	var proxies []*translate.Proxy
	for i := range 3 {
		p := benchProxy(i)
		p.VHDS = i != 1
		proxies = append(proxies, p)
	}
	caches := buildcache.New()
	g := translate.New(translate.Options{Caches: caches})
	cycle := func(v uint64) {
		spec := proto.Clone(vs.Spec).(*networking.VirtualService)
		if len(spec.Http) > 0 && len(spec.Http[0].Route) == 2 {
			w := int32(v % 100)
			spec.Http[0].Route[0].Weight, spec.Http[0].Route[1].Weight = w, 100-w
		}
		objs = replaceObject(objs, withSpec(vs, spec))
		snap := mesh.New(v, nil, objs)
		for _, p := range proxies {
			if _, err := g.Generate(snap, p); err != nil {
				t.Fatal(err)
			}
		}
	}
	heap := testenv.HeapAfterGC
	for v := uint64(1); v <= 100; v++ {
		cycle(v)
	}
	base, baseEntries := heap(), caches.Size()
	maxEntries := 0
	for v := uint64(101); v <= 1000; v++ {
		cycle(v)
		maxEntries = max(maxEntries, caches.Size())
	}
	after := heap()
	t.Logf("cache entries after 100 cycles %d, at most %d over the next 900; heap %d → %d bytes", baseEntries, maxEntries, base, after)
	if maxEntries > 2*baseEntries+100 {
		t.Errorf("cache entries grew from %d to %d over 900 change cycles", baseEntries, maxEntries)
	}
	if after > base+base/2+(8<<20) {
		t.Errorf("heap grew from %d to %d bytes over 900 change cycles", base, after)
	}
}
