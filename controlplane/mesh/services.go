package mesh

import (
	"slices"

	"github.com/strait-mesh/strait/controlplane/buildcache"
	"github.com/strait-mesh/strait/controlplane/registry"
)

// serviceIndex finds services by hostname and decides visibility by exportTo.
type serviceIndex struct {
	byHost   map[string][]*registry.Service // in Snapshot.Services order (oldest first per host)
	defaults []string
	// uniform is true when every namespace sees the same services: each is exported everywhere
	// and no hostname is defined twice (which namespace's definition wins depends on the viewer).
	uniform bool
}

func newServiceIndex(s *Snapshot) *serviceIndex {
	idx := &serviceIndex{byHost: make(map[string][]*registry.Service), defaults: s.Mesh.GetDefaultServiceExportTo()}
	idx.uniform = true
	for _, svc := range s.Services {
		idx.byHost[svc.Hostname] = append(idx.byHost[svc.Hostname], svc)
		if len(idx.byHost[svc.Hostname]) > 1 || !exportedEverywhere(svc.ExportTo, idx.defaults) {
			idx.uniform = false
		}
	}
	return idx
}

// exportedEverywhere reports whether exportTo (or the default when empty) admits every namespace.
func exportedEverywhere(exportTo, defaults []string) bool {
	if len(exportTo) == 0 {
		exportTo = defaults
	}
	return len(exportTo) == 0 || slices.Contains(exportTo, "*")
}

// ServiceVisible reports whether svc is exported to namespace ns (ServiceEntry exportTo, else
// MeshConfig.defaultServiceExportTo, else everywhere).
func (s *Snapshot) ServiceVisible(svc *registry.Service, ns string) bool {
	return ExportedTo(svc.ExportTo, s.services.defaults, svc.Namespace, ns)
}

// Service returns the service with the exact hostname that a proxy in namespace ns sees, or nil.
// When several namespaces define the hostname, the one in ns wins, then the oldest visible one.
func (s *Snapshot) Service(host, ns string) *registry.Service {
	var first *registry.Service
	for _, svc := range s.services.byHost[host] {
		if !s.ServiceVisible(svc, ns) {
			continue
		}
		if svc.Namespace == ns {
			return svc
		}
		if first == nil {
			first = svc
		}
	}
	return first
}

// VisibleServices returns the services a proxy in namespace ns may see (exportTo only, no Sidecar
// scoping), one per hostname, sorted by hostname.
func (s *Snapshot) VisibleServices(ns string) []*registry.Service {
	out := make([]*registry.Service, 0, len(s.Services))
	for i := 0; i < len(s.Services); {
		host := s.Services[i].Hostname
		j := i
		for j < len(s.Services) && s.Services[j].Hostname == host {
			j++
		}
		if svc := s.Service(host, ns); svc != nil {
			out = append(out, svc)
		}
		i = j
	}
	return out
}

// ServiceEndpoints returns the endpoints of svc (all ports).
func (s *Snapshot) ServiceEndpoints(svc *registry.Service) []*registry.Endpoint {
	return s.Endpoints[svc.Key()]
}

// InstanceEndpoint is one endpoint with the service it belongs to.
type InstanceEndpoint struct {
	Service  *registry.Service
	Endpoint *registry.Endpoint
}

// instancesSlot holds a snapshot's index of service endpoints by address.
var instancesSlot = buildcache.NewSlot[struct{}, map[string][]InstanceEndpoint]("mesh-instances")

// Instances returns the service endpoints whose address is addr (a workload's own endpoints,
// for inbound listeners), in service order. The index is built on first use.
func (s *Snapshot) Instances(addr string) []InstanceEndpoint {
	idx := instancesSlot.Get(s.Cache(), struct{}{}, func() map[string][]InstanceEndpoint {
		m := make(map[string][]InstanceEndpoint)
		for _, svc := range s.Services {
			for _, ep := range s.Endpoints[svc.Key()] {
				m[ep.Address] = append(m[ep.Address], InstanceEndpoint{Service: svc, Endpoint: ep})
			}
		}
		return m
	})
	return idx[addr]
}
