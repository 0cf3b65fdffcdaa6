package mesh

import (
	"fmt"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/buildcache"
	"github.com/strait-mesh/strait/controlplane/config"
)

// GatewayMesh is the reserved gateway name that binds a VirtualService to sidecars.
const GatewayMesh = "mesh"

// virtualServiceIndex holds VirtualServices by the gateways they bind to.
type virtualServiceIndex struct {
	byGateway map[string][]*config.Object // "mesh" or "ns/name" -> oldest first
	byName    map[string]*config.Object   // "ns/name"
	defaults  []string
}

func newVirtualServiceIndex(s *Snapshot) (*virtualServiceIndex, []error) {
	idx := &virtualServiceIndex{byGateway: make(map[string][]*config.Object), byName: make(map[string]*config.Object),
		defaults: s.Mesh.GetDefaultVirtualServiceExportTo()}
	var errs []error
	for _, o := range s.Configs[config.VirtualService] {
		vs, ok := o.Spec.(*networking.VirtualService)
		if !ok {
			errs = append(errs, fmt.Errorf("indexing virtual services: %s: spec is %T", o.Key(), o.Spec))
			continue
		}
		idx.byName[o.Namespace+"/"+o.Name] = o
		if len(vs.GetHosts()) == 0 {
			continue // a delegate: reached only through HTTPRoute.delegate
		}
		for _, g := range VirtualServiceGateways(vs, o.Namespace) {
			idx.byGateway[g] = append(idx.byGateway[g], o)
		}
	}
	return idx, errs
}

// VirtualServiceGateways returns the gateways a VirtualService binds to, normalised to "mesh" or
// "ns/name": its top-level gateways field, or ["mesh"] when empty. Match-level gateways narrow
// individual routes; the route generator applies them.
func VirtualServiceGateways(vs *networking.VirtualService, ns string) []string {
	gws := vs.GetGateways()
	if len(gws) == 0 {
		return []string{GatewayMesh}
	}
	out := make([]string, 0, len(gws))
	seen := make(map[string]bool, len(gws))
	for _, g := range gws {
		n := NormalizeGateway(g, ns)
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}

// NormalizeGateway turns a gateway reference from a VirtualService in namespace ns into "mesh" or
// "ns/name". A bare name refers to the VirtualService's namespace; "ns/name" is kept. Istio's
// legacy FQDN form "name.ns.svc.cluster.local" is converted to "ns/name".
func NormalizeGateway(g, ns string) string {
	if g == GatewayMesh {
		return g
	}
	if strings.Contains(g, "/") {
		return g
	}
	if parts := strings.Split(g, "."); len(parts) >= 2 {
		return parts[1] + "/" + parts[0]
	}
	return ns + "/" + g
}

// VirtualServices returns the VirtualServices bound to gateway ("mesh" for sidecars, or a Gateway
// as "ns/name") that are exported to proxyNS (exportTo, else MeshConfig's default), oldest first.
func (s *Snapshot) VirtualServices(proxyNS, gateway string) []*config.Object {
	list := s.vss.byGateway[gateway]
	out := make([]*config.Object, 0, len(list))
	for _, o := range list {
		if ExportedTo(o.Spec.(*networking.VirtualService).GetExportTo(), s.vss.defaults, o.Namespace, proxyNS) {
			out = append(out, o)
		}
	}
	return out
}

// VirtualServiceHosts returns the hosts of a VirtualService with short names expanded
// (reviews -> reviews.<ns>.svc.cluster.local).
func VirtualServiceHosts(o *config.Object) []string {
	vs := o.Spec.(*networking.VirtualService)
	out := make([]string, len(vs.GetHosts()))
	for i, h := range vs.GetHosts() {
		out[i] = ResolveShortName(h, o.Namespace)
	}
	return out
}

// VirtualServices returns the mesh-bound VirtualServices visible in the scope: exported to its
// namespace and with at least one host admitted by one of its egress listeners.
func (sc *Scope) VirtualServices(s *Snapshot) []*config.Object {
	return scopeVSSlot.Get(s.Cache(), sc.Key, func() []*config.Object {
		var out []*config.Object
		for _, o := range s.VirtualServices(sc.Namespace, GatewayMesh) {
			if sc.admitsAny(o.Namespace, VirtualServiceHosts(o)) {
				out = append(out, o)
			}
		}
		return out
	})
}

// scopeVSSlot holds the VirtualServices of each scope (by Scope.Key) of a snapshot.
var scopeVSSlot = buildcache.NewSlot[string, []*config.Object]("mesh-scope-virtualservices")

// VirtualServicesFor returns the in-scope VirtualServices admitted by one egress listener.
func (l *EgressListener) VirtualServicesFor(s *Snapshot, sc *Scope) []*config.Object {
	var out []*config.Object
	for _, o := range sc.VirtualServices(s) {
		for _, h := range VirtualServiceHosts(o) {
			if l.Admits(o.Namespace, h) {
				out = append(out, o)
				break
			}
		}
	}
	return out
}

func (sc *Scope) admitsAny(ns string, hosts []string) bool {
	for _, l := range sc.Egress {
		for _, h := range hosts {
			if l.Admits(ns, h) {
				return true
			}
		}
	}
	return false
}

// VirtualService returns the VirtualService namespace/name, or nil (for delegate lookups).
func (s *Snapshot) VirtualService(namespace, name string) *config.Object {
	return s.vss.byName[namespace+"/"+name]
}

// VirtualServiceVisible reports whether the VirtualService object is exported to namespace ns.
func (s *Snapshot) VirtualServiceVisible(o *config.Object, ns string) bool {
	return ExportedTo(o.Spec.(*networking.VirtualService).GetExportTo(), s.vss.defaults, o.Namespace, ns)
}
