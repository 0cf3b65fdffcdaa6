// Package cluster generates Envoy v3 clusters (CDS) with Istio's names and semantics: outbound
// clusters per service port and DestinationRule subset, inbound clusters per workload port, and
// the PassthroughCluster, BlackHoleCluster and InboundPassthroughCluster specials. Every
// DestinationRule traffic policy field is mapped to its Envoy equivalent here; fields Envoy cannot
// express are errors naming the DestinationRule and the field.
//
// HashPolicy is exported for the route generator: Istio's consistent hashing is configured on the
// cluster (RING_HASH/MAGLEV) but its key is chosen per route.
package cluster

import (
	"fmt"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/config"
)

// PolicyError reports a DestinationRule field that cannot be translated.
type PolicyError struct {
	Namespace, Name string // the DestinationRule; empty for mesh-wide settings
	Field           string // e.g. "trafficPolicy.tunnel"
	Msg             string
}

func (e *PolicyError) Error() string {
	return fmt.Sprintf("DestinationRule %s/%s: %s: %s", e.Namespace, e.Name, e.Field, e.Msg)
}

// EffectivePolicy returns the traffic policy that applies to one port of one subset: the
// DestinationRule's top-level policy, overridden field by field (loadBalancer, connectionPool,
// outlierDetection, tls, proxyProtocol, tunnel, retryBudget) by the subset's policy; in each, a
// portLevelSettings entry for port replaces the corresponding fields. The result has no
// portLevelSettings. It returns nil when nothing applies. subset may be nil.
func EffectivePolicy(dr *networking.DestinationRule, subset *networking.Subset, port uint32) *networking.TrafficPolicy {
	if dr == nil {
		return nil
	}
	out := flatten(dr.GetTrafficPolicy(), port)
	if subset != nil && subset.GetTrafficPolicy() != nil {
		sub := flatten(subset.GetTrafficPolicy(), port)
		if out == nil {
			out = sub
		} else {
			overlay(out, sub)
		}
	}
	return out
}

// flatten copies tp with the port-level settings for port applied.
func flatten(tp *networking.TrafficPolicy, port uint32) *networking.TrafficPolicy {
	if tp == nil {
		return nil
	}
	out := &networking.TrafficPolicy{
		LoadBalancer:     tp.GetLoadBalancer(),
		ConnectionPool:   tp.GetConnectionPool(),
		OutlierDetection: tp.GetOutlierDetection(),
		Tls:              tp.GetTls(),
		Tunnel:           tp.GetTunnel(),
		ProxyProtocol:    tp.GetProxyProtocol(),
		RetryBudget:      tp.GetRetryBudget(),
	}
	for _, pls := range tp.GetPortLevelSettings() {
		if pls.GetPort().GetNumber() != port {
			continue
		}
		if pls.GetLoadBalancer() != nil {
			out.LoadBalancer = pls.GetLoadBalancer()
		}
		if pls.GetConnectionPool() != nil {
			out.ConnectionPool = pls.GetConnectionPool()
		}
		if pls.GetOutlierDetection() != nil {
			out.OutlierDetection = pls.GetOutlierDetection()
		}
		if pls.GetTls() != nil {
			out.Tls = pls.GetTls()
		}
		break
	}
	return out
}

// overlay sets every field present in sub on out.
func overlay(out, sub *networking.TrafficPolicy) {
	override(&out.LoadBalancer, sub.LoadBalancer)
	override(&out.ConnectionPool, sub.ConnectionPool)
	override(&out.OutlierDetection, sub.OutlierDetection)
	override(&out.Tls, sub.Tls)
	override(&out.Tunnel, sub.Tunnel)
	override(&out.ProxyProtocol, sub.ProxyProtocol)
	override(&out.RetryBudget, sub.RetryBudget)
}

// override sets *dst to v when v is set.
func override[T any](dst **T, v *T) {
	if v != nil {
		*dst = v
	}
}

// Rule is a DestinationRule as the cluster generator needs it: the spec and its identity for
// errors. A nil *Rule means no DestinationRule applies.
type Rule struct {
	Namespace, Name string
	Spec            *networking.DestinationRule
}

// RuleOf converts a DestinationRule object (as returned by mesh.Snapshot.DestinationRule) to a
// Rule; nil gives nil.
func RuleOf(o *config.Object) *Rule {
	if o == nil {
		return nil
	}
	dr, ok := o.Spec.(*networking.DestinationRule)
	if !ok {
		return nil
	}
	return &Rule{Namespace: o.Namespace, Name: o.Name, Spec: dr}
}

func (r *Rule) spec() *networking.DestinationRule {
	if r == nil {
		return nil
	}
	return r.Spec
}

func (r *Rule) errf(field, format string, args ...any) error {
	e := &PolicyError{Field: field, Msg: fmt.Sprintf(format, args...)}
	if r != nil {
		e.Namespace, e.Name = r.Namespace, r.Name
	}
	return e
}
