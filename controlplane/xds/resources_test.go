package xds

import (
	"fmt"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/strait-mesh/strait/controlplane/buildcache"
	"github.com/strait-mesh/strait/controlplane/translate"
)

// TestEqualResourcesShareOneMarshaledCopy builds equal resources as different objects (in
// different lists, as two generators or two snapshots would) and checks that they share one
// marshaled copy: the same bytes, not equal bytes.
func TestEqualResourcesShareOneMarshaledCopy(t *testing.T) {
	in := newInterner(buildcache.New())
	a1, a2 := testCluster("a", time.Second), testCluster("a", time.Second)
	if a1 == a2 {
		t.Fatal("the test needs two objects")
	}
	s1, err := in.snapshot(translate.Resources{resource.ClusterType: {a1}})
	if err != nil {
		t.Fatal(err)
	}
	s2, err := in.snapshot(translate.Resources{resource.ClusterType: {a2, testCluster("b", time.Second)}})
	if err != nil {
		t.Fatal(err)
	}
	b1 := s1.set(resource.ClusterType).wire["a"].GetResource().GetValue()
	b2 := s2.set(resource.ClusterType).wire["a"].GetResource().GetValue()
	if len(b1) == 0 || unsafe.SliceData(b1) != unsafe.SliceData(b2) {
		t.Fatalf("equal resources built as different objects have two marshaled copies (%p, %p)", unsafe.SliceData(b1), unsafe.SliceData(b2))
	}
	runtime.KeepAlive(a1)
	runtime.KeepAlive(a2)
}

// TestChangedResourceAtReusedAddressIsNotStale allocates resources, drops them, lets the
// collector free them and allocates resources of other content until one lands at an address
// a dropped one had (the allocator reuses freed slots of the same size class): each must be
// interned with its own content, never with the dropped object's memoized bytes.
func TestChangedResourceAtReusedAddressIsNotStale(t *testing.T) {
	in := newInterner(buildcache.New())
	const n = 2000
	seen := map[uintptr]string{} // address → content of a dropped object there
	for i := range n {
		c := testCluster(fmt.Sprintf("c%d", i), time.Second)
		s, err := in.snapshot(translate.Resources{resource.ClusterType: {c}})
		if err != nil {
			t.Fatal(err)
		}
		seen[uintptr(unsafe.Pointer(c))] = s.version(resource.ClusterType)
	}
	runtime.GC() // the clusters (and their lists) are unreachable: free them
	runtime.GC()
	reused := 0
	for i := range n {
		// The same names, other content: a stale memo entry would serve the old bytes.
		c := testCluster(fmt.Sprintf("c%d", i), time.Duration(i+2)*time.Second)
		want, err := newInterner(buildcache.New()).snapshot(translate.Resources{resource.ClusterType: {c}})
		if err != nil {
			t.Fatal(err)
		}
		got, err := in.snapshot(translate.Resources{resource.ClusterType: []types.Resource{c}})
		if err != nil {
			t.Fatal(err)
		}
		if got.version(resource.ClusterType) != want.version(resource.ClusterType) {
			t.Fatalf("cluster c%d at %p: version %s, want %s (stale memo)", i, c, got.version(resource.ClusterType), want.version(resource.ClusterType))
		}
		if old, ok := seen[uintptr(unsafe.Pointer(c))]; ok {
			reused++
			if old == got.version(resource.ClusterType) {
				t.Fatalf("cluster c%d at a reused address got the dropped object's version", i)
			}
		}
		runtime.KeepAlive(c)
	}
	if reused == 0 {
		t.Log("no address was reused in this run: the check above still ran on every object")
	}
	t.Logf("%d of %d new objects at a reused address", reused, n)
}

// TestInternerHoldsNothingAlive checks that the interner's tables shrink to what is alive.
func TestInternerHoldsNothingAlive(t *testing.T) {
	in := newInterner(buildcache.New())
	for i := range 1000 {
		if _, err := in.snapshot(translate.Resources{resource.ClusterType: {testCluster(fmt.Sprintf("c%d", i), time.Second)}}); err != nil {
			t.Fatal(err)
		}
	}
	for range 20 {
		runtime.GC()
		in.sweep()
		if in.objects.Len()+in.lists.Len()+in.blobs.Len()+in.sets.Len() < 50 {
			return
		}
	}
	t.Fatalf("after the objects were collected the interner holds %d objects, %d lists, %d blobs, %d sets",
		in.objects.Len(), in.lists.Len(), in.blobs.Len(), in.sets.Len())
}
