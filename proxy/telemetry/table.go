package telemetry

import (
	"sync"
	"sync/atomic"
)

// table interns label combinations: it maps a small comparable key of per-request values to
// its series, created once. Lookups of known keys read an immutable map through an atomic
// pointer (no lock, no allocation); a miss takes the mutex and finds or creates the series in
// the map of series created since the read map was built, which is merged into a new read map
// after as many misses as there are series (the amortization of sync.Map). Between merges a
// series is in one of the two maps, so each key is held once. At most max series exist; a key
// beyond that is refused.
type table[K comparable, V any] struct {
	read   atomic.Pointer[map[K]*V]
	mu     sync.Mutex
	dirty  map[K]*V // series not in *read; guarded by mu
	list   []*V     // every series in creation order; guarded by mu
	misses int      // guarded by mu
	max    int
}

func newTable[K comparable, V any](max int) *table[K, V] {
	t := &table[K, V]{dirty: make(map[K]*V), max: max}
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
	read := *t.read.Load() // only replaced under mu
	if v, ok := read[k]; ok {
		return v
	}
	v, ok := t.dirty[k]
	if !ok {
		if len(t.list) >= t.max {
			return nil
		}
		v = mk(k)
		t.dirty[k] = v
		t.list = append(t.list, v)
	}
	t.misses++
	if t.misses >= len(t.list) {
		m := make(map[K]*V, len(t.list))
		for k, v := range read {
			m[k] = v
		}
		for k, v := range t.dirty {
			m[k] = v
		}
		t.read.Store(&m)
		t.dirty = make(map[K]*V)
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
	return len(t.list)
}
