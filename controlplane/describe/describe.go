// Package describe explains what applies to one service or one workload of the mesh and why, as
// `istioctl x describe` does: the service's ports, the VirtualServices that route it, the
// DestinationRule and its subsets and traffic policies, the Gateways that expose it, the
// endpoints behind it, and the Sidecar, PeerAuthentication, AuthorizationPolicy and
// RequestAuthentication that select its workloads. Everything is computed from one mesh
// snapshot (and, for the proxies, straitd's xDS sync status), so that `strait describe` only
// prints it. straitd serves it read-only at /debug/describe (see Handler).
package describe

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/xds"
)

// Path is where straitd serves Handler.
const Path = "/debug/describe"

// Kinds of describe report.
const (
	KindService  = "service"
	KindWorkload = "workload"
)

// ServiceReport is what applies to one service.
type ServiceReport struct {
	Service   ServiceInfo    `json:"service"`
	Endpoints []EndpointInfo `json:"endpoints"`
	// DestinationRule is the rule that applies to traffic to the service from its own namespace
	// (nil when none does).
	DestinationRule *DestinationRuleInfo `json:"destinationRule,omitempty"`
	VirtualServices []VirtualServiceInfo `json:"virtualServices"`
	Gateways        []GatewayInfo        `json:"gateways"`
	Workloads       []WorkloadPolicies   `json:"workloads"`
	Warnings        []string             `json:"warnings,omitempty"`
}

// WorkloadReport is what applies to one workload: the services it backs (each described as for
// the service, with its subsets matched against this workload) and the policies selecting it.
type WorkloadReport struct {
	Workload WorkloadInfo     `json:"workload"`
	Proxies  []ProxyInfo      `json:"proxies"`
	Services []ServiceReport  `json:"services"`
	Policies WorkloadPolicies `json:"policies"`
	Warnings []string         `json:"warnings,omitempty"`
}

// ServiceInfo is a registry service.
type ServiceInfo struct {
	Hostname   string     `json:"hostname"`
	Namespace  string     `json:"namespace"`
	Origin     string     `json:"origin"` // Kind/namespace/name of the defining object
	Addresses  []string   `json:"addresses,omitempty"`
	Resolution string     `json:"resolution"`
	Location   string     `json:"location"` // MESH_INTERNAL or MESH_EXTERNAL
	Ports      []PortInfo `json:"ports"`
}

// PortInfo is one service port.
type PortInfo struct {
	Name       string `json:"name"`
	Number     uint32 `json:"number"`
	Protocol   string `json:"protocol"`
	TargetPort uint32 `json:"targetPort,omitempty"`
}

// EndpointInfo is one endpoint of a service, with its health in straitd's registry.
type EndpointInfo struct {
	Address        string            `json:"address"`
	Port           uint32            `json:"port"`
	ServicePort    string            `json:"servicePort"`
	Workload       string            `json:"workload,omitempty"` // name.namespace
	Labels         map[string]string `json:"labels,omitempty"`
	ServiceAccount string            `json:"serviceAccount,omitempty"`
	Locality       string            `json:"locality,omitempty"`
	Weight         uint32            `json:"weight,omitempty"`
	Healthy        bool              `json:"healthy"`
	// Proxy is the node ID of the connected proxy with the endpoint's address, if any.
	Proxy string `json:"proxy,omitempty"`
}

// DestinationRuleInfo is the DestinationRule that applies to a host.
type DestinationRuleInfo struct {
	Name          string         `json:"name"`
	Namespace     string         `json:"namespace"`
	Host          string         `json:"host"`
	Origin        string         `json:"origin,omitempty"`
	TrafficPolicy *TrafficPolicy `json:"trafficPolicy,omitempty"`
	Subsets       []SubsetInfo   `json:"subsets"`
}

// SubsetInfo is one subset of a DestinationRule.
type SubsetInfo struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	// Endpoints is how many of the service's endpoints the subset selects.
	Endpoints int `json:"endpoints"`
	// Matches is set in a workload report: whether the subset selects that workload.
	Matches       *bool          `json:"matches,omitempty"`
	TrafficPolicy *TrafficPolicy `json:"trafficPolicy,omitempty"`
}

// TrafficPolicy summarises a DestinationRule traffic policy: each setting as "field=value" pairs.
type TrafficPolicy struct {
	TLSMode          string       `json:"tlsMode,omitempty"`
	TLS              []string     `json:"tls,omitempty"` // other TLS settings (sni, subjectAltNames, ...)
	LoadBalancer     []string     `json:"loadBalancer,omitempty"`
	ConnectionPool   []string     `json:"connectionPool,omitempty"`
	OutlierDetection []string     `json:"outlierDetection,omitempty"`
	Other            []string     `json:"other,omitempty"`
	PortLevel        []PortPolicy `json:"portLevel,omitempty"`
}

// PortPolicy is a port-level traffic policy.
type PortPolicy struct {
	Port   uint32        `json:"port"`
	Policy TrafficPolicy `json:"policy"`
}

// VirtualServiceInfo is a VirtualService that routes a service: either one of its hosts is the
// service (Reason "host") or one of its routes sends traffic to it (Reason "destination").
type VirtualServiceInfo struct {
	Name      string      `json:"name"`
	Namespace string      `json:"namespace"`
	Origin    string      `json:"origin,omitempty"`
	Hosts     []string    `json:"hosts"`
	Gateways  []string    `json:"gateways"` // "mesh" or "ns/name"
	Reason    string      `json:"reason"`
	Routes    []RouteInfo `json:"routes"`
	// Shadowed is set when an older VirtualService for the same host and gateway wins.
	Shadowed string `json:"shadowedBy,omitempty"`
}

// RouteInfo is one route of a VirtualService.
type RouteInfo struct {
	Protocol     string            `json:"protocol"` // HTTP, TLS or TCP
	Name         string            `json:"name,omitempty"`
	Match        []string          `json:"match,omitempty"` // one entry per match block (ORed)
	Destinations []DestinationInfo `json:"destinations,omitempty"`
	// Other lists what else the route does: redirect, directResponse, rewrite, timeout, retries,
	// fault, mirror, headers, cors, delegate.
	Other []string `json:"other,omitempty"`
}

// DestinationInfo is one weighted destination of a route.
type DestinationInfo struct {
	Host   string `json:"host"`
	Subset string `json:"subset,omitempty"`
	Port   uint32 `json:"port,omitempty"`
	Weight int32  `json:"weight"` // percent; 100 for a single destination without weight
	// ThisService is true when the destination is the described service.
	ThisService bool `json:"thisService,omitempty"`
}

// GatewayInfo is a Gateway that exposes a service through a VirtualService bound to it.
type GatewayInfo struct {
	Name           string            `json:"name"`
	Namespace      string            `json:"namespace"`
	Origin         string            `json:"origin,omitempty"`
	Selector       map[string]string `json:"selector,omitempty"`
	Servers        []string          `json:"servers"`
	VirtualService string            `json:"virtualService"` // ns/name of the binding VirtualService
	Missing        bool              `json:"missing,omitempty"`
}

// WorkloadPolicies is what selects a workload (or, in a service report, a group of the service's
// workloads that the same policies select).
type WorkloadPolicies struct {
	Workloads             []string     `json:"workloads,omitempty"`
	Sidecar               string       `json:"sidecar,omitempty"` // ns/name, "" for the mesh default
	MTLS                  []PortMode   `json:"mtls"`
	PeerAuthentications   []string     `json:"peerAuthentications"`
	AuthorizationPolicies []PolicyInfo `json:"authorizationPolicies"`
	// RequestAuthentications names the RequestAuthentications (ns/name) that select the workload.
	RequestAuthentications []string `json:"requestAuthentications"`
}

// PortMode is the effective PeerAuthentication mode of one workload port.
type PortMode struct {
	Port uint32 `json:"port"` // 0: the workload as a whole
	Mode string `json:"mode"`
}

// PolicyInfo is an AuthorizationPolicy that selects a workload.
type PolicyInfo struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	Action    string `json:"action"`
	Provider  string `json:"provider,omitempty"` // CUSTOM's extension provider
	Rules     int    `json:"rules"`
	DryRun    bool   `json:"dryRun,omitempty"`
}

// WorkloadInfo is the workload a workload report starts from.
type WorkloadInfo struct {
	Name           string            `json:"name"`
	Namespace      string            `json:"namespace"`
	Address        string            `json:"address,omitempty"`
	Labels         map[string]string `json:"labels,omitempty"`
	ServiceAccount string            `json:"serviceAccount,omitempty"`
	Network        string            `json:"network,omitempty"`
	Locality       string            `json:"locality,omitempty"`
	// Source says where it was found: "WorkloadEntry/ns/name", "ServiceEntry/ns/name" (an inline
	// endpoint) or "proxy" (a connected proxy that no registry entry describes).
	Source string `json:"source"`
	Origin string `json:"origin,omitempty"` // the file or store of the defining object
}

// ProxyInfo is a connected proxy of a workload, with its sync status.
type ProxyInfo struct {
	ID     string            `json:"id"`
	Status map[string]string `json:"status"` // CDS, LDS, EDS, RDS → SYNCED, STALE, NOT SENT
}

// NotFoundError is returned when the named service or workload does not exist (or is ambiguous).
type NotFoundError struct{ Msg string }

func (e *NotFoundError) Error() string { return e.Msg }

// Options are what Handler reads on every request.
type Options struct {
	// Snapshot returns the current mesh snapshot (nil before the first).
	Snapshot func() *mesh.Snapshot
	// Proxies returns the connected proxies' sync status; nil when unknown.
	Proxies func() []xds.ProxyStatus
}

// Handler serves GET /debug/describe?kind=service|workload&name=NAME[&namespace=NS] as JSON:
// a ServiceReport or a WorkloadReport. NAME may carry its namespace as NAME.NS. It answers 404
// when nothing matches (or the name is ambiguous), 400 for a bad query and 503 before the first
// snapshot. It never exposes secrets (no Secret data is read).
func Handler(o Options) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET")
			http.Error(w, "describe is read-only: use GET", http.StatusMethodNotAllowed)
			return
		}
		q := r.URL.Query()
		kind, name, ns := q.Get("kind"), q.Get("name"), q.Get("namespace")
		if name == "" {
			http.Error(w, "missing query parameter name", http.StatusBadRequest)
			return
		}
		var snap *mesh.Snapshot
		if o.Snapshot != nil {
			snap = o.Snapshot()
		}
		if snap == nil {
			http.Error(w, "no mesh snapshot yet", http.StatusServiceUnavailable)
			return
		}
		var proxies []xds.ProxyStatus
		if o.Proxies != nil {
			proxies = o.Proxies()
		}
		var out any
		var err error
		switch kind {
		case KindService, "svc", "":
			out, err = Service(snap, name, ns, proxies)
		case KindWorkload, "pod", "we":
			out, err = Workload(snap, name, ns, proxies)
		default:
			http.Error(w, fmt.Sprintf("unknown kind %q: want service or workload", kind), http.StatusBadRequest)
			return
		}
		var nf *NotFoundError
		switch {
		case errors.As(err, &nf):
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		case err != nil:
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(out)
	})
}
