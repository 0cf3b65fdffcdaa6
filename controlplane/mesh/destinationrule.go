package mesh

import (
	"fmt"
	"slices"
	"sort"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/registry"
)

// destinationRuleIndex holds DestinationRules per namespace, merged per host as Istio does: rules
// for the same host in one namespace with the same exportTo are merged into one (subsets appended,
// skipping duplicate names; the oldest rule's traffic policy wins).
type destinationRuleIndex struct {
	byNS       map[string]*nsRules
	selectorNS map[string][]*config.Object // rules with a workloadSelector, oldest first
	defaults   []string
	// exportedEverywhere is true when every rule is visible from every namespace, so that a
	// proxy's namespace matters only when rules live in it (see NamespaceIndependent).
	exportedEverywhere bool
}

type nsRules struct {
	byHost map[string][]*config.Object // merged rules for the host, one per distinct exportTo
	hosts  []string                    // every host key, most specific first
}

func newDestinationRuleIndex(s *Snapshot) (*destinationRuleIndex, []error) {
	idx := &destinationRuleIndex{byNS: make(map[string]*nsRules), selectorNS: make(map[string][]*config.Object),
		defaults: s.Mesh.GetDefaultDestinationRuleExportTo()}
	var errs []error
	idx.exportedEverywhere = true
	for _, o := range s.Configs[config.DestinationRule] {
		dr, ok := o.Spec.(*networking.DestinationRule)
		if !ok {
			errs = append(errs, fmt.Errorf("indexing destination rules: %s: spec is %T", o.Key(), o.Spec))
			continue
		}
		if !exportedEverywhere(dr.GetExportTo(), idx.defaults) {
			idx.exportedEverywhere = false
		}
		if sel := dr.GetWorkloadSelector(); sel != nil && len(sel.GetMatchLabels()) > 0 {
			idx.selectorNS[o.Namespace] = append(idx.selectorNS[o.Namespace], o)
			continue
		}
		rules := idx.byNS[o.Namespace]
		if rules == nil {
			rules = &nsRules{byHost: make(map[string][]*config.Object)}
			idx.byNS[o.Namespace] = rules
		}
		host := ResolveShortName(dr.GetHost(), o.Namespace)
		list := rules.byHost[host]
		merged := false
		for i, prev := range list {
			if slices.Equal(prev.Spec.(*networking.DestinationRule).GetExportTo(), dr.GetExportTo()) {
				list[i] = mergeDestinationRules(prev, o)
				merged = true
				break
			}
		}
		if !merged {
			if len(list) == 0 {
				rules.hosts = append(rules.hosts, host)
			}
			rules.byHost[host] = append(list, o)
		}
	}
	for _, rules := range idx.byNS {
		sort.Slice(rules.hosts, func(i, j int) bool { return moreSpecific(rules.hosts[i], rules.hosts[j]) })
	}
	return idx, errs
}

// mergeDestinationRules returns a new object: base with the subsets of extra appended (subsets
// whose name already exists are dropped). base's traffic policy and metadata are kept.
func mergeDestinationRules(base, extra *config.Object) *config.Object {
	spec := proto.Clone(base.Spec).(*networking.DestinationRule)
	for _, ss := range extra.Spec.(*networking.DestinationRule).GetSubsets() {
		dup := false
		for _, have := range spec.Subsets {
			if have.GetName() == ss.GetName() {
				dup = true
				break
			}
		}
		if !dup {
			spec.Subsets = append(spec.Subsets, ss)
		}
	}
	if spec.TrafficPolicy == nil {
		spec.TrafficPolicy = extra.Spec.(*networking.DestinationRule).GetTrafficPolicy()
	}
	out := *base
	out.Spec = spec
	return &out
}

// DestinationRule returns the DestinationRule that applies to traffic from workload w to host, or
// nil. Precedence follows Istio: a rule in w's namespace whose workloadSelector matches w, then
// rules in w's namespace, then rules exported to w's namespace from the namespace of the service
// (as w sees it), then from the root namespace. Within a namespace the most specific host wins
// (exact, then the longest wildcard). The returned object may be a merge of several rules and
// must not be modified.
func (s *Snapshot) DestinationRule(w Workload, host string) *config.Object {
	idx := s.drs
	for _, o := range idx.selectorNS[w.Namespace] {
		dr := o.Spec.(*networking.DestinationRule)
		if registry.LabelsMatch(dr.GetWorkloadSelector().GetMatchLabels(), w.Labels) &&
			HostMatches(ResolveShortName(dr.GetHost(), o.Namespace), host) {
			return o
		}
	}
	if o := idx.lookup(w.Namespace, host, w.Namespace, true); o != nil {
		return o
	}
	if svc := s.Service(host, w.Namespace); svc != nil && svc.Namespace != w.Namespace {
		if o := idx.lookup(svc.Namespace, host, w.Namespace, false); o != nil {
			return o
		}
	}
	if root := s.RootNamespace(); root != w.Namespace {
		return idx.lookup(root, host, w.Namespace, false)
	}
	return nil
}

// lookup finds the most specific rule in namespace ns for host that is visible from namespace to.
// Rules are always visible in their own namespace unless exported to nobody ("~").
func (idx *destinationRuleIndex) lookup(ns, host, to string, local bool) *config.Object {
	rules := idx.byNS[ns]
	if rules == nil {
		return nil
	}
	for _, h := range rules.hosts {
		if !HostMatches(h, host) {
			continue
		}
		for _, o := range rules.byHost[h] {
			exp := o.Spec.(*networking.DestinationRule).GetExportTo()
			if local {
				if !(len(exp) == 1 && exp[0] == "~") {
					return o
				}
				continue
			}
			if ExportedTo(exp, idx.defaults, ns, to) {
				return o
			}
		}
	}
	return nil
}

// DestinationRuleSignature identifies the workload-selecting DestinationRules that apply to w
// ("" when none). Proxies of one Scope with equal signatures get identical DestinationRule
// lookups, so translation output may be shared between them.
func (s *Snapshot) DestinationRuleSignature(w Workload) string {
	var sig []byte
	for _, o := range s.drs.selectorNS[w.Namespace] {
		if registry.LabelsMatch(o.Spec.(*networking.DestinationRule).GetWorkloadSelector().GetMatchLabels(), w.Labels) {
			sig = append(sig, o.Name...)
			sig = append(sig, ',')
		}
	}
	return string(sig)
}

// NamespaceIndependent reports whether what a proxy sees through sc does not depend on the
// proxy's namespace: no Sidecar applies, every namespace sees the same services, every
// DestinationRule is exported everywhere and none lives in the scope's namespace. Lookups of
// services and DestinationRules then give the same results for every such namespace, so output
// built from them (outbound clusters and endpoints) may be shared between namespaces.
func (s *Snapshot) NamespaceIndependent(sc *Scope) bool {
	if sc.Sidecar != nil || !s.services.uniform || !s.drs.exportedEverywhere {
		return false
	}
	if _, ok := s.drs.byNS[sc.Namespace]; ok {
		return false
	}
	return len(s.drs.selectorNS[sc.Namespace]) == 0
}
