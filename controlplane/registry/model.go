// Package registry is Strait's service registry model: services with ports and protocols, and
// the endpoints (workload instances) behind them. Sources fill it: ServiceEntry and WorkloadEntry
// config (this package), auto-registered proxies (autoregister), and later Kubernetes.
package registry

// Protocol is an application protocol as Istio names it.
type Protocol string

// Protocols Istio selects from port names and appProtocol.
const (
	HTTP        Protocol = "HTTP"
	HTTP2       Protocol = "HTTP2"
	HTTPS       Protocol = "HTTPS"
	GRPC        Protocol = "GRPC"
	GRPCWeb     Protocol = "GRPC-Web"
	TCP         Protocol = "TCP"
	TLS         Protocol = "TLS"
	Mongo       Protocol = "Mongo"
	Redis       Protocol = "Redis"
	MySQL       Protocol = "MySQL"
	UDP         Protocol = "UDP"
	Unsupported Protocol = "UnsupportedProtocol" // unknown: sniffed at runtime (auto-detection)
)

// IsHTTP reports whether traffic on the protocol is handled by an HTTP connection manager.
func (p Protocol) IsHTTP() bool {
	switch p {
	case HTTP, HTTP2, GRPC, GRPCWeb:
		return true
	}
	return false
}

// Port is a named service port.
type Port struct {
	Name       string
	Number     uint32
	Protocol   Protocol
	TargetPort uint32 // 0 means same as Number
}

// Resolution is how a service's endpoints are found.
type Resolution int

// Resolutions, as ServiceEntry's.
const (
	ResolutionNone Resolution = iota // passthrough: original destination
	ResolutionStatic
	ResolutionDNS
	ResolutionDNSRoundRobin
)

// Service is a mesh service: a hostname with ports.
type Service struct {
	Hostname     string   // FQDN, e.g. reviews.default.svc.cluster.local, or a wildcard *.example.com
	Namespace    string   // namespace of the object that defined it
	Addresses    []string // VIPs or CIDRs; empty means none
	Ports        []Port
	Resolution   Resolution
	MeshExternal bool
	// ExportTo lists namespaces that may see the service: "*" all (default), "." own namespace, "~" none.
	ExportTo []string
	Labels   map[string]string
	// Selector selects WorkloadEntries (and later pods) as endpoints; nil when endpoints are inline.
	Selector map[string]string
	// SubjectAltNames for TLS origination, from ServiceEntry.subjectAltNames.
	SubjectAltNames []string
	// Origin is "Kind/namespace/name" of the config that defined the service.
	Origin string
}

// Endpoint is one instance of a service, on one service port.
type Endpoint struct {
	Address         string // IP, hostname (DNS resolution) or unix:// path
	Port            uint32 // the port the workload listens on
	ServicePortName string // which service port this endpoint serves
	Labels          map[string]string
	Locality        string // region/zone/subzone
	Weight          uint32 // 0 means 1
	ServiceAccount  string // name, not SPIFFE URI
	Network         string
	Healthy         bool
	WorkloadName    string // WorkloadEntry name or auto-registered workload
	Namespace       string
}
