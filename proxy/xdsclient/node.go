package xdsclient

import (
	"fmt"
	"sort"
	"strings"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/strait-mesh/strait/internal/node"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
)

// NodeInfo describes the workload a proxy serves; it becomes the xDS Node (ID and metadata).
type NodeInfo struct {
	Type           node.Type // sidecar or router
	IP             string    // primary instance IP
	IPs            []string  // all instance IPs (IP is added when missing)
	Name           string    // pod or workload name
	Namespace      string
	DNSDomain      string // default "<namespace>.svc.cluster.local"
	Cluster        string // Node.cluster: the service cluster, e.g. "reviews.default"
	Labels         map[string]string
	ServiceAccount string
	WorkloadGroup  string // WorkloadGroup for auto-registration, in Namespace
	ClusterID      string
	Network        string
	InterceptMode  string // REDIRECT or NONE
	Version        string // proxy version reported as ISTIO_VERSION
	Extra          map[string]string
}

// ID returns the Istio-style node ID.
func (n NodeInfo) ID() node.ID {
	id := node.NewID(n.Type, n.IP, n.Name, n.Namespace)
	if n.DNSDomain != "" {
		id.DNSDomain = n.DNSDomain
	}
	return id
}

// Node builds the xDS Node. It fails when the identity is incomplete.
func (n NodeInfo) Node() (*corev3.Node, error) {
	switch n.Type {
	case node.Sidecar, node.Router:
	default:
		return nil, fmt.Errorf("building node: mode %q: want sidecar or router", n.Type)
	}
	if n.Name == "" || n.Namespace == "" || n.IP == "" {
		return nil, fmt.Errorf("building node: workload name, namespace and IP are required (got %q, %q, %q)", n.Name, n.Namespace, n.IP)
	}
	id := n.ID()
	if _, err := node.Parse(id.String()); err != nil {
		return nil, fmt.Errorf("building node: %w", err)
	}
	ips := n.IPs
	if !containsString(ips, n.IP) {
		ips = append([]string{n.IP}, ips...)
	}
	meta := map[string]any{
		node.MetaNamespace:    n.Namespace,
		node.MetaWorkloadName: n.Name,
		node.MetaInstanceIPs:  strings.Join(ips, ","),
	}
	if len(n.Labels) > 0 {
		labels := make(map[string]any, len(n.Labels))
		for k, v := range n.Labels {
			labels[k] = v
		}
		meta[node.MetaLabels] = labels
	}
	for k, v := range map[string]string{
		node.MetaServiceAccount: n.ServiceAccount,
		node.MetaWorkloadGroup:  n.WorkloadGroup,
		node.MetaClusterID:      n.ClusterID,
		node.MetaNetwork:        n.Network,
		node.MetaInterceptMode:  n.InterceptMode,
		node.MetaProxyVersion:   n.Version,
	} {
		if v != "" {
			meta[k] = v
		}
	}
	keys := make([]string, 0, len(n.Extra))
	for k := range n.Extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		meta[k] = n.Extra[k]
	}
	md, err := structpb.NewStruct(meta)
	if err != nil {
		return nil, fmt.Errorf("building node metadata: %w", err)
	}
	cluster := n.Cluster
	if cluster == "" {
		cluster = n.Name + "." + n.Namespace
	}
	return &corev3.Node{
		Id:                   id.String(),
		Cluster:              cluster,
		Metadata:             md,
		UserAgentName:        "strait-proxy",
		UserAgentVersionType: &corev3.Node_UserAgentVersion{UserAgentVersion: n.Version},
	}, nil
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// ParseLabels parses "k=v,k2=v2" into a map.
func ParseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("parsing labels: %q is not key=value", kv)
		}
		out[k] = v
	}
	return out, nil
}
