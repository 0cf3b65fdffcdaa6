package analysis

import (
	"slices"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/mesh"
)

// analyzeDestinationRuleHosts reports (IST0174) DestinationRules whose host matches no service
// visible from the rule's namespace.
func analyzeDestinationRuleHosts(c *context) {
	for _, t := range objects[*networking.DestinationRule](c, config.DestinationRule) {
		host := mesh.ResolveShortName(t.spec.GetHost(), t.obj.Namespace)
		if host == "" {
			continue
		}
		found := false
		for _, svc := range c.snap.Services {
			if c.snap.ServiceVisible(svc, t.obj.Namespace) && mesh.HostsOverlap(host, svc.Hostname) {
				found = true
				break
			}
		}
		if !found {
			c.report(newMessage(UnknownDestinationRuleHost, t.obj, "spec.host", t.spec.GetHost()))
		}
	}
}

// analyzeConflictingDestinationRules reports (STR0001) DestinationRules that straitd merges
// with an older rule for the same host (same namespace, same exportTo, no workload selector) and
// whose traffic policy or subsets are therefore ignored: Istio merges them the same way.
func analyzeConflictingDestinationRules(c *context) {
	type group struct {
		rules    []typed[*networking.DestinationRule]
		policy   bool
		subsets  map[string]bool
		conflict map[*config.Object][]string // ignored parts per rule
	}
	groups := map[string]*group{}
	var order []string
	for _, t := range objects[*networking.DestinationRule](c, config.DestinationRule) {
		if sel := t.spec.GetWorkloadSelector(); sel != nil && len(sel.GetMatchLabels()) > 0 {
			continue
		}
		host := mesh.ResolveShortName(t.spec.GetHost(), t.obj.Namespace)
		key := t.obj.Namespace + "\x00" + host + "\x00" + strings.Join(t.spec.GetExportTo(), ",")
		g := groups[key]
		if g == nil {
			g = &group{subsets: map[string]bool{}, conflict: map[*config.Object][]string{}}
			groups[key] = g
			order = append(order, key)
		}
		var ignored []string
		if t.spec.GetTrafficPolicy() != nil {
			if g.policy {
				ignored = append(ignored, "trafficPolicy")
			}
			g.policy = true
		}
		var dups []string
		for _, ss := range t.spec.GetSubsets() {
			if g.subsets[ss.GetName()] {
				dups = append(dups, ss.GetName())
			}
			g.subsets[ss.GetName()] = true
		}
		if len(dups) > 0 {
			ignored = append(ignored, "subsets "+strings.Join(dups, ", "))
		}
		g.rules = append(g.rules, t)
		if len(ignored) > 0 {
			g.conflict[t.obj] = ignored
		}
	}
	for _, key := range order {
		g := groups[key]
		if len(g.conflict) == 0 {
			continue
		}
		names := make([]string, len(g.rules))
		for i, r := range g.rules {
			names[i] = fullName(r.obj)
		}
		for _, r := range g.rules {
			ignored := g.conflict[r.obj]
			if len(ignored) == 0 {
				continue
			}
			verb := strings.Join(ignored, " and ")
			if len(ignored) > 1 || strings.HasPrefix(verb, "subsets") {
				verb += " are"
			} else {
				verb += " is"
			}
			host := mesh.ResolveShortName(r.spec.GetHost(), r.obj.Namespace)
			c.report(newMessage(ConflictingDestinationRules, r.obj, "spec.host", slices.Clone(names), r.obj.Namespace, host, verb))
		}
	}
}
