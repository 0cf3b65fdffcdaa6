package translate

import (
	"github.com/strait-mesh/strait/internal/protoshallow"
	"slices"

	"github.com/cespare/xxhash/v2"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/registry"
	"github.com/strait-mesh/strait/controlplane/translate/listener"
)

// Outbound listener parts carried over between snapshots (issue 13, items 1 and 2).
//
// A scope's outbound listeners are virtualOutbound and a listener per service address
// (listener/byaddress.go): ~1,000 at 1,000 services. Any config change rebuilds the scope's
// outbound output; listenerParts makes the chains of a service port, and an address listener,
// the previous objects while their inputs' content is unchanged, so the xDS server neither
// re-marshals them nor sees a new list for every proxy. A scope's parts are one memo entry
// (a listenerTable under the scope's sidecar-out share key); chains are found by service port
// and reused while the fingerprint of their inputs (listener.Parts lists them) is equal, and an
// address listener is reused when it holds the same chain entries and equal small parts.

// listenerTableKey is the memo key of a scope's listenerTable.
type listenerTableKey struct{ shareKey }

// listenerTable holds the chains and address listeners one build used; it is not modified
// after the build that made it.
type listenerTable struct {
	version   uint64  // of the snapshot built from
	reports   []error // what the build reported (VirtualService tcp/tls routes not applied)
	print     uint64  // of the scope's telemetry and mesh config
	chains    map[chainsKey]*chainsEntry
	defaults  map[defaultChainKey]*listenerv3.FilterChain
	address   map[string]*addressListener
	listeners map[string]*listenerv3.Listener // virtualOutbound and egress listeners
	list      *listenerList                   // the build's listeners, in order
}

// chainsKey identifies the chains of one service port.
type chainsKey struct {
	svc   mesh.ServiceKey
	port  uint32
	bound bool
}

// chainsPrint is the fingerprint of a service port's chain inputs.
type chainsPrint struct {
	service uint64
	auto    bool // auto-allocated addresses (TLS chains do not match them)
	port    registry.Port
	rule    uint64 // the DestinationRule of the hostname
	routes  uint64 // the VirtualService tcp/tls routes, as translated
	scope   uint64 // telemetry and mesh config
}

type chainsEntry struct {
	print  chainsPrint
	chains []*listenerv3.FilterChain
	err    error
}

// listenerParts implements listener.Parts for one build.
type listenerParts struct {
	snap  *mesh.Snapshot
	w     mesh.Workload
	scope uint64
	old   *listenerTable // read only; nil on the first build
	table *listenerTable // being made
}

var _ listener.Parts = (*listenerParts)(nil)

// newListenerParts returns the parts of the scope's outbound listener build with share key key;
// telemetry is the client telemetry's key. Publish the table when the build is done.
func (g *generator) newListenerParts(snap *mesh.Snapshot, w mesh.Workload, key shareKey, telemetry string) (*listenerParts, listenerTableKey) {
	h := xxhash.New()
	writeUint64(h, snap.MeshHash())
	writeString(h, telemetry)
	tk := listenerTableKey{key}
	p := &listenerParts{snap: snap, w: w, scope: h.Sum64()}
	p.table = &listenerTable{version: snap.Version, print: p.scope, chains: map[chainsKey]*chainsEntry{}, defaults: map[defaultChainKey]*listenerv3.FilterChain{},
		address: map[string]*addressListener{}, listeners: map[string]*listenerv3.Listener{}}
	// The previous table's parts read the scope print of that build: a table of another print
	// (telemetry or mesh config changed) is not reused at all.
	if old, ok := g.c.listenerParts.Find(snap.Version, tk, p.scope); ok {
		p.old = old
	}
	return p, tk
}

// ServiceChains implements listener.Parts.
func (p *listenerParts) ServiceChains(in *listener.ChainInputs, build func() ([]*listenerv3.FilterChain, error)) ([]*listenerv3.FilterChain, error) {
	key := chainsKey{svc: in.Service.Key(), port: in.Port.Number, bound: in.Bound}
	pr := chainsPrint{service: p.snap.ServiceHash(in.Service), auto: in.Service.AutoAllocated, port: in.Port,
		rule: p.snap.ObjectHash(p.snap.DestinationRule(p.w, in.Service.Hostname)), scope: p.scope}
	if len(in.Routes) > 0 {
		h := xxhash.New()
		for _, r := range in.Routes {
			writeUint64(h, protoHash(r.Match))
			writeUint64(h, protoHash(r.TCPProxy))
		}
		pr.routes = h.Sum64()
	}
	var e *chainsEntry
	if p.old != nil {
		if old := p.old.chains[key]; old != nil && old.print == pr {
			e = old
		}
	}
	if e == nil {
		chains, err := build()
		e = &chainsEntry{print: pr, chains: chains, err: err}
	}
	p.table.chains[key] = e
	return e.chains, e.err
}

// defaultChainKey identifies the default chain in a listenerTable.
type defaultChainKey struct{ registryOnly bool }

// DefaultChain implements listener.Parts.
func (p *listenerParts) DefaultChain(registryOnly bool, build func() *listenerv3.FilterChain) *listenerv3.FilterChain {
	key := defaultChainKey{registryOnly}
	c := p.table.defaults[key]
	if c == nil && p.old != nil {
		c = p.old.defaults[key] // the table's print (scope) is the key's: see listenerTable
	}
	if c == nil {
		c = build()
	}
	p.table.defaults[key] = c
	return c
}

// addressListener is a memoized address listener and the parts it was built from.
type addressListener struct {
	l      *listenerv3.Listener
	chains []*listenerv3.FilterChain
	def    *listenerv3.FilterChain
}

// AddressListener implements listener.Parts.
func (p *listenerParts) AddressListener(name string, chains []*listenerv3.FilterChain, def *listenerv3.FilterChain, build func() *listenerv3.Listener) *listenerv3.Listener {
	var e *addressListener
	if p.old != nil {
		if old := p.old.address[name]; old != nil && old.def == def && slices.Equal(old.chains, chains) {
			e = old
		}
	}
	if e == nil {
		e = &addressListener{l: build(), chains: chains, def: def}
	}
	p.table.address[name] = e
	return e.l
}

// Listener implements listener.Parts: l's predecessor of the same name when it holds the same
// chain objects (each a carried-over entry, so the same content) and equal other fields.
func (p *listenerParts) Listener(l *listenerv3.Listener) *listenerv3.Listener {
	if p.old != nil {
		if old := p.old.listeners[l.GetName()]; old != nil && sameListener(old, l) {
			l = old
		}
	}
	p.table.listeners[l.GetName()] = l
	return l
}

// sameListener reports whether a and b have the same content: each filter chain the same
// object (a carried-over entry) or equal, and equal other fields.
func sameListener(a, b *listenerv3.Listener) bool {
	if !slices.EqualFunc(a.GetFilterChains(), b.GetFilterChains(), func(x, y *listenerv3.FilterChain) bool {
		return x == y || proto.Equal(x, y)
	}) {
		return false
	}
	return proto.Equal(protoshallow.Copy(a, "filter_chains"), protoshallow.Copy(b, "filter_chains"))
}

// listenerList is a scope's outbound listeners, carried over whole while every listener is, so
// that the lists built from it for each proxy are too.
type listenerList struct {
	list []*listenerv3.Listener
	res  []types.Resource // the same, type-erased once
}

// carryList returns the previous build's list when it holds exactly the listeners of list (each
// carried over), else a new one; and records it for the next build.
func (p *listenerParts) carryList(list []*listenerv3.Listener) *listenerList {
	if p.old != nil && p.old.list != nil && slices.Equal(p.old.list.list, list) {
		p.table.list = p.old.list
	} else {
		p.table.list = &listenerList{list: list, res: appendAll(nil, list)}
	}
	return p.table.list
}

// listenerListCarryOver enables carrying a scope's whole outbound listener list over (see carried).
const listenerListCarryOver = false

// carried returns the previous build's table, for the current snapshot, when nothing the
// scope's outbound listeners read changed since it (the change set names only VirtualServices
// without tcp or tls routes, before and after, and endpoints, which listeners do not read); else
// nil. The listeners are then the previous list, not walked service by service again.
func (p *listenerParts) carried(ch *mesh.ChangeSet) *listenerTable {
	// Off: the randomized sequence test (TestChangeSequenceEqualsFreshGenerator) found seeds
	// where a carried list differs from a fresh build (address listeners after a
	// VirtualService-only change, about 1 run in 20): what the listeners read of HTTP
	// VirtualServices is not yet pinned down. The per-chain fingerprints still carry parts over.
	if !listenerListCarryOver {
		return nil
	}
	if ch == nil || p.old == nil || p.old.list == nil || p.old.version != ch.From || !ch.OnlyKinds(config.VirtualService) {
		return nil
	}
	for _, c := range ch.Objects {
		if hasL4Routes(c.Old) || hasL4Routes(c.New) {
			return nil
		}
	}
	t := *p.old
	t.version = ch.To
	return &t
}

// hasL4Routes reports whether VirtualService o (nil allowed) has tcp or tls routes, or a spec
// that is not a VirtualService (then it might: the caller does not carry output over).
func hasL4Routes(o *config.Object) bool {
	if o == nil {
		return false
	}
	vs, ok := o.Spec.(*networking.VirtualService)
	return !ok || len(vs.GetTcp()) > 0 || len(vs.GetTls()) > 0
}
