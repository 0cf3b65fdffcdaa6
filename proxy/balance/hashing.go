package balance

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strconv"

	"github.com/cespare/xxhash/v2"
)

// ring is Envoy's RING_HASH (ketama-style consistent hashing). Each host owns a number of points
// on a 64-bit ring proportional to its weight; the points are xxHash64 (seed 0) of "<key>_<n>".
// The ring size is the smallest multiple of the host weights that gives the lightest host at
// least min_ring_size×its share, capped at max_ring_size, as in Envoy. A request hash maps to the
// first point at or after it (wrapping), so the same hash reaches the same host while the set is
// unchanged, and adding or removing a host only moves the keys adjacent to its points.
type ring struct {
	hashes []uint64 // sorted
	hosts  []int32  // hosts[i] owns hashes[i]
}

var _ picker = (*ring)(nil)

func newRing(hosts []Host, idx []int, minSize, maxSize uint64) (*ring, error) {
	var total float64
	for _, h := range idx {
		total += float64(hosts[h].Weight)
	}
	minNorm := math.MaxFloat64
	for _, h := range idx {
		minNorm = min(minNorm, float64(hosts[h].Weight)/total)
	}
	scale := min(math.Ceil(minNorm*float64(minSize))/minNorm, float64(maxSize))
	size := uint64(math.Ceil(scale))
	if size > maxSize {
		size = maxSize
	}
	r := &ring{hashes: make([]uint64, 0, size+uint64(len(idx))), hosts: make([]int32, 0, size+uint64(len(idx)))}
	var target float64
	var cur uint64
	buf := make([]byte, 0, 64)
	for _, h := range idx {
		target += scale * float64(hosts[h].Weight) / total
		for n := 0; float64(cur) < target && cur < maxSize; n++ {
			buf = append(buf[:0], hosts[h].Key...)
			buf = append(buf, '_')
			buf = strconv.AppendInt(buf, int64(n), 10)
			r.hashes = append(r.hashes, xxhash.Sum64(buf))
			r.hosts = append(r.hosts, int32(h))
			cur++
		}
	}
	if len(r.hashes) == 0 {
		return nil, fmt.Errorf("ring hash: empty ring for %d hosts", len(idx))
	}
	sort.Sort(byHash{r})
	return r, nil
}

type byHash struct{ r *ring }

func (b byHash) Len() int { return len(b.r.hashes) }
func (b byHash) Less(i, j int) bool {
	if b.r.hashes[i] != b.r.hashes[j] {
		return b.r.hashes[i] < b.r.hashes[j]
	}
	return b.r.hosts[i] < b.r.hosts[j]
}
func (b byHash) Swap(i, j int) {
	b.r.hashes[i], b.r.hashes[j] = b.r.hashes[j], b.r.hashes[i]
	b.r.hosts[i], b.r.hosts[j] = b.r.hosts[j], b.r.hosts[i]
}

func (r *ring) pick(c Context) int {
	h := mix(c.Hash)
	if !c.HasHash {
		h = rand.Uint64()
	}
	lo, hi := 0, len(r.hashes)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if r.hashes[m] < h {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == len(r.hashes) {
		lo = 0
	}
	return int(r.hosts[lo])
}

// maglev is Envoy's MAGLEV: the lookup table of the Maglev paper (Eisenbud et al., NSDI 2016,
// section 3.4). Each host has a permutation of the table slots given by offset = h1(key) mod M and
// skip = h2(key) mod (M-1) + 1 (h1, h2 = xxHash64 of the key with seeds 0 and 1); hosts take
// turns claiming their next free preferred slot until the table is full. Weights follow Envoy's
// extension: a host claims a slot in a round only when its accumulated weight credit reaches the
// heaviest host's weight, so heavier hosts fill proportionally more slots. A request goes to
// table[hash mod M]; the table changes little when a host is added or removed.
type maglev struct {
	table []int32
}

var _ picker = (*maglev)(nil)

func newMaglev(hosts []Host, idx []int, m uint64) *maglev {
	type entry struct {
		host         int32
		offset, skip uint64
		next         uint64
		weight       float64
		credit       float64
	}
	entries := make([]entry, len(idx))
	var maxW float64
	for i, h := range idx {
		key := hosts[h].Key
		d := xxhash.NewWithSeed(1)
		_, _ = d.WriteString(key)
		entries[i] = entry{
			host:   int32(h),
			offset: xxhash.Sum64String(key) % m,
			skip:   d.Sum64()%(m-1) + 1,
			weight: float64(hosts[h].Weight),
		}
		maxW = max(maxW, entries[i].weight)
	}
	table := make([]int32, m)
	for i := range table {
		table[i] = -1
	}
	var filled uint64
	for filled < m {
		for i := range entries {
			if filled == m {
				break
			}
			e := &entries[i]
			e.credit += e.weight
			if e.credit < maxW {
				continue
			}
			e.credit -= maxW
			slot := (e.offset + e.skip*e.next) % m
			for table[slot] >= 0 {
				e.next++
				slot = (e.offset + e.skip*e.next) % m
			}
			table[slot] = e.host
			e.next++
			filled++
		}
	}
	return &maglev{table: table}
}

func (g *maglev) pick(c Context) int {
	h := mix(c.Hash)
	if !c.HasHash {
		h = rand.Uint64()
	}
	return int(g.table[h%uint64(len(g.table))])
}

// mix is a 64-bit finalizer (murmur3's fmix64). Request hashes come from l7's hash policies and
// may be weak in their high bits (FNV of keys that differ in the last byte lands in a narrow arc
// of the ring); mixing spreads them over the whole ring and table while keeping the mapping
// deterministic, so affinity is unchanged.
func mix(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}
