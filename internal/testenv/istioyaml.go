package testenv

import (
	"fmt"
	"strings"
)

// The Istio YAML that tests give straitd (the end-to-end tests, the live `strait proxy-config`
// test): one builder per kind that tests spell the same way.

// hostName returns the name and the namespace of the objects for a service host: its first two
// labels ("web" and "e2e" for web.e2e.svc.cluster.local and for web.e2e.test).
func hostName(host string) (name, ns string) {
	labels := strings.SplitN(host, ".", 3)
	return labels[0], labels[1]
}

// StaticServiceYAML is a ServiceEntry (MESH_INTERNAL, resolution STATIC) for host, named and
// namespaced by host's first two labels, with one port and the endpoints given as YAML objects.
func StaticServiceYAML(host string, port int, portName, protocol string, endpoints ...string) string {
	var list strings.Builder
	for _, e := range endpoints {
		fmt.Fprintf(&list, "  - %s\n", e)
	}
	name, ns := hostName(host)
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: %s, namespace: %s}
spec:
  hosts: [%s]
  location: MESH_INTERNAL
  ports: [{number: %d, name: %s, protocol: %s}]
  resolution: STATIC
  endpoints:
%s`, name, ns, host, port, portName, protocol, list.String())
}

// DestinationRuleYAML is a DestinationRule for host (named and namespaced as StaticServiceYAML
// does) with the rest of its spec (indented by two spaces).
func DestinationRuleYAML(host, spec string) string {
	name, ns := hostName(host)
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: %s, namespace: %s}
spec:
  host: %s
%s`, name, ns, host, spec)
}

// VirtualServiceYAML is a VirtualService name in namespace ns with spec (indented by two spaces).
func VirtualServiceYAML(name, ns, spec string) string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: %s, namespace: %s}
spec:
%s`, name, ns, spec)
}
