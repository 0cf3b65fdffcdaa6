package xds

import (
	"slices"

	"github.com/cespare/xxhash/v2"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// Update order within one proxy (make before break).
//
// Envoy's xDS protocol guidance for ADS: CDS updates first, then the EDS updates of their
// clusters, then LDS, then RDS; clusters (and endpoints) no longer referenced are removed only
// after that. A route that names a cluster the client does not have yet fails ("unknown cluster
// selected for RPC" in gRPC's xDS client, NC in Envoy), and so does a route still naming a cluster
// that was already removed.
//
// Answering open watches in that order is not enough: a type's watch is open only once the client
// ACKed the previous response of that type, so a CDS update can be held back by a slow ACK while
// the RDS watch is open. A new snapshot whose clusters or endpoints changed therefore goes through
// phases, per node:
//
//	phase make:   CDS and EDS serve the new sets plus the resources they remove (the union with
//	              what was served before); LDS and RDS keep serving what they served before.
//	phase routes: once the stream holds the CDS and EDS of phase make (or does not subscribe to
//	              them), LDS and RDS serve the new sets.
//	done:         once the stream holds those, CDS and EDS serve the new sets: the removals.
//
// A snapshot that changes neither clusters nor endpoints is served at once. A snapshot arriving
// during a transition starts a new one from what is being served, so nothing a served route may
// still name is removed early. Union sets are memoized on the new set, shared by all proxies
// making the same transition.

// Transition phases of a nodeCache.
const (
	phaseDone = iota
	phaseMake
	phaseRoutes
)

// orderedTypes are the types a transition orders; other types (SDS) are served at once. Virtual
// hosts (VHDS) are routes: they move with RDS.
var orderedTypes = []string{resource.ClusterType, resource.EndpointType, resource.ListenerType, resource.RouteType, resource.VirtualHostType}

// retained is what a node served when a transition started, per ordered type.
type retained struct {
	cds, eds, lds, rds, vhds *typeSet
}

// view returns the set the node serves now for a type: the target snapshot's, or during a
// transition what the phase allows. Called with n.mu held.
func (n *nodeCache) view(typeURL string) *typeSet {
	set := n.snap.set(typeURL)
	if n.phase == phaseDone || n.retained == nil {
		return set
	}
	r := n.retained
	switch typeURL {
	case resource.ClusterType:
		return set.unionWith(r.cds)
	case resource.EndpointType:
		return set.unionWith(r.eds)
	case resource.ListenerType:
		if n.phase == phaseMake {
			return r.lds
		}
	case resource.RouteType:
		if n.phase == phaseMake {
			return r.rds
		}
	case resource.VirtualHostType:
		if n.phase == phaseMake {
			return r.vhds
		}
	}
	return set
}

// views returns the versions served now for the ordered types.
func (n *nodeCache) views() map[string]string {
	out := make(map[string]string, len(orderedTypes))
	for _, t := range orderedTypes {
		if s := n.view(t); s != nil {
			out[t] = s.version
		}
	}
	return out
}

// startTransition makes snap the node's target. Called with n.mu held.
func (n *nodeCache) startTransition(snap *proxySnapshot) {
	old := n.snap
	if old == nil {
		n.snap, n.phase, n.retained = snap, phaseDone, nil
		return
	}
	r := &retained{cds: n.view(resource.ClusterType), eds: n.view(resource.EndpointType),
		lds: n.view(resource.ListenerType), rds: n.view(resource.RouteType), vhds: n.view(resource.VirtualHostType)}
	n.snap = snap
	if versionOf(r.cds) == snap.version(resource.ClusterType) && versionOf(r.eds) == snap.version(resource.EndpointType) {
		n.phase, n.retained = phaseDone, nil // no cluster or endpoint changes: nothing to order
		return
	}
	n.phase, n.retained = phaseMake, r
}

// advance moves the transition on as far as what the stream holds allows, and returns the
// versions served before, for answering watches whose view changed (nil when nothing moved).
// Called with n.mu held.
func (n *nodeCache) advance() map[string]string {
	var before map[string]string
	for {
		switch {
		case n.phase == phaseMake && n.settled(resource.ClusterType) && n.settled(resource.EndpointType):
			if before == nil {
				before = n.views()
			}
			n.phase = phaseRoutes
		case n.phase == phaseRoutes && n.settled(resource.ListenerType) && n.settled(resource.RouteType) && n.settled(resource.VirtualHostType):
			if before == nil {
				before = n.views()
			}
			n.phase, n.retained = phaseDone, nil
		default:
			return before
		}
	}
}

// settled reports whether the stream holds the view of a type: its last response (or the check
// that found nothing to send) was for the view's version, or it never subscribed to the type.
func (n *nodeCache) settled(typeURL string) bool {
	if !n.subscribed[typeURL] {
		return true
	}
	return n.settledAt[typeURL] == versionOf(n.view(typeURL))
}

func versionOf(s *typeSet) string {
	if s == nil {
		return ""
	}
	return s.version
}

// unionWith returns s plus the resources of old that s no longer has (at old's version): what a
// client may hold while routes that name them may still be in use. It is s itself when nothing is
// removed. Computed once per (s, old) and shared.
func (s *typeSet) unionWith(old *typeSet) *typeSet {
	if s == nil || old == nil || old == s || old.version == s.version {
		return s
	}
	d := s.diffFrom(old)
	if len(d.removed) == 0 {
		return s
	}
	if u, ok := s.unions.Load(old.version); ok {
		return u
	}
	h := xxhash.New()
	_, _ = h.WriteString("union\x00" + s.version + "\x00" + old.version)
	u := &typeSet{typeURL: s.typeURL, version: hashHex(h.Sum64()),
		wire: make(map[string]*discovery.Resource, len(s.wire)+len(d.removed))}
	for name, r := range s.wire {
		u.wire[name] = r
	}
	u.bytes = s.bytes
	for _, name := range d.removed {
		u.wire[name] = old.wire[name]
		u.bytes += int64(len(old.wire[name].GetResource().GetValue()))
	}
	u.names = append(append(make([]string, 0, len(u.wire)), s.names...), d.removed...)
	slices.Sort(u.names)
	return s.unions.LoadOrStore(old.version, u)
}
