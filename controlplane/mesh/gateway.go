package mesh

import (
	"fmt"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/registry"
)

// gatewayIndex holds Gateway objects, oldest first.
type gatewayIndex struct {
	all []*config.Object
}

func newGatewayIndex(s *Snapshot) (*gatewayIndex, []error) {
	idx := &gatewayIndex{}
	var errs []error
	for _, o := range s.Configs[config.Gateway] {
		if _, ok := o.Spec.(*networking.Gateway); !ok {
			errs = append(errs, fmt.Errorf("indexing gateways: %s: spec is %T", o.Key(), o.Spec))
			continue
		}
		idx.all = append(idx.all, o)
	}
	return idx, errs
}

// Gateways returns the Gateways that select a router proxy: those, in any namespace, whose
// selector labels all match the proxy's labels (an empty selector selects every router), oldest
// first.
func (s *Snapshot) Gateways(w Workload) []*config.Object {
	var out []*config.Object
	for _, o := range s.gateways.all {
		if registry.LabelsMatch(o.Spec.(*networking.Gateway).GetSelector(), w.Labels) {
			out = append(out, o)
		}
	}
	return out
}

// GatewayName returns the "ns/name" reference of a Gateway object, as VirtualServices bind to it.
func GatewayName(o *config.Object) string { return o.Namespace + "/" + o.Name }
