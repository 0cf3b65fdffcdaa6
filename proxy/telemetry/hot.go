package telemetry

import (
	"sync/atomic"
	"unsafe"
)

// hotSlots is the number of entries of a Recorder's cache of recent HTTP series (a power of
// two).
const hotSlots = 256

// hotSeries is a small direct-mapped cache of recently recorded HTTP series in front of the
// series table: a request whose label combination was recorded lately finds its series by
// comparing its key with the cached series' key instead of hashing the key for the table's
// map. Hashing a key costs some ten string hashes; comparing it is cheap, mostly because the
// strings of per-request keys share storage with the configuration they come from (cluster
// names, identities, the peer's labels), and Go compares strings that share storage without
// reading them.
//
// A slot holds an atomic pointer to a series, which never changes its key and is never removed
// from the table, so a hit is always the table's series for the key. Several goroutines read
// and replace slots at once; a key that collides with another in its slot only costs the
// table lookup. Safe for concurrent use; the zero value is empty.
type hotSeries struct {
	slots [hotSlots]atomic.Pointer[httpSeries]
}

// get returns the series of k from the cache, or from the table (creating it with flagText
// on first use) and then caches it; nil when the table refuses a new key. slot is k's slot,
// which the overridden series' cache mixes in.
func (c *hotSeries) get(t *table[httpKey, httpSeries], k *httpKey, flagText func(uint64) string) (s *httpSeries, slot uint) {
	slot = k.slot()
	p := &c.slots[slot]
	if s := p.Load(); s != nil && s.key.equal(k) {
		return s, slot
	}
	return c.miss(t, k, p, flagText), slot
}

// miss is get when the cache does not hold k: the table's series, cached in p. Not inlined: it
// keeps get's common path (and the closure the table creates a series with) out of the way.
//
//go:noinline
func (c *hotSeries) miss(t *table[httpKey, httpSeries], k *httpKey, p *atomic.Pointer[httpSeries], flagText func(uint64) string) *httpSeries {
	s := t.get(*k, func(k httpKey) *httpSeries { return &httpSeries{key: k, flagText: flagText} })
	if s != nil {
		p.Store(s)
	}
	return s
}

// hotOverSeries is hotSeries for the series of requests with istio.stats overrides
// (overrides.go): their key is the standard series, the overrides and the dimension values.
type hotOverSeries struct {
	slots [hotSlots]atomic.Pointer[overSeries]
}

// get returns the overridden series of k from the cache, or from the table (creating it with
// mk) and then caches it; nil when the table refuses a new key. baseSlot is the hotSeries slot
// of the standard series.
func (c *hotOverSeries) get(t *table[overKey[*httpSeries], overSeries], k *overKey[*httpSeries], baseSlot uint,
	mk func(overKey[*httpSeries]) *overSeries) *overSeries {
	h := uint64(baseSlot)
	for i := range k.dims {
		if k.dims[i] != "" {
			h = foldString(h^uint64(i), k.dims[i])
		}
	}
	p := &c.slots[finish(h)]
	if s := p.Load(); s != nil && s.okey == *k {
		return s
	}
	s := t.get(*k, mk)
	if s != nil {
		p.Store(s)
	}
	return s
}

// equal reports whether k and o are the same key (k == o): the numbers and the peer's
// workload first, then the strings' headers (data pointer and length) as one block of words,
// which are the same when the strings share storage, as a cached key's mostly do (see
// hotSeries); only keys whose strings do not are compared string by string (equalStrings).
func (k *httpKey) equal(o *httpKey) bool {
	if k.code != o.code || k.flags != o.flags || k.reporter != o.reporter || k.grpc != o.grpc || k.mtls != o.mtls ||
		k.peerWL != o.peerWL {
		return false
	}
	// Word by word without branches (^ binds no tighter than |: each term is parenthesized):
	// an array comparison would call memequal, whose loop costs more than these loads.
	a, b := k.stringWords(), o.stringWords()
	if ((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]) |
		(a[4] ^ b[4]) | (a[5] ^ b[5]) | (a[6] ^ b[6]) | (a[7] ^ b[7]) |
		(a[8] ^ b[8]) | (a[9] ^ b[9]) | (a[10] ^ b[10]) | (a[11] ^ b[11]) |
		(a[12] ^ b[12]) | (a[13] ^ b[13]) | (a[14] ^ b[14]) | (a[15] ^ b[15]) |
		(a[16] ^ b[16]) | (a[17] ^ b[17]) | (a[18] ^ b[18]) | (a[19] ^ b[19])) == 0 {
		return true
	}
	return k.equalStrings(o)
}

// keyStrings is the number of string fields of an httpKey, from grpcStatus to local.
const keyStrings = 10

// The string fields stringWords reads are contiguous, grpcStatus first and local last.
const _ = -uint(unsafe.Offsetof(httpKey{}.local) + unsafe.Sizeof(spiffeRef{}) -
	unsafe.Offsetof(httpKey{}.grpcStatus) - keyStrings*unsafe.Sizeof(""))

// stringWords returns the headers of k's strings (grpcStatus to local, contiguous) as words:
// equal words are equal strings, the converse holding for strings that share storage. The
// words are only compared, never turned back into pointers.
func (k *httpKey) stringWords() *[2 * keyStrings]uintptr {
	return (*[2 * keyStrings]uintptr)(unsafe.Pointer(&k.grpcStatus))
}

// equalStrings reports whether the strings of k and o are equal, byte by byte where they do
// not share storage. Not inlined: equal's rare path.
//
//go:noinline
func (k *httpKey) equalStrings(o *httpKey) bool {
	return same(k.cluster, o.cluster) && same(k.authority, o.authority) && same(k.grpcStatus, o.grpcStatus) &&
		same(k.service.Host, o.service.Host) && same(k.service.Name, o.service.Name) && same(k.service.Namespace, o.service.Namespace) &&
		same(k.peer.trustDomain, o.peer.trustDomain) && same(k.peer.path, o.peer.path) &&
		same(k.local.trustDomain, o.local.trustDomain) && same(k.local.path, o.local.path)
}

// same reports whether a == b, without a call for empty strings nor for strings that share
// storage (the common case of a cached key: see hotSeries), whose bytes are not compared.
func same(a, b string) bool {
	return len(a) == len(b) && (len(a) == 0 || unsafe.StringData(a) == unsafe.StringData(b) || a == b)
}

// slot returns the cache slot of k: a cheap mix of the key's numbers and strings, read eight
// bytes at a time (Go's map hash costs a call per field and string). Keys that share a slot
// cost a table lookup when they alternate, never a wrong series.
func (k *httpKey) slot() uint {
	h := uint64(k.code)<<32 ^ k.flags<<8 ^ uint64(k.reporter)
	if k.grpc {
		h ^= 1 << 7
	}
	// Most of the strings are empty in a given key: those are not folded.
	if k.grpcStatus != "" {
		h = foldString(h, k.grpcStatus)
	}
	if k.cluster != "" {
		h = foldString(h, k.cluster)
	}
	if k.authority != "" {
		h = foldString(h, k.authority)
	}
	if k.service.Host != "" {
		h = foldString(h, k.service.Host)
	}
	if k.peer.path != "" {
		h = foldString(h, k.peer.path)
	}
	if k.peerWL != nil {
		h ^= k.peerWL.hash
	}
	return finish(h)
}

// finish mixes h's bits and returns a slot.
func finish(h uint64) uint { return uint(mix(h)) & (hotSlots - 1) }

// mix spreads every bit of h over the low bits (foldString ends in a multiplication, whose low
// bits depend only on the low bits of what it multiplied): a slot taken from the low bits of
// a hash must come through it.
func mix(h uint64) uint64 {
	h ^= h >> 29
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 32
	return h
}

// foldString mixes s into h: its length and its bytes, a word at a time.
func foldString(h uint64, s string) uint64 {
	const m = 0x9e3779b97f4a7c15
	h = (h ^ uint64(len(s))) * m
	n := len(s)
	switch {
	case n >= 8:
	case n >= 4: // two four-byte loads, overlapping for fewer than eight bytes
		return (h ^ (uint64(word4(s)) | uint64(word4(s[n-4:]))<<32)) * m
	default:
		var w uint64
		for i := 0; i < n; i++ {
			w = w<<8 | uint64(s[i])
		}
		return (h ^ w) * m
	}
	for i := 0; i < n-8; i += 8 {
		h = (h ^ word(s[i:i+8])) * m
	}
	return (h ^ word(s[n-8:])) * m // the last eight bytes, overlapping the last word read
}

// word returns the first eight bytes of s (len(s) >= 8) as a little-endian number: one load.
func word(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// word4 returns the first four bytes of s (len(s) >= 4) as a little-endian number: one load.
func word4(s string) uint32 {
	_ = s[3]
	return uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24
}
