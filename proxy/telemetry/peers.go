package telemetry

import (
	"hash/maphash"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/strait-mesh/strait/internal/workloadtable"
)

// Peer is a workload of the workload table as the metric labels name it: every field is set
// (Unknown where the table says nothing; CanonicalRevision "latest"). Peers are immutable and
// compared by pointer: a series key holds the *Peer of the request's peer.
type Peer struct {
	Workload
	// sidecar: every workload this entry stands for runs a sidecar.
	sidecar bool
	// hash is the maphash of the content (peerSeed), which a series key's cache slot mixes in
	// (hot.go).
	hash uint64
}

// peerContent is what makes two Peers equal; compiled tables reuse the previous table's Peer
// for equal content, so that a push which leaves a workload unchanged keeps its series.
type peerContent struct {
	Workload
	sidecar bool
}

// peerSeed hashes peerContent for the intern map, which is keyed by the hash alone (8 bytes
// instead of the content's 120): a collision only costs a new Peer (and so new series keys
// with the same labels, which render as one).
var peerSeed = maphash.MakeSeed()

// identity is a SPIFFE identity's namespace and service account.
type identity struct{ namespace, serviceAccount string }

// identityPeers are the workloads of one identity: merged holds the labels they all agree on
// (the only entry when they are one), byAddr the exact workload per address when they are
// several.
type identityPeers struct {
	merged *Peer
	byAddr map[netip.Addr]*Peer
}

// Peers is a compiled workload table (internal/workloadtable): lookups by address and by
// identity. It is immutable (but for a cache of its answers) and safe for concurrent use;
// lookups of known addresses do not allocate. A nil *Peers knows nobody.
type Peers struct {
	trustDomains []string
	byAddr       map[netip.Addr]*Peer
	byIdentity   map[identity]*identityPeers
	interned     map[uint64]*Peer // by maphash of the content
	workloads    int
	upstream     [upstreamSlots]atomic.Pointer[upstreamHit] // recent byUpstream answers
	identities   [upstreamSlots]atomic.Pointer[identityHit] // recent identity lookups (byID)
}

// identityHit is a cached byID answer: the workloads (nil: none) of a SPIFFE ID. It is
// immutable.
type identityHit struct {
	id    spiffeRef
	peers *identityPeers
}

// upstreamSlot is the slot in a table's cache of upstream hosts of the host whose
// foldString(0, host) is h. It takes the folded host, not the host, so that it is inlined
// (foldString is not): byUpstream runs one call fewer, and no function of its own.
func upstreamSlot(h uint64) uint64 { return mix(h) & (upstreamSlots - 1) }

// identitySlot is the slot of id in a table's cache of client identities.
func identitySlot(id spiffeRef) uint64 {
	return mix(foldString(foldString(0, id.trustDomain), id.path)) & (upstreamSlots - 1)
}

// upstreamSlots is the number of entries of a table's caches of upstream hosts and of client
// identities (a power of two).
const upstreamSlots = 128

// replace reports whether a cache miss replaces the entry of its slot: always when the slot
// is empty, else one time in eight, so that more keys than the cache holds (a cluster of many
// endpoints under round robin) cost the entry's allocation on one miss in eight rather than on
// each, while the cache still follows a change of the keys in use.
func replace[T any](slot *atomic.Pointer[T]) bool {
	return slot.Load() == nil || rand.Uint32()&7 == 0
}

// upstreamHit is a cached byUpstream answer: the workload (nil: none) at the upstream host
// "ip:port". It is immutable.
type upstreamHit struct {
	host string
	peer *Peer
}

// CompilePeers compiles a decoded workload table. prev, the table in force (nil for none),
// lends its Peers to equal entries. Several workloads on one address, or of one identity, are
// merged into one Peer that keeps the labels they agree on and is Unknown in the others.
func CompilePeers(t workloadtable.Table, prev *Peers) *Peers {
	p := &Peers{trustDomains: slices.Clone(t.TrustDomains), byAddr: make(map[netip.Addr]*Peer),
		byIdentity: make(map[identity]*identityPeers), interned: make(map[uint64]*Peer), workloads: len(t.Workloads)}
	intern := func(c peerContent) *Peer {
		h := maphash.Comparable(peerSeed, c)
		if e, ok := p.interned[h]; ok && c == (peerContent{e.Workload, e.sidecar}) {
			return e
		}
		e := &Peer{Workload: c.Workload, sidecar: c.sidecar, hash: h}
		if prev != nil {
			if old, ok := prev.interned[h]; ok && c == (peerContent{old.Workload, old.sidecar}) {
				e = old
			}
		}
		if _, taken := p.interned[h]; !taken {
			p.interned[h] = e
		}
		return e
	}
	addrs := make(map[netip.Addr][]peerContent)
	ids := make(map[identity][]peerContent)
	idAddrs := make(map[identity]map[netip.Addr][]peerContent)
	for _, w := range t.Workloads {
		c := peerContent{Workload: Workload{Name: first(w.Name), Namespace: first(w.Namespace), App: first(w.App),
			Version: first(w.Version), CanonicalService: first(w.CanonicalService),
			CanonicalRevision: firstOr(latest, w.CanonicalRevision), Cluster: first(w.Cluster)}, sidecar: w.Sidecar}
		id := identity{w.Namespace, w.ServiceAccount}
		if w.ServiceAccount != "" && w.Namespace != "" {
			ids[id] = append(ids[id], c)
		}
		for _, s := range w.Addresses {
			a, err := netip.ParseAddr(s)
			if err != nil {
				continue // Decode checked them
			}
			a = a.Unmap()
			addrs[a] = append(addrs[a], c)
			if w.ServiceAccount != "" && w.Namespace != "" {
				if idAddrs[id] == nil {
					idAddrs[id] = make(map[netip.Addr][]peerContent)
				}
				idAddrs[id][a] = append(idAddrs[id][a], c)
			}
		}
	}
	for a, cs := range addrs {
		p.byAddr[a] = intern(merge(cs))
	}
	for id, cs := range ids {
		ip := &identityPeers{merged: intern(merge(cs))}
		if distinct(cs) {
			ip.byAddr = make(map[netip.Addr]*Peer, len(idAddrs[id]))
			for a, acs := range idAddrs[id] {
				ip.byAddr[a] = intern(merge(acs))
			}
		}
		p.byIdentity[id] = ip
	}
	return p
}

// Len returns the number of workloads in the table.
func (p *Peers) Len() int {
	if p == nil {
		return 0
	}
	return p.workloads
}

// distinct reports whether the entries differ.
func distinct(cs []peerContent) bool {
	for _, c := range cs[1:] {
		if c != cs[0] {
			return true
		}
	}
	return false
}

// merge returns the content all of cs agree on, Unknown (revision "latest") elsewhere.
func merge(cs []peerContent) peerContent {
	m := cs[0]
	for _, c := range cs[1:] {
		same := func(dst *string, v, unknown string) {
			if *dst != v {
				*dst = unknown
			}
		}
		same(&m.Name, c.Name, Unknown)
		same(&m.Namespace, c.Namespace, Unknown)
		same(&m.App, c.App, Unknown)
		same(&m.Version, c.Version, Unknown)
		same(&m.CanonicalService, c.CanonicalService, Unknown)
		same(&m.CanonicalRevision, c.CanonicalRevision, latest)
		same(&m.Cluster, c.Cluster, Unknown)
		m.sidecar = m.sidecar && c.sidecar
	}
	return m
}

// firstOr returns the first non-empty value, or def.
func firstOr(def string, vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return def
}

// byAddress returns the workload at a, or nil.
func (p *Peers) byAddress(a netip.Addr) *Peer {
	if p == nil || !a.IsValid() {
		return nil
	}
	return p.byAddr[a.Unmap()]
}

// byUpstream returns the workload at an upstream host address "ip:port" (the host the cluster
// picked), or nil. The answers for recent hosts are cached in a direct-mapped cache of the
// table (which a new table starts empty), so that a host seen lately is found by comparing its
// address string, which usually shares storage with the cached one (the cluster's host),
// instead of parsing it: a miss parses, looks up and caches (one small allocation; see
// replace).
func (p *Peers) byUpstream(host string) *Peer {
	if p == nil || host == "" {
		return nil
	}
	slot := &p.upstream[upstreamSlot(foldString(0, host))]
	if h := slot.Load(); h != nil && same(h.host, host) {
		return h.peer
	}
	return p.upstreamMiss(host, slot)
}

// upstreamMiss is byUpstream when the cache's slot does not hold host: it parses and looks up
// the address, then caches the answer in slot. Not inlined: it keeps byUpstream's common path
// (a hit) short.
//
//go:noinline
func (p *Peers) upstreamMiss(host string, slot *atomic.Pointer[upstreamHit]) *Peer {
	var w *Peer
	if ap, err := netip.ParseAddrPort(host); err == nil {
		w = p.byAddress(ap.Addr())
	}
	if replace(slot) {
		slot.Store(&upstreamHit{host: host, peer: w})
	}
	return w
}

// downstream returns the client workload of an inbound connection. With a verified SPIFFE ID
// the candidates are the workloads of that identity (in one of the table's trust domains),
// narrowed to the one at the source address when they differ; nothing else is looked at, so
// the labels never contradict the identity. Without one (plaintext), the workload at the source
// address, but only when it runs a sidecar: Istio learns a plaintext peer's labels only from
// its sidecar's metadata exchange, and an address is not an identity (docs/observability.md).
func (p *Peers) downstream(id spiffeRef, src netip.Addr) *Peer {
	if p == nil {
		return nil
	}
	if id.trustDomain == "" {
		if w := p.byAddress(src); w != nil && w.sidecar {
			return w
		}
		return nil
	}
	ip := p.byID(id)
	if ip == nil {
		return nil
	}
	if ip.byAddr != nil && src.IsValid() {
		if w := ip.byAddr[src.Unmap()]; w != nil {
			return w
		}
	}
	return ip.merged
}

// byID returns the workloads of a verified SPIFFE ID (in one of the table's trust domains, of
// the form /ns/<namespace>/sa/<service account>), or nil. The answers for recent IDs are cached
// in a direct-mapped cache of the table, so that a client seen lately is found by comparing
// its ID (whose strings usually share storage with the cached ones: the connection's
// certificate) instead of parsing it and hashing its parts: a miss looks up and caches (one
// small allocation; see replace).
func (p *Peers) byID(id spiffeRef) *identityPeers {
	slot := &p.identities[identitySlot(id)]
	if h := slot.Load(); h != nil && same(h.id.path, id.path) && same(h.id.trustDomain, id.trustDomain) {
		return h.peers
	}
	ip := p.lookupID(id)
	if replace(slot) {
		slot.Store(&identityHit{id: id, peers: ip})
	}
	return ip
}

// lookupID is byID without the cache.
func (p *Peers) lookupID(id spiffeRef) *identityPeers {
	if !slices.Contains(p.trustDomains, id.trustDomain) {
		return nil
	}
	rest, ok := strings.CutPrefix(id.path, "/ns/")
	if !ok {
		return nil
	}
	ns, rest, ok := strings.Cut(rest, "/")
	if !ok {
		return nil
	}
	sa, ok := strings.CutPrefix(rest, "sa/")
	if !ok || strings.IndexByte(sa, '/') >= 0 {
		return nil
	}
	return p.byIdentity[identity{ns, sa}]
}
