package l7

import "github.com/strait-mesh/strait/proxy/route"

// What the connection manager keeps of a SnapshotEnv's answers, so that a request reaches its
// route table and cluster without a lookup by name (a map access hashing and comparing the
// string) while the Env's configuration does not change: each entry is for one Snapshot, and
// one of an earlier Snapshot is looked up again (and replaced) at its first use. Entries are
// stored only on a miss, once per Snapshot; nil answers are not kept.

// tableEntry is the route table h.rdsName named in Snapshot snap.
type tableEntry struct {
	snap *Snapshot
	t    *route.Table
}

// snapshotTable is routeTable's lookup through h.tcache.
func (h *Handler) snapshotTable() *route.Table {
	snap := h.snaps.Snapshot()
	if e := h.tcache.Load(); e != nil && e.snap == snap {
		return e.t
	}
	return h.lookupTable(snap)
}

// lookupTable asks the Env for the route table in snap and keeps it.
//
//go:noinline
func (h *Handler) lookupTable(snap *Snapshot) *route.Table {
	t := h.env.Route(h.rdsName)
	if t != nil {
		h.tcache.Store(&tableEntry{snap: snap, t: t})
	}
	return t
}

// clusterEntry is the cluster a route.Target's Name named in Snapshot snap, kept in the
// Target (route.Target.SetCached).
type clusterEntry struct {
	snap *Snapshot
	up   Upstream
}

// envCluster returns the Env's cluster s.Cluster: through the cache of s.Target when s.Cluster
// is the target's own cluster name and the Env is a SnapshotEnv, else by name.
func (h *Handler) envCluster(s *Stream) Upstream {
	t := s.Target
	if h.snaps == nil || t == nil || t.Name != s.Cluster {
		return h.env.Cluster(s.Cluster)
	}
	snap := h.snaps.Snapshot()
	if e, _ := t.Cached().(*clusterEntry); e != nil && e.snap == snap {
		return e.up
	}
	return h.lookupCluster(t, snap)
}

// lookupCluster asks the Env for t's cluster in snap and keeps it in t.
//
//go:noinline
func (h *Handler) lookupCluster(t *route.Target, snap *Snapshot) Upstream {
	up := h.env.Cluster(t.Name)
	if up != nil {
		t.SetCached(&clusterEntry{snap: snap, up: up})
	}
	return up
}
