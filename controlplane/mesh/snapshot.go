// Package mesh holds the immutable view of the mesh that translation reads: all accepted config,
// the service registry and mesh-wide settings, with indexes built once per snapshot (one index type
// per file: services, sidecars, destination rules, virtual services, gateways).
package mesh

import (
	"sort"

	meshconfig "istio.io/api/mesh/v1alpha1"

	"github.com/strait-mesh/strait/controlplane/buildcache"
	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/registry"
)

// DefaultRootNamespace is the root namespace when MeshConfig.rootNamespace is empty.
const DefaultRootNamespace = "istio-system"

// DefaultDomainSuffix is the cluster domain used to expand short host names.
const DefaultDomainSuffix = "cluster.local"

// Snapshot is an immutable, versioned view of the mesh. Build one with New; never modify it.
// It is safe for concurrent use by any number of readers; lookups that depend on the proxy only
// through its namespace and Sidecar are cached inside the snapshot.
type Snapshot struct {
	// Version increases with every snapshot built by one control plane process.
	Version uint64
	// Mesh is the mesh-wide configuration (never nil).
	Mesh *meshconfig.MeshConfig
	// Configs holds accepted objects by kind, sorted by creation time, namespace and name.
	Configs map[config.Kind][]*config.Object
	// Services is every registry service, sorted by hostname then creation time then namespace.
	Services []*registry.Service
	// Endpoints maps a service to its endpoints on all of its ports.
	Endpoints map[ServiceKey][]*registry.Endpoint
	// Errors lists problems found while building the snapshot (bad specs); the rest still works.
	Errors []error

	services  *serviceIndex
	sidecars  *sidecarIndex
	drs       *destinationRuleIndex
	vss       *virtualServiceIndex
	gateways  *gatewayIndex
	peerAuthn *peerAuthnIndex

	// cache holds per-snapshot values shared between proxies (see Cache): the scopes and indexes
	// built on first use here, and translation's shared output.
	cache buildcache.Store
	// prints are the content hashes of the snapshot's inputs (see fingerprint.go).
	prints fingerprints
	// changes is the change set against the previous snapshot (see ChangesSince).
	changes changes
}

// ServiceKey identifies a service: hostnames may repeat across namespaces.
type ServiceKey = registry.ServiceKey

// Workload is what the indexes need to know about a proxy: its namespace and labels.
type Workload struct {
	Namespace string
	Labels    map[string]string
}

// New builds a snapshot from mesh config and the accepted objects: the registry (ServiceEntry,
// WorkloadEntry) and every index. meshCfg may be nil (an empty MeshConfig is used). The objects
// are not copied and must not be modified afterwards.
func New(version uint64, meshCfg *meshconfig.MeshConfig, objects []*config.Object) *Snapshot {
	if meshCfg == nil {
		meshCfg = &meshconfig.MeshConfig{}
	}
	s := &Snapshot{Version: version, Mesh: meshCfg, Configs: make(map[config.Kind][]*config.Object)}
	for _, o := range objects {
		s.Configs[o.Kind] = append(s.Configs[o.Kind], o)
	}
	for _, list := range s.Configs {
		sortObjects(list)
	}
	var errs []error
	s.Services, s.Endpoints, errs = registry.Build(objects)
	s.Errors = append(s.Errors, errs...)
	s.services = newServiceIndex(s)
	s.sidecars, errs = newSidecarIndex(s)
	s.Errors = append(s.Errors, errs...)
	s.drs, errs = newDestinationRuleIndex(s)
	s.Errors = append(s.Errors, errs...)
	s.vss, errs = newVirtualServiceIndex(s)
	s.Errors = append(s.Errors, errs...)
	s.gateways, errs = newGatewayIndex(s)
	s.Errors = append(s.Errors, errs...)
	s.peerAuthn, errs = newPeerAuthnIndex(s)
	s.Errors = append(s.Errors, errs...)
	return s
}

// RootNamespace returns the mesh root namespace (MeshConfig.rootNamespace or istio-system).
func (s *Snapshot) RootNamespace() string {
	if ns := s.Mesh.GetRootNamespace(); ns != "" {
		return ns
	}
	return DefaultRootNamespace
}

// Cache returns the snapshot's store of per-snapshot values (buildcache.Slot): what translation
// shares between the proxies of this snapshot (for example the clusters of a Sidecar scope). It
// lives as long as the snapshot; carrying output over to the next snapshot goes through the
// generator's buildcache.Tables and the change set (ChangesSince), not through it.
func (s *Snapshot) Cache() *buildcache.Store { return &s.cache }

func sortObjects(list []*config.Object) {
	sort.SliceStable(list, func(i, j int) bool {
		a, b := list[i], list[j]
		if !a.CreationTimestamp.Equal(b.CreationTimestamp) {
			return a.CreationTimestamp.Before(b.CreationTimestamp)
		}
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
}

// ExportedTo reports whether an object in namespace ns with the given exportTo list (or the
// default when empty) is visible from namespace to, as Istio reads exportTo: "*" everyone, "."
// its own namespace, "~" nobody, otherwise a namespace name. The analyzers share it.
func ExportedTo(exportTo, defaults []string, ns, to string) bool {
	if len(exportTo) == 0 {
		exportTo = defaults
	}
	if len(exportTo) == 0 {
		return true
	}
	for _, e := range exportTo {
		switch e {
		case "*":
			return true
		case "~":
			continue
		case ".":
			if ns == to {
				return true
			}
		default:
			if e == to {
				return true
			}
		}
	}
	return false
}
