package route

import (
	"strconv"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	networking "istio.io/api/networking/v1alpha3"
)

// HashPolicy returns the route hash policy for traffic to a DestinationRule's host on port, to
// subset (empty: none): the consistentHash of the most specific traffic policy — the subset's
// port-level settings, the subset's policy, the DestinationRule's port-level settings, then its
// top-level policy, each level replacing the whole loadBalancer setting as in Istio. It returns
// nil when that load balancer is not consistentHash or hashes nothing (ring/maglev sizes only).
// The cluster generator sets the matching ring_hash/maglev lb_policy on the cluster.
func HashPolicy(dr *networking.DestinationRule, subset string, port uint32) []*routev3.RouteAction_HashPolicy {
	ch := consistentHash(dr, subset, port)
	if ch == nil {
		return nil
	}
	switch t := ch.HashKey.(type) {
	case *networking.LoadBalancerSettings_ConsistentHashLB_HttpHeaderName:
		return []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{
			Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: t.HttpHeaderName}}}}
	case *networking.LoadBalancerSettings_ConsistentHashLB_HttpCookie:
		ck := &routev3.RouteAction_HashPolicy_Cookie{Name: t.HttpCookie.GetName(), Path: t.HttpCookie.GetPath()}
		if ttl := t.HttpCookie.GetTtl(); ttl != nil {
			ck.Ttl = proto.Clone(ttl).(*durationpb.Duration)
		}
		for _, a := range t.HttpCookie.GetAttributes() {
			ck.Attributes = append(ck.Attributes, &routev3.RouteAction_HashPolicy_CookieAttribute{Name: a.GetName(), Value: a.GetValue()})
		}
		return []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_Cookie_{Cookie: ck}}}
	case *networking.LoadBalancerSettings_ConsistentHashLB_UseSourceIp:
		if !t.UseSourceIp {
			return nil
		}
		return []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_ConnectionProperties_{
			ConnectionProperties: &routev3.RouteAction_HashPolicy_ConnectionProperties{SourceIp: true}}}}
	case *networking.LoadBalancerSettings_ConsistentHashLB_HttpQueryParameterName:
		return []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_QueryParameter_{
			QueryParameter: &routev3.RouteAction_HashPolicy_QueryParameter{Name: t.HttpQueryParameterName}}}}
	}
	return nil
}

// consistentHash finds the consistentHash settings that apply, or nil.
func consistentHash(dr *networking.DestinationRule, subset string, port uint32) *networking.LoadBalancerSettings_ConsistentHashLB {
	if dr == nil {
		return nil
	}
	var policies []*networking.TrafficPolicy
	if subset != "" {
		for _, s := range dr.Subsets {
			if s.GetName() == subset {
				policies = append(policies, s.GetTrafficPolicy())
				break
			}
		}
	}
	policies = append(policies, dr.TrafficPolicy)
	for _, tp := range policies {
		if tp == nil {
			continue
		}
		for _, pl := range tp.PortLevelSettings {
			if pl.GetPort().GetNumber() == port && pl.LoadBalancer != nil {
				return pl.LoadBalancer.GetConsistentHash()
			}
		}
		if tp.LoadBalancer != nil {
			return tp.LoadBalancer.GetConsistentHash()
		}
	}
	return nil
}

// hashPolicy returns the hash policy of a route: each destination's DestinationRule hash policy,
// in destination order, without repeats (Envoy combines the hashes of all policies; Istio
// appends each weighted destination's policy the same way).
func (c *routeCtx) hashPolicy(dests []dest) ([]*routev3.RouteAction_HashPolicy, error) {
	if c.b.in.DestinationRule == nil {
		return nil, nil
	}
	var out []*routev3.RouteAction_HashPolicy
	for _, d := range dests {
		for _, h := range HashPolicy(c.destinationRule(d.host), d.subset, d.port) {
			if !containsHash(out, h) {
				out = append(out, h)
			}
		}
	}
	if c.proxyless {
		for _, h := range out {
			if h.GetHeader() == nil {
				return nil, errf("route", "DestinationRule consistentHash for %s: only httpHeaderName is supported by proxyless gRPC clients", dests[0].host+":"+strconv.Itoa(int(dests[0].port)))
			}
		}
	}
	return out, nil
}

func containsHash(list []*routev3.RouteAction_HashPolicy, h *routev3.RouteAction_HashPolicy) bool {
	for _, x := range list {
		if proto.Equal(x, h) {
			return true
		}
	}
	return false
}
