package registry

import (
	"encoding/json"
	"fmt"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/config"
)

// KubernetesServicePrefix starts the name of every ServiceEntry object the Kubernetes registry
// (controlplane/registry/kube) makes from a Service: "service:NAME". A colon never occurs in a
// Kubernetes or Istio config object's name, so only that registry makes such objects, and only
// on them does Build read the two annotations below.
const KubernetesServicePrefix = "service:"

// Annotations the Kubernetes registry sets on the ServiceEntry of a Service, read by Build.
const (
	// AnnotationServiceSelector is the Service's spec.selector, as a JSON object. Set only when
	// the selector is not empty: the Service then also selects the WorkloadEntries of its
	// namespace whose labels match (Istio's cross-registry selection).
	AnnotationServiceSelector = "registry.strait.io/service-selector"
	// AnnotationNamedTargetPorts maps the name of each service port whose targetPort is a name
	// to that name, as a JSON object: such a port has an endpoint only where the workload
	// declares that port (a Pod's EndpointSlice port, a WorkloadEntry's ports map).
	AnnotationNamedTargetPorts = "registry.strait.io/named-target-ports"
)

// kubeService is what Build reads from the annotations of a Kubernetes Service's ServiceEntry.
type kubeService struct {
	selector   map[string]string // nil: selects no WorkloadEntry
	namedPorts map[string]string // service port name -> target port name
}

// KubernetesServiceAnnotations returns the annotations a Kubernetes Service's ServiceEntry
// carries for Build: its selector and named target ports (see the constants); nil when it has
// neither.
func KubernetesServiceAnnotations(selector, namedTargetPorts map[string]string) map[string]string {
	var out map[string]string
	add := func(key string, m map[string]string) {
		if len(m) == 0 {
			return
		}
		b, err := json.Marshal(m) // sorted keys: the same map always gives the same text
		if err != nil {
			panic(fmt.Sprintf("registry: encoding a string map: %v", err)) // cannot fail
		}
		if out == nil {
			out = map[string]string{}
		}
		out[key] = string(b)
	}
	add(AnnotationServiceSelector, selector)
	add(AnnotationNamedTargetPorts, namedTargetPorts)
	return out
}

// parseKubeService returns the Kubernetes Service information of o, or nil when o is not a
// Kubernetes registry object or carries none.
func parseKubeService(o *config.Object) (*kubeService, error) {
	if !strings.HasPrefix(o.Name, KubernetesServicePrefix) {
		return nil, nil
	}
	ks := &kubeService{}
	for key, to := range map[string]*map[string]string{
		AnnotationServiceSelector:  &ks.selector,
		AnnotationNamedTargetPorts: &ks.namedPorts,
	} {
		v, ok := o.Annotations[key]
		if !ok {
			continue
		}
		if err := json.Unmarshal([]byte(v), to); err != nil {
			return nil, fmt.Errorf("building registry: %s: annotation %s: %w", o.Key(), key, err)
		}
	}
	if ks.selector == nil && ks.namedPorts == nil {
		return nil, nil
	}
	return ks, nil
}

// inlinePort returns the port of a Kubernetes Service's endpoint (from its EndpointSlices) on
// service port p: a port whose targetPort is a name exists only where the endpoint's slice
// resolved it (ports keyed by service port name), as Istio builds endpoints from the slices'
// ports; other ports as for any ServiceEntry.
func (ks *kubeService) inlinePort(we *networking.WorkloadEntry, p Port) (uint32, bool) {
	if _, named := ks.namedPorts[p.Name]; named {
		port := we.GetPorts()[p.Name]
		return port, port != 0
	}
	return defaultPort(we, p)
}

// workloadEntryPort returns the port of a WorkloadEntry selected by a Kubernetes Service on
// service port p, as Istio maps it: for a named targetPort, the WorkloadEntry's port of that
// name, and no endpoint on p without one; for a numeric one, the WorkloadEntry's port named as
// the service port, else the target port.
func (ks *kubeService) workloadEntryPort(we *networking.WorkloadEntry, p Port) (uint32, bool) {
	if target, named := ks.namedPorts[p.Name]; named {
		port := we.GetPorts()[target]
		return port, port != 0
	}
	return defaultPort(we, p)
}
