package buildcache

import "sync"

// Weak is a cache whose entries live as long as something else does: an object that a weak
// handle in the key names (weak.Pointer: a handle the runtime never gives to another object,
// even at a reused address), or bytes a weak pointer in the value names. live reports whether
// an entry's referent is still alive; dead entries are swept when the table has grown by half
// since the last sweep, and at a new generation (Owner.Advance) when it has grown by an eighth,
// so the table holds about what is alive without a pass over it for every snapshot. Keys are typed; it is safe for concurrent use. Make one with NewWeak.
type Weak[K comparable, V any] struct {
	name    string
	live    func(K, V) bool
	mu      sync.RWMutex
	m       map[K]V
	sweepAt int // sweep on Store at this size
	swept   int // size after the last sweep
	counters
}

// minSweep is the size below which a Weak table is swept only at new generations.
const minSweep = 20000

// NewWeak returns an empty table named name owned by o; live reports whether an entry is
// still needed.
func NewWeak[K comparable, V any](o *Owner, name string, live func(K, V) bool) *Weak[K, V] {
	w := &Weak[K, V]{name: name, live: live, m: make(map[K]V), sweepAt: minSweep}
	o.register(w)
	return w
}

// Load returns the value stored under key, if any. The caller checks that the value is the
// one for its object (its referent is alive and is the caller's).
func (w *Weak[K, V]) Load(key K) (V, bool) {
	w.mu.RLock()
	v, ok := w.m[key]
	w.mu.RUnlock()
	if ok {
		w.hits.Add(1)
	} else {
		w.misses.Add(1)
	}
	return v, ok
}

// Store stores v under key, replacing what was there, and sweeps when the table has grown.
func (w *Weak[K, V]) Store(key K, v V) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.m[key] = v
	if len(w.m) >= w.sweepAt {
		w.sweep()
	}
}

// LoadOrStore returns the value stored under key when it is live, and otherwise stores v and
// returns it.
func (w *Weak[K, V]) LoadOrStore(key K, v V) V {
	w.mu.Lock()
	defer w.mu.Unlock()
	if old, ok := w.m[key]; ok && w.live(key, old) {
		return old
	}
	w.m[key] = v
	return v
}

// Len returns the number of entries, live or not yet swept.
func (w *Weak[K, V]) Len() int {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return len(w.m)
}

// Sweep drops the entries that are no longer live.
func (w *Weak[K, V]) Sweep() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.sweep()
}

func (w *Weak[K, V]) sweep() {
	for k, v := range w.m {
		if !w.live(k, v) {
			delete(w.m, k)
			w.evictions.Add(1)
		}
	}
	w.swept = len(w.m)
	w.sweepAt = max(minSweep, len(w.m)*3/2)
}

func (w *Weak[K, V]) rotate(uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.m) > w.swept+w.swept/8 {
		w.sweep()
	}
}

func (w *Weak[K, V]) stats() (string, *counters, int) { return w.name, &w.counters, w.Len() }

// Derived holds values derived from one immutable parent (a diff of a set against an older
// set, by the older one's version) and lives as long as the parent: it is a field of the parent.
// The zero value is ready to use; it must not be copied after first use.
type Derived[K comparable, V any] struct {
	mu sync.Mutex
	m  map[K]V
}

// Load returns the value derived under key, if any.
func (d *Derived[K, V]) Load(key K) (V, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	v, ok := d.m[key]
	return v, ok
}

// LoadOrStore returns the value derived under key, storing v first if there is none.
func (d *Derived[K, V]) LoadOrStore(key K, v V) V {
	d.mu.Lock()
	defer d.mu.Unlock()
	if old, ok := d.m[key]; ok {
		return old
	}
	if d.m == nil {
		d.m = make(map[K]V)
	}
	d.m[key] = v
	return v
}
