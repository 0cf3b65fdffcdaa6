package telemetry

import (
	"sync"
	"sync/atomic"
)

// table interns label combinations: it maps a small comparable key of per-request values to
// its series, created once. Lookups of known keys read an immutable map through an atomic
// pointer (no lock, no allocation); a miss takes the mutex and finds or creates the series in
// the complete map, which is copied to the read map after as many misses as it has entries
// (the amortization of sync.Map). At most max series exist; a key beyond that is refused.
type table[K comparable, V any] struct {
	read   atomic.Pointer[map[K]*V]
	mu     sync.Mutex
	all    map[K]*V // every series; guarded by mu
	list   []*V     // every series in creation order; guarded by mu
	misses int      // guarded by mu
	max    int
}

func newTable[K comparable, V any](max int) *table[K, V] {
	t := &table[K, V]{all: make(map[K]*V), max: max}
	m := make(map[K]*V)
	t.read.Store(&m)
	return t
}

// get returns the series of k, creating it with mk on first use; nil when the cap is reached.
func (t *table[K, V]) get(k K, mk func(K) *V) *V {
	if v, ok := (*t.read.Load())[k]; ok {
		return v
	}
	return t.slow(k, mk)
}

func (t *table[K, V]) slow(k K, mk func(K) *V) *V {
	t.mu.Lock()
	defer t.mu.Unlock()
	v, ok := t.all[k]
	if !ok {
		if len(t.all) >= t.max {
			return nil
		}
		v = mk(k)
		t.all[k] = v
		t.list = append(t.list, v)
	}
	t.misses++
	if t.misses >= len(t.all) {
		m := make(map[K]*V, len(t.all))
		for k, v := range t.all {
			m[k] = v
		}
		t.read.Store(&m)
		t.misses = 0
	}
	return v
}

// series returns every series (creation order).
func (t *table[K, V]) series() []*V {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]*V(nil), t.list...)
}

// len returns the number of series.
func (t *table[K, V]) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.all)
}
