package describe

import (
	"fmt"
	"slices"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/analysis"
	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/registry"
	"github.com/strait-mesh/strait/controlplane/xds"
	"github.com/strait-mesh/strait/internal/node"
)

// DefaultNamespace is the namespace of a NAME given without one.
const DefaultNamespace = "default"

// Service describes the service that name (and namespace, "" when not given) names in snap: an
// exact hostname; NAME.NS; or NAME in namespace (default "default"), matching the short name of
// its hostname (reviews for reviews.default.svc.cluster.local), its first label, or the name of
// the ServiceEntry that defines it. proxies, when not nil, are the connected proxies: endpoints
// show which proxy serves them. A name that matches nothing, or several services, is a
// *NotFoundError.
func Service(snap *mesh.Snapshot, name, namespace string, proxies []xds.ProxyStatus) (*ServiceReport, error) {
	svc, err := findService(snap, name, namespace)
	if err != nil {
		return nil, err
	}
	r := describeService(snap, svc, nil, proxiesByIP(proxies))
	return &r, nil
}

// findService resolves a service name as Service documents.
func findService(snap *mesh.Snapshot, name, namespace string) (*registry.Service, error) {
	if name == "" {
		return nil, &NotFoundError{Msg: "no service name given"}
	}
	var exact []*registry.Service
	for _, svc := range snap.Services {
		if svc.Hostname == name && (namespace == "" || svc.Namespace == namespace) {
			exact = append(exact, svc)
		}
	}
	if len(exact) > 0 {
		return oneService(exact, name)
	}
	ns := namespace
	if ns == "" {
		if n, s, ok := strings.Cut(name, "."); ok && !strings.Contains(s, ".") {
			name, ns = n, s
		} else {
			ns = DefaultNamespace
		}
	}
	full := mesh.ResolveShortName(name, ns)
	var found []*registry.Service
	for _, svc := range snap.Services {
		if svc.Namespace != ns {
			continue
		}
		first, _, _ := strings.Cut(svc.Hostname, ".")
		if svc.Hostname == full || first == name || originName(svc.Origin) == name {
			found = append(found, svc)
		}
	}
	if len(found) == 0 {
		var names []string
		for _, svc := range snap.Services {
			if svc.Namespace == ns {
				names = append(names, svc.Hostname)
			}
		}
		msg := fmt.Sprintf("no service %q in namespace %s", name, ns)
		if len(names) > 0 {
			msg += " (its services: " + strings.Join(limit(names, 10), ", ") + ")"
		} else {
			msg += " (it has no services)"
		}
		return nil, &NotFoundError{Msg: msg}
	}
	return oneService(found, name)
}

// oneService returns the only service of list, or an error naming them all.
func oneService(list []*registry.Service, name string) (*registry.Service, error) {
	// A hostname that several namespaces define: the oldest (first) one is the one most proxies see.
	if len(list) == 1 {
		return list[0], nil
	}
	names := make([]string, len(list))
	for i, s := range list {
		names[i] = s.Hostname + " (namespace " + s.Namespace + ")"
	}
	return nil, &NotFoundError{Msg: fmt.Sprintf("%q names %d services: %s; give the hostname and --namespace", name, len(list), strings.Join(names, ", "))}
}

// originName is the object name of a "Kind/namespace/name" origin.
func originName(origin string) string {
	if i := strings.LastIndexByte(origin, '/'); i >= 0 {
		return origin[i+1:]
	}
	return origin
}

func limit(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], fmt.Sprintf("and %d more", len(s)-n))
	}
	return s
}

// proxiesByIP maps a connected proxy's IP to its status.
func proxiesByIP(proxies []xds.ProxyStatus) map[string]xds.ProxyStatus {
	out := make(map[string]xds.ProxyStatus, len(proxies))
	for _, p := range proxies {
		if id, err := node.Parse(p.Proxy); err == nil && id.IP != "" {
			out[id.IP] = p
		}
	}
	return out
}

// describeService builds the report of svc. w, when not nil, is the workload a workload report
// is about: subsets are matched against its labels and the workloads' policies are left out
// (the workload report has them).
func describeService(snap *mesh.Snapshot, svc *registry.Service, w *mesh.Workload, proxies map[string]xds.ProxyStatus) ServiceReport {
	r := ServiceReport{
		Service:         serviceInfo(svc),
		Endpoints:       []EndpointInfo{},
		VirtualServices: []VirtualServiceInfo{},
		Gateways:        []GatewayInfo{},
		Workloads:       []WorkloadPolicies{},
	}
	eps := snap.ServiceEndpoints(svc)
	for _, ep := range eps {
		e := EndpointInfo{
			Address: ep.Address, Port: ep.Port, ServicePort: ep.ServicePortName, Labels: ep.Labels,
			ServiceAccount: ep.ServiceAccount, Locality: ep.Locality, Weight: ep.Weight, Healthy: ep.Healthy,
		}
		if ep.WorkloadName != "" {
			e.Workload = ep.WorkloadName + "." + ep.Namespace
		}
		if p, ok := proxies[ep.Address]; ok {
			e.Proxy = p.Proxy
		}
		r.Endpoints = append(r.Endpoints, e)
		if !ep.Healthy {
			r.Warnings = append(r.Warnings, fmt.Sprintf("endpoint %s:%d is not healthy", ep.Address, ep.Port))
		}
	}
	if len(eps) == 0 && svc.Resolution != registry.ResolutionNone {
		r.Warnings = append(r.Warnings, "the service has no endpoints: requests to it fail with 503 UH (no healthy upstream)")
	}
	if dr := snap.DestinationRule(mesh.Workload{Namespace: svc.Namespace}, svc.Hostname); dr != nil {
		info := destinationRuleInfo(dr, eps, w)
		r.DestinationRule = &info
		for _, ss := range info.Subsets {
			if ss.Endpoints == 0 && len(eps) > 0 {
				r.Warnings = append(r.Warnings, fmt.Sprintf("subset %s of DestinationRule %s/%s selects no endpoint", ss.Name, info.Namespace, info.Name))
			}
		}
	}
	r.VirtualServices, r.Gateways = routing(snap, svc, r.DestinationRule)
	for _, vs := range r.VirtualServices {
		for _, rt := range vs.Routes {
			for _, d := range rt.Destinations {
				if d.ThisService && d.Subset != "" && !hasSubset(r.DestinationRule, d.Subset) {
					r.Warnings = append(r.Warnings, fmt.Sprintf("VirtualService %s/%s routes to subset %q, which no DestinationRule for %s defines (IST0101)", vs.Namespace, vs.Name, d.Subset, svc.Hostname))
				}
			}
		}
		if vs.Shadowed != "" {
			r.Warnings = append(r.Warnings, fmt.Sprintf("VirtualService %s/%s is ignored for %s on the mesh gateway: %s is older (IST0109)", vs.Namespace, vs.Name, svc.Hostname, vs.Shadowed))
		}
	}
	for _, g := range r.Gateways {
		if g.Missing {
			r.Warnings = append(r.Warnings, fmt.Sprintf("VirtualService %s binds to gateway %s/%s, which does not exist (IST0101)", g.VirtualService, g.Namespace, g.Name))
		}
	}
	if w == nil {
		r.Workloads = servicePolicies(snap, svc, eps)
	}
	r.Warnings = dedupe(r.Warnings)
	return r
}

func hasSubset(dr *DestinationRuleInfo, name string) bool {
	if dr == nil {
		return false
	}
	for _, ss := range dr.Subsets {
		if ss.Name == name {
			return true
		}
	}
	return false
}

func dedupe(s []string) []string {
	seen := make(map[string]bool, len(s))
	out := s[:0]
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func serviceInfo(svc *registry.Service) ServiceInfo {
	info := ServiceInfo{
		Hostname: svc.Hostname, Namespace: svc.Namespace, Origin: svc.Origin,
		Addresses: svc.Addresses, Resolution: resolutionName(svc.Resolution), Location: "MESH_INTERNAL",
		Ports: make([]PortInfo, 0, len(svc.Ports)),
	}
	if svc.MeshExternal {
		info.Location = "MESH_EXTERNAL"
	}
	for _, p := range svc.Ports {
		info.Ports = append(info.Ports, PortInfo{Name: p.Name, Number: p.Number, Protocol: string(p.Protocol), TargetPort: p.TargetPort})
	}
	return info
}

func resolutionName(r registry.Resolution) string {
	switch r {
	case registry.ResolutionStatic:
		return "STATIC"
	case registry.ResolutionDNS:
		return "DNS"
	case registry.ResolutionDNSRoundRobin:
		return "DNS_ROUND_ROBIN"
	}
	return "NONE"
}

// destinationRuleInfo describes dr with its subsets counted against eps and, when w is not nil,
// matched against w's labels.
func destinationRuleInfo(o *config.Object, eps []*registry.Endpoint, w *mesh.Workload) DestinationRuleInfo {
	dr := o.Spec.(*networking.DestinationRule)
	info := DestinationRuleInfo{Name: o.Name, Namespace: o.Namespace, Host: dr.GetHost(), Origin: o.Origin,
		TrafficPolicy: trafficPolicy(dr.GetTrafficPolicy()), Subsets: []SubsetInfo{}}
	for _, ss := range dr.GetSubsets() {
		si := SubsetInfo{Name: ss.GetName(), Labels: ss.GetLabels(), TrafficPolicy: trafficPolicy(ss.GetTrafficPolicy())}
		for _, ep := range eps {
			if registry.LabelsMatch(ss.GetLabels(), ep.Labels) {
				si.Endpoints++
			}
		}
		if w != nil {
			m := registry.LabelsMatch(ss.GetLabels(), w.Labels)
			si.Matches = &m
		}
		info.Subsets = append(info.Subsets, si)
	}
	return info
}

// workloadKey identifies one workload among a service's endpoints.
type workloadKey struct{ name, ns, labels string }

// servicePolicies returns the policies of the service's workloads, workloads that the same
// policies select grouped together. A mesh-internal service without endpoints is described as a
// workload of its namespace without labels.
func servicePolicies(snap *mesh.Snapshot, svc *registry.Service, eps []*registry.Endpoint) []WorkloadPolicies {
	type wl struct {
		name  string
		w     mesh.Workload
		ports []uint32
	}
	var order []workloadKey
	byKey := map[workloadKey]*wl{}
	for _, ep := range eps {
		if svc.MeshExternal && ep.WorkloadName == "" {
			continue // an external host, not a workload of the mesh: no inbound policy applies
		}
		k := workloadKey{ep.WorkloadName, ep.Namespace, analysis.SelectorString(ep.Labels)}
		x, ok := byKey[k]
		if !ok {
			name := ep.WorkloadName
			if name == "" {
				name = ep.Address
			}
			x = &wl{name: name + "." + ep.Namespace, w: mesh.Workload{Namespace: ep.Namespace, Labels: ep.Labels}}
			byKey[k] = x
			order = append(order, k)
		}
		if ep.Port != 0 && !slices.Contains(x.ports, ep.Port) {
			x.ports = append(x.ports, ep.Port)
		}
	}
	if len(order) == 0 {
		if svc.MeshExternal {
			return []WorkloadPolicies{}
		}
		k := workloadKey{ns: svc.Namespace}
		byKey[k] = &wl{w: mesh.Workload{Namespace: svc.Namespace}}
		order = append(order, k)
	}
	var out []WorkloadPolicies
	index := map[string]int{}
	for _, k := range order {
		x := byKey[k]
		slices.Sort(x.ports)
		p := workloadPolicies(snap, x.w, x.ports)
		sig := fmt.Sprintf("%v", p)
		if i, ok := index[sig]; ok {
			if x.name != "" {
				out[i].Workloads = append(out[i].Workloads, x.name)
			}
			continue
		}
		index[sig] = len(out)
		if x.name != "" {
			p.Workloads = []string{x.name}
		}
		out = append(out, p)
	}
	return out
}
