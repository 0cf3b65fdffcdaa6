package analysis

import (
	"strconv"

	tpb "istio.io/api/telemetry/v1alpha1"

	"github.com/strait-mesh/strait/controlplane/config"
)

// analyzeTelemetryProviders reports Telemetry accessLogging entries that name no provider when
// there is none to inherit (IST0157): MeshConfig's defaultProviders.accessLogging is empty and
// no mesh-wide (root namespace, no selector) Telemetry, nor for a workload-level one its
// namespace's, names access log providers. Such an entry selects nothing, so it changes
// nothing: `accessLogging: [{disabled: true}]` does not turn off MeshConfig's accessLogFile, as
// in Istio, which surprises users (istio/istio#49126); naming the provider (`envoy`) does.
// Istio reports every such entry when defaultProviders is empty; an entry that inherits a
// parent's providers is not reported here, because it does apply to them.
func analyzeTelemetryProviders(c *context) {
	if len(c.snap.Mesh.GetDefaultProviders().GetAccessLogging()) > 0 {
		return
	}
	tels := objects[*tpb.Telemetry](c, config.Telemetry)
	root := c.snap.RootNamespace()
	names := func(t typed[*tpb.Telemetry]) bool {
		for _, l := range t.spec.GetAccessLogging() {
			if len(l.GetProviders()) > 0 {
				return true
			}
		}
		return false
	}
	meshNames, nsNames := false, map[string]bool{}
	for _, t := range tels {
		if t.spec.GetSelector() != nil || t.spec.GetTargetRef() != nil || len(t.spec.GetTargetRefs()) > 0 {
			continue
		}
		if names(t) {
			if t.obj.Namespace == root {
				meshNames = true
			}
			nsNames[t.obj.Namespace] = true
		}
	}
	for _, t := range tels {
		if meshNames && t.obj.Namespace != root {
			continue
		}
		workload := t.spec.GetSelector() != nil || t.spec.GetTargetRef() != nil || len(t.spec.GetTargetRefs()) > 0
		if workload && nsNames[t.obj.Namespace] {
			continue
		}
		parent := false // an earlier entry of the same resource with providers is inherited
		for i, l := range t.spec.GetAccessLogging() {
			if len(l.GetProviders()) > 0 {
				parent = true
				continue
			}
			if parent {
				continue
			}
			c.report(newMessage(InvalidTelemetryProvider, t.obj, "spec.accessLogging["+strconv.Itoa(i)+"].providers", t.obj.Name, t.obj.Namespace))
		}
	}
}
