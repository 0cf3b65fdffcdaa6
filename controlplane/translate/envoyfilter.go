package translate

import (
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/structpb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/translate/envoyfilter"
	"github.com/strait-mesh/strait/internal/node"
)

// efSelectKey caches, per snapshot, the compiled EnvoyFilter patches of a namespace and label
// set.
type efSelectKey struct{ namespace, labels string }

// efResourceKey memoizes one resource patched by one list of patches (efPatchKey) for a context.
type efResourceKey struct {
	patches string
	ctx     networking.EnvoyFilter_PatchContext
	res     types.Resource
}

// efAddedKey memoizes the resources ADD patches add, per list of patches and proxy kind.
type efAddedKey struct {
	patches string
	typ     string
	gateway bool
}

// efResult is a patched resource (nil when removed) and the refusals of its patches.
type efResult struct {
	res  types.Resource
	errs []error
}

// efAdded is what ADD patches add and the refusals of those strait-proxy would reject.
type efAdded struct {
	list []types.Resource
	errs []error
}

// envoyFilters applies the EnvoyFilters that select p to its resources (see package
// envoyfilter). A proxy without any gets res unchanged, sharing every object with other
// proxies. Patched resources are memoized per list of patches and base resource, so proxies with
// the same EnvoyFilters share them too, across snapshots while their inputs are unchanged.
// Patches strait-proxy would reject are reported and leave their resource unpatched.
func (g *generator) envoyFilters(snap *mesh.Snapshot, p *Proxy, res Resources) Resources {
	if len(snap.Configs[config.EnvoyFilter]) == 0 {
		return res
	}
	set := efSelectSlot.Get(snap.Cache(), efSelectKey{p.Namespace, labelsKey(p.Labels)}, func() *envoyfilter.Set {
		return envoyfilter.Compile(envoyfilter.Select(snap.Configs[config.EnvoyFilter], p.Namespace, p.Labels, snap.RootNamespace()))
	})
	for _, err := range set.Errors {
		g.report(p, err)
	}
	patches, key := set.ForProxy(proxyMatchInfo(p), snap.ObjectHash)
	if len(patches) == 0 {
		return res
	}
	check := g.opts.EnvoyFilterCheck
	if check == nil {
		check = g.check
	}
	a := &envoyfilter.Applier{Patches: patches, Check: check}
	gateway := p.Type == node.Router
	out := make(Resources, len(res))
	for typ, list := range res {
		out[typ] = list
	}
	patchAll := func(typ string, ctxOf func(types.Resource) networking.EnvoyFilter_PatchContext,
		apply func(networking.EnvoyFilter_PatchContext, types.Resource) *efResult) {
		list := make([]types.Resource, 0, len(res[typ]))
		for _, r := range res[typ] {
			ctx := ctxOf(r)
			pr := g.c.efResources.Get(snap.Version, efResourceKey{key, ctx, r}, struct{}{}, func() *efResult { return apply(ctx, r) })
			for _, err := range pr.errs {
				g.report(p, err)
			}
			if pr.res != nil {
				list = append(list, pr.res)
			}
		}
		out[typ] = list
	}
	ctxs := []networking.EnvoyFilter_PatchContext{networking.EnvoyFilter_SIDECAR_INBOUND, networking.EnvoyFilter_SIDECAR_OUTBOUND}
	if gateway {
		ctxs = []networking.EnvoyFilter_PatchContext{networking.EnvoyFilter_GATEWAY}
	}
	added := func(typ string, build func() ([]types.Resource, []error)) {
		ad := g.c.efAdded.Get(snap.Version, efAddedKey{key, typ, gateway}, struct{}{}, func() *efAdded {
			l, errs := build()
			return &efAdded{list: l, errs: errs}
		})
		for _, err := range ad.errs {
			g.report(p, err)
		}
		if len(ad.list) > 0 {
			out[typ] = append(append(make([]types.Resource, 0, len(out[typ])+len(ad.list)), out[typ]...), ad.list...)
		}
	}

	patchAll(resource.ListenerType, func(r types.Resource) networking.EnvoyFilter_PatchContext {
		return listenerContext(gateway, r.(*listenerv3.Listener))
	}, func(ctx networking.EnvoyFilter_PatchContext, r types.Resource) *efResult {
		l, _, errs := a.Listener(ctx, r.(*listenerv3.Listener))
		return &efResult{res: resourceOrNil(l), errs: errs}
	})
	added(resource.ListenerType, func() ([]types.Resource, []error) {
		l, errs := a.AddedListeners(ctxs...)
		return appendAll(nil, l), errs
	})
	patchAll(resource.RouteType, func(types.Resource) networking.EnvoyFilter_PatchContext {
		if gateway {
			return networking.EnvoyFilter_GATEWAY
		}
		return networking.EnvoyFilter_SIDECAR_OUTBOUND
	}, func(ctx networking.EnvoyFilter_PatchContext, r types.Resource) *efResult {
		rc, errs := a.RouteConfiguration(ctx, r.(*routev3.RouteConfiguration))
		return &efResult{res: rc, errs: errs}
	})
	patchAll(resource.ClusterType, func(r types.Resource) networking.EnvoyFilter_PatchContext {
		return clusterContext(gateway, r.(*clusterv3.Cluster))
	}, func(ctx networking.EnvoyFilter_PatchContext, r types.Resource) *efResult {
		c, _, errs := a.Cluster(ctx, r.(*clusterv3.Cluster))
		return &efResult{res: resourceOrNil(c), errs: errs}
	})
	added(resource.ClusterType, func() ([]types.Resource, []error) {
		c, errs := a.AddedClusters(ctxs...)
		return appendAll(nil, c), errs
	})
	return out
}

// resourceOrNil returns r as a types.Resource, or a nil interface for a nil pointer.
func resourceOrNil[T interface {
	types.Resource
	comparable
}](r T) types.Resource {
	var zero T
	if r == zero {
		return nil
	}
	return r
}

// listenerContext is the EnvoyFilter context of a listener: GATEWAY for a router's, and for a
// sidecar's SIDECAR_INBOUND when it receives inbound traffic (virtualInbound, or an explicit
// inbound listener: traffic direction INBOUND), SIDECAR_OUTBOUND otherwise.
func listenerContext(gateway bool, l *listenerv3.Listener) networking.EnvoyFilter_PatchContext {
	switch {
	case gateway:
		return networking.EnvoyFilter_GATEWAY
	case l.GetName() == "virtualInbound" || l.GetTrafficDirection().String() == "INBOUND":
		return networking.EnvoyFilter_SIDECAR_INBOUND
	}
	return networking.EnvoyFilter_SIDECAR_OUTBOUND
}

// clusterContext is the EnvoyFilter context of a cluster: GATEWAY for a router's; for a
// sidecar's SIDECAR_INBOUND for inbound clusters ("inbound|..." and InboundPassthroughCluster),
// SIDECAR_OUTBOUND otherwise.
func clusterContext(gateway bool, c *clusterv3.Cluster) networking.EnvoyFilter_PatchContext {
	switch {
	case gateway:
		return networking.EnvoyFilter_GATEWAY
	case strings.HasPrefix(c.GetName(), "inbound|") || c.GetName() == "InboundPassthroughCluster":
		return networking.EnvoyFilter_SIDECAR_INBOUND
	}
	return networking.EnvoyFilter_SIDECAR_OUTBOUND
}

// proxyMatchInfo is what an EnvoyFilter's proxy match reads from p's node metadata.
func proxyMatchInfo(p *Proxy) envoyfilter.Proxy {
	px := envoyfilter.Proxy{Metadata: map[string]string{}}
	for k, v := range p.Node.GetMetadata().GetFields() {
		if s, ok := v.GetKind().(*structpb.Value_StringValue); ok {
			px.Metadata[k] = s.StringValue
		}
	}
	px.Version = px.Metadata[node.MetaProxyVersion]
	return px
}
