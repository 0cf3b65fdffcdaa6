package telemetry

import (
	"strings"

	"github.com/strait-mesh/strait/internal/workloadtable"
)

// Unknown is the value Istio prints for a label the proxy cannot know.
const Unknown = "unknown"

// latest is Istio's canonical revision when a workload has none.
const latest = "latest"

// metaWorkloadName is the node metadata key of the local workload's name (Istio's name). The
// labels are internal/workloadtable's, which straitd applies to the peers the same way.
const metaWorkloadName = "WORKLOAD_NAME"

// Workload is one side of a request as Istio's labels name it. Every field is set: a value
// that is not known is Unknown (CanonicalRevision: "latest"), as Istio prints it.
type Workload struct {
	Name, Namespace, App, Version string
	CanonicalService              string
	CanonicalRevision             string
	Cluster                       string
}

// unknownWorkload is a peer about which nothing is known.
var unknownWorkload = Workload{Name: Unknown, Namespace: Unknown, App: Unknown, Version: Unknown,
	CanonicalService: Unknown, CanonicalRevision: latest, Cluster: Unknown}

// NodeWorkload derives the proxy's own workload from its node identity: the workload name is
// the WORKLOAD_NAME metadata (the injector's deployment name) or else the pod name; app and
// version are the "app" and "version" labels; the canonical service and revision follow Istio's
// fallbacks (service.istio.io/canonical-name, app.kubernetes.io/name, app, the workload name;
// service.istio.io/canonical-revision, app.kubernetes.io/version, version, "latest"); the
// cluster is the CLUSTER_ID. Anything missing is Unknown.
func NodeWorkload(name, namespace, clusterID string, labels, meta map[string]string) Workload {
	w := Workload{
		Name:      first(meta[metaWorkloadName], name),
		Namespace: first(namespace),
		App:       first(labels[workloadtable.LabelApp]),
		Version:   first(labels[workloadtable.LabelVersion]),
		Cluster:   first(clusterID),
	}
	cs, cr := workloadtable.Canonical(labels, w.Name)
	w.CanonicalService, w.CanonicalRevision = first(cs), cr
	return w
}

// first returns the first non-empty value, or Unknown.
func first(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return Unknown
}

// Service is the destination_service, destination_service_name and
// destination_service_namespace labels.
type Service struct{ Host, Name, Namespace string }

// ServiceFromCluster derives the destination service at the source reporter from the upstream
// cluster's name: Istio's "outbound|port|subset|host" gives the host, and for a Kubernetes host
// (name.namespace.svc.domain) its name and namespace; any other host is its own name, in an
// unknown namespace. A cluster of another form (PassthroughCluster, BlackHoleCluster, a
// hand-written one) is named as itself, with the request's authority as the service, as Istio
// reports passthrough traffic.
func ServiceFromCluster(cluster, authority string) Service {
	if rest, ok := strings.CutPrefix(cluster, "outbound|"); ok {
		if i := strings.LastIndexByte(rest, '|'); i >= 0 && i+1 < len(rest) {
			return serviceFromHost(rest[i+1:])
		}
	}
	s := Service{Host: first(authority), Name: first(cluster), Namespace: Unknown}
	return s
}

// ServiceFromAuthority derives the destination service at the destination reporter from the
// request's authority (its port removed): a Kubernetes name gives name and namespace, any
// other host is its own name in an unknown namespace.
func ServiceFromAuthority(authority string) Service {
	return serviceFromHost(stripPort(authority))
}

// PickService returns the service of an inbound cluster a request is for, as Istio's stats
// filter picks destination_service on the server side: the cluster's only service, or among
// several the one whose host, name or name.namespace the authority (port stripped) names; nil
// when none is decided (then the authority itself is the service).
func PickService(services []Service, authority string) *Service {
	switch len(services) {
	case 0:
		return nil
	case 1:
		return &services[0]
	}
	h := stripPort(authority)
	for i := range services {
		s := &services[i]
		if h == s.Host || h == s.Name || (len(h) == len(s.Name)+1+len(s.Namespace) &&
			strings.HasPrefix(h, s.Name) && h[len(s.Name)] == '.' && strings.HasSuffix(h, s.Namespace)) {
			return s
		}
	}
	return nil
}

func serviceFromHost(host string) Service {
	if host == "" {
		return Service{Host: Unknown, Name: Unknown, Namespace: Unknown}
	}
	parts := strings.SplitN(host, ".", 4)
	if len(parts) >= 3 && parts[2] == "svc" && parts[0] != "" && parts[1] != "" {
		return Service{Host: host, Name: parts[0], Namespace: parts[1]}
	}
	return Service{Host: host, Name: host, Namespace: Unknown}
}

// stripPort removes a ":port" suffix (not from a bare IPv6 address). It does not allocate.
func stripPort(hostport string) string {
	i := strings.LastIndexByte(hostport, ':')
	if i < 0 {
		return hostport
	}
	if strings.IndexByte(hostport, ']') > i || (hostport[0] != '[' && strings.IndexByte(hostport[:i], ':') >= 0) {
		return hostport // an IPv6 address without a port
	}
	h := hostport[:i]
	if len(h) >= 2 && h[0] == '[' && h[len(h)-1] == ']' {
		h = h[1 : len(h)-1]
	}
	return h
}

// SPIFFENamespace returns the namespace of a SPIFFE ID spiffe://<td>/ns/<ns>/sa/<sa>, or
// Unknown.
func SPIFFENamespace(id string) string {
	_, path, ok := strings.Cut(strings.TrimPrefix(id, "spiffe://"), "/")
	if !ok || !strings.HasPrefix(id, "spiffe://") {
		return Unknown
	}
	return spiffePathNamespace("/" + path)
}

// spiffePathNamespace returns the namespace of a SPIFFE path /ns/<ns>/sa/<sa>, or Unknown.
func spiffePathNamespace(path string) string {
	rest, ok := strings.CutPrefix(path, "/ns/")
	if !ok {
		return Unknown
	}
	ns, _, _ := strings.Cut(rest, "/")
	return first(ns)
}
