package buildcache

import (
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/strait-mesh/strait/internal/testenv"
)

type portKey struct {
	host string
	port int
}

func TestTableReusesWhileThePrintIsEqual(t *testing.T) {
	o := New()
	tab := NewTable[portKey, uint64, *string](o, "test-reuse")
	builds := 0
	build := func(s string) func() *string { return func() *string { builds++; return &s } }
	a := tab.Get(1, portKey{"a", 80}, 7, build("a7"))
	if b := tab.Get(1, portKey{"a", 80}, 7, build("other")); b != a {
		t.Fatalf("same key and print: got a new value %q", *b)
	}
	if b := tab.Get(2, portKey{"a", 80}, 7, build("other")); b != a {
		t.Fatalf("next generation, same print: got a new value %q", *b)
	}
	if b := tab.Get(2, portKey{"a", 80}, 8, build("a8")); b == a || *b != "a8" {
		t.Fatalf("changed print: got %q, want a new value", *b)
	}
	if _, ok := tab.Find(2, portKey{"a", 81}, 7); ok {
		t.Fatal("Find of an absent key found something")
	}
	if builds != 2 {
		t.Fatalf("%d builds, want 2", builds)
	}
}

func TestTableEvictsWhatTwoGenerationsDidNotUse(t *testing.T) {
	o := New()
	tab := NewTable[string, struct{}, int](o, "test-evict")
	other := NewTable[string, struct{}, int](o, "test-evict-untouched")
	tab.Put(1, "used", struct{}{}, 1)
	tab.Put(1, "unused", struct{}{}, 2)
	tab.Put(1, "kept", struct{}{}, 3)
	other.Put(1, "x", struct{}{}, 4)
	o.Advance(2)
	tab.Get(2, "used", struct{}{}, func() int { t.Fatal("rebuilt a used entry"); return 0 })
	tab.Ref("kept").Keep(2)
	o.Advance(3)
	if _, ok := tab.Find(3, "unused", struct{}{}); ok {
		t.Fatal("an entry no generation used for two generations survived")
	}
	for _, k := range []string{"used", "kept"} {
		if _, ok := tab.Find(3, k, struct{}{}); !ok {
			t.Fatalf("entry %q used in the previous generation was evicted", k)
		}
	}
	if other.Len() != 0 {
		t.Fatalf("a table no generation touched still holds %d entries", other.Len())
	}
	o.Advance(2) // older: ignored
	if _, ok := tab.Find(3, "used", struct{}{}); !ok {
		t.Fatal("an older Advance evicted entries")
	}
}

func TestRefsKeepOncePerGeneration(t *testing.T) {
	o := New()
	tab := NewTable[int, struct{}, int](o, "test-refs")
	for i := range 3 {
		tab.Put(1, i, struct{}{}, i)
	}
	refs := &Refs{List: []Ref{tab.Ref(0), tab.Ref(2)}}
	o.Advance(2)
	refs.Keep(2)
	refs.Keep(2)
	o.Advance(3)
	if tab.Len() != 2 {
		t.Fatalf("%d entries after the kept generation, want the 2 kept", tab.Len())
	}
}

func TestSlotSharesPerStore(t *testing.T) {
	slot := NewSlot[portKey, *int]("test-slot")
	var st1, st2 Store
	n := 0
	build := func() *int { n++; v := n; return &v }
	a := slot.Get(&st1, portKey{"a", 1}, build)
	if b := slot.Get(&st1, portKey{"a", 1}, build); b != a {
		t.Fatal("one store, one key: two values")
	}
	if b := slot.Get(&st2, portKey{"a", 1}, build); b == a {
		t.Fatal("two stores share a value")
	}
	if v, ok := slot.Lookup(&st1, portKey{"a", 2}); ok {
		t.Fatalf("Lookup of an absent key: %v", v)
	}
	// Nested use of the same store from build (translation does this).
	outer := NewSlot[string, int]("test-slot-outer")
	if got := outer.Get(&st1, "x", func() int { return *slot.Get(&st1, portKey{"b", 1}, build) * 10 }); got != 30 {
		t.Fatalf("nested Get = %d, want 30", got)
	}
}

// TestMemoryBoundedOverChangeCycles runs 1,000 change cycles, each a new generation that
// rebuilds a tenth of the entries with a new print and a new per-snapshot store, and checks that
// neither the entries held nor the heap grow with the number of cycles.
func TestMemoryBoundedOverChangeCycles(t *testing.T) {
	o := New()
	tab := NewTable[portKey, uint64, []byte](o, "test-cycles")
	slot := NewSlot[portKey, []byte]("test-cycles-slot")
	const keys = 500
	prints := make([]uint64, keys)
	cycle := func(gen uint64) {
		o.Advance(gen)
		var st Store // the snapshot's store
		for i := range keys {
			if i%10 == int(gen%10) {
				prints[i] = gen // a tenth of the inputs changed
			}
			k := portKey{"svc", i}
			slot.Get(&st, k, func() []byte {
				return tab.Get(gen, k, prints[i], func() []byte { return make([]byte, 1024) })
			})
		}
	}
	heap := testenv.HeapAfterGC
	for gen := uint64(1); gen <= 100; gen++ {
		cycle(gen)
	}
	base := heap()
	maxEntries := 0
	for gen := uint64(101); gen <= 1000; gen++ {
		cycle(gen)
		maxEntries = max(maxEntries, tab.Len())
	}
	after := heap()
	if maxEntries > 2*keys {
		t.Errorf("the table held up to %d entries, want at most two generations (%d)", maxEntries, 2*keys)
	}
	// 900 cycles rebuild 45,000 entries of 1 KiB (44 MiB): an unbounded cache would hold them.
	if after > base+4<<20 {
		t.Errorf("heap grew from %d to %d bytes over 900 change cycles", base, after)
	}
	// The collected stores gave their entries back (cleanups run after a GC, asynchronously).
	for range 50 {
		if slot.live.Load() <= keys {
			break
		}
		heap()
	}
	if n := slot.live.Load(); n > keys {
		t.Errorf("slot counts %d live entries after the stores were collected, want at most %d", n, keys)
	}
}

func TestMetrics(t *testing.T) {
	o := New()
	tab := NewTable[string, struct{}, int](o, "test-metrics")
	tab.Get(1, "a", struct{}{}, func() int { return 1 })
	tab.Get(1, "a", struct{}{}, func() int { return 1 })
	tab.Put(1, "b", struct{}{}, 2)
	o.Advance(2)
	o.Advance(3)
	reg := prometheus.NewRegistry()
	reg.MustRegister(o)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			labels := ""
			for _, l := range m.GetLabel() {
				labels += l.GetName() + "=" + l.GetValue() + ","
			}
			if !strings.Contains(labels, "cache=test-metrics,") {
				continue
			}
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			got[fmt.Sprintf("%s{%s}", f.GetName(), labels)] = v
		}
	}
	want := map[string]float64{
		"strait_build_cache_reads_total{cache=test-metrics,type=hit,}":  1,
		"strait_build_cache_reads_total{cache=test-metrics,type=miss,}": 1,
		"strait_build_cache_size{cache=test-metrics,}":                  0,
		"strait_build_cache_evictions_total{cache=test-metrics,}":       2,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
}
