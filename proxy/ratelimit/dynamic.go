package ratelimit

import (
	"crypto/sha256"
	"sync"
)

// DefaultMaxDynamicDescriptors is Envoy's default max_dynamic_descriptors: the buckets one
// wildcard descriptor keeps.
const DefaultMaxDynamicDescriptors = 20

// maxExactKeyBytes bounds the bytes of a dynamic bucket's key that are kept as they are: a
// longer key (long header values) is kept as its SHA-256 digest, so a wildcard descriptor's
// memory is bounded by its bucket count whatever the requests carry.
const maxExactKeyBytes = 128

// wildcard is a configured descriptor with at least one entry without a value (Envoy's dynamic
// descriptors): each distinct request descriptor it matches gets a bucket of its own, created
// full on first use and kept in an LRU of at most max buckets; the least recently used one is
// dropped to make room (its client then starts again with a full bucket, as in Envoy).
type wildcard struct {
	entries []Entry // a "" value matches any value
	tb      TokenBucket
	clock   Clock
	max     int

	mu   sync.Mutex
	m    map[string]*lruNode
	head lruNode // sentinel: head.next is the most recently used
}

type lruNode struct {
	key        string
	b          *Bucket
	prev, next *lruNode
}

func newWildcard(d DescriptorConfig, max int, clock Clock) *wildcard {
	w := &wildcard{entries: d.Entries, tb: d.Bucket, clock: clock, max: max, m: map[string]*lruNode{}}
	w.head.prev, w.head.next = &w.head, &w.head
	return w
}

// isWildcard reports whether entries have an entry without a value.
func isWildcard(entries []Entry) bool {
	for _, e := range entries {
		if e.Value == "" {
			return true
		}
	}
	return false
}

// matches reports whether a request descriptor has the wildcard's keys, in order, and its
// values where it has them.
func (w *wildcard) matches(req []Entry) bool {
	if len(req) != len(w.entries) {
		return false
	}
	for i, e := range w.entries {
		if req[i].Key != e.Key || (e.Value != "" && req[i].Value != e.Value) {
			return false
		}
	}
	return true
}

// bucket returns the bucket of the request descriptor whose encoded key is key, creating it (and
// dropping the least recently used one when full) on first use.
func (w *wildcard) bucket(key []byte) *Bucket {
	if len(key) > maxExactKeyBytes {
		sum := sha256.Sum256(key)
		key = append(append(key[:0], 0xff), sum[:]...) // 0xff never starts a short key's encoding
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if n := w.m[string(key)]; n != nil {
		w.unlink(n)
		w.pushFront(n)
		return n.b
	}
	var n *lruNode
	if len(w.m) >= w.max {
		n = w.head.prev // the least recently used: reused for the new key
		w.unlink(n)
		delete(w.m, n.key)
	} else {
		n = &lruNode{}
	}
	n.key, n.b = string(key), NewBucket(w.tb, w.clock)
	w.m[n.key] = n
	w.pushFront(n)
	return n.b
}

// Len is the number of buckets kept.
func (w *wildcard) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.m)
}

func (w *wildcard) unlink(n *lruNode) {
	n.prev.next, n.next.prev = n.next, n.prev
	n.prev, n.next = nil, nil
}

func (w *wildcard) pushFront(n *lruNode) {
	n.prev, n.next = &w.head, w.head.next
	w.head.next.prev = n
	w.head.next = n
}
