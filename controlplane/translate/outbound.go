package translate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"unsafe"

	"github.com/cespare/xxhash/v2"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/proto"
	meshconfig "istio.io/api/mesh/v1alpha1"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/buildcache"
	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/registry"
	"github.com/strait-mesh/strait/controlplane/translate/cluster"
	"github.com/strait-mesh/strait/controlplane/translate/endpoint"
	"github.com/strait-mesh/strait/controlplane/translate/route"
	"github.com/strait-mesh/strait/internal/vocab"
)

// shareKey identifies output that is identical for every proxy with the same scope, selector
// DestinationRules, proxy class and (only when VirtualServices match on them) labels.
type shareKey struct {
	kind      string
	scope     string
	drSig     string
	labels    string
	proxyless bool
	router    bool
	explicit  bool
	locality  string
	// telemetry is the client-side telemetry's key (telemetry.Key): it differs by workload.
	telemetry string
}

// edsTarget is one EDS cluster and how to fill its load assignment.
type edsTarget struct {
	name     string
	svc      mesh.ServiceKey
	port     registry.Port
	subset   map[string]string
	locality *networking.LocalityLoadBalancerSetting
	outlier  bool
	byLabels bool // failoverPriority: depends on the proxy's labels
	// from is the memoized entry the target belongs to: a new entry means new target inputs.
	from *clusterEntry
}

// outboundSet is the outbound clusters of one scope with the EDS targets among them. Sets are
// shared by every scope whose services, ports and DestinationRules are the same (typically every
// namespace without its own rules), and carried over to the next snapshot when none of their
// service ports changed.
type outboundSet struct {
	entries    []*clusterEntry // per reachable service port, in scope order
	refs       buildcache.Refs // table entries of the set and its entries
	clusters   []*clusterv3.Cluster
	clusterRes []types.Resource // clusters, type-erased once
	byLabels   bool             // some load assignment depends on the proxy's labels
	eds        []edsTarget
	errs       error
}

// outboundClusters returns (building once per share key and snapshot) the outbound clusters of
// every reachable service port in the scope. Ports whose DestinationRule cannot be translated get
// no clusters and an error in errs.
func (g *generator) outboundClusters(snap *mesh.Snapshot, sc *mesh.Scope, w mesh.Workload, proxyless bool) *outboundSet {
	key := shareKey{kind: "cds", scope: sc.Key, drSig: snap.DestinationRuleSignature(w), proxyless: proxyless}
	if snap.NamespaceIndependent(sc) {
		key.scope = "" // the same services and DestinationRules as every other such namespace
	}
	return scopeClustersSlot.Get(snap.Cache(), key, func() *outboundSet {
		// When nothing but endpoints (and VirtualServices, which clusters do not read) changed
		// since the previous snapshot, and none of the endpoints the clusters inline, the
		// scope's set is the previous one.
		mk := scopeSetKey{key}
		set, ok := g.c.scopeClusters.Find(snap.Version, mk, snap.ConfigHash())
		if ch := g.changes(snap); !ok && ch.OnlyKinds(config.VirtualService) {
			// Clusters read no VirtualService: the set of the previous snapshot is this one's.
			if set, ok = g.c.scopeClusters.Find(snap.Version, mk, ch.FromConfigHash); ok {
				g.c.scopeClusters.Put(snap.Version, mk, snap.ConfigHash(), set)
			}
		}
		if ok && set.endpointsCurrent(snap) {
			set.refs.Keep(snap.Version) // once per set and snapshot
			return set
		}
		var entries []*clusterEntry
		for _, svc := range sc.Services {
			rule := snap.DestinationRule(w, svc.Hostname)
			for _, port := range sc.Ports(svc) {
				entries = append(entries, g.clusterEntry(snap, svc, port, rule, proxyless))
			}
		}
		set = g.outboundSet(snap, entries, proxyless)
		g.c.scopeClusters.Put(snap.Version, mk, snap.ConfigHash(), set)
		return set
	})
}

// scopeSetKey memoizes the outboundSet of a share key across snapshots.
type scopeSetKey struct{ shareKey }

// endpointsCurrent reports whether the endpoints the set's clusters inline (DNS clusters, TLS
// subject alt names) are unchanged in snap.
func (set *outboundSet) endpointsCurrent(snap *mesh.Snapshot) bool {
	for _, e := range set.entries {
		if e.epsDep != noEndpoints && endpointsPrint(snap, e.epsDep, e.svc) != e.eps {
			return false
		}
	}
	return true
}

// setKey identifies an outboundSet by its entries (a hash of their serials; entries are
// interned, so equal entries are the same pointers).
type setKey struct {
	hash      uint64
	n         int
	proxyless bool
}

// outboundSet returns the set of the given entries: the one built before for the same entries
// (in this snapshot for another scope, or in the previous snapshot) or a new one.
func (g *generator) outboundSet(snap *mesh.Snapshot, entries []*clusterEntry, proxyless bool) *outboundSet {
	key := setKey{hash: pointersHash(g.c, entries), n: len(entries), proxyless: proxyless}
	build := func() *outboundSet {
		set := &outboundSet{entries: entries}
		set.refs.List = make([]buildcache.Ref, 0, len(entries)+1)
		set.refs.List = append(set.refs.List, g.c.clusterSets.Ref(key))
		var errs []error
		for _, e := range entries {
			set.refs.List = append(set.refs.List, g.c.clusters.Ref(e.key))
			if e.err != nil {
				errs = append(errs, e.err)
				continue
			}
			set.clusters = append(set.clusters, e.clusters...)
			set.eds = append(set.eds, e.eds...)
		}
		set.errs = errors.Join(errs...)
		set.clusterRes = appendAll(nil, set.clusters)
		for _, t := range set.eds {
			set.byLabels = set.byLabels || t.byLabels
		}
		return set
	}
	set := g.c.clusterSets.Get(snap.Version, key, struct{}{}, build)
	if !slices.Equal(set.entries, entries) { // a hash collision: do not share
		set = build()
	}
	return set
}

// clusterEntry is the clusters of one service port with their EDS targets (or the error that
// left them out), memoized across snapshots by clusterKey while its clusterPrint is unchanged.
type clusterEntry struct {
	clusters []*clusterv3.Cluster
	eds      []edsTarget
	err      error
	key      clusterKey // its memo key
	// epsDep says what the clusters read of the endpoints of svc, whose print was eps.
	epsDep endpointsDep
	svc    mesh.ServiceKey
	eps    uint64
}

// endpointsDep is what a service port's clusters read of its endpoints.
type endpointsDep uint8

const (
	noEndpoints endpointsDep = iota
	// endpointIdentities: mesh mTLS subject alt names from the endpoints' service accounts
	// (DestinationRule TLS, automatic mTLS), per subset.
	endpointIdentities
	// allEndpoints: DNS clusters inline their endpoints.
	allEndpoints
)

// clusterEndpointsDep returns what the clusters of svc read of its endpoints.
func clusterEndpointsDep(snap *mesh.Snapshot, svc *registry.Service, ruleObj *config.Object, proxyless bool) endpointsDep {
	switch {
	case svc.Resolution == registry.ResolutionDNS || svc.Resolution == registry.ResolutionDNSRoundRobin:
		return allEndpoints
	case ruleUsesTLS(ruleObj), cluster.AutoMTLS(snap.Mesh) && !proxyless && svc.Resolution != registry.ResolutionNone:
		return endpointIdentities
	}
	return noEndpoints
}

// endpointsPrint returns the print of what dep reads of the endpoints of the service k.
func endpointsPrint(snap *mesh.Snapshot, dep endpointsDep, k mesh.ServiceKey) uint64 {
	if dep == allEndpoints {
		return snap.EndpointsHash(k)
	}
	return identitiesHash(snap, k)
}

// identitiesHash hashes the distinct namespace, service account and labels of a service's
// endpoints: all that mesh mTLS subject alt names read, so that endpoints coming and going with
// the same identities leave the clusters as they are. Computed once per service and snapshot.
func identitiesHash(snap *mesh.Snapshot, k mesh.ServiceKey) uint64 {
	return identitiesSlot.Get(snap.Cache(), k, func() uint64 {
		seen := map[string]bool{}
		var ids []string
		for _, ep := range snap.Endpoints[k] {
			if ep.ServiceAccount == "" {
				continue
			}
			id := ep.Namespace + "/" + ep.ServiceAccount + "|" + labelsKey(ep.Labels)
			if !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
		sort.Strings(ids)
		h := xxhash.New()
		for _, id := range ids {
			h.WriteString(id)
			h.WriteString(";")
		}
		return h.Sum64()
	})
}

type clusterKey struct {
	svc       mesh.ServiceKey
	port      uint32
	proxyless bool
}

// clusterPrint is what a service port's clusters depend on: the service, the port, the
// DestinationRule (and the rules' namespace and name, which errors name), the endpoints (only for
// DNS clusters, which inline them, and with DestinationRule TLS settings, which may derive
// subject alt names from them) and MeshConfig.
type clusterPrint struct {
	svc   uint64
	port  registry.Port
	rule  uint64
	eps   uint64
	mesh  uint64
	authn uint64
}

func (g *generator) clusterEntry(snap *mesh.Snapshot, svc *registry.Service, port registry.Port, ruleObj *config.Object, proxyless bool) *clusterEntry {
	pr := clusterPrint{svc: snap.ServiceHash(svc), port: port, rule: snap.ObjectHash(ruleObj), mesh: snap.MeshHash()}
	epsDep := clusterEndpointsDep(snap, svc, ruleObj, proxyless)
	if epsDep != noEndpoints {
		pr.eps = endpointsPrint(snap, epsDep, svc.Key())
		pr.authn = snap.PeerAuthnHash()
	}
	key := clusterKey{svc: svc.Key(), port: port.Number, proxyless: proxyless}
	return g.c.clusters.Get(snap.Version, key, pr, func() *clusterEntry {
		rule := cluster.RuleOf(ruleObj)
		cs, err := cluster.Outbound(svc, port, snap.ServiceEndpoints(svc), rule, cluster.Options{Mesh: snap.Mesh, Proxyless: proxyless, MTLSReady: mtlsReady(snap)})
		if err != nil {
			return &clusterEntry{err: fmt.Errorf("clusters of %s:%d: %w", svc.Hostname, port.Number, err),
				key: key, epsDep: epsDep, svc: svc.Key(), eps: pr.eps}
		}
		e := &clusterEntry{clusters: cs, eds: edsTargets(snap, svc, port, rule, cs), key: key, epsDep: epsDep, svc: svc.Key(), eps: pr.eps}
		for i := range e.eds {
			e.eds[i].from = e
		}
		return e
	})
}

// ruleUsesTLS reports whether a DestinationRule sets client TLS anywhere (traffic policy, port
// level, subsets): only then can its clusters depend on endpoints (ISTIO_MUTUAL subject alt
// names from the endpoints' service accounts).
func ruleUsesTLS(o *config.Object) bool {
	if o == nil {
		return false
	}
	dr, ok := o.Spec.(*networking.DestinationRule)
	if !ok {
		return true // unknown: assume it does
	}
	policyTLS := func(tp *networking.TrafficPolicy) bool {
		if tp.GetTls() != nil {
			return true
		}
		for _, pl := range tp.GetPortLevelSettings() {
			if pl.GetTls() != nil {
				return true
			}
		}
		return false
	}
	if policyTLS(dr.GetTrafficPolicy()) {
		return true
	}
	for _, ss := range dr.GetSubsets() {
		if policyTLS(ss.GetTrafficPolicy()) {
			return true
		}
	}
	return false
}

func edsTargets(snap *mesh.Snapshot, svc *registry.Service, port registry.Port, rule *cluster.Rule, cs []*clusterv3.Cluster) []edsTarget {
	var dr *networking.DestinationRule
	if rule != nil {
		dr = rule.Spec
	}
	subsets := append([]*networking.Subset{nil}, dr.GetSubsets()...)
	var out []edsTarget
	for _, ss := range subsets {
		name := vocab.OutboundClusterName(port.Number, ss.GetName(), svc.Hostname)
		var c *clusterv3.Cluster
		for _, x := range cs {
			if x.GetName() == name {
				c = x
				break
			}
		}
		if c == nil || c.GetType() != clusterv3.Cluster_EDS {
			continue
		}
		tp := cluster.EffectivePolicy(dr, ss, port.Number)
		loc := tp.GetLoadBalancer().GetLocalityLbSetting()
		if loc == nil {
			loc = snap.Mesh.GetLocalityLbSetting()
		}
		out = append(out, edsTarget{name: name, svc: svc.Key(), port: port, subset: ss.GetLabels(), locality: loc,
			outlier: tp.GetOutlierDetection() != nil, byLabels: len(loc.GetFailoverPriority()) > 0})
	}
	return out
}

// edsListKey identifies the load assignments of a set for proxies of one locality.
type edsListKey struct {
	set      *outboundSet
	locality string
}

// claKey and claPrint memoize one load assignment across snapshots: it depends on the target
// (fixed by the set's entry, so by the set) and the service's endpoints.
type claKey struct {
	name     string
	svc      mesh.ServiceKey
	locality string
}

type claPrint struct {
	target *clusterEntry
	eps    uint64
	authn  uint64 // PeerAuthentication: which endpoints take automatic mTLS
}

// loadAssignments builds the load assignments of the EDS clusters of set for a proxy. Output is
// shared between proxies of the same locality unless failoverPriority makes it label-dependent;
// an unchanged load assignment is the same object as in the previous snapshot, and so is the
// whole list when none changed.
func (g *generator) loadAssignments(snap *mesh.Snapshot, set *outboundSet, p *Proxy) []types.Resource {
	loc := p.Node.GetLocality()
	if set.byLabels {
		out := make([]types.Resource, 0, len(set.eds))
		for _, t := range set.eds {
			out = append(out, endpoint.Build(t.name, t.port, t.subset, snap.Endpoints[t.svc], endpoint.Options{
				ProxyLocality: loc, ProxyLabels: p.Labels, Locality: t.locality, OutlierDetection: t.outlier, MTLSReady: mtlsReady(snap)}))
		}
		return out
	}
	key := edsListKey{set: set, locality: loc.GetRegion() + "/" + loc.GetZone() + "/" + loc.GetSubZone()}
	return edsListSlot.Get(snap.Cache(), key, func() []types.Resource {
		list := make([]*endpointv3.ClusterLoadAssignment, 0, len(set.eds))
		for _, t := range set.eds {
			list = append(list, g.c.loadAssigns.Get(snap.Version, claKey{name: t.name, svc: t.svc, locality: key.locality},
				claPrint{target: t.from, eps: snap.EndpointsHash(t.svc), authn: snap.PeerAuthnHash()}, func() *endpointv3.ClusterLoadAssignment {
					return endpoint.Build(t.name, t.port, t.subset, snap.Endpoints[t.svc], endpoint.Options{
						ProxyLocality: loc, Locality: t.locality, OutlierDetection: t.outlier, MTLSReady: mtlsReady(snap)})
				}))
		}
		// The list itself is carried over when every assignment is unchanged, so that the xDS
		// server recognizes it without looking at its items.
		build := func() []types.Resource { return appendAll(nil, list) }
		out := g.c.edsLists.Get(snap.Version, key, pointersHash(g.c, list), build)
		if !sameItems(out, list) { // a hash collision: do not share
			out = build()
		}
		return out
	})
}

// pointersHash hashes the serials of the items of a list (tables.serial): lists of the same
// (interned) objects hash the same. Entries keyed by it hold the list and compare it item by
// item, so a collision is never shared.
func pointersHash[T any](t *tables, list []*T) uint64 {
	h := xxhash.New()
	var b [8]byte
	for _, p := range list {
		binary.LittleEndian.PutUint64(b[:], t.serial(unsafe.Pointer(p)))
		_, _ = h.Write(b[:])
	}
	return h.Sum64()
}

// resourcesHash is pointersHash of a type-erased list.
func resourcesHash(t *tables, list []types.Resource) uint64 {
	h := xxhash.New()
	var b [8]byte
	for _, r := range list {
		var serial uint64
		if r != nil {
			serial = t.serial(reflect.ValueOf(r).UnsafePointer())
		}
		binary.LittleEndian.PutUint64(b[:], serial)
		_, _ = h.Write(b[:])
	}
	return h.Sum64()
}

// sameItems reports whether a type-erased list holds exactly the objects of list, in order.
func sameItems[T any](out []types.Resource, list []*T) bool {
	if len(out) != len(list) {
		return false
	}
	for i, r := range out {
		if any(r) != any(list[i]) {
			return false
		}
	}
	return true
}

// routeInputs returns the route package inputs for a proxy in a scope.
func (g *generator) routeInputs(snap *mesh.Snapshot, sc *mesh.Scope, w mesh.Workload, router bool, vs []*config.Object, gateways []*config.Object) route.Inputs {
	return route.Inputs{
		Proxy:           route.Proxy{Namespace: w.Namespace, Labels: w.Labels, Router: router},
		Mesh:            scopeMesh(snap, sc),
		DomainSuffix:    g.opts.DomainSuffix,
		Services:        sc.Services,
		Reaches:         sc.Reaches,
		VirtualServices: vs,
		Gateways:        gateways,
		DestinationRule: func(host string) *networking.DestinationRule {
			if o := snap.DestinationRule(w, host); o != nil {
				return o.Spec.(*networking.DestinationRule)
			}
			return nil
		},
		Delegate: delegateLookup(snap, w),
	}
}

// scopeMesh returns the mesh config with the scope's outbound traffic policy (a Sidecar may
// override the mesh's), cached per scope.
func scopeMesh(snap *mesh.Snapshot, sc *mesh.Scope) *meshconfig.MeshConfig {
	meshOnly := snap.Mesh.GetOutboundTrafficPolicy().GetMode() == meshconfig.MeshConfig_OutboundTrafficPolicy_REGISTRY_ONLY &&
		snap.Mesh.GetOutboundTrafficPolicy() != nil
	if meshOnly == sc.RegistryOnly {
		return snap.Mesh
	}
	return scopeMeshSlot.Get(snap.Cache(), sc.Key, func() *meshconfig.MeshConfig {
		m := proto.Clone(snap.Mesh).(*meshconfig.MeshConfig)
		mode := meshconfig.MeshConfig_OutboundTrafficPolicy_ALLOW_ANY
		if sc.RegistryOnly {
			mode = meshconfig.MeshConfig_OutboundTrafficPolicy_REGISTRY_ONLY
		}
		m.OutboundTrafficPolicy = &meshconfig.MeshConfig_OutboundTrafficPolicy{Mode: mode}
		return m
	})
}

// scopeUsesSourceLabels is usesSourceLabels for a scope's VirtualServices (vss), computed once per
// scope and snapshot.
func scopeUsesSourceLabels(snap *mesh.Snapshot, sc *mesh.Scope, vss []*config.Object) bool {
	return sourceLabelsSlot.Get(snap.Cache(), sc.Key, func() bool { return usesSourceLabels(vss) })
}

// usesSourceLabels reports whether any of the VirtualServices matches on sourceLabels, which
// makes routes depend on the individual proxy's labels.
func usesSourceLabels(vss []*config.Object) bool {
	for _, o := range vss {
		vs := o.Spec.(*networking.VirtualService)
		for _, r := range vs.GetHttp() {
			for _, m := range r.GetMatch() {
				if len(m.GetSourceLabels()) > 0 {
					return true
				}
			}
			if r.GetDelegate() != nil {
				return true // delegates may match on labels; do not share
			}
		}
		for _, r := range vs.GetTcp() {
			for _, m := range r.GetMatch() {
				if len(m.GetSourceLabels()) > 0 {
					return true
				}
			}
		}
		for _, r := range vs.GetTls() {
			for _, m := range r.GetMatch() {
				if len(m.GetSourceLabels()) > 0 {
					return true
				}
			}
		}
	}
	return false
}

// httpRoutePorts returns the ports that need an outbound route configuration ("PORT"): every
// reachable HTTP or undeclared-protocol port, and egress listener ports declared HTTP.
func httpRoutePorts(sc *mesh.Scope) []uint32 {
	seen := map[uint32]bool{}
	var out []uint32
	add := func(n uint32) {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	for _, l := range sc.Egress {
		override := registry.Unsupported
		if p := l.Spec.GetPort().GetProtocol(); p != "" {
			override = registry.ParseProtocol(p)
		}
		for _, svc := range l.Services {
			for _, p := range sc.Ports(svc) {
				if l.Port != 0 && p.Number != l.Port {
					continue
				}
				proto := p.Protocol
				if override != registry.Unsupported {
					proto = override
				}
				if proto.IsHTTP() || proto == registry.Unsupported {
					add(p.Number)
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

// outboundRoutes builds the sidecar's outbound route configurations.
func outboundRoutes(b *route.Builder, ports []uint32) ([]*routev3.RouteConfiguration, error) {
	var errs []error
	out := make([]*routev3.RouteConfiguration, 0, len(ports))
	for _, port := range ports {
		rc, err := b.Outbound(port)
		if err != nil {
			errs = append(errs, err)
		}
		if rc != nil {
			out = append(out, rc)
		}
	}
	return out, errors.Join(errs...)
}

// mtlsReady returns the test of automatic mutual TLS for the snapshot's endpoints (nil when
// MeshConfig turns it off): the endpoint's workload runs a sidecar (label
// security.istio.io/tlsMode: istio) and its PeerAuthentication for the endpoint's port is not
// DISABLE, as Istio's mTLS checker decides.
func mtlsReady(snap *mesh.Snapshot) func(*registry.Endpoint) bool {
	if !cluster.AutoMTLS(snap.Mesh) {
		return nil
	}
	return func(ep *registry.Endpoint) bool {
		return ep.Labels[vocab.LabelTLSMode] == vocab.TLSModeIstio &&
			snap.MTLS(mesh.Workload{Namespace: ep.Namespace, Labels: ep.Labels}, ep.Port) != mesh.MTLSDisable
	}
}
