package buildcache

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// Slot names one typed map of values shared by the proxies of a snapshot, present in every
// Store. Declare slots as package variables with NewSlot; a slot's name is its metrics label.
type Slot[K comparable, V any] struct {
	*slotInfo
}

// slotInfo is what the metrics and the Store need of a Slot of any types.
type slotInfo struct {
	id   int
	name string
	counters
	live atomic.Int64 // entries in live Stores
}

var slots struct {
	mu   sync.Mutex
	list []*slotInfo
}

// NewSlot registers a slot named name.
func NewSlot[K comparable, V any](name string) Slot[K, V] {
	slots.mu.Lock()
	defer slots.mu.Unlock()
	s := &slotInfo{id: len(slots.list), name: name}
	slots.list = append(slots.list, s)
	return Slot[K, V]{s}
}

func allSlots() []*slotInfo {
	slots.mu.Lock()
	defer slots.mu.Unlock()
	return slots.list
}

// Store holds the values of every Slot for one snapshot; it lives as long as its snapshot. The
// zero value is ready to use and it must not be copied after first use.
type Store struct {
	mu    sync.Mutex
	inner *storeInner
}

// storeInner is allocated on first use, so that its cleanup runs when the Store (and with it the
// snapshot) is collected and the slots' live counts go down.
type storeInner struct {
	maps   []any    // by slot id: *slotMap[K, V] of that slot's types
	counts *[]int64 // by slot id: entries stored; read by the cleanup
}

type slotMap[K comparable, V any] struct {
	mu sync.Mutex
	m  map[K]V
}

func (st *Store) slotMap(id int) any {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.inner == nil {
		counts := new([]int64)
		st.inner = &storeInner{counts: counts}
		runtime.AddCleanup(st.inner, release, counts)
	}
	in := st.inner
	for len(in.maps) <= id {
		in.maps = append(in.maps, nil)
		*in.counts = append(*in.counts, 0)
	}
	return in.maps[id]
}

// release returns a collected store's entries from the slots' live counts.
func release(counts *[]int64) {
	list := allSlots()
	for id, n := range *counts {
		if n != 0 && id < len(list) {
			list[id].live.Add(-n)
		}
	}
}

func (s Slot[K, V]) typed(st *Store) *slotMap[K, V] {
	if m, _ := st.slotMap(s.id).(*slotMap[K, V]); m != nil {
		return m
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if m, _ := st.inner.maps[s.id].(*slotMap[K, V]); m != nil {
		return m
	}
	m := &slotMap[K, V]{m: make(map[K]V)}
	st.inner.maps[s.id] = m
	return m
}

// Get returns the value stored in st under key, computing it with build on first use. build runs
// without locks (it may itself use the store) and may run more than once under contention; one
// result wins and every caller gets it.
func (s Slot[K, V]) Get(st *Store, key K, build func() V) V {
	m := s.typed(st)
	m.mu.Lock()
	v, ok := m.m[key]
	m.mu.Unlock()
	if ok {
		s.hits.Add(1)
		return v
	}
	s.misses.Add(1)
	v = build()
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.m[key]; ok {
		return old
	}
	m.m[key] = v
	s.stored(st)
	return v
}

// Lookup returns the value stored in st under key, if any.
func (s Slot[K, V]) Lookup(st *Store, key K) (V, bool) {
	m := s.typed(st)
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.m[key]
	if ok {
		s.hits.Add(1)
	} else {
		s.misses.Add(1)
	}
	return v, ok
}

// stored counts a new entry of s in st. Called with the slot map's lock held.
func (s Slot[K, V]) stored(st *Store) {
	st.mu.Lock()
	(*st.inner.counts)[s.id]++
	st.mu.Unlock()
	s.live.Add(1)
}
