package translate

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/translate/ratelimit"
	"github.com/strait-mesh/strait/internal/node"
)

// rlSelectKey caches, per snapshot, the RateLimits of a namespace and label set.
type rlSelectKey struct{ namespace, labels string }

// rlListenerKey memoizes one listener with the filters of one list of RateLimits.
type rlListenerKey struct {
	policies string
	res      types.Resource
}

// rlResult is a listener with its rate limit filters and the Global rules' rate_limits for its
// RDS route configurations, or the error that left it unchanged.
type rlResult struct {
	l   *listenerv3.Listener
	rds map[string][]*routev3.RateLimit
	err error
}

// rlRouteKey memoizes one route configuration with the rate_limits of one list of RateLimits.
type rlRouteKey struct {
	policies string
	res      types.Resource
}

// rlClusterKey memoizes the rate limit service cluster of an address.
type rlClusterKey struct{ address string }

// rlCluster is the rate limit service cluster, or the error of its address.
type rlCluster struct {
	c   types.Resource
	err error
}

// rateLimits adds the filters of the RateLimits that select p (package ratelimit) to its
// inbound listeners (a sidecar's) or all its listeners (a gateway's). Their Global rules also
// add rate_limits to the routes of those listeners (inline, or the RDS route configurations
// they name) and the cluster vocab.RateLimitServiceCluster of Options.RateLimitService; without
// that service a Global rule is reported and its listener left unchanged. It runs before the
// EnvoyFilters, which may patch what it adds, as they patch everything else. A proxy without
// RateLimits gets res unchanged; listeners and route configurations are memoized per list of
// RateLimits and base resource.
func (g *generator) rateLimits(snap *mesh.Snapshot, p *Proxy, res Resources) Resources {
	if len(snap.Configs[config.RateLimit]) == 0 {
		return res
	}
	policies := rlSelectSlot.Get(snap.Cache(), rlSelectKey{p.Namespace, labelsKey(p.Labels)}, func() []*config.Object {
		return ratelimit.Select(snap.Configs[config.RateLimit], p.Namespace, p.Labels, snap.RootNamespace())
	})
	if len(policies) == 0 {
		return res
	}
	var key strings.Builder
	for _, o := range policies {
		key.WriteString(o.Namespace + "/" + o.Name + "@" + strconv.FormatUint(snap.ObjectHash(o), 16) + ";")
	}
	gateway := p.Type == node.Router
	service := g.opts.RateLimitService != ""
	out := make(Resources, len(res))
	for typ, list := range res {
		out[typ] = list
	}
	rds := map[string][]*routev3.RateLimit{}
	list := make([]types.Resource, 0, len(res[resource.ListenerType]))
	for _, r := range res[resource.ListenerType] {
		l := r.(*listenerv3.Listener)
		if !gateway && listenerContext(false, l) != networking.EnvoyFilter_SIDECAR_INBOUND {
			list = append(list, r)
			continue
		}
		lr := g.c.rlListeners.Get(snap.Version, rlListenerKey{key.String(), r}, service, func() *rlResult {
			nl, routes, err := ratelimit.Listener(l, policies, service)
			return &rlResult{l: nl, rds: routes, err: err}
		})
		if lr.err == nil {
			for name, rls := range lr.rds {
				if prev, ok := rds[name]; ok && !equalRateLimits(prev, rls) {
					lr = &rlResult{err: fmt.Errorf("listener %s: route configuration %q is shared with another listener that other Global RateLimit rules apply to", l.GetName(), name)}
					break
				}
			}
		}
		if lr.err != nil {
			g.report(p, lr.err)
			list = append(list, r)
			continue
		}
		for name, rls := range lr.rds {
			rds[name] = rls
		}
		list = append(list, lr.l)
	}
	out[resource.ListenerType] = list
	if len(rds) > 0 {
		routes := make([]types.Resource, 0, len(res[resource.RouteType]))
		for _, r := range res[resource.RouteType] {
			rc := r.(*routev3.RouteConfiguration)
			rls, ok := rds[rc.GetName()]
			if !ok {
				routes = append(routes, r)
				continue
			}
			routes = append(routes, g.c.rlRoutes.Get(snap.Version, rlRouteKey{key.String(), r}, struct{}{}, func() *routev3.RouteConfiguration {
				return ratelimit.RouteConfiguration(rc, rls)
			}))
		}
		out[resource.RouteType] = routes
	}
	if service && hasGlobalRule(policies) {
		rc := g.c.rlClusters.Get(snap.Version, rlClusterKey{g.opts.RateLimitService}, struct{}{}, func() *rlCluster {
			c, err := ratelimit.Cluster(g.opts.RateLimitService)
			return &rlCluster{c: c, err: err}
		})
		if rc.err != nil {
			g.report(p, rc.err)
		} else {
			out[resource.ClusterType] = append(slices.Clip(res[resource.ClusterType]), rc.c)
		}
	}
	return out
}

// hasGlobalRule reports whether one of policies has a Global rule.
func hasGlobalRule(policies []*config.Object) bool {
	return len(ratelimit.GlobalRules(policies)) > 0
}

// equalRateLimits reports whether a and b are the same rate_limits.
func equalRateLimits(a, b []*routev3.RateLimit) bool {
	return slices.EqualFunc(a, b, func(x, y *routev3.RateLimit) bool { return proto.Equal(x, y) })
}
