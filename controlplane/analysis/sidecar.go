package analysis

import (
	"sort"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/registry"
)

// analyzeSidecarSelectors reports Sidecars of one namespace that have no workload selector
// (IST0111, when there are several) and Sidecars whose selectors select the same known workload
// (IST0110): only one of them applies.
func analyzeSidecarSelectors(c *context) {
	byNS := map[string][]typed[*networking.Sidecar]{}
	var namespaces []string
	for _, t := range objects[*networking.Sidecar](c, config.Sidecar) {
		if byNS[t.obj.Namespace] == nil {
			namespaces = append(namespaces, t.obj.Namespace)
		}
		byNS[t.obj.Namespace] = append(byNS[t.obj.Namespace], t)
	}
	sort.Strings(namespaces)
	for _, ns := range namespaces {
		var noSelector []*config.Object
		var selecting []typed[*networking.Sidecar]
		for _, t := range byNS[ns] {
			if len(t.spec.GetWorkloadSelector().GetLabels()) == 0 {
				noSelector = append(noSelector, t.obj)
			} else {
				selecting = append(selecting, t)
			}
		}
		if len(noSelector) > 1 {
			names := make([]string, len(noSelector))
			for i, o := range noSelector {
				names[i] = fullName(o)
			}
			for _, o := range noSelector {
				c.report(newMessage(MultipleSidecarsWithoutWorkloadSelectors, o, "metadata.name", names, ns))
			}
		}
		if len(selecting) < 2 {
			continue
		}
		for _, w := range c.knownWorkloads() {
			if w.Namespace != ns {
				continue
			}
			var matched []*config.Object
			for _, t := range selecting {
				if registry.LabelsMatch(t.spec.GetWorkloadSelector().GetLabels(), w.Labels) {
					matched = append(matched, t.obj)
				}
			}
			if len(matched) < 2 {
				continue
			}
			names := make([]string, len(matched))
			for i, o := range matched {
				names[i] = fullName(o)
			}
			for _, o := range matched {
				c.report(newMessage(ConflictingSidecarWorkloadSelectors, o, "spec.workloadSelector", names, ns, w.Name))
			}
		}
	}
}
