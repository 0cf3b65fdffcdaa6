package translate

import (
	"slices"
	"strconv"

	"github.com/cespare/xxhash/v2"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/registry"
	"github.com/strait-mesh/strait/controlplane/translate/route"
)

// Virtual hosts built from their own inputs (issue 13, item 1).
//
// A sidecar's outbound route configurations hold a virtual host per reachable service port:
// 2,000 per namespace at 1,000 services × 2 HTTP ports. Any config change rebuilds every scope's
// route configurations (sidecarOutbound is memoized on the whole ConfigHash), and before this
// every virtual host then was a new object, which the xDS server marshaled again: editing one
// VirtualService re-marshaled 40,000 virtual hosts over 20 namespaces. routeParts carries each
// virtual host, and each VirtualService's routes per port, over between snapshots on the content
// fingerprints of exactly what it was built from (route.Parts documents what that is): an edit
// rebuilds the virtual hosts it changes; the others are the previous objects with their
// marshaled form in the xDS server, and so keep their version and are not re-sent.
//
// Each scope's parts are one entry of the generator's memo (its one cache of output carried
// across snapshots): a partsTable under a typed key (scope, namespace, selector DestinationRules,
// source labels), whose parts are found by typed keys (port and name; VirtualService and port).
// A part is reused only while the fingerprint of its inputs is unchanged — the mesh's content
// hashes of the VirtualService, the services and DestinationRules looked up, the delegates, the
// mesh config, and the domains — never because an object's address is the same.
//
// When the table was built from the previous snapshot, the snapshot's change set
// (mesh.ChangeSet, computed once per snapshot) decides first: a part whose inputs it does not
// name is carried over without computing its fingerprint (see MeshRoutes and VirtualHost), so a
// change revisits only the hosts it touches; the rest take the fingerprint path.

// partsKey identifies what a scope's route parts are shared by: proxies of one Sidecar scope
// and namespace with the same selector DestinationRules (and, when a VirtualService matches
// sourceLabels, the same labels).
type partsKey struct {
	scope     string
	namespace string // the proxy's (routes match sourceNamespace; short-name domains)
	drSig     string
	labels    string
}

// partsTableKey is the memo key of a scope's partsTable.
type partsTableKey struct{ partsKey }

// partsTable holds the route parts one build of a scope's route configurations used. It is not
// modified after the build that made it: the next build reads it and makes a new table of what
// it uses, so parts no build uses any more are dropped with the old table.
type partsTable struct {
	version uint64 // of the snapshot built from
	mesh    uint64 // routeParts.mesh of the build
	routes  map[meshRoutesKey]*route.MeshRoutes
	vhosts  map[vhostKey]*vhostEntry
}

// meshRoutesKey identifies one VirtualService's HTTP routes on one port in a partsTable.
type meshRoutesKey struct {
	namespace string
	name      string
	port      uint32
}

// vhostKey identifies one virtual host of an outbound route configuration in a partsTable.
type vhostKey struct {
	port uint32
	name string
}

// vhostPrint is the fingerprint of a virtual host's inputs (route.VirtualHostInputs).
type vhostPrint struct {
	domains uint64
	service uint64
	routes  uint64 // MeshRoutes.Print, 0 for the default route
	reads   uint64 // the default route's DestinationRule
	mesh    uint64
}

// vhostEntry is a virtual host in its two forms: as a route configuration holds it, and as a
// VHDS resource ("<route configuration>/<virtual host>"), sharing their sub-messages; and the
// fingerprint of the inputs it was built from.
type vhostEntry struct {
	print   vhostPrint
	domains []string
	svc     mesh.ServiceKey   // in.Service's, zero if none
	routes  *route.MeshRoutes // in.Routes
	rds     *routev3.VirtualHost
	vhds    *routev3.VirtualHost
}

// routeParts implements route.Parts for one Builder (it is not safe for concurrent use): parts
// come from the scope's previous partsTable while their fingerprints are unchanged, and the
// parts used make the scope's next table.
type routeParts struct {
	snap  *mesh.Snapshot
	w     mesh.Workload
	mesh  uint64 // fingerprint of the scope's mesh config (scopeMesh)
	b     *route.Builder
	old   *partsTable                                   // read only; nil on the first build
	table *partsTable                                   // being made
	forms map[*routev3.VirtualHost]*routev3.VirtualHost // RDS form → VHDS form of what was returned
	// changes is what changed since old was built, when old was built from the previous
	// snapshot with the same mesh print; else nil. Parts whose inputs it does not name are
	// carried over without fingerprinting them again.
	changes *mesh.ChangeSet
}

var _ route.Parts = (*routeParts)(nil)

// newRouteParts returns the parts of the sidecar scope sc for workload w, with the scope's
// previous table; labels is "" unless routes depend on the proxy's labels. Set b before the
// Builder is used, and publish the table when the build is done.
func (g *generator) newRouteParts(snap *mesh.Snapshot, sc *mesh.Scope, w mesh.Workload, labels string) (*routeParts, partsTableKey) {
	h := xxhash.New()
	writeUint64(h, snap.MeshHash())
	if sc.RegistryOnly {
		writeUint64(h, 1)
	}
	key := partsTableKey{partsKey{scope: sc.Key, namespace: w.Namespace, drSig: snap.DestinationRuleSignature(w), labels: labels}}
	p := &routeParts{snap: snap, w: w, mesh: h.Sum64(),
		forms: map[*routev3.VirtualHost]*routev3.VirtualHost{}}
	p.table = &partsTable{version: snap.Version, mesh: p.mesh, routes: map[meshRoutesKey]*route.MeshRoutes{}, vhosts: map[vhostKey]*vhostEntry{}}
	if old, ok := g.c.routeParts.Find(snap.Version, key, struct{}{}); ok {
		p.old = old
		// A Sidecar change can change which of several services with one hostname is visible
		// without changing either: those builds fingerprint everything.
		if ch := g.changes(snap); ch != nil && !ch.Mesh && !ch.Kinds[config.Sidecar] && p.old.version == ch.From && p.old.mesh == p.mesh {
			p.changes = ch
		}
	}
	return p, key
}

// MeshRoutes implements route.Parts.
func (p *routeParts) MeshRoutes(vs *config.Object, port uint32, build func() *route.MeshRoutes) *route.MeshRoutes {
	key := meshRoutesKey{namespace: vs.Namespace, name: vs.Name, port: port}
	if p.old != nil && p.changes != nil {
		if r := p.old.routes[key]; r != nil && !p.changes.Object(config.VirtualService, vs.Namespace, vs.Name) && !p.touched(r.Reads) {
			p.table.routes[key] = r
			return r
		}
	}
	vsHash := p.snap.ObjectHash(vs)
	if p.old != nil {
		if r := p.old.routes[key]; r != nil && r.Print == p.routesPrint(vsHash, r.Reads) {
			p.table.routes[key] = r
			return r
		}
	}
	r := build()
	r.Print = p.routesPrint(vsHash, r.Reads)
	p.table.routes[key] = r
	return r
}

// VirtualHost implements route.Parts.
func (p *routeParts) VirtualHost(in *route.VirtualHostInputs, build func() *routev3.VirtualHost) *routev3.VirtualHost {
	key := vhostKey{port: in.Port, name: in.Name}
	if p.old != nil && p.changes != nil {
		if e := p.old.vhosts[key]; e != nil && e.routes == in.Routes && e.svc == serviceKey(in.Service) &&
			slices.Equal(e.domains, in.Domains) && (in.Service == nil || !p.changes.Hosts[in.Service.Hostname]) && !p.touched(in.Reads) {
			p.table.vhosts[key] = e
			p.forms[e.rds] = e.vhds
			return e.rds
		}
	}
	pr := vhostPrint{domains: stringsHash(in.Domains), reads: p.readsPrint(in.Reads), mesh: p.mesh}
	if in.Service != nil {
		pr.service = p.snap.ServiceHash(in.Service)
	}
	if in.Routes != nil {
		pr.routes = in.Routes.Print
	}
	var e *vhostEntry
	if p.old != nil {
		if old := p.old.vhosts[key]; old != nil && old.print == pr {
			e = old
		}
	}
	if e == nil {
		vh := build()
		e = &vhostEntry{print: pr, domains: in.Domains, svc: serviceKey(in.Service), routes: in.Routes, rds: vh, vhds: vhdsForm(strconv.FormatUint(uint64(in.Port), 10), vh)}
	}
	p.table.vhosts[key] = e
	p.forms[e.rds] = e.vhds
	return e.rds
}

// serviceKey returns svc's key, the zero key for nil.
func serviceKey(svc *registry.Service) mesh.ServiceKey {
	if svc == nil {
		return mesh.ServiceKey{}
	}
	return svc.Key()
}

// touched reports whether the change set names something reads lists: a service of a host
// looked up, any DestinationRule when one was looked up (a new rule may apply to a host by a
// wildcard), or a delegate.
func (p *routeParts) touched(reads route.Reads) bool {
	for _, host := range reads.Services {
		if p.changes.Hosts[host] {
			return true
		}
	}
	if len(reads.DestinationRules) > 0 && p.changes.Kinds[config.DestinationRule] {
		return true
	}
	for _, d := range reads.Delegates {
		if p.changes.Object(config.VirtualService, d.Namespace, d.Name) {
			return true
		}
	}
	return false
}

// routesPrint fingerprints a VirtualService's routes: the VirtualService, the mesh config and
// what the translation read.
func (p *routeParts) routesPrint(vs uint64, reads route.Reads) uint64 {
	h := xxhash.New()
	writeUint64(h, vs)
	writeUint64(h, p.mesh)
	writeUint64(h, p.readsPrint(reads))
	return h.Sum64()
}

// readsPrint fingerprints what reads names as the snapshot has it now.
func (p *routeParts) readsPrint(reads route.Reads) uint64 {
	if len(reads.Services)+len(reads.DestinationRules)+len(reads.Delegates) == 0 {
		return 0
	}
	h := xxhash.New()
	for _, host := range reads.Services {
		writeString(h, host)
		if svc := p.b.Service(host); svc != nil {
			writeUint64(h, p.snap.ServiceHash(svc))
		} else {
			writeUint64(h, 0)
		}
	}
	_, _ = h.WriteString("|dr")
	for _, host := range reads.DestinationRules {
		writeString(h, host)
		writeUint64(h, p.snap.ObjectHash(p.snap.DestinationRule(p.w, host)))
	}
	_, _ = h.WriteString("|vs")
	for _, d := range reads.Delegates {
		writeString(h, d.Namespace+"/"+d.Name)
		writeUint64(h, p.snap.ObjectHash(delegateLookup(p.snap, p.w)(d.Name, d.Namespace)))
	}
	return h.Sum64()
}

// split returns the VHDS split of the route configurations built with these parts.
func (p *routeParts) split(rc *routev3.RouteConfiguration) *vhdsSplit {
	return splitRouteConfiguration(rc, func(vh *routev3.VirtualHost) *routev3.VirtualHost { return p.forms[vh] })
}

// delegateLookup returns the lookup of delegate VirtualServices for a proxy of workload w: the
// VirtualService if it is visible from w's namespace.
func delegateLookup(snap *mesh.Snapshot, w mesh.Workload) route.DelegateLookup {
	return func(name, ns string) *config.Object {
		o := snap.VirtualService(ns, name)
		if o == nil || !snap.VirtualServiceVisible(o, w.Namespace) {
			return nil
		}
		return o
	}
}

func writeUint64(h *xxhash.Digest, v uint64) {
	var b [8]byte
	for i := range b {
		b[i] = byte(v >> (8 * i))
	}
	_, _ = h.Write(b[:])
}

func writeString(h *xxhash.Digest, s string) {
	writeUint64(h, uint64(len(s)))
	_, _ = h.WriteString(s)
}

// stringsHash hashes a list of strings, framed.
func stringsHash(ss []string) uint64 {
	h := xxhash.New()
	writeUint64(h, uint64(len(ss)))
	for _, s := range ss {
		writeString(h, s)
	}
	return h.Sum64()
}
