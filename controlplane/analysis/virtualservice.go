package analysis

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/registry"
)

// destination is one destination of a VirtualService with the path of its field.
type destination struct {
	dest *networking.Destination
	path string // e.g. "spec.http[0].route[1].destination"
}

// destinations returns every destination of vs: HTTP, TCP and TLS routes, and HTTP mirrors.
func destinations(vs *networking.VirtualService) []destination {
	var out []destination
	for i, r := range vs.GetHttp() {
		for j, rd := range r.GetRoute() {
			if rd.GetDestination() != nil {
				out = append(out, destination{rd.GetDestination(), fmt.Sprintf("spec.http[%d].route[%d].destination", i, j)})
			}
		}
		if r.GetMirror() != nil {
			out = append(out, destination{r.GetMirror(), fmt.Sprintf("spec.http[%d].mirror", i)})
		}
		for j, m := range r.GetMirrors() {
			if m.GetDestination() != nil {
				out = append(out, destination{m.GetDestination(), fmt.Sprintf("spec.http[%d].mirrors[%d].destination", i, j)})
			}
		}
	}
	for i, r := range vs.GetTcp() {
		for j, rd := range r.GetRoute() {
			if rd.GetDestination() != nil {
				out = append(out, destination{rd.GetDestination(), fmt.Sprintf("spec.tcp[%d].route[%d].destination", i, j)})
			}
		}
	}
	for i, r := range vs.GetTls() {
		for j, rd := range r.GetRoute() {
			if rd.GetDestination() != nil {
				out = append(out, destination{rd.GetDestination(), fmt.Sprintf("spec.tls[%d].route[%d].destination", i, j)})
			}
		}
	}
	return out
}

// lookupService returns the registry service that a destination host (as written, in a
// VirtualService of namespace ns) names and that is visible from ns: the exact host first, then
// a wildcard service host that covers it. It returns nil when there is none.
func lookupService(snap *mesh.Snapshot, host, ns string) *registry.Service {
	fqdn := mesh.ResolveShortName(host, ns)
	if svc := snap.Service(fqdn, ns); svc != nil {
		return svc
	}
	for _, svc := range snap.Services {
		if snap.ServiceVisible(svc, ns) && mesh.HostMatches(svc.Hostname, fqdn) {
			return svc
		}
	}
	return nil
}

// analyzeDestinationHosts reports (IST0101) destination hosts that no visible service defines,
// and (IST0112) destinations of gateway VirtualServices that name no port of a service that has
// several.
func analyzeDestinationHosts(c *context) {
	for _, t := range objects[*networking.VirtualService](c, config.VirtualService) {
		gatewayBound := slices.ContainsFunc(mesh.VirtualServiceGateways(t.spec, t.obj.Namespace), func(g string) bool { return g != mesh.GatewayMesh })
		for _, d := range destinations(t.spec) {
			host := d.dest.GetHost()
			if host == "" || strings.Contains(host, "*") {
				continue
			}
			svc := lookupService(c.snap, host, t.obj.Namespace)
			if svc == nil {
				c.report(newMessage(ReferencedResourceNotFound, t.obj, d.path+".host", "host", host))
				continue
			}
			if gatewayBound && d.dest.GetPort().GetNumber() == 0 && len(svc.Ports) > 1 {
				ports := make([]int, len(svc.Ports))
				for i, p := range svc.Ports {
					ports[i] = int(p.Number)
				}
				c.report(newMessage(VirtualServiceDestinationPortSelectorRequired, t.obj, d.path, host, ports))
			}
		}
	}
}

// analyzeDestinationSubsets reports (IST0101) destinations whose subset no DestinationRule for
// the host defines.
func analyzeDestinationSubsets(c *context) {
	drs := objects[*networking.DestinationRule](c, config.DestinationRule)
	defaults := c.snap.Mesh.GetDefaultDestinationRuleExportTo()
	for _, t := range objects[*networking.VirtualService](c, config.VirtualService) {
		for _, d := range destinations(t.spec) {
			subset := d.dest.GetSubset()
			if subset == "" {
				continue
			}
			fqdn := mesh.ResolveShortName(d.dest.GetHost(), t.obj.Namespace)
			found := false
			for _, dr := range drs {
				if !mesh.ExportedTo(dr.spec.GetExportTo(), defaults, dr.obj.Namespace, t.obj.Namespace) {
					continue
				}
				if !mesh.HostMatches(mesh.ResolveShortName(dr.spec.GetHost(), dr.obj.Namespace), fqdn) {
					continue
				}
				if slices.ContainsFunc(dr.spec.GetSubsets(), func(s *networking.Subset) bool { return s.GetName() == subset }) {
					found = true
					break
				}
			}
			if !found {
				c.report(newMessage(ReferencedResourceNotFound, t.obj, d.path+".subset",
					"host+subset in destinationrule", d.dest.GetHost()+"+"+subset))
			}
		}
	}
}

// analyzeVirtualServiceGateways reports (IST0101) gateways, of the VirtualService or of a
// match, that no Gateway object defines.
func analyzeVirtualServiceGateways(c *context) {
	gateways := map[string]bool{}
	for _, o := range c.snap.Configs[config.Gateway] {
		gateways[mesh.GatewayName(o)] = true
	}
	check := func(t typed[*networking.VirtualService], g, path string) {
		if g == mesh.GatewayMesh || g == "" {
			return
		}
		if !gateways[mesh.NormalizeGateway(g, t.obj.Namespace)] {
			c.report(newMessage(ReferencedResourceNotFound, t.obj, path, "gateway", g))
		}
	}
	for _, t := range objects[*networking.VirtualService](c, config.VirtualService) {
		for i, g := range t.spec.GetGateways() {
			check(t, g, fmt.Sprintf("spec.gateways[%d]", i))
		}
		for i, r := range t.spec.GetHttp() {
			for j, m := range r.GetMatch() {
				for k, g := range m.GetGateways() {
					check(t, g, fmt.Sprintf("spec.http[%d].match[%d].gateways[%d]", i, j, k))
				}
			}
		}
		for i, r := range t.spec.GetTcp() {
			for j, m := range r.GetMatch() {
				for k, g := range m.GetGateways() {
					check(t, g, fmt.Sprintf("spec.tcp[%d].match[%d].gateways[%d]", i, j, k))
				}
			}
		}
		for i, r := range t.spec.GetTls() {
			for j, m := range r.GetMatch() {
				for k, g := range m.GetGateways() {
					check(t, g, fmt.Sprintf("spec.tls[%d].match[%d].gateways[%d]", i, j, k))
				}
			}
		}
	}
}

// exportScope is the set of namespaces an object is exported to: all when all is true.
type exportScope struct {
	all bool
	ns  map[string]bool
}

func newExportScope(exportTo, defaults []string, ns string) exportScope {
	if len(exportTo) == 0 {
		exportTo = defaults
	}
	if len(exportTo) == 0 {
		return exportScope{all: true}
	}
	s := exportScope{ns: map[string]bool{}}
	for _, e := range exportTo {
		switch e {
		case "*":
			return exportScope{all: true}
		case "~":
		case ".":
			s.ns[ns] = true
		default:
			s.ns[e] = true
		}
	}
	return s
}

// overlaps reports whether some namespace sees both scopes.
func (a exportScope) overlaps(b exportScope) bool {
	if a.all {
		return b.all || len(b.ns) > 0
	}
	if b.all {
		return len(a.ns) > 0
	}
	for n := range a.ns {
		if b.ns[n] {
			return true
		}
	}
	return false
}

// analyzeConflictingMeshHosts reports (IST0109) VirtualServices bound to the mesh gateway that
// define the same host for a namespace that sees them both: a sidecar uses only one of them.
func analyzeConflictingMeshHosts(c *context) {
	type entry struct {
		vs    *config.Object
		scope exportScope
	}
	defaults := c.snap.Mesh.GetDefaultVirtualServiceExportTo()
	byHost := map[string][]entry{}
	var hosts []string
	for _, t := range objects[*networking.VirtualService](c, config.VirtualService) {
		if !slices.Contains(mesh.VirtualServiceGateways(t.spec, t.obj.Namespace), mesh.GatewayMesh) {
			continue
		}
		scope := newExportScope(t.spec.GetExportTo(), defaults, t.obj.Namespace)
		seen := map[string]bool{}
		for _, h := range mesh.VirtualServiceHosts(t.obj) {
			if seen[h] {
				continue
			}
			seen[h] = true
			if byHost[h] == nil {
				hosts = append(hosts, h)
			}
			byHost[h] = append(byHost[h], entry{t.obj, scope})
		}
	}
	sort.Strings(hosts)
	for _, h := range hosts {
		list := byHost[h]
		if len(list) < 2 {
			continue
		}
		var conflicting []*config.Object
		for i, a := range list {
			for j, b := range list {
				if i != j && a.scope.overlaps(b.scope) {
					conflicting = append(conflicting, a.vs)
					break
				}
			}
		}
		if len(conflicting) < 2 {
			continue
		}
		names := make([]string, len(conflicting))
		for i, o := range conflicting {
			names[i] = fullName(o)
		}
		joined := strings.Join(names, ",")
		for _, o := range conflicting {
			c.report(newMessage(ConflictingMeshGatewayVirtualServiceHosts, o, "metadata.name", joined, h))
		}
	}
}
