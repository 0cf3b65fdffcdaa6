package mesh

import (
	"fmt"
	"sort"
	"strings"

	meshconfig "istio.io/api/mesh/v1alpha1"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/buildcache"
	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/registry"
)

// sidecarIndex holds Sidecar objects by namespace, oldest first.
type sidecarIndex struct {
	byNS map[string][]*config.Object
}

func newSidecarIndex(s *Snapshot) (*sidecarIndex, []error) {
	idx := &sidecarIndex{byNS: make(map[string][]*config.Object)}
	var errs []error
	for _, o := range s.Configs[config.Sidecar] {
		if _, ok := o.Spec.(*networking.Sidecar); !ok {
			errs = append(errs, fmt.Errorf("indexing sidecars: %s: spec is %T", o.Key(), o.Spec))
			continue
		}
		idx.byNS[o.Namespace] = append(idx.byNS[o.Namespace], o)
	}
	return idx, errs
}

// Sidecar returns the Sidecar resource that applies to a workload, or nil: the oldest Sidecar in the
// workload's namespace whose workloadSelector matches its labels, else the oldest one in that
// namespace without a selector, else the oldest one in the root namespace without a selector.
func (s *Snapshot) Sidecar(w Workload) *config.Object {
	list := s.sidecars.byNS[w.Namespace]
	for _, o := range list {
		sel := o.Spec.(*networking.Sidecar).GetWorkloadSelector()
		if sel != nil && len(sel.GetLabels()) > 0 && registry.LabelsMatch(sel.GetLabels(), w.Labels) {
			return o
		}
	}
	for _, o := range list {
		if sel := o.Spec.(*networking.Sidecar).GetWorkloadSelector(); sel == nil || len(sel.GetLabels()) == 0 {
			return o
		}
	}
	if w.Namespace == s.RootNamespace() {
		return nil
	}
	for _, o := range s.sidecars.byNS[s.RootNamespace()] {
		if sel := o.Spec.(*networking.Sidecar).GetWorkloadSelector(); sel == nil || len(sel.GetLabels()) == 0 {
			return o
		}
	}
	return nil
}

// EgressHost is one parsed Sidecar egress host "namespace/host". Namespace is a namespace name,
// "*" (any) or "~" (none); "." has been replaced by the proxy's namespace.
type EgressHost struct {
	Namespace string
	Host      string
}

// Matches reports whether the egress host admits an object in namespace ns with host name host.
func (h EgressHost) Matches(ns, host string) bool {
	if h.Namespace == "~" || (h.Namespace != "*" && h.Namespace != ns) {
		return false
	}
	return HostsOverlap(h.Host, host)
}

// EgressListener is one Sidecar egress listener (or the implicit "*/*" one) with the services it
// reaches.
type EgressListener struct {
	// Spec is the Sidecar egress listener, nil for the implicit default.
	Spec *networking.IstioEgressListener
	// Port is the listener port, 0 when the listener catches every port (the common case).
	Port uint32
	// Hosts are the parsed egress hosts.
	Hosts []EgressHost
	// Services are the services the listener admits, one per hostname, sorted by hostname.
	Services []*registry.Service
}

// Admits reports whether the listener admits an object in namespace ns with hostname host.
func (l *EgressListener) Admits(ns, host string) bool {
	for _, h := range l.Hosts {
		if h.Matches(ns, host) {
			return true
		}
	}
	return false
}

// Scope is what one class of proxies may reach: the Sidecar that applies (if any) and, per egress
// listener, the services it admits. Scopes are shared by every proxy with the same namespace and
// Sidecar and cached in the snapshot; treat them as read-only.
type Scope struct {
	// Namespace is the proxy namespace the scope was computed for.
	Namespace string
	// Sidecar is the applied Sidecar object, nil when the mesh default applies.
	Sidecar *config.Object
	// Egress lists egress listeners; with no Sidecar, one listener for "*/*".
	Egress []*EgressListener
	// Services is the union of the egress listeners' services, sorted by hostname.
	Services []*registry.Service
	// RegistryOnly is true when outbound traffic to unknown destinations is blocked
	// (Sidecar outboundTrafficPolicy, else MeshConfig).
	RegistryOnly bool
	// Key identifies the scope within the snapshot (namespace and Sidecar), for caching.
	Key string

	servicePorts map[ServicePortKey]bool
}

// ServicePortKey names one port of one service.
type ServicePortKey struct {
	Service ServiceKey
	Port    uint32
}

// Reaches reports whether the scope may reach the given service port.
func (sc *Scope) Reaches(svc *registry.Service, port uint32) bool {
	return sc.servicePorts[ServicePortKey{svc.Key(), port}]
}

// Ports returns the reachable ports of svc, in service port order.
func (sc *Scope) Ports(svc *registry.Service) []registry.Port {
	var out []registry.Port
	for _, p := range svc.Ports {
		if sc.servicePorts[ServicePortKey{svc.Key(), p.Number}] {
			out = append(out, p)
		}
	}
	return out
}

// Service returns the in-scope service with the hostname, or nil.
func (sc *Scope) Service(host string) *registry.Service {
	i := sort.Search(len(sc.Services), func(i int) bool { return sc.Services[i].Hostname >= host })
	if i < len(sc.Services) && sc.Services[i].Hostname == host {
		return sc.Services[i]
	}
	return nil
}

// Scope returns the scope of a workload (sidecar proxies). Routers and proxyless clients use
// DefaultScope of their namespace.
func (s *Snapshot) Scope(w Workload) *Scope {
	sc := s.Sidecar(w)
	if sc == nil {
		return s.DefaultScope(w.Namespace)
	}
	key := w.Namespace + "|" + sc.Namespace + "/" + sc.Name
	return scopeSlot.Get(s.Cache(), key, func() *Scope { return s.buildScope(w.Namespace, sc, key) })
}

// scopeSlot holds a snapshot's scopes by key (Scope.Key); uniformScopeSlot the default scope
// shared by all namespaces when services are uniform.
var (
	scopeSlot        = buildcache.NewSlot[string, *Scope]("mesh-scope")
	uniformScopeSlot = buildcache.NewSlot[struct{}, *Scope]("mesh-uniform-scope")
)

// DefaultScope returns the scope of a proxy in ns to which no Sidecar applies: every service
// exported to ns, on every port.
func (s *Snapshot) DefaultScope(ns string) *Scope {
	key := ns + "|"
	return scopeSlot.Get(s.Cache(), key, func() *Scope {
		if !s.services.uniform {
			return s.buildScope(ns, nil, key)
		}
		// Every namespace sees the same services: share one computed scope, and only the
		// namespace and key differ.
		tmpl := uniformScopeSlot.Get(s.Cache(), struct{}{}, func() *Scope { return s.buildScope(ns, nil, key) })
		c := *tmpl
		c.Namespace, c.Key = ns, key
		return &c
	})
}

func (s *Snapshot) buildScope(ns string, sidecar *config.Object, key string) *Scope {
	sc := &Scope{Namespace: ns, Sidecar: sidecar, Key: key, servicePorts: make(map[ServicePortKey]bool)}
	// MeshConfig's default (no outboundTrafficPolicy) is ALLOW_ANY, as in Istio's default mesh config.
	if p := s.Mesh.GetOutboundTrafficPolicy(); p != nil {
		sc.RegistryOnly = p.GetMode() == meshconfig.MeshConfig_OutboundTrafficPolicy_REGISTRY_ONLY
	}
	visible := s.VisibleServices(ns)
	var specs []*networking.IstioEgressListener
	if sidecar != nil {
		spec := sidecar.Spec.(*networking.Sidecar)
		specs = spec.GetEgress()
		if p := spec.GetOutboundTrafficPolicy(); p != nil {
			sc.RegistryOnly = p.GetMode() == networking.OutboundTrafficPolicy_REGISTRY_ONLY
		}
	}
	if len(specs) == 0 {
		specs = []*networking.IstioEgressListener{nil}
	}
	union := make(map[ServiceKey]*registry.Service)
	for _, spec := range specs {
		l := &EgressListener{Spec: spec, Port: spec.GetPort().GetNumber()}
		hosts := spec.GetHosts()
		if spec == nil {
			hosts = []string{"*/*"}
		}
		for _, h := range hosts {
			l.Hosts = append(l.Hosts, parseEgressHost(h, ns))
		}
		for _, svc := range visible {
			if !l.Admits(svc.Namespace, svc.Hostname) {
				continue
			}
			matched := false
			for _, p := range svc.Ports {
				if l.Port == 0 || p.Number == l.Port {
					sc.servicePorts[ServicePortKey{svc.Key(), p.Number}] = true
					matched = true
				}
			}
			if !matched {
				continue
			}
			l.Services = append(l.Services, svc)
			union[svc.Key()] = svc
		}
		sc.Egress = append(sc.Egress, l)
	}
	for _, svc := range union {
		sc.Services = append(sc.Services, svc)
	}
	sort.Slice(sc.Services, func(i, j int) bool { return sc.Services[i].Hostname < sc.Services[j].Hostname })
	return sc
}

// parseEgressHost parses "ns/host" ("./host" means the proxy namespace). A host without a
// namespace part is treated as "*/host".
func parseEgressHost(h, proxyNS string) EgressHost {
	ns, host, ok := strings.Cut(h, "/")
	if !ok {
		ns, host = "*", h
	}
	if ns == "." {
		ns = proxyNS
	}
	return EgressHost{Namespace: ns, Host: host}
}
