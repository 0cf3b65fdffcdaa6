package config

import (
	"fmt"
	"sort"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"
)

// DefaultDomainSuffix is the cluster domain used to expand short host names in cross-object checks.
const DefaultDomainSuffix = "cluster.local"

// ValidateSet runs the cross-object checks that are cheap to do over a whole set of objects, as
// Istio's analyzers do. Every finding is a *Warning: the objects are individually valid, but the
// set is most likely not what the author meant. The checks:
//   - a VirtualService destination names a subset that no DestinationRule for its host defines;
//   - a VirtualService names a Gateway that is not in the set;
//   - a VirtualService delegates to a VirtualService that is not in the set, or that has hosts;
//   - more than one Sidecar without workloadSelector in a namespace;
//   - more than one PeerAuthentication without selector labels in a namespace;
//   - more than one DestinationRule without workloadSelector for the same host in a namespace;
//   - two VirtualServices for the same host bound to the mesh (sidecars use only one).
//
// The result is sorted by object and field. objs is not modified.
func ValidateSet(objs []*Object) (result []error) {
	defer func() {
		if r := recover(); r != nil {
			result = append(result, &Warning{Msg: fmt.Sprintf("internal error in cross-object checks: %v", r)})
		}
	}()
	s := newSetIndex(objs)
	var out []*Warning
	warn := func(o *Object, field, format string, args ...any) {
		out = append(out, &Warning{Origin: o.Origin, Kind: o.Kind, Namespace: o.Namespace, Name: o.Name, Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	for _, o := range s.vs {
		vs := o.Spec.(*networking.VirtualService)
		s.checkSubsets(o, vs, warn)
		for i, gw := range vs.Gateways {
			if gw == "mesh" {
				continue
			}
			if _, ok := s.gateways[gatewayKey(gw, o.Namespace)]; !ok {
				warn(o, fmt.Sprintf("spec.gateways[%d]", i), "gateway %s not found", quoteShort(gw))
			}
		}
		for i, r := range vs.Http {
			if r == nil || r.Delegate == nil || r.Delegate.Name == "" {
				continue
			}
			ns := r.Delegate.Namespace
			if ns == "" {
				ns = o.Namespace
			}
			target, ok := s.vsByKey[ns+"/"+r.Delegate.Name]
			switch {
			case !ok:
				warn(o, fmt.Sprintf("spec.http[%d].delegate", i), "delegate VirtualService %s/%s not found", ns, r.Delegate.Name)
			case len(target.Spec.(*networking.VirtualService).Hosts) > 0:
				warn(o, fmt.Sprintf("spec.http[%d].delegate", i), "delegate VirtualService %s/%s has hosts, so it is not a delegate and is ignored here", ns, r.Delegate.Name)
			}
		}
	}
	s.checkDuplicates(warn)
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.Field < b.Field
	})
	errs := make([]error, len(out))
	for i, w := range out {
		errs[i] = w
	}
	return errs
}

// setIndex indexes a set of objects for the cross-object checks.
type setIndex struct {
	vs       []*Object
	vsByKey  map[string]*Object // "ns/name"
	drs      []*Object
	sidecars []*Object
	gateways map[string]*Object // "ns/name"
	peerAuth []*Object
}

func newSetIndex(objs []*Object) *setIndex {
	s := &setIndex{vsByKey: map[string]*Object{}, gateways: map[string]*Object{}}
	for _, o := range objs {
		if o == nil || o.Spec == nil || !o.Spec.ProtoReflect().IsValid() {
			continue
		}
		switch o.Spec.(type) {
		case *networking.VirtualService:
			s.vs = append(s.vs, o)
			s.vsByKey[o.Namespace+"/"+o.Name] = o
		case *networking.DestinationRule:
			s.drs = append(s.drs, o)
		case *networking.Sidecar:
			s.sidecars = append(s.sidecars, o)
		case *networking.Gateway:
			s.gateways[o.Namespace+"/"+o.Name] = o
		case *security.PeerAuthentication:
			s.peerAuth = append(s.peerAuth, o)
		}
	}
	return s
}

// fqdn expands a short host name relative to ns, as Istio does for hosts without dots.
func fqdn(host, ns string) string {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if strings.Contains(h, ".") || h == "*" || strings.HasPrefix(h, "*") {
		return h
	}
	return h + "." + ns + ".svc." + DefaultDomainSuffix
}

// gatewayKey resolves a VirtualService's gateway reference to "ns/name".
func gatewayKey(ref, vsNS string) string {
	if ns, name, ok := strings.Cut(ref, "/"); ok {
		return ns + "/" + name
	}
	// "name.ns.svc.cluster.local" or "name.ns" forms.
	if parts := strings.Split(ref, "."); len(parts) >= 2 {
		return parts[1] + "/" + parts[0]
	}
	return vsNS + "/" + ref
}

// subsetsFor returns the subset names defined for host (an FQDN) by DestinationRules, and whether
// any DestinationRule matches the host.
func (s *setIndex) subsetsFor(host string) (map[string]bool, bool) {
	subsets := map[string]bool{}
	found := false
	for _, o := range s.drs {
		dr := o.Spec.(*networking.DestinationRule)
		drHost := fqdn(dr.Host, o.Namespace)
		if drHost != host && !(strings.HasPrefix(drHost, "*") && strings.HasSuffix(host, drHost[1:])) {
			continue
		}
		found = true
		for _, ss := range dr.Subsets {
			if ss != nil {
				subsets[ss.Name] = true
			}
		}
	}
	return subsets, found
}

// checkSubsets warns about destinations that name subsets no DestinationRule defines.
func (s *setIndex) checkSubsets(o *Object, vs *networking.VirtualService, warn func(*Object, string, string, ...any)) {
	check := func(path string, d *networking.Destination) {
		if d == nil || d.Subset == "" || d.Host == "" {
			return
		}
		host := fqdn(d.Host, o.Namespace)
		subsets, found := s.subsetsFor(host)
		switch {
		case !found:
			warn(o, path+".subset", "subset %s: no DestinationRule for host %s", quoteShort(d.Subset), quoteShort(d.Host))
		case !subsets[d.Subset]:
			warn(o, path+".subset", "subset %s is not defined by any DestinationRule for host %s", quoteShort(d.Subset), quoteShort(d.Host))
		}
	}
	for i, r := range vs.Http {
		if r == nil {
			continue
		}
		for j, d := range r.Route {
			if d != nil {
				check(fmt.Sprintf("spec.http[%d].route[%d].destination", i, j), d.Destination)
			}
		}
		check(fmt.Sprintf("spec.http[%d].mirror", i), r.Mirror)
		for j, m := range r.Mirrors {
			if m != nil {
				check(fmt.Sprintf("spec.http[%d].mirrors[%d].destination", i, j), m.Destination)
			}
		}
	}
	for i, r := range vs.Tcp {
		if r == nil {
			continue
		}
		for j, d := range r.Route {
			if d != nil {
				check(fmt.Sprintf("spec.tcp[%d].route[%d].destination", i, j), d.Destination)
			}
		}
	}
	for i, r := range vs.Tls {
		if r == nil {
			continue
		}
		for j, d := range r.Route {
			if d != nil {
				check(fmt.Sprintf("spec.tls[%d].route[%d].destination", i, j), d.Destination)
			}
		}
	}
}

// checkDuplicates warns about Sidecars, PeerAuthentications, DestinationRules and VirtualServices
// that compete for the same namespace, host or host and gateway. The first object (by namespace and name) is the one
// named in the message; the later ones get the warning.
func (s *setIndex) checkDuplicates(warn func(*Object, string, string, ...any)) {
	byName := func(list []*Object) []*Object {
		out := append([]*Object(nil), list...)
		sort.Slice(out, func(i, j int) bool { return out[i].Key().String() < out[j].Key().String() })
		return out
	}
	defaultSidecar := map[string]*Object{}
	for _, o := range byName(s.sidecars) {
		if o.Spec.(*networking.Sidecar).WorkloadSelector != nil {
			continue
		}
		if first, ok := defaultSidecar[o.Namespace]; ok {
			warn(o, "spec.workloadSelector", "namespace %s has more than one Sidecar without workloadSelector (also %s); Istio uses only one of them", o.Namespace, first.Name)
			continue
		}
		defaultSidecar[o.Namespace] = o
	}
	namespacePA := map[string]*Object{}
	for _, o := range byName(s.peerAuth) {
		if len(o.Spec.(*security.PeerAuthentication).GetSelector().GetMatchLabels()) > 0 {
			continue
		}
		if first, ok := namespacePA[o.Namespace]; ok {
			warn(o, "spec.selector", "namespace %s has more than one PeerAuthentication without selector (also %s); Istio uses only the oldest of them", o.Namespace, first.Name)
			continue
		}
		namespacePA[o.Namespace] = o
	}
	drHosts := map[string]*Object{}
	for _, o := range byName(s.drs) {
		dr := o.Spec.(*networking.DestinationRule)
		if dr.WorkloadSelector != nil || dr.Host == "" {
			continue
		}
		key := o.Namespace + "/" + fqdn(dr.Host, o.Namespace)
		if first, ok := drHosts[key]; ok {
			warn(o, "spec.host", "DestinationRule %s in the same namespace is also for host %s; their subsets merge and the first traffic policy wins", first.Name, quoteShort(dr.Host))
			continue
		}
		drHosts[key] = o
	}
	// Istio merges VirtualServices for the same host on a gateway, but for sidecars (the mesh
	// gateway) only one of them is used.
	vsHosts := map[string]*Object{}
	for _, o := range byName(s.vs) {
		vs := o.Spec.(*networking.VirtualService)
		mesh := len(vs.Gateways) == 0
		for _, gw := range vs.Gateways {
			mesh = mesh || gw == "mesh"
		}
		if !mesh {
			continue
		}
		for i, h := range vs.Hosts {
			key := fqdn(h, o.Namespace)
			if first, ok := vsHosts[key]; ok && first != o {
				warn(o, fmt.Sprintf("spec.hosts[%d]", i), "VirtualService %s/%s also defines host %s for the mesh; only one of them takes effect for sidecars", first.Namespace, first.Name, quoteShort(h))
				continue
			}
			vsHosts[key] = o
		}
	}
}
