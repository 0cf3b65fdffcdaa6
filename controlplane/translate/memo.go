package translate

import (
	"sync"
)

// memo carries translation output from one snapshot to the next, so that output whose inputs did
// not change is the same objects as before: the xDS server then neither re-marshals it nor sees
// a new version. Entries are found by a key (what the output is: a service port's clusters, a
// cluster's load assignment, a scope's listeners) and valid while their inputs' fingerprint is
// equal (content hashes of the inputs, see mesh.Snapshot.ServiceHash and friends).
//
// The memo keeps two generations: entries used while translating the newest snapshot seen, and
// those of the one before. Every connected proxy is regenerated for each new snapshot, so what no
// proxy needed for two snapshots is dropped. It is safe for concurrent use.
type memo struct {
	mu      sync.Mutex
	version uint64 // newest snapshot version seen
	cur     map[any]*memoEntry
	prev    map[any]*memoEntry
}

// memoEntry is one memoized output and the fingerprint of the inputs it was built from.
type memoEntry struct {
	print any
	value any
}

func newMemo() *memo {
	return &memo{cur: make(map[any]*memoEntry), prev: make(map[any]*memoEntry)}
}

// get returns the value memoized under key when it was built from inputs with fingerprint print
// (a comparable value), and otherwise builds, stores and returns a new one. version is the
// snapshot being translated; a newer one starts a new generation. build runs without the lock
// and may run more than once under contention, but every caller gets the one stored value.
func (m *memo) get(version uint64, key, print any, build func() any) any {
	m.mu.Lock()
	if version > m.version {
		m.version = version
		m.prev, m.cur = m.cur, make(map[any]*memoEntry, len(m.cur))
	}
	if e := m.lookup(key, print); e != nil {
		m.mu.Unlock()
		return e.value
	}
	m.mu.Unlock()
	v := build()
	m.mu.Lock()
	defer m.mu.Unlock()
	if e := m.lookup(key, print); e != nil {
		return e.value // built concurrently: share the stored one
	}
	m.cur[key] = &memoEntry{print: print, value: v}
	return v
}

// put stores value under key for inputs with fingerprint print, replacing what was there.
func (m *memo) put(version uint64, key, print, value any) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if version > m.version {
		m.version = version
		m.prev, m.cur = m.cur, make(map[any]*memoEntry, len(m.cur))
	}
	m.cur[key] = &memoEntry{print: print, value: value}
}

// find returns the value memoized under key for inputs with fingerprint print, if any.
func (m *memo) find(version uint64, key, print any) (any, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if version > m.version {
		m.version = version
		m.prev, m.cur = m.cur, make(map[any]*memoEntry, len(m.cur))
	}
	if e := m.lookup(key, print); e != nil {
		return e.value, true
	}
	return nil, false
}

// keep moves the entries of keys (if any) to the current generation, so that output reused
// through a parent outlives the generation it was built in.
func (m *memo) keep(version uint64, keys []any) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if version > m.version {
		m.version = version
		m.prev, m.cur = m.cur, make(map[any]*memoEntry, len(m.cur))
	}
	for _, k := range keys {
		if _, ok := m.cur[k]; ok {
			continue
		}
		if e, ok := m.prev[k]; ok {
			m.cur[k] = e
		}
	}
}

// lookup finds a valid entry in either generation, moving it to the current one. Called with
// m.mu held.
func (m *memo) lookup(key, print any) *memoEntry {
	if e, ok := m.cur[key]; ok && e.print == print {
		return e
	}
	if e, ok := m.prev[key]; ok && e.print == print {
		m.cur[key] = e
		return e
	}
	return nil
}
