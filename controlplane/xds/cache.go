package xds

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// snapshotCache implements go-control-plane's cache.Cache over proxySnapshots. It replaces the
// library's SnapshotCache because, at a thousand proxies, that one costs too much per push: one
// global lock held while answering every watch, a re-marshal of every resource for every proxy,
// and a fresh version map per proxy and type even for types that did not change. Here:
//
//   - state and locks are per node;
//   - a new snapshot answers only the watches of types whose version changed;
//   - responses reference the typeSet's pre-marshaled resources, shared by all proxies;
//   - the Delta diff is memoized per pair of sets, and wildcard Delta streams hold placeholders
//     instead of copies of the returned-resource map (delta.go).
//
// Concurrency contract with the go-control-plane server (pkg/server/{sotw,delta}/v3): a watch's
// Subscription is not touched by the server while the watch is open, the server cancels a watch
// before it changes the subscription, and the subscription's returned-resource map belongs to that
// subscription alone. Responses are sent on the watch channel, which has room for one response per
// type, while holding the node lock, so cancellation never races a send.
type snapshotCache struct {
	mu    sync.RWMutex
	nodes map[string]*nodeCache
	fc    *flowControl // nil: no flow control (tests of the cache alone)

	watchID atomic.Int64
}

var _ cache.Cache = (*snapshotCache)(nil)

// nodeCache is the cache state of one node.
type nodeCache struct {
	mu      sync.Mutex
	snap    *proxySnapshot
	watches map[int64]*sotwWatch
	deltas  map[int64]*deltaWatch
	sent    map[string]string    // typeURL → version last sent in a SotW response
	memo    map[string]deltaMemo // typeURL → what the last Delta response left the stream with
	// placeholders are the recent placeholder maps handed to wildcard Delta streams, per type;
	// resubscribing marks types whose subscription a stream is changing (see delta.go).
	placeholders  map[string][]*placeholder
	resubscribing map[string]bool
	sotwHeld      map[string]sotwHold // typeURL → the placeholder of the last wildcard SotW response
	// The update order (order.go): the transition phase and what was served when it started,
	// the types the node's streams subscribed to, and the version each was last left holding.
	phase      int
	retained   *retained
	subscribed map[string]bool
	settledAt  map[string]string
	// Flow control (flow.go): a response waits for the server-wide byte budget; the node's share
	// of strait_xds_pending_pushes; the node was cleared (its proxy left).
	heldGlobal   bool
	pendingTypes int
	cleared      bool
	// On-demand answers (ondemand.go), per type: the target last answered per demanded name
	// ("" for not-found), and the names whose answer the proxy holds from an earlier stream.
	aliasSent map[string]map[string]string
	aliasHeld map[string]map[string]bool
}

// sotwHold identifies a placeholder returned-resources map handed to a wildcard SotW stream and
// the version it stands for.
type sotwHold struct {
	returned unsafe.Pointer
	version  string
}

type sotwWatch struct {
	req *cache.Request
	sub cache.Subscription
	ch  chan cache.Response
	f   *streamFlow
}

type deltaWatch struct {
	req *cache.DeltaRequest
	sub cache.Subscription
	ch  chan cache.DeltaResponse
	f   *streamFlow
}

// newSnapshotCache returns an empty cache; fc may be nil (no flow control).
func newSnapshotCache(fc *flowControl) *snapshotCache {
	return &snapshotCache{nodes: make(map[string]*nodeCache), fc: fc}
}

// streamWatcher is the cache as one stream's go-control-plane server sees it: its watches carry
// the stream's flow-control state.
type streamWatcher struct {
	c *snapshotCache
	f *streamFlow
}

var _ cache.ConfigWatcher = streamWatcher{}

// CreateWatch implements cache.ConfigWatcher for SotW.
func (w streamWatcher) CreateWatch(req *cache.Request, sub cache.Subscription, ch chan cache.Response) (func(), error) {
	return w.c.createWatch(req, sub, ch, w.f)
}

// CreateDeltaWatch implements cache.ConfigWatcher for Delta.
func (w streamWatcher) CreateDeltaWatch(req *cache.DeltaRequest, sub cache.Subscription, ch chan cache.DeltaResponse) (func(), error) {
	return w.c.createDeltaWatch(req, sub, ch, w.f)
}

// node returns the state of a node, creating it.
func (c *snapshotCache) node(id string) *nodeCache {
	c.mu.RLock()
	n := c.nodes[id]
	c.mu.RUnlock()
	if n != nil {
		return n
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if n = c.nodes[id]; n == nil {
		n = &nodeCache{watches: map[int64]*sotwWatch{}, deltas: map[int64]*deltaWatch{}, sent: map[string]string{},
			subscribed: map[string]bool{}, settledAt: map[string]string{}}
		c.nodes[id] = n
	}
	return n
}

// SetSnapshot makes snap the node's target resources and answers its open watches of types whose
// served version changed, in the order CDS, EDS, LDS, RDS, then the rest; clusters and endpoints
// go before the listeners and routes that use them, and removals after (order.go).
func (c *snapshotCache) SetSnapshot(id string, snap *proxySnapshot) {
	n := c.node(id)
	n.mu.Lock()
	defer n.mu.Unlock()
	defer c.settle(n)
	old := n.snap
	before := n.views()
	n.startTransition(snap)
	n.answer(func(typeURL string) bool {
		if old == nil {
			return true
		}
		if slices.Contains(orderedTypes, typeURL) {
			return before[typeURL] != versionOf(n.view(typeURL))
		}
		return old.version(typeURL) != snap.version(typeURL)
	})
}

// answer sends responses to the open watches of the types for which changed is true, in type
// order, then moves the transition on and answers what that releases. Called with n.mu held.
func (n *nodeCache) answer(changed func(typeURL string) bool) {
	for changed != nil {
		for _, wid := range sortedWatches(n.watches, func(w *sotwWatch) string { return w.req.GetTypeUrl() }) {
			w := n.watches[wid]
			if !changed(w.req.GetTypeUrl()) {
				continue
			}
			if resp := n.sotwResponse(w.req, w.sub, w.f); resp != nil {
				w.ch <- resp
				delete(n.watches, wid)
			}
		}
		for _, wid := range sortedWatches(n.deltas, func(w *deltaWatch) string { return w.req.GetTypeUrl() }) {
			w := n.deltas[wid]
			if !changed(w.req.GetTypeUrl()) || n.resubscribing[w.req.GetTypeUrl()] {
				continue // unchanged, or about to be replaced by a watch on the changed subscription
			}
			if resp := n.deltaResponse(w.req, w.sub, w.f); resp != nil {
				w.ch <- resp
				delete(n.deltas, wid)
			}
		}
		changed = n.released()
	}
}

// released advances the transition and returns which types' views that changed, or nil.
func (n *nodeCache) released() func(typeURL string) bool {
	before := n.advance()
	if before == nil {
		return nil
	}
	return func(typeURL string) bool {
		v, ordered := before[typeURL]
		return ordered && v != versionOf(n.view(typeURL))
	}
}

// Clear forgets a node; its streams are gone.
func (c *snapshotCache) Clear(id string) {
	c.mu.Lock()
	n := c.nodes[id]
	delete(c.nodes, id)
	c.mu.Unlock()
	if n == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if c.fc != nil && n.pendingTypes != 0 {
		c.fc.metrics.pendingPushes.Sub(float64(n.pendingTypes))
	}
	n.pendingTypes, n.cleared = 0, true
}

// CreateWatch implements cache.ConfigWatcher for SotW without flow control (see streamWatcher).
func (c *snapshotCache) CreateWatch(req *cache.Request, sub cache.Subscription, ch chan cache.Response) (func(), error) {
	return c.createWatch(req, sub, ch, nil)
}

// CreateDeltaWatch implements cache.ConfigWatcher for Delta without flow control.
func (c *snapshotCache) CreateDeltaWatch(req *cache.DeltaRequest, sub cache.Subscription, ch chan cache.DeltaResponse) (func(), error) {
	return c.createDeltaWatch(req, sub, ch, nil)
}

// createWatch serves a SotW request of the stream with flow state f: it answers at once when the
// node's snapshot has something new for the request (and flow control lets it), and otherwise
// keeps the watch until it does.
func (c *snapshotCache) createWatch(req *cache.Request, sub cache.Subscription, ch chan cache.Response, f *streamFlow) (func(), error) {
	n := c.node(req.GetNode().GetId())
	n.mu.Lock()
	defer n.mu.Unlock()
	f.bind(n)
	f.dropUnsent(req.GetTypeUrl()) // a response the server discarded for this request
	n.subscribed[req.GetTypeUrl()] = true
	defer c.settle(n)
	defer func() { n.answer(n.released()) }() // what this request settles may release other types
	if resp := n.sotwResponse(req, sub, f); resp != nil {
		ch <- resp
		return func() {}, nil
	}
	return addWatch(c, n, n.watches, &sotwWatch{req: req, sub: sub, ch: ch, f: f}), nil
}

// createDeltaWatch serves a Delta request of the stream with flow state f.
func (c *snapshotCache) createDeltaWatch(req *cache.DeltaRequest, sub cache.Subscription, ch chan cache.DeltaResponse, f *streamFlow) (func(), error) {
	n := c.node(req.GetNode().GetId())
	n.mu.Lock()
	defer n.mu.Unlock()
	f.bind(n)
	delete(n.resubscribing, req.GetTypeUrl()) // the subscription change, if any, is done
	n.subscribed[req.GetTypeUrl()] = true
	defer c.settle(n)
	defer func() { n.answer(n.released()) }() // what this request settles may release other types
	if resp := n.deltaResponse(req, sub, f); resp != nil {
		ch <- resp
		return nil, nil
	}
	return addWatch(c, n, n.deltas, &deltaWatch{req: req, sub: sub, ch: ch, f: f}), nil
}

// addWatch adds w to watches, one of n's (its lock held), and returns the function that removes it.
func addWatch[W any](c *snapshotCache, n *nodeCache, watches map[int64]W, w W) func() {
	id := c.watchID.Add(1)
	watches[id] = w
	return func() {
		n.mu.Lock()
		delete(watches, id)
		n.mu.Unlock()
	}
}

// Fetch implements cache.ConfigFetcher; Strait serves xDS over streams only.
func (c *snapshotCache) Fetch(context.Context, *cache.Request) (cache.Response, error) {
	return nil, errors.New("xds: REST fetch is not supported")
}

// sotwResponse builds the SotW response for a request, or nil when the client is up to date or
// NACKed the current version (it keeps its last good version until the next change), or when
// flow control holds it (f: a response of the type is outstanding, or the bytes do not fit).
// Called with n.mu held.
func (n *nodeCache) sotwResponse(req *cache.Request, sub cache.Subscription, f *streamFlow) cache.Response {
	typeURL := req.GetTypeUrl()
	set := n.view(typeURL)
	if set == nil {
		return nil // nothing of this type generated yet
	}
	if f.inFlight(typeURL) {
		return nil // answered after the ACK, from the newest snapshot
	}
	if req.GetErrorDetail() != nil && n.sent[typeURL] == set.version {
		n.settledAt[typeURL] = set.version
		return nil
	}
	returned := sub.ReturnedResources()
	if req.GetVersionInfo() == set.version {
		newName := false
		if sub.IsWildcard() && (n.sotwHeld[typeURL] == sotwHold{mapID(returned), set.version} || len(returned) == len(set.names)) {
			// The map is our placeholder for this very version, or was built for it (values are
			// the version): nothing is new.
		} else if sub.IsWildcard() {
			for name := range set.wire {
				if _, ok := returned[name]; !ok {
					newName = true
					break
				}
			}
		} else {
			for name := range sub.SubscribedResources() {
				_, known := returned[name]
				if _, ok := set.wire[name]; ok && !known {
					newName = true
					break
				}
			}
		}
		if !newName {
			n.settledAt[typeURL] = set.version
			return nil
		}
	}
	var anys []*anypb.Any
	var size int64
	next := make(map[string]string)
	if sub.IsWildcard() {
		// A wildcard stream holds exactly set after this response: an empty placeholder map
		// says so (see delta.go). If the stream later names resources, go-control-plane edits
		// the placeholder; the names it does not know are then sent again, which is harmless.
		anys = make([]*anypb.Any, 0, len(set.names))
		for _, name := range set.names {
			anys = append(anys, set.wire[name].GetResource())
		}
		size = set.bytes
	} else {
		for _, name := range sortedKeys(sub.SubscribedResources()) {
			if r, ok := set.wire[name]; ok {
				anys = append(anys, r.GetResource())
				next[r.GetName()] = set.version
				size += int64(len(r.GetResource().GetValue()))
			}
		}
	}
	if !n.reserve(f, typeURL, size) {
		return nil
	}
	if sub.IsWildcard() {
		if n.sotwHeld == nil {
			n.sotwHeld = make(map[string]sotwHold)
		}
		n.sotwHeld[typeURL] = sotwHold{mapID(next), set.version}
	}
	n.sent[typeURL] = set.version
	n.settledAt[typeURL] = set.version
	return &cache.PassthroughResponse{
		Request:           req,
		DiscoveryResponse: &discovery.DiscoveryResponse{VersionInfo: set.version, Resources: anys, TypeUrl: typeURL},
		ReturnedResources: next,
	}
}

func byName(a, b *discovery.Resource) int {
	switch {
	case a.GetName() < b.GetName():
		return -1
	case a.GetName() > b.GetName():
		return 1
	}
	return 0
}

// typeOrder is the order in which watches are answered: clusters before their endpoints,
// listeners before their routes.
var typeOrder = map[string]int{
	resource.ClusterType: 1, resource.EndpointType: 2, resource.ListenerType: 3, resource.RouteType: 4,
	resource.VirtualHostType: 5, resource.SecretType: 6,
}

func sortedWatches[W any](m map[int64]W, typeOf func(W) string) []int64 {
	ids := make([]int64, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	rank := func(id int64) int {
		if r, ok := typeOrder[typeOf(m[id])]; ok {
			return r
		}
		return int(types.UnknownType) + 10
	}
	slices.SortFunc(ids, func(a, b int64) int {
		if ra, rb := rank(a), rank(b); ra != rb {
			return ra - rb
		}
		return int(a - b)
	})
	return ids
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// reserve accounts a response of size bytes for the stream f, or records why it must wait (the
// stream's flow remembers a per-stream wait; a server-wide wait queues the node when the current
// operation ends, see snapshotCache.settle). Called with n.mu held.
func (n *nodeCache) reserve(f *streamFlow, typeURL string, size int64) bool {
	ok, global := f.reserve(typeURL, size)
	if !ok && global {
		n.heldGlobal = true
	}
	return ok
}
