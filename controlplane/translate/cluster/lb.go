package cluster

import (
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"
)

// DefaultRingSize is Istio's minimum ring size when consistentHash sets none.
const DefaultRingSize = 1024

// HashPolicy returns the route hash policy for a traffic policy's consistent hash load balancer,
// or nil when the policy does not hash. The route generator puts it on every route whose
// destination cluster uses the policy (Envoy chooses the hash key per route):
// httpHeaderName -> header, httpCookie -> cookie (name, path, ttl, attributes), useSourceIp ->
// connection properties (source IP), httpQueryParameterName -> query parameter.
func HashPolicy(tp *networking.TrafficPolicy) []*routev3.RouteAction_HashPolicy {
	ch := tp.GetLoadBalancer().GetConsistentHash()
	if ch == nil {
		return nil
	}
	var hp *routev3.RouteAction_HashPolicy
	switch k := ch.GetHashKey().(type) {
	case *networking.LoadBalancerSettings_ConsistentHashLB_HttpHeaderName:
		hp = &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{
			Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: k.HttpHeaderName}}}
	case *networking.LoadBalancerSettings_ConsistentHashLB_HttpCookie:
		c := &routev3.RouteAction_HashPolicy_Cookie{Name: k.HttpCookie.GetName(), Path: k.HttpCookie.GetPath()}
		if ttl := k.HttpCookie.GetTtl(); ttl != nil {
			c.Ttl = durationpb.New(ttl.AsDuration())
		}
		for _, a := range k.HttpCookie.GetAttributes() {
			c.Attributes = append(c.Attributes, &routev3.RouteAction_HashPolicy_CookieAttribute{Name: a.GetName(), Value: a.GetValue()})
		}
		hp = &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_Cookie_{Cookie: c}}
	case *networking.LoadBalancerSettings_ConsistentHashLB_UseSourceIp:
		if !k.UseSourceIp {
			return nil
		}
		hp = &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_ConnectionProperties_{
			ConnectionProperties: &routev3.RouteAction_HashPolicy_ConnectionProperties{SourceIp: true}}}
	case *networking.LoadBalancerSettings_ConsistentHashLB_HttpQueryParameterName:
		hp = &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_QueryParameter_{
			QueryParameter: &routev3.RouteAction_HashPolicy_QueryParameter{Name: k.HttpQueryParameterName}}}
	default:
		return nil
	}
	return []*routev3.RouteAction_HashPolicy{hp}
}

// applyLoadBalancer sets the cluster's LB policy from loadBalancer settings: simple policies map
// to ROUND_ROBIN, LEAST_REQUEST, RANDOM or ORIGINAL_DST (PASSTHROUGH); consistentHash maps to
// RING_HASH (ringHash or the deprecated minimumRingSize) or MAGLEV; UNSPECIFIED keeps defaultLB
// (LEAST_REQUEST for sidecars, as Istio; ROUND_ROBIN for gRPC); warmup maps to slow start on
// ROUND_ROBIN/LEAST_REQUEST; localityLbSetting.distribute enables locality-weighted LB (the weights
// and failover priorities are set on the endpoints); zoneAwareLbSetting maps to zone-aware routing.
// defaultLB is the policy when none is set.
func applyLoadBalancer(c *clusterv3.Cluster, lb *networking.LoadBalancerSettings, locality *networking.LocalityLoadBalancerSetting,
	defaultLB clusterv3.Cluster_LbPolicy, r *Rule) error {
	c.LbPolicy = defaultLB
	if ch := lb.GetConsistentHash(); ch != nil {
		switch alg := ch.GetHashAlgorithm().(type) {
		case *networking.LoadBalancerSettings_ConsistentHashLB_Maglev:
			c.LbPolicy = clusterv3.Cluster_MAGLEV
			if ts := alg.Maglev.GetTableSize(); ts != 0 {
				c.LbConfig = &clusterv3.Cluster_MaglevLbConfig_{MaglevLbConfig: &clusterv3.Cluster_MaglevLbConfig{TableSize: wrapperspb.UInt64(ts)}}
			}
		default:
			size := ch.GetMinimumRingSize()
			if rh, ok := alg.(*networking.LoadBalancerSettings_ConsistentHashLB_RingHash_); ok && rh.RingHash.GetMinimumRingSize() != 0 {
				size = rh.RingHash.GetMinimumRingSize()
			}
			if size == 0 {
				size = DefaultRingSize
			}
			c.LbPolicy = clusterv3.Cluster_RING_HASH
			c.LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{MinimumRingSize: wrapperspb.UInt64(size)}}
		}
	} else {
		switch lb.GetSimple() {
		case networking.LoadBalancerSettings_ROUND_ROBIN:
			c.LbPolicy = clusterv3.Cluster_ROUND_ROBIN
		case networking.LoadBalancerSettings_LEAST_REQUEST, networking.LoadBalancerSettings_LEAST_CONN: //nolint:staticcheck // LEAST_CONN is Istio's deprecated alias
			c.LbPolicy = clusterv3.Cluster_LEAST_REQUEST
		case networking.LoadBalancerSettings_RANDOM:
			c.LbPolicy = clusterv3.Cluster_RANDOM
		case networking.LoadBalancerSettings_PASSTHROUGH:
			c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST}
			c.LbPolicy = clusterv3.Cluster_CLUSTER_PROVIDED
			c.EdsClusterConfig = nil
			c.LoadAssignment = nil
		}
	}
	if err := applyWarmup(c, lb, r); err != nil {
		return err
	}
	if lb.GetLocalityLbSetting() != nil {
		locality = lb.GetLocalityLbSetting()
	}
	if LocalityEnabled(locality) && len(locality.GetDistribute()) > 0 {
		if c.CommonLbConfig == nil {
			c.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{}
		}
		c.CommonLbConfig.LocalityConfigSpecifier = &clusterv3.Cluster_CommonLbConfig_LocalityWeightedLbConfig_{
			LocalityWeightedLbConfig: &clusterv3.Cluster_CommonLbConfig_LocalityWeightedLbConfig{}}
	}
	if za := lb.GetZoneAwareLbSetting(); za != nil {
		if len(za.GetFailover()) > 0 || len(za.GetFailoverPriority()) > 0 {
			return r.errf("trafficPolicy.loadBalancer.zoneAwareLbSetting.failover", "zone-aware failover is not supported; use localityLbSetting.failover")
		}
		if za.GetEnabled() == nil || za.GetEnabled().GetValue() {
			if c.CommonLbConfig == nil {
				c.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{}
			}
			zc := &clusterv3.Cluster_CommonLbConfig_ZoneAwareLbConfig{RoutingEnabled: &typev3.Percent{Value: 100}}
			if m := za.GetMinClusterSize(); m != nil {
				zc.MinClusterSize = wrapperspb.UInt64(uint64(m.GetValue()))
			}
			c.CommonLbConfig.LocalityConfigSpecifier = &clusterv3.Cluster_CommonLbConfig_ZoneAwareLbConfig_{ZoneAwareLbConfig: zc}
		}
	}
	return nil
}

// LocalityEnabled reports whether locality load balancing settings are in force (present and not
// explicitly disabled).
func LocalityEnabled(l *networking.LocalityLoadBalancerSetting) bool {
	if l == nil {
		return false
	}
	return l.GetEnabled() == nil || l.GetEnabled().GetValue()
}

// applyWarmup maps warmup (and the deprecated warmupDurationSecs) to Envoy slow start, which
// exists only for ROUND_ROBIN and LEAST_REQUEST.
func applyWarmup(c *clusterv3.Cluster, lb *networking.LoadBalancerSettings, r *Rule) error {
	d := lb.GetWarmupDurationSecs()
	w := lb.GetWarmup()
	if w.GetDuration() != nil {
		d = w.GetDuration()
	}
	if d == nil {
		return nil
	}
	ss := &clusterv3.Cluster_SlowStartConfig{SlowStartWindow: durationpb.New(d.AsDuration())}
	if a := w.GetAggression(); a != nil {
		ss.Aggression = &corev3.RuntimeDouble{DefaultValue: a.GetValue(), RuntimeKey: "upstream.slow_start.aggression"}
	}
	if m := w.GetMinimumPercent(); m != nil {
		ss.MinWeightPercent = &typev3.Percent{Value: m.GetValue()}
	}
	switch c.LbPolicy {
	case clusterv3.Cluster_ROUND_ROBIN:
		c.LbConfig = &clusterv3.Cluster_RoundRobinLbConfig_{RoundRobinLbConfig: &clusterv3.Cluster_RoundRobinLbConfig{SlowStartConfig: ss}}
	case clusterv3.Cluster_LEAST_REQUEST:
		c.LbConfig = &clusterv3.Cluster_LeastRequestLbConfig_{LeastRequestLbConfig: &clusterv3.Cluster_LeastRequestLbConfig{SlowStartConfig: ss}}
	default:
		return r.errf("trafficPolicy.loadBalancer.warmup", "warmup needs ROUND_ROBIN or LEAST_REQUEST, the policy is %s", c.LbPolicy)
	}
	return nil
}
