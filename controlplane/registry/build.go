package registry

import (
	"fmt"
	"sort"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/config"
)

// Build builds the service registry from ServiceEntry and WorkloadEntry objects (other kinds are
// ignored). Auto-registered workloads arrive as ordinary WorkloadEntry objects.
//
// Each ServiceEntry host becomes one Service in the ServiceEntry's namespace. Endpoints come from
// the ServiceEntry's inline endpoints, or, with a workloadSelector, from the WorkloadEntries of the
// same namespace whose labels match. A Kubernetes Service's ServiceEntry (from
// controlplane/registry/kube, see KubernetesServicePrefix) has its EndpointSlices' endpoints
// inline and also the WorkloadEntries its selector selects. A DNS or DNS_ROUND_ROBIN ServiceEntry without endpoints gets
// one endpoint per port: the host itself. Resolution NONE services keep their endpoints (if any) but
// are translated as original-destination passthrough.
//
// Services without addresses get an auto-allocated VIP (see AllocateAddresses). Services are
// sorted by hostname, then creation time, then namespace. An object whose spec has the
// wrong type is reported in errs and skipped; everything else is still built.
func Build(objs []*config.Object) (services []*Service, endpoints map[ServiceKey][]*Endpoint, errs []error) {
	endpoints = make(map[ServiceKey][]*Endpoint)
	var entries []*config.Object
	workloads := make(map[string][]*config.Object) // namespace -> WorkloadEntries
	for _, o := range objs {
		switch o.Kind {
		case config.ServiceEntry:
			if _, ok := o.Spec.(*networking.ServiceEntry); !ok {
				errs = append(errs, fmt.Errorf("building registry: %s: spec is %T, want ServiceEntry", o.Key(), o.Spec))
				continue
			}
			entries = append(entries, o)
		case config.WorkloadEntry:
			if _, ok := o.Spec.(*networking.WorkloadEntry); !ok {
				errs = append(errs, fmt.Errorf("building registry: %s: spec is %T, want WorkloadEntry", o.Key(), o.Spec))
				continue
			}
			workloads[o.Namespace] = append(workloads[o.Namespace], o)
		}
	}
	for _, list := range workloads {
		sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	}
	for _, o := range entries {
		se := o.Spec.(*networking.ServiceEntry)
		ks, err := parseKubeService(o)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ports := convertPorts(se.GetPorts())
		var eps []*Endpoint
		switch {
		case se.GetWorkloadSelector() != nil:
			for _, w := range workloads[o.Namespace] {
				we := w.Spec.(*networking.WorkloadEntry)
				if !LabelsMatch(se.GetWorkloadSelector().GetLabels(), we.GetLabels()) {
					continue
				}
				eps = append(eps, workloadEndpoints(we, w.Name, w.Namespace, ports, defaultPort)...)
			}
		default:
			portOf := defaultPort
			if ks != nil {
				portOf = ks.inlinePort
			}
			for i, we := range se.GetEndpoints() {
				eps = append(eps, workloadEndpoints(we, fmt.Sprintf("%s-%d", o.Name, i), o.Namespace, ports, portOf)...)
			}
			// Istio's cross-registry selection: a Kubernetes Service's selector also selects
			// the WorkloadEntries of its namespace, whatever source they come from.
			if ks != nil && ks.selector != nil {
				for _, w := range workloads[o.Namespace] {
					we := w.Spec.(*networking.WorkloadEntry)
					if LabelsMatch(ks.selector, we.GetLabels()) {
						eps = append(eps, workloadEndpoints(we, w.Name, w.Namespace, ports, ks.workloadEntryPort)...)
					}
				}
			}
		}
		for _, host := range se.GetHosts() {
			svc := &Service{
				Hostname:        host,
				Namespace:       o.Namespace,
				Addresses:       append([]string(nil), se.GetAddresses()...),
				Ports:           ports,
				Resolution:      convertResolution(se.GetResolution()),
				MeshExternal:    se.GetLocation() == networking.ServiceEntry_MESH_EXTERNAL,
				ExportTo:        append([]string(nil), se.GetExportTo()...),
				Labels:          o.Labels,
				SubjectAltNames: append([]string(nil), se.GetSubjectAltNames()...),
				Origin:          fmt.Sprintf("%s/%s/%s", o.Kind, o.Namespace, o.Name),
				Created:         o.CreationTimestamp,
			}
			if sel := se.GetWorkloadSelector(); sel != nil {
				svc.Selector = sel.GetLabels()
			} else if ks != nil && ks.selector != nil {
				svc.Selector = ks.selector
			}
			hostEps := eps
			if len(hostEps) == 0 && se.GetWorkloadSelector() == nil &&
				(svc.Resolution == ResolutionDNS || svc.Resolution == ResolutionDNSRoundRobin) &&
				!strings.HasPrefix(host, "*") {
				for _, p := range ports {
					hostEps = append(hostEps, &Endpoint{Address: host, Port: p.targetOrNumber(),
						ServicePortName: p.Name, Healthy: true, Namespace: o.Namespace, Weight: 1})
				}
			}
			services = append(services, svc)
			key := svc.Key()
			endpoints[key] = append(endpoints[key], hostEps...)
		}
	}
	sort.SliceStable(services, func(i, j int) bool {
		a, b := services[i], services[j]
		if a.Hostname != b.Hostname {
			return a.Hostname < b.Hostname
		}
		if !a.Created.Equal(b.Created) {
			return a.Created.Before(b.Created)
		}
		return a.Namespace < b.Namespace
	})
	AllocateAddresses(services)
	return services, endpoints, errs
}

func (p Port) targetOrNumber() uint32 {
	if p.TargetPort != 0 {
		return p.TargetPort
	}
	return p.Number
}

// defaultPort is a ServiceEntry's port mapping: the workload's port map (by service port name)
// overrides the service's targetPort, which overrides the port.
func defaultPort(we *networking.WorkloadEntry, p Port) (uint32, bool) {
	if wp, ok := we.GetPorts()[p.Name]; ok && wp != 0 {
		return wp, true
	}
	return p.targetOrNumber(), true
}

// workloadEndpoints returns one endpoint per service port for a workload entry, on the port
// portOf gives, none on the ports for which it reports false.
func workloadEndpoints(we *networking.WorkloadEntry, name, ns string, ports []Port,
	portOf func(*networking.WorkloadEntry, Port) (uint32, bool)) []*Endpoint {
	if we.GetAddress() == "" {
		return nil
	}
	weight := we.GetWeight()
	if weight == 0 {
		weight = 1
	}
	out := make([]*Endpoint, 0, len(ports))
	for _, p := range ports {
		port, ok := portOf(we, p)
		if !ok {
			continue
		}
		if strings.HasPrefix(we.GetAddress(), "unix://") {
			port = 0
		}
		out = append(out, &Endpoint{
			Address:         we.GetAddress(),
			Port:            port,
			ServicePortName: p.Name,
			Labels:          we.GetLabels(),
			Locality:        we.GetLocality(),
			Weight:          weight,
			ServiceAccount:  we.GetServiceAccount(),
			Network:         we.GetNetwork(),
			Healthy:         true,
			WorkloadName:    name,
			Namespace:       ns,
		})
	}
	return out
}

func convertPorts(in []*networking.ServicePort) []Port {
	out := make([]Port, 0, len(in))
	for _, p := range in {
		out = append(out, Port{
			Name:       p.GetName(),
			Number:     p.GetNumber(),
			Protocol:   SelectProtocol(p.GetName(), p.GetProtocol(), ""),
			TargetPort: p.GetTargetPort(),
		})
	}
	return out
}

func convertResolution(r networking.ServiceEntry_Resolution) Resolution {
	switch r {
	case networking.ServiceEntry_STATIC:
		return ResolutionStatic
	case networking.ServiceEntry_DNS:
		return ResolutionDNS
	case networking.ServiceEntry_DNS_ROUND_ROBIN:
		return ResolutionDNSRoundRobin
	}
	return ResolutionNone
}

// LabelsMatch reports whether every selector label is present with the same value in labels. An
// empty selector matches everything.
func LabelsMatch(selector, labels map[string]string) bool {
	for k, v := range selector {
		if lv, ok := labels[k]; !ok || lv != v {
			return false
		}
	}
	return true
}
