package describe

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/xds"
	"github.com/strait-mesh/strait/internal/node"
)

// Workload describes the workload that name (and namespace, "" when not given) names in snap:
// NAME.NS or NAME in namespace (default "default"), looked up as a WorkloadEntry, then as a
// ServiceEntry's inline endpoint or auto-registered workload of that name, then as a connected
// proxy (proxies) of that name; or an IP address of a workload. A name that matches nothing is
// a *NotFoundError.
func Workload(snap *mesh.Snapshot, name, namespace string, proxies []xds.ProxyStatus) (*WorkloadReport, error) {
	info, err := findWorkload(snap, name, namespace, proxies)
	if err != nil {
		return nil, err
	}
	r := &WorkloadReport{Workload: info, Proxies: []ProxyInfo{}, Services: []ServiceReport{}}
	for _, p := range proxies {
		id, err := node.Parse(p.Proxy)
		if err != nil {
			continue
		}
		if (info.Address != "" && id.IP == info.Address) || (id.Name == info.Name && id.Namespace == info.Namespace) {
			pi := ProxyInfo{ID: p.Proxy, Status: map[string]string{}}
			for t, st := range p.Types {
				pi.Status[t] = st.Status
			}
			r.Proxies = append(r.Proxies, pi)
		}
	}
	w := mesh.Workload{Namespace: info.Namespace, Labels: info.Labels}
	var ports []uint32
	byIP := proxiesByIP(proxies)
	seen := map[mesh.ServiceKey]bool{}
	for _, inst := range instances(snap, info) {
		if inst.Endpoint.Port != 0 && !slices.Contains(ports, inst.Endpoint.Port) {
			ports = append(ports, inst.Endpoint.Port)
		}
		if seen[inst.Service.Key()] {
			continue
		}
		seen[inst.Service.Key()] = true
		sr := describeService(snap, inst.Service, &w, byIP)
		r.Services = append(r.Services, sr)
	}
	slices.Sort(ports)
	r.Policies = workloadPolicies(snap, w, ports)
	if len(r.Services) == 0 {
		r.Warnings = append(r.Warnings, "the workload backs no service: no ServiceEntry selects it or lists it as an endpoint")
	}
	if len(r.Proxies) == 0 {
		r.Warnings = append(r.Warnings, "no proxy of this workload is connected to straitd")
	}
	return r, nil
}

// instances returns the service endpoints of the workload: those at its address that name it
// (or, when none names it, every one at its address), else those that name it anywhere.
func instances(snap *mesh.Snapshot, info WorkloadInfo) []mesh.InstanceEndpoint {
	var named, all []mesh.InstanceEndpoint
	if info.Address != "" {
		for _, inst := range snap.Instances(info.Address) {
			all = append(all, inst)
			if inst.Endpoint.WorkloadName == info.Name && inst.Endpoint.Namespace == info.Namespace {
				named = append(named, inst)
			}
		}
	}
	if len(named) > 0 {
		return named
	}
	if len(all) > 0 {
		return all
	}
	for _, svc := range snap.Services {
		for _, ep := range snap.ServiceEndpoints(svc) {
			if ep.WorkloadName == info.Name && ep.Namespace == info.Namespace {
				named = append(named, mesh.InstanceEndpoint{Service: svc, Endpoint: ep})
			}
		}
	}
	return named
}

// findWorkload resolves a workload name as Workload documents.
func findWorkload(snap *mesh.Snapshot, name, namespace string, proxies []xds.ProxyStatus) (WorkloadInfo, error) {
	if name == "" {
		return WorkloadInfo{}, &NotFoundError{Msg: "no workload name given"}
	}
	if ip, err := netip.ParseAddr(name); err == nil {
		return workloadAt(snap, ip.String(), proxies)
	}
	ns := namespace
	if ns == "" {
		if i := strings.LastIndexByte(name, '.'); i > 0 && i < len(name)-1 {
			name, ns = name[:i], name[i+1:]
		} else {
			ns = DefaultNamespace
		}
	}
	for _, o := range snap.Configs[config.WorkloadEntry] {
		if o.Namespace != ns || o.Name != name {
			continue
		}
		we, ok := o.Spec.(*networking.WorkloadEntry)
		if !ok {
			continue
		}
		return WorkloadInfo{Name: name, Namespace: ns, Address: we.GetAddress(), Labels: we.GetLabels(),
			ServiceAccount: we.GetServiceAccount(), Network: we.GetNetwork(), Locality: we.GetLocality(),
			Source: "WorkloadEntry/" + ns + "/" + name, Origin: o.Origin}, nil
	}
	for _, svc := range snap.Services {
		for _, ep := range snap.ServiceEndpoints(svc) {
			if ep.WorkloadName == name && ep.Namespace == ns {
				return WorkloadInfo{Name: name, Namespace: ns, Address: ep.Address, Labels: ep.Labels,
					ServiceAccount: ep.ServiceAccount, Network: ep.Network, Locality: ep.Locality, Source: svc.Origin}, nil
			}
		}
	}
	for _, p := range proxies {
		if id, err := node.Parse(p.Proxy); err == nil && id.Name == name && id.Namespace == ns {
			info, err := workloadAt(snap, id.IP, nil)
			if err != nil {
				return WorkloadInfo{Name: name, Namespace: ns, Address: id.IP, Source: "proxy"}, nil
			}
			info.Name, info.Namespace = name, ns
			return info, nil
		}
	}
	var names []string
	for _, o := range snap.Configs[config.WorkloadEntry] {
		if o.Namespace == ns {
			names = append(names, o.Name)
		}
	}
	msg := fmt.Sprintf("no workload %q in namespace %s: no WorkloadEntry, service endpoint or connected proxy has that name", name, ns)
	if len(names) > 0 {
		msg += " (its WorkloadEntries: " + strings.Join(limit(names, 10), ", ") + ")"
	}
	return WorkloadInfo{}, &NotFoundError{Msg: msg}
}

// workloadAt finds the workload with address ip: a service endpoint there, else a connected proxy.
func workloadAt(snap *mesh.Snapshot, ip string, proxies []xds.ProxyStatus) (WorkloadInfo, error) {
	if insts := snap.Instances(ip); len(insts) > 0 {
		ep := insts[0].Endpoint
		info := WorkloadInfo{Name: ep.WorkloadName, Namespace: ep.Namespace, Address: ip, Labels: ep.Labels,
			ServiceAccount: ep.ServiceAccount, Network: ep.Network, Locality: ep.Locality, Source: insts[0].Service.Origin}
		for _, o := range snap.Configs[config.WorkloadEntry] {
			if o.Namespace == ep.Namespace && o.Name == ep.WorkloadName {
				info.Source, info.Origin = "WorkloadEntry/"+o.Namespace+"/"+o.Name, o.Origin
			}
		}
		return info, nil
	}
	for _, p := range proxies {
		if id, err := node.Parse(p.Proxy); err == nil && id.IP == ip {
			return WorkloadInfo{Name: id.Name, Namespace: id.Namespace, Address: ip, Source: "proxy"}, nil
		}
	}
	return WorkloadInfo{}, &NotFoundError{Msg: fmt.Sprintf("no workload at %s: no service endpoint or connected proxy has that address", ip)}
}
