package kube

import (
	"fmt"
	"sort"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/registry"
)

// NamePrefix starts the name of every ServiceEntry the registry makes: "service:NAME". A colon
// never occurs in a Kubernetes object name, so these never collide with a user's ServiceEntry.
const NamePrefix = registry.KubernetesServicePrefix

// LabelNetwork is Istio's label naming the network of a Pod, or, on the system namespace, the
// default network of the cluster's endpoints.
const LabelNetwork = "topology.istio.io/network"

// AnnotationExportTo is Istio's Service annotation restricting which namespaces see the service
// (comma-separated, as ServiceEntry.exportTo).
const AnnotationExportTo = "networking.istio.io/exportTo"

// Input is what Convert reads: the cluster's Services, EndpointSlices and Pods.
type Input struct {
	Services       []*corev1.Service
	EndpointSlices []*discoveryv1.EndpointSlice
	Pods           []*corev1.Pod
	// Nodes give the endpoints their locality (see Locality).
	Nodes []*corev1.Node
	// Domain is the cluster DNS domain (default cluster.local).
	Domain string
	// Network is the network of the endpoints whose Pod has no LabelNetwork: Istio's default,
	// the label on the system namespace ("" when unset).
	Network string
}

// Convert turns Kubernetes Services into ServiceEntry objects, one per Service, named
// NamePrefix+name in the Service's namespace, with host NAME.NAMESPACE.svc.DOMAIN:
//
//   - ClusterIP: the cluster IPs (both families when dual-stack) as addresses, resolution STATIC;
//   - headless (clusterIP None): no address, resolution NONE (original destination);
//   - ExternalName: resolution DNS, mesh external, the external name as the one endpoint.
//
// Port protocols follow Istio: UDP, then appProtocol, then the port name (http-*, grpc-*, ...).
// A numeric targetPort becomes the port's targetPort; a named one is resolved per endpoint by
// the EndpointSlices. Endpoints are the addresses of the Service's EndpointSlices whose ready
// condition is not false (so not-ready and terminating endpoints leave load balancing), with
// the labels and service account of the Pod they point to, its network (its LabelNetwork, else
// in.Network) and the locality of their Node. A Service's selector (not of an ExternalName
// Service) and its named target ports are kept as annotations for registry.Build, which adds the
// WorkloadEntries the selector selects and keeps a port with a named target port only on the
// endpoints that have it (see registry.KubernetesServiceAnnotations). The result is sorted by
// namespace and name.
func Convert(in Input) []*config.Object {
	domain := in.Domain
	if domain == "" {
		domain = "cluster.local"
	}
	pods := make(map[string]*corev1.Pod, len(in.Pods))
	for _, p := range in.Pods {
		pods[p.Namespace+"/"+p.Name] = p
	}
	localities := make(map[string]string, len(in.Nodes))
	for _, n := range in.Nodes {
		localities[n.Name] = Locality(n.Labels)
	}
	slices := map[string][]*discoveryv1.EndpointSlice{} // namespace/service -> slices
	for _, s := range in.EndpointSlices {
		name := s.Labels[discoveryv1.LabelServiceName]
		if name == "" {
			continue
		}
		k := s.Namespace + "/" + name
		slices[k] = append(slices[k], s)
	}
	out := make([]*config.Object, 0, len(in.Services))
	for _, svc := range in.Services {
		out = append(out, convertService(svc, slices[svc.Namespace+"/"+svc.Name], pods, localities, domain, in.Network))
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Hostname returns a Service's host name: NAME.NAMESPACE.svc.DOMAIN.
func Hostname(name, namespace, domain string) string {
	return name + "." + namespace + ".svc." + domain
}

func convertService(svc *corev1.Service, slices []*discoveryv1.EndpointSlice, pods map[string]*corev1.Pod,
	localities map[string]string, domain, network string) *config.Object {
	se := &networking.ServiceEntry{
		Hosts:      []string{Hostname(svc.Name, svc.Namespace, domain)},
		Location:   networking.ServiceEntry_MESH_INTERNAL,
		Resolution: networking.ServiceEntry_STATIC,
	}
	if v := svc.Annotations[AnnotationExportTo]; v != "" {
		for _, e := range strings.Split(v, ",") {
			if e = strings.TrimSpace(e); e != "" {
				se.ExportTo = append(se.ExportTo, e)
			}
		}
	}
	var namedTargets map[string]string // service port name -> target port name
	for _, p := range svc.Spec.Ports {
		proto := ""
		if p.Protocol == corev1.ProtocolUDP {
			proto = "UDP"
		}
		app := ""
		if p.AppProtocol != nil {
			app = *p.AppProtocol
		}
		sp := &networking.ServicePort{Number: uint32(p.Port), Name: p.Name}
		if sel := registry.SelectProtocol(p.Name, proto, app); sel != registry.Unsupported {
			sp.Protocol = string(sel)
		}
		switch {
		case p.TargetPort.Type == intstr.String && p.TargetPort.StrVal != "":
			if namedTargets == nil {
				namedTargets = map[string]string{}
			}
			namedTargets[p.Name] = p.TargetPort.StrVal
		case p.TargetPort.IntVal > 0:
			sp.TargetPort = uint32(p.TargetPort.IntVal)
		}
		se.Ports = append(se.Ports, sp)
	}
	selector := svc.Spec.Selector
	switch {
	case svc.Spec.Type == corev1.ServiceTypeExternalName:
		selector, namedTargets = nil, nil // Kubernetes ignores them too
		se.Resolution = networking.ServiceEntry_DNS
		se.Location = networking.ServiceEntry_MESH_EXTERNAL
		if svc.Spec.ExternalName != "" {
			se.Endpoints = []*networking.WorkloadEntry{{Address: svc.Spec.ExternalName}}
		}
	case svc.Spec.ClusterIP == corev1.ClusterIPNone:
		se.Resolution = networking.ServiceEntry_NONE
		se.Endpoints = endpoints(slices, pods, localities, network)
	default:
		for _, ip := range svc.Spec.ClusterIPs {
			if ip != "" && ip != corev1.ClusterIPNone {
				se.Addresses = append(se.Addresses, ip)
			}
		}
		if len(se.Addresses) == 0 && svc.Spec.ClusterIP != "" {
			se.Addresses = []string{svc.Spec.ClusterIP}
		}
		se.Endpoints = endpoints(slices, pods, localities, network)
	}
	return &config.Object{
		Kind:       config.ServiceEntry,
		APIVersion: "networking.istio.io/v1",
		Meta: config.Meta{
			Name:              NamePrefix + svc.Name,
			Namespace:         svc.Namespace,
			Labels:            svc.Labels,
			Annotations:       registry.KubernetesServiceAnnotations(selector, namedTargets),
			CreationTimestamp: svc.CreationTimestamp.Time,
		},
		Spec:   se,
		Origin: fmt.Sprintf("%s (Service %s/%s)", Origin, svc.Namespace, svc.Name),
	}
}

// endpoints returns one WorkloadEntry per ready address of the slices, its ports keyed by the
// service port names. An address in several slices (during a controller's update) is kept once.
// An endpoint's network is its Pod's LabelNetwork, else network.
func endpoints(slices []*discoveryv1.EndpointSlice, pods map[string]*corev1.Pod, localities map[string]string,
	network string) []*networking.WorkloadEntry {
	byAddr := map[string]*networking.WorkloadEntry{}
	for _, s := range slices {
		if s.AddressType != discoveryv1.AddressTypeIPv4 && s.AddressType != discoveryv1.AddressTypeIPv6 {
			continue // FQDN slices are deprecated and not used for Services with selectors
		}
		ports := map[string]uint32{}
		for _, p := range s.Ports {
			if p.Port == nil || *p.Port <= 0 {
				continue
			}
			name := ""
			if p.Name != nil {
				name = *p.Name
			}
			ports[name] = uint32(*p.Port)
		}
		for _, ep := range s.Endpoints {
			if !ready(ep) {
				continue
			}
			var pod *corev1.Pod
			if ref := ep.TargetRef; ref != nil && ref.Kind == "Pod" {
				ns := ref.Namespace
				if ns == "" {
					ns = s.Namespace
				}
				pod = pods[ns+"/"+ref.Name]
			}
			for _, addr := range ep.Addresses {
				if _, dup := byAddr[addr]; dup {
					continue
				}
				we := &networking.WorkloadEntry{Address: addr, Ports: ports, Network: network}
				if ep.NodeName != nil {
					we.Locality = localities[*ep.NodeName]
				}
				if pod != nil {
					we.Labels = pod.Labels
					if n := pod.Labels[LabelNetwork]; n != "" {
						we.Network = n
					}
					we.ServiceAccount = pod.Spec.ServiceAccountName
					if we.ServiceAccount == "" {
						we.ServiceAccount = "default"
					}
				}
				byAddr[addr] = we
			}
		}
	}
	out := make([]*networking.WorkloadEntry, 0, len(byAddr))
	for _, we := range byAddr {
		out = append(out, we)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Address < out[j].Address })
	return out
}

// Node labels giving an endpoint's locality, as Istio reads them.
const (
	LabelRegion  = "topology.kubernetes.io/region"
	LabelZone    = "topology.kubernetes.io/zone"
	LabelSubzone = "topology.istio.io/subzone"
)

// Locality returns the locality "region/zone/subzone" of a node's labels, without trailing empty
// parts; "" when the node has no region.
func Locality(nodeLabels map[string]string) string {
	region := nodeLabels[LabelRegion]
	if region == "" {
		return ""
	}
	return strings.TrimRight(region+"/"+nodeLabels[LabelZone]+"/"+nodeLabels[LabelSubzone], "/")
}

// ready reports whether an endpoint takes traffic: its ready condition is true or unknown (nil),
// and it is not terminating (a terminating endpoint is never ready, but say so).
func ready(ep discoveryv1.Endpoint) bool {
	if ep.Conditions.Terminating != nil && *ep.Conditions.Terminating {
		return false
	}
	return ep.Conditions.Ready == nil || *ep.Conditions.Ready
}
