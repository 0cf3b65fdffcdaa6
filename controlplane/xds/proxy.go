package xds

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/strait-mesh/strait/controlplane/translate"
	"github.com/strait-mesh/strait/internal/node"
)

// ParseProxy builds the translation view of a proxy from the xDS Node it sent: the node ID gives the
// proxy type, IP, name and namespace; metadata (internal/node Meta* keys) adds labels, service
// account, instance IPs, the auto-registration group, the interception mode and the generator.
// Metadata NAMESPACE, when set, must agree with the node ID's namespace. The returned Proxy keeps a
// reference to n, which must not be modified afterwards.
func ParseProxy(n *corev3.Node) (*translate.Proxy, error) {
	if n == nil || n.GetId() == "" {
		return nil, errors.New("node: missing node id")
	}
	id, err := node.Parse(n.GetId())
	if err != nil {
		return nil, fmt.Errorf("parsing node id: %w", err)
	}
	md := n.GetMetadata().GetFields()
	p := &translate.Proxy{
		ID:             id,
		Node:           n,
		Type:           id.Type,
		Namespace:      id.Namespace,
		ServiceAccount: stringField(md, node.MetaServiceAccount),
		WorkloadName:   stringField(md, node.MetaWorkloadName),
		WorkloadGroup:  stringField(md, node.MetaWorkloadGroup),
		InterceptMode:  strings.ToUpper(stringField(md, node.MetaInterceptMode)),
		Proxyless:      stringField(md, node.MetaGenerator) == "grpc",
		DNSCapture:     strings.EqualFold(stringField(md, node.MetaDNSCapture), "true"),
		WorkloadTable:  strings.EqualFold(stringField(md, node.MetaWorkloadTable), "true"),
		VHDS:           slices.Contains(n.GetClientFeatures(), node.FeatureVHDS),
	}
	demanded, err := parseDemanded(n)
	if err != nil {
		return nil, fmt.Errorf("node %q: %w", n.GetId(), err)
	}
	p.Demanded, p.DemandedClusters = demanded[resource.VirtualHostType], demanded[resource.ClusterType]
	if ns := stringField(md, node.MetaNamespace); ns != "" && ns != id.Namespace {
		return nil, fmt.Errorf("node %q: metadata %s=%q does not match the node id namespace %q",
			n.GetId(), node.MetaNamespace, ns, id.Namespace)
	}
	switch p.InterceptMode {
	case "":
		p.InterceptMode = "REDIRECT"
	case "REDIRECT", "NONE", "TPROXY":
	default:
		return nil, fmt.Errorf("node %q: metadata %s=%q: want REDIRECT, TPROXY or NONE",
			n.GetId(), node.MetaInterceptMode, p.InterceptMode)
	}
	if p.WorkloadName == "" {
		p.WorkloadName = id.Name
	}
	if l := md[node.MetaLabels].GetStructValue(); l != nil {
		p.Labels = make(map[string]string, len(l.GetFields()))
		for k, v := range l.GetFields() {
			s, ok := v.GetKind().(*structpb.Value_StringValue)
			if !ok {
				return nil, fmt.Errorf("node %q: metadata %s.%s: want a string", n.GetId(), node.MetaLabels, k)
			}
			p.Labels[k] = s.StringValue
		}
	}
	if ips := stringField(md, node.MetaInstanceIPs); ips != "" {
		for _, ip := range strings.Split(ips, ",") {
			ip = strings.TrimSpace(ip)
			if ip == "" {
				continue
			}
			if _, err := netip.ParseAddr(ip); err != nil {
				return nil, fmt.Errorf("node %q: metadata %s: %w", n.GetId(), node.MetaInstanceIPs, err)
			}
			p.IPs = append(p.IPs, ip)
		}
	}
	for _, key := range []string{node.MetaStatsAddress, node.MetaAdminAddress} {
		if err := checkAddress(stringField(md, key)); err != nil {
			return nil, fmt.Errorf("node %q: metadata %s: %w", n.GetId(), key, err)
		}
	}
	if len(p.IPs) == 0 && id.IP != "" {
		if _, err := netip.ParseAddr(id.IP); err != nil {
			return nil, fmt.Errorf("node %q: ip part: %w", n.GetId(), err)
		}
		p.IPs = []string{id.IP}
	}
	return p, nil
}

func stringField(md map[string]*structpb.Value, key string) string {
	return md[key].GetStringValue()
}

// checkAddress accepts "" or host:port with an IP literal (or empty) host and a port 1-65535:
// the form of node.MetaStatsAddress and node.MetaAdminAddress. Host names are refused so that
// straitd never resolves a name a proxy chose.
func checkAddress(addr string) error {
	if addr == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want host:port: %w", err)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("%q: port %q: want 1-65535", addr, port)
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil {
			return fmt.Errorf("%q: host %q: want an IP address", addr, host)
		}
	}
	return nil
}

// proxyAddress returns the address a proxy reported under key (see checkAddress) with an
// empty or unspecified host replaced by the proxy's first IP; "" when it reported none.
func proxyAddress(p *translate.Proxy, key string) string {
	addr := stringField(p.Node.GetMetadata().GetFields(), key)
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	if ip, err := netip.ParseAddr(host); (err != nil || ip.IsUnspecified()) && len(p.IPs) > 0 {
		host = p.IPs[0]
	}
	return net.JoinHostPort(host, port)
}
