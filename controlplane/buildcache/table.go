package buildcache

import (
	"sync"
	"sync/atomic"
)

// Table carries built output of type V across snapshots under keys of type K, valid while the
// fingerprint of its inputs (type P) is equal. It keeps two generations: entries used in the
// current generation and those of the previous one; Owner.Advance drops the rest. It is safe for
// concurrent use. Make one with NewTable.
type Table[K, P comparable, V any] struct {
	name string
	mu   sync.Mutex
	gen  uint64 // newest generation seen
	cur  map[K]*entry[P, V]
	prev map[K]*entry[P, V] // entries of the previous generation not used in this one
	counters
}

type entry[P comparable, V any] struct {
	print P
	value V
}

// NewTable returns an empty table named name (the metrics' cache label) owned by o.
func NewTable[K, P comparable, V any](o *Owner, name string) *Table[K, P, V] {
	t := &Table[K, P, V]{name: name, cur: make(map[K]*entry[P, V]), prev: make(map[K]*entry[P, V])}
	o.register(t)
	return t
}

// Get returns the value stored under key when it was built from inputs with fingerprint print,
// and otherwise builds, stores and returns a new one. gen is the generation of the snapshot
// being translated (its version); a newer one starts a new generation. build runs without the
// lock and may run more than once under contention, but every caller gets the one stored value.
func (t *Table[K, P, V]) Get(gen uint64, key K, print P, build func() V) V {
	t.mu.Lock()
	t.advance(gen)
	if e := t.lookup(key, print); e != nil {
		t.mu.Unlock()
		t.hits.Add(1)
		return e.value
	}
	t.mu.Unlock()
	t.misses.Add(1)
	v := build()
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.lookup(key, print); e != nil {
		return e.value // built concurrently: share the stored one
	}
	t.cur[key] = &entry[P, V]{print: print, value: v}
	return v
}

// Find returns the value stored under key for inputs with fingerprint print, if any.
func (t *Table[K, P, V]) Find(gen uint64, key K, print P) (V, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.advance(gen)
	if e := t.lookup(key, print); e != nil {
		t.hits.Add(1)
		return e.value, true
	}
	t.misses.Add(1)
	var zero V
	return zero, false
}

// Put stores value under key for inputs with fingerprint print, replacing the current
// generation's entry (the previous generation's, if any, stays findable under its own print until
// the generation ends).
func (t *Table[K, P, V]) Put(gen uint64, key K, print P, value V) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.advance(gen)
	t.cur[key] = &entry[P, V]{print: print, value: value}
}

// Keep moves the entry of key (if any) to the current generation, so that output reused through
// a parent outlives the generation it was built in.
func (t *Table[K, P, V]) Keep(gen uint64, key K) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.advance(gen)
	if _, ok := t.cur[key]; ok {
		return
	}
	if e, ok := t.prev[key]; ok {
		delete(t.prev, key)
		t.cur[key] = e
	}
}

// Ref returns a reference to key's entry, for lists of entries of several tables that a parent
// keeps together (see Refs).
func (t *Table[K, P, V]) Ref(key K) Ref { return tableRef[K, P, V]{t, key} }

// Len returns the number of entries held (both generations).
func (t *Table[K, P, V]) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.cur) + len(t.prev)
}

// lookup finds a valid entry in either generation, moving it to the current one. Called with
// t.mu held.
func (t *Table[K, P, V]) lookup(key K, print P) *entry[P, V] {
	if e, ok := t.cur[key]; ok && e.print == print {
		return e
	}
	if e, ok := t.prev[key]; ok && e.print == print {
		delete(t.prev, key)
		t.cur[key] = e
		return e
	}
	return nil
}

// advance starts generation gen if it is newer: what the previous generation did not use is
// evicted. Called with t.mu held.
func (t *Table[K, P, V]) advance(gen uint64) {
	if gen <= t.gen {
		return
	}
	t.gen = gen
	t.evictions.Add(int64(len(t.prev)))
	t.prev, t.cur = t.cur, make(map[K]*entry[P, V], len(t.cur))
}

func (t *Table[K, P, V]) rotate(gen uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.advance(gen)
}

func (t *Table[K, P, V]) stats() (string, *counters, int) { return t.name, &t.counters, t.Len() }

// Ref names one entry of a Table, whatever its types.
type Ref interface {
	// Keep moves the entry to generation gen's (see Table.Keep).
	Keep(gen uint64)
}

type tableRef[K, P comparable, V any] struct {
	t   *Table[K, P, V]
	key K
}

func (r tableRef[K, P, V]) Keep(gen uint64) { r.t.Keep(gen, r.key) }

// Refs are the entries a value is made of. A value carried over keeps them alive with it:
// Keep moves them to the current generation once per generation, however many proxies reuse
// the value. Safe for concurrent use; the list is set once before the value is shared.
type Refs struct {
	List []Ref
	kept atomic.Uint64
}

// Keep moves every entry of r to generation gen, once per generation.
func (r *Refs) Keep(gen uint64) {
	if r == nil || r.kept.Swap(gen) == gen {
		return
	}
	for _, ref := range r.List {
		ref.Keep(gen)
	}
}

// counters are a cache's read and eviction counts.
type counters struct {
	hits, misses, evictions atomic.Int64
}
