// Package node defines how a proxy identifies itself to the control plane: the Istio-style node ID
// (type~ip~pod.namespace~namespace.svc.cluster.local) and the metadata keys carried in the xDS Node.
// Both planes import it; it depends only on the standard library and protobuf structs.
package node

import (
	"fmt"
	"strings"
)

// Type is the role of a proxy.
type Type string

// Proxy types, as in Istio's node IDs.
const (
	Sidecar  Type = "sidecar"
	Router   Type = "router"   // ingress/egress gateway
	Waypoint Type = "waypoint" // ambient L7 proxy (later issue)
	Ztunnel  Type = "ztunnel"  // ambient node tunnel (later issue)
)

// Metadata keys in Node.metadata. Names follow Istio's where Istio has one.
const (
	MetaNamespace      = "NAMESPACE"
	MetaLabels         = "LABELS"          // struct: label -> value
	MetaServiceAccount = "SERVICE_ACCOUNT" // service account name (not the SPIFFE URI)
	MetaWorkloadName   = "WORKLOAD_NAME"
	MetaInstanceIPs    = "INSTANCE_IPS" // comma-separated
	MetaClusterID      = "CLUSTER_ID"
	MetaWorkloadGroup  = "AUTO_REGISTER_GROUP" // name of a WorkloadGroup in MetaNamespace
	MetaNetwork        = "NETWORK"
	MetaInterceptMode  = "INTERCEPTION_MODE" // REDIRECT (default) or NONE (explicit mode)
	MetaGenerator      = "GENERATOR"         // "grpc" for proxyless gRPC clients
	MetaProxyVersion   = "ISTIO_VERSION"
	// MetaDNSCapture "true" says the proxy answers DNS (Istio's ISTIO_META_DNS_CAPTURE) and
	// wants its name table (internal/nametable).
	MetaDNSCapture = "DNS_CAPTURE"
	// MetaWorkloadTable "true" says the proxy wants the workload table (internal/workloadtable)
	// for the peer labels of its standard metrics.
	MetaWorkloadTable = "WORKLOAD_TABLE"
	// MetaStatsAddress is host:port where the proxy serves its Prometheus /stats/prometheus
	// (its --prometheus-address, else its admin address), which straitd scrapes for the
	// dashboard; MetaAdminAddress is its admin interface's host:port. An empty or unspecified
	// host means the proxy's own IP.
	MetaStatsAddress = "STATS_ADDRESS"
	MetaAdminAddress = "ADMIN_ADDRESS"
)

// FeatureVHDS in Node.client_features says the client takes the virtual hosts of its outbound
// route configurations through VHDS (Envoy's Virtual Host Discovery Service, type
// envoy.config.route.v3.VirtualHost, Delta xDS only): a route configuration may then carry
// `vhds` and leave its virtual hosts to VirtualHost resources named "<route config>/<virtual
// host>". A client announces it only on Delta streams.
const FeatureVHDS = "io.strait.vhds"

// FeatureOnDemand in Node.client_features says the client can demand virtual hosts by host
// (Envoy's on-demand VHDS: a Delta subscription to "<route config>/<authority>", answered with
// the matching virtual host carrying that name in its aliases, or with the name in
// removed_resources when nothing matches). It is announced with FeatureVHDS, on Delta streams
// only. A proxy that announces it may be served on-demand configuration: virtual hosts, clusters
// and endpoints only for the hosts it demanded (see MetaOnDemand).
const FeatureOnDemand = "io.strait.on-demand"

// On-demand configuration, per workload.
const (
	// MetaOnDemand "true" or "false" is the workload's choice of on-demand configuration;
	// absent, the control plane's default applies.
	MetaOnDemand = "ON_DEMAND"
	// MetaDemanded is the list (a struct list of strings) of VHDS names
	// "<route config>/<authority>" the proxy demanded and saw answered on an earlier stream: the
	// control plane scopes the new stream's first generation to them, so that a reconnect neither
	// drops nor re-sends what the proxy already holds.
	MetaDemanded = "DEMANDED_HOSTS"
	// MetaDemandedClusters is the same for clusters demanded by name (on-demand CDS: a TCP
	// connection whose listener names a cluster the proxy does not have).
	MetaDemandedClusters = "DEMANDED_CLUSTERS"
	// MaxDemanded bounds the names of MetaDemanded and of one proxy's demands, MaxDemandName the
	// bytes of one name.
	MaxDemanded   = 4096
	MaxDemandName = 512
)

// ID is a parsed node ID.
type ID struct {
	Type      Type
	IP        string
	Name      string // pod or workload name
	Namespace string
	DNSDomain string // e.g. "default.svc.cluster.local"
}

// String renders the ID as Istio does: sidecar~10.1.0.7~reviews-v1-abc.default~default.svc.cluster.local.
func (id ID) String() string {
	return fmt.Sprintf("%s~%s~%s.%s~%s", id.Type, id.IP, id.Name, id.Namespace, id.DNSDomain)
}

// NewID builds an ID with the default DNS domain for the namespace.
func NewID(t Type, ip, name, namespace string) ID {
	return ID{Type: t, IP: ip, Name: name, Namespace: namespace, DNSDomain: namespace + ".svc.cluster.local"}
}

// Parse parses a node ID. It accepts Istio's four-part form; the name part is "name.namespace".
func Parse(s string) (ID, error) {
	parts := strings.Split(s, "~")
	if len(parts) != 4 {
		return ID{}, fmt.Errorf("node id %q: want 4 parts separated by '~', got %d", s, len(parts))
	}
	t := Type(parts[0])
	switch t {
	case Sidecar, Router, Waypoint, Ztunnel:
	default:
		return ID{}, fmt.Errorf("node id %q: unknown proxy type %q", s, parts[0])
	}
	id := ID{Type: t, IP: parts[1], DNSDomain: parts[3]}
	name := parts[2]
	if i := strings.LastIndexByte(name, '.'); i > 0 {
		id.Name, id.Namespace = name[:i], name[i+1:]
	} else {
		id.Name = name
	}
	if id.Namespace == "" {
		if i := strings.IndexByte(id.DNSDomain, '.'); i > 0 {
			id.Namespace = id.DNSDomain[:i]
		}
	}
	if id.Namespace == "" {
		return ID{}, fmt.Errorf("node id %q: no namespace", s)
	}
	return id, nil
}
