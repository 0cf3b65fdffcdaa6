// Package endpoint generates Envoy v3 ClusterLoadAssignments (EDS) for outbound EDS clusters:
// the endpoints of one service port, filtered by subset labels, grouped by locality with weights,
// and with priorities for Istio's locality failover (proximity, failover regions and
// failoverPriority labels) or weights for locality distribution.
package endpoint

import (
	"fmt"
	"sort"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/registry"
	"github.com/strait-mesh/strait/controlplane/translate/cluster"
)

// Options is what endpoint generation needs beyond the endpoints themselves.
type Options struct {
	// ProxyLocality is the locality of the proxy the endpoints are for (from its xDS Node); nil
	// or empty disables locality-aware priorities.
	ProxyLocality *corev3.Locality
	// ProxyLabels are the proxy's labels, compared with failoverPriority labels.
	ProxyLabels map[string]string
	// Locality is the effective locality LB setting: the DestinationRule's, else MeshConfig's.
	Locality *networking.LocalityLoadBalancerSetting
	// OutlierDetection is true when the cluster has outlier detection; Istio applies locality
	// failover only then (failover needs unhealthy endpoints to be ejected).
	OutlierDetection bool
	// MTLSReady reports whether an endpoint takes automatic mutual TLS (see cluster.Options);
	// those endpoints carry the transport socket match metadata. nil means none does.
	MTLSReady func(*registry.Endpoint) bool
}

// Build returns the load assignment for cluster clusterName: the endpoints of eps serving port
// (by service port name) whose labels match subset, grouped by locality. Endpoint weights become
// load_balancing_weight; a locality's weight is the sum of its endpoints'. With locality LB in
// force, distribute sets locality weights and failover/failoverPriority set priorities.
func Build(clusterName string, port registry.Port, subset map[string]string, eps []*registry.Endpoint, o Options) *endpointv3.ClusterLoadAssignment {
	type group struct {
		locality string
		priority uint32
		eps      []*endpointv3.LbEndpoint
		weight   uint32
	}
	groups := map[[2]string]*group{}
	var order [][2]string
	proxyLoc := localityString(o.ProxyLocality)
	failover := cluster.LocalityEnabled(o.Locality) && o.OutlierDetection && len(o.Locality.GetDistribute()) == 0
	for _, ep := range eps {
		if ep.ServicePortName != port.Name || !registry.LabelsMatch(subset, ep.Labels) {
			continue
		}
		var prio uint32
		if failover {
			prio = priority(proxyLoc, ep, o)
		}
		key := [2]string{ep.Locality, fmt.Sprintf("%04d", prio)}
		g := groups[key]
		if g == nil {
			g = &group{locality: ep.Locality, priority: prio}
			groups[key] = g
			order = append(order, key)
		}
		w := max(ep.Weight, 1)
		health := corev3.HealthStatus_HEALTHY
		if !ep.Healthy {
			health = corev3.HealthStatus_UNHEALTHY
		}
		g.eps = append(g.eps, &endpointv3.LbEndpoint{
			HostIdentifier:      &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: cluster.SocketAddress(ep.Address, ep.Port)}},
			HealthStatus:        health,
			LoadBalancingWeight: wrapperspb.UInt32(w),
			Metadata:            cluster.EndpointMetadata(o.MTLSReady != nil && o.MTLSReady(ep)),
		})
		g.weight += w
	}
	sort.Slice(order, func(i, j int) bool {
		if order[i][1] != order[j][1] {
			return order[i][1] < order[j][1]
		}
		return order[i][0] < order[j][0]
	})
	var distribute map[string]uint32
	if cluster.LocalityEnabled(o.Locality) && len(o.Locality.GetDistribute()) > 0 {
		var locs []string
		for _, k := range order {
			locs = append(locs, k[0])
		}
		distribute = distributeWeights(proxyLoc, o.Locality.GetDistribute(), locs)
	}
	// Envoy wants priorities from 0 without gaps: renumber the ranks in order.
	dense := map[uint32]uint32{}
	for _, k := range order {
		if _, ok := dense[groups[k].priority]; !ok {
			dense[groups[k].priority] = uint32(len(dense))
		}
	}
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: clusterName}
	for _, k := range order {
		g := groups[k]
		weight := g.weight
		if distribute != nil {
			weight = distribute[g.locality]
			if weight == 0 {
				continue // Istio drops localities the distribution gives no traffic
			}
		}
		cla.Endpoints = append(cla.Endpoints, &endpointv3.LocalityLbEndpoints{
			Locality:            parseLocality(g.locality),
			LbEndpoints:         g.eps,
			LoadBalancingWeight: wrapperspb.UInt32(weight),
			Priority:            dense[g.priority],
		})
	}
	return cla
}

func localityString(l *corev3.Locality) string {
	if l == nil || l.GetRegion() == "" {
		return ""
	}
	return strings.TrimRight(l.GetRegion()+"/"+l.GetZone()+"/"+l.GetSubZone(), "/")
}

// parseLocality parses "region/zone/subzone". An empty string gives an empty (not nil)
// locality: gRPC's xDS client rejects locality groups without one.
func parseLocality(s string) *corev3.Locality {
	if s == "" {
		return &corev3.Locality{}
	}
	parts := strings.SplitN(s, "/", 3)
	l := &corev3.Locality{Region: parts[0]}
	if len(parts) > 1 {
		l.Zone = parts[1]
	}
	if len(parts) > 2 {
		l.SubZone = parts[2]
	}
	return l
}

func split3(s string) [3]string {
	var out [3]string
	copy(out[:], strings.SplitN(s, "/", 3))
	return out
}

// priority ranks an endpoint for a proxy, as Istio's locality failover does. Without
// failoverPriority: 0 same region/zone/subzone, 1 same region/zone, 2 same region, 3 a failover
// region configured for the proxy's region, 4 elsewhere (3 when no failover region applies).
// With failoverPriority labels, endpoints matching more of the leading labels rank first and
// locality proximity breaks ties within a label level.
func priority(proxyLoc string, ep *registry.Endpoint, o Options) uint32 {
	locPrio := localityPriority(proxyLoc, ep.Locality, o.Locality.GetFailover())
	fp := o.Locality.GetFailoverPriority()
	if len(fp) == 0 {
		return locPrio
	}
	matched := 0
	for _, label := range fp {
		key, want, hasValue := strings.Cut(label, "=")
		pv, ok := o.ProxyLabels[key]
		if hasValue {
			pv, ok = want, true
		}
		if !ok || ep.Labels[key] != pv {
			break
		}
		matched++
	}
	// Label levels dominate; each level keeps locality proximity (5 ranks) inside it.
	return uint32(len(fp)-matched)*5 + locPrio
}

func localityPriority(proxyLoc, epLoc string, failover []*networking.LocalityLoadBalancerSetting_Failover) uint32 {
	if proxyLoc == "" {
		return 0
	}
	p, e := split3(proxyLoc), split3(epLoc)
	switch {
	case p == e:
		return 0
	case p[0] == e[0] && p[1] == e[1]:
		return 1
	case p[0] == e[0]:
		return 2
	}
	hasRule := false
	for _, f := range failover {
		if f.GetFrom() == p[0] {
			hasRule = true
			if f.GetTo() == e[0] {
				return 3
			}
		}
	}
	if hasRule {
		return 4
	}
	return 3
}

// distributeWeights applies the first distribute rule whose "from" matches the proxy locality:
// each "to" pattern's percentage is split evenly between the endpoint localities it matches.
func distributeWeights(proxyLoc string, rules []*networking.LocalityLoadBalancerSetting_Distribute, locs []string) map[string]uint32 {
	for _, r := range rules {
		if !localityMatches(r.GetFrom(), proxyLoc) {
			continue
		}
		out := make(map[string]uint32)
		// Deterministic order of "to" patterns.
		tos := make([]string, 0, len(r.GetTo()))
		for to := range r.GetTo() {
			tos = append(tos, to)
		}
		sort.Strings(tos)
		for _, to := range tos {
			var matching []string
			for _, l := range locs {
				if _, done := out[l]; !done && localityMatches(to, l) {
					matching = append(matching, l)
				}
			}
			for _, l := range matching {
				out[l] = max(r.GetTo()[to]/uint32(len(matching)), 1)
			}
		}
		return out
	}
	return nil
}

// localityMatches matches "region/zone/subzone" patterns where any part may be "*" and missing
// trailing parts match anything.
func localityMatches(pattern, loc string) bool {
	if pattern == "*" {
		return true
	}
	pp, lp := strings.Split(pattern, "/"), split3(loc)
	for i, part := range pp {
		if i > 2 {
			return false
		}
		if part != "*" && part != lp[i] {
			return false
		}
	}
	return true
}
