package translate

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/internal/node"
)

// Proxy is what translation knows about one connected proxy, parsed from its xDS Node.
type Proxy struct {
	ID             node.ID
	Node           *corev3.Node // as sent by the proxy; do not modify
	Type           node.Type
	Namespace      string
	Labels         map[string]string
	ServiceAccount string
	IPs            []string
	WorkloadName   string
	WorkloadGroup  string // AUTO_REGISTER_GROUP, empty if none
	InterceptMode  string // "REDIRECT" (default) or "NONE"
	// DNSCapture is true when the proxy answers DNS (metadata DNS_CAPTURE=true): sidecars then
	// get their name table (internal/nametable) as an ECDS resource.
	DNSCapture bool
	// WorkloadTable is true when the proxy asks for the workload table (metadata
	// WORKLOAD_TABLE=true): sidecars and routers then get it (internal/workloadtable) as an ECDS
	// resource, for the peer labels of their standard metrics.
	WorkloadTable bool
	// VHDS is true when the proxy takes the virtual hosts of its route configurations through
	// VHDS (node.FeatureVHDS in its client features, announced on Delta streams only): its route
	// configurations then carry `vhds` and each virtual host is its own VirtualHost resource
	// (vhds.go), so that a change of one service re-sends that service's virtual hosts only.
	VHDS bool
	// OnDemand is true when the proxy is served on-demand configuration (ondemand.go): a sidecar
	// with VHDS and without a Sidecar resource then gets the virtual hosts, clusters and
	// endpoints of the hosts in Demanded only (listeners stay complete). The xDS server sets it
	// from the proxy's client features and metadata and its own default.
	OnDemand bool
	// Demanded are the VHDS names "<route config>/<authority>" the proxy asked for, sorted; the
	// xDS server replaces the Proxy (a copy) when the set grows. Nil for other proxies.
	Demanded []string
	// DemandedClusters are the outbound clusters the proxy demanded by name (on-demand CDS, for
	// TCP traffic), sorted.
	DemandedClusters []string
	// Proxyless is true for gRPC clients (GENERATOR=grpc): they get API listeners, not 15001/15006.
	Proxyless bool
	// Identity is the SPIFFE ID the proxy proved with its client certificate on straitd's mesh
	// port (its Namespace and ServiceAccount are then that identity's); empty for a proxy on the
	// plaintext development port, whose claims are unauthenticated.
	Identity string
}

// Resources is a generated set of resources for one proxy, keyed by type URL
// (resource.ListenerType, resource.RouteType, resource.ClusterType, resource.EndpointType, ...).
type Resources map[string][]types.Resource

// Generator produces all resources of one proxy from a snapshot. It must be safe for concurrent
// use and must not modify the snapshot. Every resource it returns passes Validate().
type Generator interface {
	Generate(snap *mesh.Snapshot, p *Proxy) (Resources, error)
}
