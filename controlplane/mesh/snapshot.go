// Package mesh holds the immutable view of the mesh that translation reads: all accepted config,
// the service registry and mesh-wide settings, with indexes built once per snapshot.
package mesh

import (
	meshconfig "istio.io/api/mesh/v1alpha1"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/registry"
)

// Snapshot is an immutable, versioned view of the mesh. Build one with New; never modify it.
// It is safe for concurrent use by any number of readers.
type Snapshot struct {
	// Version increases with every snapshot built by one control plane process.
	Version uint64
	// Mesh is the mesh-wide configuration (never nil).
	Mesh *meshconfig.MeshConfig
	// Configs holds accepted objects by kind, sorted by creation time, namespace and name.
	Configs map[config.Kind][]*config.Object
	// Services is every registry service, sorted by hostname then namespace.
	Services []*registry.Service
	// Endpoints maps a service to its endpoints on all of its ports.
	Endpoints map[ServiceKey][]*registry.Endpoint
}

// ServiceKey identifies a service: hostnames may repeat across namespaces.
type ServiceKey struct {
	Hostname  string
	Namespace string
}
