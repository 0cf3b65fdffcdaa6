package xds

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
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
	}
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
