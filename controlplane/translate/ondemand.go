package translate

import (
	"slices"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/internal/node"
	"github.com/strait-mesh/strait/internal/vocab"
)

// On-demand configuration (issue 13, item 3).
//
// A sidecar without a Sidecar resource can reach every service of the mesh, so it is sent every
// service's virtual hosts, clusters and endpoints although it calls a handful. A proxy served
// on-demand (Proxy.OnDemand: it announced node.FeatureOnDemand, and its metadata or the control
// plane's default chose it) gets instead:
//
//   - every listener, as before: they are small next to routes and clusters, and they are what
//     captures the traffic whose host is then demanded;
//   - every route configuration, with `vhds`, and of their virtual hosts the catch-all ones
//     (domain "*": allow_any or block_all) plus, for each name "<route config>/<authority>" in
//     Proxy.Demanded, the one virtual host that Envoy's domain matching picks for that authority
//     (exact domain, then the longest "*.suffix", then the longest "prefix*");
//   - of the outbound service clusters ("outbound|port|subset|host") that virtual hosts route
//     to or listeners' tcp_proxy filters name, those the kept virtual hosts route to and those
//     in Proxy.DemandedClusters (Envoy's on-demand CDS, demanded by name when a TCP connection
//     finds its cluster missing); every other cluster (inbound, passthrough, black hole, and
//     any cluster something else in a listener names: a tracing collector, ext_authz, rate
//     limits) is kept; and the load assignments of the clusters kept.
//
// HTTP traffic demands hosts, not clusters: scoping is done here, server side, from the
// demanded virtual hosts, rather than with per-cluster on-demand CDS (Envoy's OdCdsConfig) from
// the router: the virtual host already says which clusters it needs, so one demand (one round
// trip) brings the virtual host, its clusters and their endpoints in Envoy's make-before-break
// order. TCP traffic has no host: its listener names the cluster, which is demanded by name
// (on-demand CDS). A proxy that never demanded a service is never sent a change of it because
// its generated output does not change. A proxy with a Sidecar resource is
// not scoped further: its egress hosts are all sent up front, as without on-demand, and a host
// outside them stays unknown (a demand for it is answered not-found), as the Sidecar says.

// onDemand restricts res, the VHDS-split resources of proxy p, to p's demanded hosts (see
// above). It returns res unchanged for proxies that are not on-demand sidecars, or that have a
// Sidecar resource. Proxies with the same inputs and demands share the output.
func (g *generator) onDemand(snap *mesh.Snapshot, p *Proxy, res Resources) Resources {
	if !p.OnDemand || !p.VHDS || p.Proxyless || (p.Type != node.Sidecar && p.Type != "") {
		return res
	}
	if snap.Scope(p.Workload()).Sidecar != nil {
		return res
	}
	in := onDemandInputs{
		vhosts:    res[resource.VirtualHostType],
		clusters:  res[resource.ClusterType],
		endpoints: res[resource.EndpointType],
		listeners: res[resource.ListenerType],
	}
	key := onDemandKey{demanded: strings.Join(p.Demanded, "\n") + "\x00" + strings.Join(p.DemandedClusters, "\n")}
	for i, l := range in.lists() {
		key.hashes[i] = resourcesHash(g.c, l)
	}
	build := func() *onDemandOutput { return g.scopeToDemands(snap, in, p.Demanded, p.DemandedClusters) }
	out := g.c.onDemand.Get(snap.Version, key, struct{}{}, build)
	if !out.from.same(in) { // a hash collision: do not share
		out = build()
	}
	next := make(Resources, len(res))
	for typ, list := range res {
		next[typ] = list
	}
	next[resource.VirtualHostType] = out.vhosts
	next[resource.ClusterType] = out.clusters
	next[resource.EndpointType] = out.endpoints
	return next
}

// onDemandKey memoizes the scoping of lists (by the serials of their items) to demands.
type onDemandKey struct {
	hashes   [4]uint64
	demanded string
}

// onDemandInputs are the lists an on-demand proxy's scope is computed from.
type onDemandInputs struct {
	vhosts, clusters, endpoints, listeners []types.Resource
}

func (in onDemandInputs) lists() [4][]types.Resource {
	return [4][]types.Resource{in.vhosts, in.clusters, in.endpoints, in.listeners}
}

func (in onDemandInputs) same(o onDemandInputs) bool {
	a, b := in.lists(), o.lists()
	for i := range a {
		if !slices.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// onDemandOutput is the scoped lists, with the inputs they were computed from.
type onDemandOutput struct {
	from                        onDemandInputs
	vhosts, clusters, endpoints []types.Resource
}

// scopeToDemands computes an on-demand proxy's virtual hosts, clusters and load assignments.
func (g *generator) scopeToDemands(snap *mesh.Snapshot, in onDemandInputs, demanded, demandedClusters []string) *onDemandOutput {
	idx := g.vhostIndexOf(snap, in.vhosts)
	keep := make(map[*routev3.VirtualHost]bool, len(demanded))
	for _, name := range demanded {
		if vh := idx.resolve(name); vh != nil {
			keep[vh] = true
		}
	}
	out := &onDemandOutput{from: in, vhosts: make([]types.Resource, 0, len(keep)+len(idx.byRC))}
	needed := make(map[string]bool, len(demandedClusters))
	for _, c := range demandedClusters {
		needed[c] = true
	}
	for _, r := range in.vhosts {
		vh, ok := r.(*routev3.VirtualHost)
		if !ok || idx.catchAll[vh] || keep[vh] {
			out.vhosts = append(out.vhosts, r)
			for _, c := range idx.refs[vh] {
				needed[c] = true
			}
		}
	}
	lrefs := g.listenerClusters(snap, in.listeners)
	droppable := func(name string) bool {
		return strings.HasPrefix(name, vocab.Outbound+"|") && (idx.routed[name] || lrefs.tcp[name]) &&
			!needed[name] && !lrefs.other[name]
	}
	dropped := make(map[string]bool)
	out.clusters = make([]types.Resource, 0, len(needed)+8)
	for _, r := range in.clusters {
		if c, ok := r.(*clusterv3.Cluster); ok && droppable(c.GetName()) {
			dropped[c.GetName()] = true
			if sn := c.GetEdsClusterConfig().GetServiceName(); sn != "" {
				dropped[sn] = true
			}
			continue
		}
		out.clusters = append(out.clusters, r)
	}
	out.endpoints = make([]types.Resource, 0, len(out.clusters))
	for _, r := range in.endpoints {
		if cla, ok := r.(*endpointv3.ClusterLoadAssignment); ok && dropped[cla.GetClusterName()] {
			continue
		}
		out.endpoints = append(out.endpoints, r)
	}
	return out
}

// vhostIndex finds the virtual host that serves an authority in a list of VHDS virtual hosts.
type vhostIndex struct {
	byRC     map[string]*domainIndex
	catchAll map[*routev3.VirtualHost]bool     // virtual hosts with domain "*"
	refs     map[*routev3.VirtualHost][]string // clusters each virtual host routes to
	routed   map[string]bool                   // clusters some non-catch-all virtual host routes to
}

// domainIndex holds the domains of one route configuration's virtual hosts.
type domainIndex struct {
	exact  map[string]*routev3.VirtualHost
	suffix []wildDomain // "*.example.com" (stored ".example.com"), longest first
	prefix []wildDomain // "example.*" (stored "example."), longest first
}

type wildDomain struct {
	part string
	vh   *routev3.VirtualHost
}

// vhostIndexOf returns the index of a list of VHDS virtual hosts, shared by the proxies with
// the same list.
func (g *generator) vhostIndexOf(snap *mesh.Snapshot, vhosts []types.Resource) *vhostIndex {
	build := func() *vhostIndexEntry { return &vhostIndexEntry{from: vhosts, idx: newVhostIndex(vhosts)} }
	e := g.c.vhostIndexes.Get(snap.Version, listHashKey{resourcesHash(g.c, vhosts), len(vhosts)}, struct{}{}, build)
	if !slices.Equal(e.from, vhosts) {
		e = build()
	}
	return e.idx
}

// newVhostIndex indexes VHDS virtual hosts (named "<route config>/<virtual host>").
func newVhostIndex(vhosts []types.Resource) *vhostIndex {
	idx := &vhostIndex{byRC: map[string]*domainIndex{}, catchAll: map[*routev3.VirtualHost]bool{},
		refs: map[*routev3.VirtualHost][]string{}, routed: map[string]bool{}}
	for _, r := range vhosts {
		vh, ok := r.(*routev3.VirtualHost)
		if !ok {
			continue
		}
		i := strings.LastIndexByte(vh.GetName(), '/')
		if i < 0 {
			continue
		}
		rc := vh.GetName()[:i]
		d := idx.byRC[rc]
		if d == nil {
			d = &domainIndex{exact: map[string]*routev3.VirtualHost{}}
			idx.byRC[rc] = d
		}
		idx.refs[vh] = routeClusters(vh)
		if slices.Contains(vh.GetDomains(), "*") {
			idx.catchAll[vh] = true
			continue
		}
		for _, c := range idx.refs[vh] {
			idx.routed[c] = true
		}
		for _, dom := range vh.GetDomains() {
			dom = strings.ToLower(dom)
			switch {
			case strings.HasPrefix(dom, "*"):
				d.suffix = append(d.suffix, wildDomain{dom[1:], vh})
			case strings.HasSuffix(dom, "*"):
				d.prefix = append(d.prefix, wildDomain{dom[:len(dom)-1], vh})
			default:
				if _, dup := d.exact[dom]; !dup { // the first wins, as in Envoy's table order
					d.exact[dom] = vh
				}
			}
		}
	}
	longestFirst := func(a, b wildDomain) int { return len(b.part) - len(a.part) }
	for _, d := range idx.byRC {
		slices.SortStableFunc(d.suffix, longestFirst)
		slices.SortStableFunc(d.prefix, longestFirst)
	}
	return idx
}

// resolve returns the non-catch-all virtual host that serves VHDS name "<route
// config>/<authority>", or nil.
func (idx *vhostIndex) resolve(name string) *routev3.VirtualHost {
	rc, authority, ok := SplitDemand(name)
	if !ok {
		return nil
	}
	d := idx.byRC[rc]
	if d == nil {
		return nil
	}
	if vh := d.exact[authority]; vh != nil {
		return vh
	}
	for _, w := range d.suffix {
		if len(authority) > len(w.part) && strings.HasSuffix(authority, w.part) {
			return w.vh
		}
	}
	for _, w := range d.prefix {
		if len(authority) > len(w.part) && strings.HasPrefix(authority, w.part) {
			return w.vh
		}
	}
	return nil
}

// SplitDemand splits an on-demand VHDS name "<route config>/<authority>" at its last "/" (an
// authority holds none) and lowercases the authority. ok is false when either part is empty.
func SplitDemand(name string) (rc, authority string, ok bool) {
	i := strings.LastIndexByte(name, '/')
	if i <= 0 || i == len(name)-1 {
		return "", "", false
	}
	return name[:i], strings.ToLower(name[i+1:]), true
}

// ResolveDemands maps each on-demand VHDS name "<route config>/<authority>" to the VHDS name of
// the virtual host of vhosts that serves it, or to "" when none does (a catch-all virtual host
// does not count: the proxy already has it). The xDS server answers demands with it: the
// virtual host with the demanded name in its aliases, or the name in removed_resources.
func ResolveDemands(vhosts []types.Resource, names []string) map[string]string {
	if len(names) == 0 {
		return nil
	}
	idx := newVhostIndex(vhosts)
	out := make(map[string]string, len(names))
	for _, n := range names {
		out[n] = idx.resolve(n).GetName()
	}
	return out
}

// routeClusters lists the clusters a virtual host's routes send or mirror requests to.
func routeClusters(vh *routev3.VirtualHost) []string {
	var out []string
	for _, rt := range vh.GetRoutes() {
		a := rt.GetRoute()
		if a == nil {
			continue
		}
		if c := a.GetCluster(); c != "" {
			out = append(out, c)
		}
		for _, wc := range a.GetWeightedClusters().GetClusters() {
			out = append(out, wc.GetName())
		}
		for _, m := range a.GetRequestMirrorPolicies() {
			out = append(out, m.GetCluster())
		}
	}
	return out
}

// listenerRefs are the cluster names listeners hold: in tcp_proxy filters (the clusters TCP
// traffic goes to, demanded by name) and anywhere else (kept).
type listenerRefs struct {
	tcp, other map[string]bool
}

// listenerClusters returns the cluster names the listeners of a list hold, shared by the proxies
// with the same list. Every string of every listener (typed configs decoded) counts as a
// possible cluster name outside tcp_proxy filters, so that a cluster named by a filter this file
// does not know of is never left out.
func (g *generator) listenerClusters(snap *mesh.Snapshot, listeners []types.Resource) listenerRefs {
	build := func() *listenerRefsEntry {
		e := &listenerRefsEntry{from: listeners, refs: listenerRefs{tcp: map[string]bool{}, other: map[string]bool{}}}
		other := func(v string) {
			if strings.HasPrefix(v, vocab.Outbound+"|") {
				e.refs.other[v] = true
			}
		}
		for _, r := range listeners {
			l, ok := r.(*listenerv3.Listener)
			if !ok {
				continue
			}
			var special func(m proto.Message) bool
			special = func(m proto.Message) bool {
				if fc, ok := m.(*listenerv3.FilterChain); ok && fc.GetName() != "" {
					// A filter chain is named after its destination's cluster: not a reference.
					cp := proto.Clone(fc).(*listenerv3.FilterChain)
					cp.Name = ""
					walkStrings(cp.ProtoReflect(), special, other)
					return true
				}
				tp, ok := m.(*tcpproxyv3.TcpProxy)
				if !ok {
					return false
				}
				if c := tp.GetCluster(); c != "" {
					e.refs.tcp[c] = true
				}
				for _, wc := range tp.GetWeightedClusters().GetClusters() {
					e.refs.tcp[wc.GetName()] = true
				}
				// Its other fields (stat prefix, access logs) may name clusters too.
				cp := proto.Clone(tp).(*tcpproxyv3.TcpProxy)
				cp.ClusterSpecifier, cp.StatPrefix = nil, ""
				walkStrings(cp.ProtoReflect(), nil, other)
				return true
			}
			walkStrings(l.ProtoReflect(), special, other)
		}
		return e
	}
	e := g.c.listenerRefs.Get(snap.Version, listHashKey{resourcesHash(g.c, listeners), len(listeners)}, struct{}{}, build)
	if !slices.Equal(e.from, listeners) {
		e = build()
	}
	return e.refs
}

// walkStrings calls str with every string field of m and of the messages in it, decoding
// google.protobuf.Any values. special, when not nil, is offered every message first; when it
// returns true the message is not walked.
func walkStrings(m protoreflect.Message, special func(proto.Message) bool, str func(string)) {
	if special != nil && special(m.Interface()) {
		return
	}
	if a, ok := m.Interface().(*anypb.Any); ok {
		if inner, err := a.UnmarshalNew(); err == nil {
			walkStrings(inner.ProtoReflect(), special, str)
		}
		return
	}
	value := func(fd protoreflect.FieldDescriptor, v protoreflect.Value) {
		switch fd.Kind() {
		case protoreflect.StringKind:
			str(v.String())
		case protoreflect.MessageKind, protoreflect.GroupKind:
			walkStrings(v.Message(), special, str)
		}
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList():
			l := v.List()
			for i := range l.Len() {
				value(fd, l.Get(i))
			}
		case fd.IsMap():
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				value(fd.MapValue(), mv)
				return true
			})
		default:
			value(fd, v)
		}
		return true
	})
}

// vhostIndexEntry is a memoized vhostIndex with the list it indexes.
type vhostIndexEntry struct {
	from []types.Resource
	idx  *vhostIndex
}

// listenerRefsEntry is memoized listenerRefs with the listeners they were read from.
type listenerRefsEntry struct {
	from []types.Resource
	refs listenerRefs
}
