// Package provider resolves the services that MeshConfig's extension providers name (external
// authorizers, tracing collectors) to the registry's hosts and their outbound clusters, as istiod
// does: authz (ext_authz) and telemetry (tracers) share this one lookup.
package provider

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/strait-mesh/strait/controlplane/registry"
	"github.com/strait-mesh/strait/internal/vocab"
)

// LookupService resolves a provider's service as istiod does: "NS/HOST" is the registry service
// with hostname HOST defined in namespace NS; a bare HOST must be defined in exactly one
// namespace. Visibility (exportTo, Sidecar) does not matter here. It returns the hostname.
func LookupService(service string, services []*registry.Service) (string, error) {
	if service == "" {
		return "", errors.New("service is required")
	}
	ns, host, qualified := strings.Cut(service, "/")
	if !qualified {
		host = service
	}
	var namespaces []string
	for _, s := range services {
		if s.Hostname != host {
			continue
		}
		if qualified && s.Namespace == ns {
			return host, nil
		}
		namespaces = append(namespaces, s.Namespace)
	}
	if !qualified {
		sort.Strings(namespaces)
		namespaces = slices.Compact(namespaces)
		switch len(namespaces) {
		case 1:
			return host, nil
		case 0:
		default:
			return "", fmt.Errorf("service %q is defined in several namespaces (%s): name one as <namespace>/<hostname>",
				service, strings.Join(namespaces, ", "))
		}
	}
	return "", fmt.Errorf("service %q is not in the service registry (want the hostname of a Kubernetes Service or ServiceEntry, or <namespace>/<hostname>)", service)
}

// Cluster resolves a provider's service and port to the hostname and its outbound cluster
// "outbound|PORT||HOST", as istiod's LookupCluster does.
func Cluster(service string, port uint32, services []*registry.Service) (host, cluster string, err error) {
	if port == 0 || port > 65535 {
		return "", "", fmt.Errorf("port %d must be in 1-65535", port)
	}
	host, err = LookupService(service, services)
	if err != nil {
		return "", "", err
	}
	return host, vocab.OutboundClusterName(port, "", host), nil
}
