package xds

import (
	"reflect"
	"slices"
	"unsafe"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
)

// What a Delta stream holds.
//
// go-control-plane's Delta server keeps, per stream and type, the map of resource names and
// versions the stream was sent (the subscription's "returned resources"), and hands it to the
// cache with every watch. A proxy with 3,000 clusters and 3,000 load assignments costs two maps of
// 3,000 entries, about 0.33 MiB per proxy: the largest part of a connected proxy's memory.
//
// For wildcard subscriptions (every resource of the type, as sidecars ask for CDS and LDS, and as
// the load benchmark asks for all types) the map is redundant once a response leaves the stream in
// sync with a typeSet: its content is exactly the set's names and versions. Such a response hands
// the server an empty placeholder map instead, and the node remembers which set the placeholder
// stands for. The placeholder is filled with the set's content (materialized) only when the
// content is needed:
//
//   - when the stream is about to change its subscription (invalidate, called before the server
//     mutates the map: it deletes unsubscribed names or marks them with an empty version), so that
//     the server's edits apply to the real content;
//   - when a placeholder turns up that the node's memo no longer describes (a response processed
//     after a later one was computed), from the short list of recent placeholders.
//
// While a subscription change is under way (between invalidate and the next CreateDeltaWatch,
// which the server calls right after changing the subscription) pushes do not answer that type's
// open watch: the server is about to cancel it, and the new watch answers from the changed
// subscription.

// placeholder is an empty returned-resources map standing for the content of set.
type placeholder struct {
	m      map[string]string
	set    *typeSet
	filled bool // materialized: m holds the real content now
}

// fill materializes the placeholder once.
func (p *placeholder) fill() {
	if p.filled {
		return
	}
	p.filled = true
	for _, name := range p.set.names {
		p.m[name] = p.set.wire[name].GetVersion()
	}
}

// recentPlaceholders bounds the placeholders a node remembers per type: at most one response of a
// type is in flight besides the last one processed.
const recentPlaceholders = 2

// deltaMemo records that a subscription's returned map (by identity) reflects a typeSet: the map
// content is set's (restricted to the subscribed names) or, with ph, implied by set.
type deltaMemo struct {
	returned unsafe.Pointer
	set      *typeSet
	ph       *placeholder // non-nil while the map is an unfilled placeholder
}

func mapID(m map[string]string) unsafe.Pointer { return reflect.ValueOf(m).UnsafePointer() }

// deltaResponse builds the Delta response for a request: the resources whose version differs from
// what the stream was sent, and the removals. It returns nil when there is nothing to send, except
// for the first wildcard request, which is always answered. A NACK therefore re-sends nothing.
// Flow control (f) holds the response while one of the type is outstanding on the stream or
// while its bytes do not fit: it returns nil and the watch stays open. Called with n.mu held.
//
// When the returned map is the one this node's last response produced for a known typeSet (the
// common case: an ACK, or a push after an ACK), the change is the shared, memoized diff between
// the two sets, so a push costs O(changes) per proxy instead of O(resources). Wildcard streams are
// handed placeholders (see above); other streams' maps are updated in place.
func (n *nodeCache) deltaResponse(req *cache.DeltaRequest, sub cache.Subscription, f *streamFlow) cache.DeltaResponse {
	if n.snap == nil {
		return nil
	}
	typeURL := req.GetTypeUrl()
	if f.inFlight(typeURL) {
		return nil // answered after the ACK, from the newest snapshot
	}
	set := n.view(typeURL)
	if set == nil {
		set = &typeSet{typeURL: typeURL} // a type this proxy gets nothing of
	}
	returned := sub.ReturnedResources()
	if returned == nil {
		returned = make(map[string]string)
	}
	id := mapID(returned)
	wildcard := sub.IsWildcard()
	m, ok := n.memo[typeURL]
	inMemo := ok && m.returned == id && (m.ph == nil || wildcard)
	if !inMemo {
		if m.ph != nil && m.returned == id {
			m.ph.fill() // no longer wildcard: the content is needed
		}
		for _, ph := range n.placeholders[typeURL] {
			if mapID(ph.m) == id {
				ph.fill()
			}
		}
	}
	var changed []*discovery.Resource
	var removed []string
	switch {
	case inMemo && m.set.version == set.version:
		// In sync: nothing to compute.
	case inMemo:
		d := set.diffFrom(m.set)
		changed, removed = d.changed, d.removed
		if !wildcard {
			subscribed := sub.SubscribedResources()
			changed = slices.DeleteFunc(slices.Clone(changed), func(r *discovery.Resource) bool {
				_, ok := subscribed[r.GetName()]
				return !ok
			})
			removed = slices.DeleteFunc(slices.Clone(removed), func(name string) bool {
				_, ok := returned[name]
				return !ok
			})
		}
	default:
		changed, removed = fullDiff(set, sub, returned)
		slices.SortFunc(changed, byName)
		slices.Sort(removed)
	}
	var answers []aliasAnswer
	if _, ok := demandTypes[typeURL]; ok {
		changed, removed, answers = n.answerDemands(typeURL, set, changed, removed)
	}
	if n.memo == nil {
		n.memo = make(map[string]deltaMemo)
	}
	if len(changed) == 0 && len(removed) == 0 && !(wildcard && req.GetResponseNonce() == "") {
		n.recordAnswers(typeURL, answers)  // held by the proxy already, if any
		n.settledAt[typeURL] = set.version // nothing to send
		memo := deltaMemo{returned: id, set: set}
		if inMemo && m.ph != nil {
			memo.ph = m.ph // still an unfilled placeholder, now for set (no difference)
			m.ph.set = set
		}
		n.memo[typeURL] = memo
		return nil
	}
	if !n.reserve(f, typeURL, deltaSize(changed, removed)) {
		return nil // the watch stays open; answered when the bytes fit
	}
	n.recordAnswers(typeURL, answers)
	n.settledAt[typeURL] = set.version
	next := returned
	if wildcard {
		// After this response the stream holds exactly set: a placeholder says so.
		ph := &placeholder{m: make(map[string]string), set: set}
		next = ph.m
		n.memo[typeURL] = deltaMemo{returned: mapID(next), set: set, ph: ph}
		n.rememberPlaceholder(typeURL, ph)
	} else {
		for _, r := range changed {
			returned[r.GetName()] = r.GetVersion()
		}
		for _, name := range removed {
			delete(returned, name)
		}
		n.memo[typeURL] = deltaMemo{returned: id, set: set}
	}
	return &cache.DeltaPassthroughResponse{
		DeltaRequest:   req,
		NextVersionMap: next,
		DeltaDiscoveryResponse: &discovery.DeltaDiscoveryResponse{
			Resources:         changed,
			RemovedResources:  removed,
			TypeUrl:           typeURL,
			SystemVersionInfo: set.version,
		},
	}
}

// deltaSize is the bytes a Delta response carries: its resources, names and versions, and the
// names it removes.
func deltaSize(changed []*discovery.Resource, removed []string) int64 {
	var n int64
	for _, r := range changed {
		n += int64(len(r.GetResource().GetValue()) + len(r.GetName()) + len(r.GetVersion()))
	}
	for _, name := range removed {
		n += int64(len(name))
	}
	return n
}

// rememberPlaceholder keeps the most recent placeholders of a type. Called with n.mu held.
func (n *nodeCache) rememberPlaceholder(typeURL string, ph *placeholder) {
	if n.placeholders == nil {
		n.placeholders = make(map[string][]*placeholder)
	}
	list := append(n.placeholders[typeURL], ph)
	if len(list) > recentPlaceholders {
		list = slices.Delete(list, 0, len(list)-recentPlaceholders)
	}
	n.placeholders[typeURL] = list
}

// fullDiff compares a set with what a subscription was sent, resource by resource.
func fullDiff(set *typeSet, sub cache.Subscription, returned map[string]string) (changed []*discovery.Resource, removed []string) {
	if sub.IsWildcard() {
		for name, r := range set.wire {
			if v, ok := returned[name]; !ok || v != r.GetVersion() {
				changed = append(changed, r)
			}
		}
		for name := range returned {
			if _, ok := set.wire[name]; !ok {
				removed = append(removed, name)
			}
		}
		return changed, removed
	}
	for name := range sub.SubscribedResources() {
		v, known := returned[name]
		if r, ok := set.wire[name]; ok {
			if !known || v != r.GetVersion() {
				changed = append(changed, r)
			}
		} else if known {
			removed = append(removed, name)
		}
	}
	return changed, removed
}

// invalidate is called when a Delta stream of the node is about to change its subscription to a
// type (resource names subscribed or unsubscribed), before the server edits the subscription:
// a placeholder the stream holds is filled so that the edits apply to real content, the memo is
// forgotten so that the next response is computed resource by resource, and pushes leave the
// type's open watch alone until the server opens the next one (CreateDeltaWatch).
func (c *snapshotCache) invalidate(id, typeURL string) {
	n := c.node(id)
	n.mu.Lock()
	defer n.mu.Unlock()
	if m, ok := n.memo[typeURL]; ok && m.ph != nil {
		m.ph.fill()
	}
	for _, ph := range n.placeholders[typeURL] {
		ph.fill()
	}
	delete(n.memo, typeURL)
	if n.resubscribing == nil {
		n.resubscribing = make(map[string]bool)
	}
	n.resubscribing[typeURL] = true
}

// setDiff is what changes between two typeSets of one type.
type setDiff struct {
	changed []*discovery.Resource // added or changed, sorted by name
	removed []string              // sorted
}

// diffFrom returns the diff from old to s, computed once per (old version, s) and shared.
func (s *typeSet) diffFrom(old *typeSet) *setDiff {
	if d, ok := s.diffs.Load(old.version); ok {
		return d
	}
	d := &setDiff{}
	for _, name := range s.names {
		r := s.wire[name]
		if o, ok := old.wire[name]; !ok || o.GetVersion() != r.GetVersion() {
			d.changed = append(d.changed, r)
		}
	}
	for _, name := range old.names {
		if _, ok := s.wire[name]; !ok {
			d.removed = append(d.removed, name)
		}
	}
	return s.diffs.LoadOrStore(old.version, d)
}
