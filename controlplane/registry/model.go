// Package registry is Strait's service registry model: services with ports and protocols, and
// the endpoints (workload instances) behind them. Sources fill it: ServiceEntry and WorkloadEntry
// config (this package), auto-registered proxies (autoregister), and Kubernetes Services (kube),
// whose selectors also select WorkloadEntries (see Build).
package registry

import "time"

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
	Hostname  string   // FQDN, e.g. reviews.default.svc.cluster.local, or a wildcard *.example.com
	Namespace string   // namespace of the object that defined it
	Addresses []string // VIPs or CIDRs; empty means none
	// AutoAllocated is true when Addresses holds the VIP AllocateAddresses gave the service.
	AutoAllocated bool
	Ports         []Port
	Resolution    Resolution
	MeshExternal  bool
	// ExportTo lists namespaces that may see the service: "*" all (default), "." own namespace, "~" none.
	ExportTo []string
	Labels   map[string]string
	// Selector selects WorkloadEntries (and later pods) as endpoints; nil when endpoints are inline.
	Selector map[string]string
	// SubjectAltNames for TLS origination, from ServiceEntry.subjectAltNames.
	SubjectAltNames []string
	// Origin is "Kind/namespace/name" of the config that defined the service.
	Origin string
	// Created is the creation time of the defining config; older services win hostname conflicts.
	Created time.Time
}

// ServiceKey identifies a service: hostnames may repeat across namespaces.
type ServiceKey struct {
	Hostname  string
	Namespace string
}

// Key returns the service's key.
func (s *Service) Key() ServiceKey { return ServiceKey{Hostname: s.Hostname, Namespace: s.Namespace} }

// Port returns the service port with the given number, or nil.
func (s *Service) Port(n uint32) *Port {
	for i := range s.Ports {
		if s.Ports[i].Number == n {
			return &s.Ports[i]
		}
	}
	return nil
}

// PortByName returns the service port with the given name, or nil.
func (s *Service) PortByName(name string) *Port {
	for i := range s.Ports {
		if s.Ports[i].Name == name {
			return &s.Ports[i]
		}
	}
	return nil
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
