package translate

import (
	"strconv"
	"strings"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
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

// rlResult is a listener with its rate limit filters, or the error that left it unchanged.
type rlResult struct {
	l   *listenerv3.Listener
	err error
}

// rateLimits adds the filters of the RateLimits that select p (package ratelimit) to its
// inbound listeners (a sidecar's) or all its listeners (a gateway's). It runs before the
// EnvoyFilters, which may patch what it adds, as they patch everything else. A proxy without
// RateLimits gets res unchanged; listeners are memoized per list of RateLimits and base listener.
func (g *generator) rateLimits(snap *mesh.Snapshot, p *Proxy, res Resources) Resources {
	if len(snap.Configs[config.RateLimit]) == 0 {
		return res
	}
	policies := snap.CacheValue(rlSelectKey{p.Namespace, labelsKey(p.Labels)}, func() any {
		return ratelimit.Select(snap.Configs[config.RateLimit], p.Namespace, p.Labels, snap.RootNamespace())
	}).([]*config.Object)
	if len(policies) == 0 {
		return res
	}
	var key strings.Builder
	for _, o := range policies {
		key.WriteString(o.Namespace + "/" + o.Name + "@" + strconv.FormatUint(snap.ObjectHash(o), 16) + ";")
	}
	gateway := p.Type == node.Router
	out := make(Resources, len(res))
	for typ, list := range res {
		out[typ] = list
	}
	list := make([]types.Resource, 0, len(res[resource.ListenerType]))
	for _, r := range res[resource.ListenerType] {
		l := r.(*listenerv3.Listener)
		if !gateway && listenerContext(false, l) != networking.EnvoyFilter_SIDECAR_INBOUND {
			list = append(list, r)
			continue
		}
		lr := g.memo.get(snap.Version, rlListenerKey{key.String(), r}, struct{}{}, func() any {
			nl, err := ratelimit.Listener(l, policies)
			return &rlResult{l: nl, err: err}
		}).(*rlResult)
		if lr.err != nil {
			g.report(p, lr.err)
			list = append(list, r)
			continue
		}
		list = append(list, lr.l)
	}
	out[resource.ListenerType] = list
	return out
}
