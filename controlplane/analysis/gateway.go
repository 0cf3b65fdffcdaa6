package analysis

import (
	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/registry"
)

// analyzeGatewaySelectors reports (IST0101) Gateways whose selector matches no known workload,
// when Options.CheckGatewaySelectors is set. A Gateway without a selector selects every gateway
// proxy and is not reported.
func analyzeGatewaySelectors(c *context) {
	if !c.opts.CheckGatewaySelectors {
		return
	}
	for _, t := range objects[*networking.Gateway](c, config.Gateway) {
		sel := t.spec.GetSelector()
		if len(sel) == 0 {
			continue
		}
		found := false
		for _, w := range c.knownWorkloads() {
			if registry.LabelsMatch(sel, w.Labels) {
				found = true
				break
			}
		}
		if !found {
			c.report(newMessage(ReferencedResourceNotFound, t.obj, "spec.selector", "selector", SelectorString(sel)))
		}
	}
}
