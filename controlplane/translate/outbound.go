package translate

import (
	"errors"
	"fmt"
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/proto"
	meshconfig "istio.io/api/mesh/v1alpha1"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/registry"
	"github.com/strait-mesh/strait/controlplane/translate/cluster"
	"github.com/strait-mesh/strait/controlplane/translate/endpoint"
	"github.com/strait-mesh/strait/controlplane/translate/route"
)

// shareKey identifies output that is identical for every proxy with the same scope, selector
// DestinationRules, proxy class and (only when VirtualServices match on them) labels.
type shareKey struct {
	kind      string
	scope     string
	drSig     string
	labels    string
	proxyless bool
	router    bool
	explicit  bool
	locality  string
}

// edsTarget is one EDS cluster and how to fill its load assignment.
type edsTarget struct {
	name     string
	svc      *registry.Service
	port     registry.Port
	subset   map[string]string
	locality *networking.LocalityLoadBalancerSetting
	outlier  bool
	byLabels bool // failoverPriority: depends on the proxy's labels
}

// outboundSet is the outbound clusters of one scope with the EDS targets among them.
type outboundSet struct {
	clusters   []*clusterv3.Cluster
	clusterRes []types.Resource // clusters, type-erased once
	byLabels   bool             // some load assignment depends on the proxy's labels
	eds        []edsTarget
	errs       error
}

// outboundClusters builds (once per share key) the outbound clusters of every reachable service
// port in the scope. Ports whose DestinationRule cannot be translated get no clusters and an
// error in errs.
func outboundClusters(snap *mesh.Snapshot, sc *mesh.Scope, w mesh.Workload, proxyless bool) *outboundSet {
	key := shareKey{kind: "cds", scope: sc.Key, drSig: snap.DestinationRuleSignature(w), proxyless: proxyless}
	return snap.CacheValue(key, func() any {
		set := &outboundSet{}
		opts := cluster.Options{Mesh: snap.Mesh, Proxyless: proxyless}
		var errs []error
		for _, svc := range sc.Services {
			rule := cluster.RuleOf(snap.DestinationRule(w, svc.Hostname))
			eps := snap.ServiceEndpoints(svc)
			for _, port := range sc.Ports(svc) {
				cs, err := cluster.Outbound(svc, port, eps, rule, opts)
				if err != nil {
					errs = append(errs, fmt.Errorf("clusters of %s:%d: %w", svc.Hostname, port.Number, err))
					continue
				}
				set.clusters = append(set.clusters, cs...)
				set.eds = append(set.eds, edsTargets(snap, svc, port, rule, cs)...)
			}
		}
		set.errs = errors.Join(errs...)
		set.clusterRes = appendAll(nil, set.clusters)
		for _, t := range set.eds {
			set.byLabels = set.byLabels || t.byLabels
		}
		return set
	}).(*outboundSet)
}

func edsTargets(snap *mesh.Snapshot, svc *registry.Service, port registry.Port, rule *cluster.Rule, cs []*clusterv3.Cluster) []edsTarget {
	var dr *networking.DestinationRule
	if rule != nil {
		dr = rule.Spec
	}
	subsets := append([]*networking.Subset{nil}, dr.GetSubsets()...)
	var out []edsTarget
	for _, ss := range subsets {
		name := cluster.OutboundName(port.Number, ss.GetName(), svc.Hostname)
		var c *clusterv3.Cluster
		for _, x := range cs {
			if x.GetName() == name {
				c = x
				break
			}
		}
		if c == nil || c.GetType() != clusterv3.Cluster_EDS {
			continue
		}
		tp := cluster.EffectivePolicy(dr, ss, port.Number)
		loc := tp.GetLoadBalancer().GetLocalityLbSetting()
		if loc == nil {
			loc = snap.Mesh.GetLocalityLbSetting()
		}
		out = append(out, edsTarget{name: name, svc: svc, port: port, subset: ss.GetLabels(), locality: loc,
			outlier: tp.GetOutlierDetection() != nil, byLabels: len(loc.GetFailoverPriority()) > 0})
	}
	return out
}

// loadAssignments builds the load assignments of the EDS clusters of set for a proxy. Output is
// shared between proxies of the same locality unless failoverPriority makes it label-dependent.
func loadAssignments(snap *mesh.Snapshot, set *outboundSet, p *Proxy, base shareKey) []types.Resource {
	loc := p.Node.GetLocality()
	base.kind = "eds"
	base.locality = loc.GetRegion() + "/" + loc.GetZone() + "/" + loc.GetSubZone()
	build := func() []types.Resource {
		out := make([]types.Resource, 0, len(set.eds))
		for _, t := range set.eds {
			out = append(out, endpoint.Build(t.name, t.port, t.subset, snap.ServiceEndpoints(t.svc), endpoint.Options{
				ProxyLocality: loc, ProxyLabels: p.Labels, Locality: t.locality, OutlierDetection: t.outlier}))
		}
		return out
	}
	if set.byLabels {
		return build()
	}
	return snap.CacheValue(base, func() any { return build() }).([]types.Resource)
}

// routeInputs returns the route package inputs for a proxy in a scope.
func (g *generator) routeInputs(snap *mesh.Snapshot, sc *mesh.Scope, w mesh.Workload, router bool, vs []*config.Object, gateways []*config.Object) route.Inputs {
	return route.Inputs{
		Proxy:           route.Proxy{Namespace: w.Namespace, Labels: w.Labels, Router: router},
		Mesh:            scopeMesh(snap, sc),
		DomainSuffix:    g.opts.DomainSuffix,
		Services:        sc.Services,
		Reaches:         sc.Reaches,
		VirtualServices: vs,
		Gateways:        gateways,
		DestinationRule: func(host string) *networking.DestinationRule {
			if o := snap.DestinationRule(w, host); o != nil {
				return o.Spec.(*networking.DestinationRule)
			}
			return nil
		},
		Delegate: func(name, ns string) *config.Object {
			o := snap.VirtualService(ns, name)
			if o == nil || !snap.VirtualServiceVisible(o, w.Namespace) {
				return nil
			}
			return o
		},
	}
}

// scopeMesh returns the mesh config with the scope's outbound traffic policy (a Sidecar may
// override the mesh's), cached per scope.
func scopeMesh(snap *mesh.Snapshot, sc *mesh.Scope) *meshconfig.MeshConfig {
	meshOnly := snap.Mesh.GetOutboundTrafficPolicy().GetMode() == meshconfig.MeshConfig_OutboundTrafficPolicy_REGISTRY_ONLY &&
		snap.Mesh.GetOutboundTrafficPolicy() != nil
	if meshOnly == sc.RegistryOnly {
		return snap.Mesh
	}
	return snap.CacheValue(shareKey{kind: "mesh", scope: sc.Key}, func() any {
		m := proto.Clone(snap.Mesh).(*meshconfig.MeshConfig)
		mode := meshconfig.MeshConfig_OutboundTrafficPolicy_ALLOW_ANY
		if sc.RegistryOnly {
			mode = meshconfig.MeshConfig_OutboundTrafficPolicy_REGISTRY_ONLY
		}
		m.OutboundTrafficPolicy = &meshconfig.MeshConfig_OutboundTrafficPolicy{Mode: mode}
		return m
	}).(*meshconfig.MeshConfig)
}

// usesSourceLabels reports whether any of the VirtualServices matches on sourceLabels, which
// makes routes depend on the individual proxy's labels.
func usesSourceLabels(vss []*config.Object) bool {
	for _, o := range vss {
		vs := o.Spec.(*networking.VirtualService)
		for _, r := range vs.GetHttp() {
			for _, m := range r.GetMatch() {
				if len(m.GetSourceLabels()) > 0 {
					return true
				}
			}
			if r.GetDelegate() != nil {
				return true // delegates may match on labels; do not share
			}
		}
		for _, r := range vs.GetTcp() {
			for _, m := range r.GetMatch() {
				if len(m.GetSourceLabels()) > 0 {
					return true
				}
			}
		}
		for _, r := range vs.GetTls() {
			for _, m := range r.GetMatch() {
				if len(m.GetSourceLabels()) > 0 {
					return true
				}
			}
		}
	}
	return false
}

// httpRoutePorts returns the ports that need an outbound route configuration ("PORT"): every
// reachable HTTP or undeclared-protocol port, and egress listener ports declared HTTP.
func httpRoutePorts(sc *mesh.Scope) []uint32 {
	seen := map[uint32]bool{}
	var out []uint32
	add := func(n uint32) {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	for _, l := range sc.Egress {
		override := registry.Unsupported
		if p := l.Spec.GetPort().GetProtocol(); p != "" {
			override = registry.ParseProtocol(p)
		}
		for _, svc := range l.Services {
			for _, p := range sc.Ports(svc) {
				if l.Port != 0 && p.Number != l.Port {
					continue
				}
				proto := p.Protocol
				if override != registry.Unsupported {
					proto = override
				}
				if proto.IsHTTP() || proto == registry.Unsupported {
					add(p.Number)
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

// outboundRoutes builds the sidecar's outbound route configurations.
func outboundRoutes(b *route.Builder, ports []uint32) ([]*routev3.RouteConfiguration, error) {
	var errs []error
	out := make([]*routev3.RouteConfiguration, 0, len(ports))
	for _, port := range ports {
		rc, err := b.Outbound(port)
		if err != nil {
			errs = append(errs, err)
		}
		if rc != nil {
			out = append(out, rc)
		}
	}
	return out, errors.Join(errs...)
}
