package envoyfilter

import (
	"fmt"
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/config"
)

// Applier applies one proxy's patches (in order) to its resources. Its methods never modify
// their arguments: a resource a patch changes is cloned first. It is safe for concurrent use
// when Check is.
type Applier struct {
	Patches []*Patch
	Check   Checker
}

// Listener applies the patches to listener l of context ctx: LISTENER (MERGE, REMOVE),
// FILTER_CHAIN, NETWORK_FILTER and HTTP_FILTER patches, and route patches to the route
// configurations inline in its connection managers. It returns l itself when no patch changes
// it, nil and removed when a REMOVE patch removes it, or the patched copy. A patched copy the
// Checker refuses is dropped: l is returned with one error per patch that changed it.
func (a *Applier) Listener(ctx networking.EnvoyFilter_PatchContext, l *listenerv3.Listener) (out *listenerv3.Listener, removed bool, errs []error) {
	relevant := a.relevant(ctx, func(p *Patch) bool {
		switch p.ApplyTo {
		case networking.EnvoyFilter_ROUTE_CONFIGURATION, networking.EnvoyFilter_VIRTUAL_HOST, networking.EnvoyFilter_HTTP_ROUTE:
			return true
		case networking.EnvoyFilter_LISTENER:
			return p.Op != networking.EnvoyFilter_Patch_ADD && listenerMatch(p, l, false)
		case networking.EnvoyFilter_FILTER_CHAIN, networking.EnvoyFilter_NETWORK_FILTER, networking.EnvoyFilter_HTTP_FILTER:
			return listenerMatch(p, l, true)
		}
		return false
	})
	if len(relevant) == 0 {
		return l, false, nil
	}
	c := proto.Clone(l).(*listenerv3.Listener)
	used, removed := patchListener(ctx, c, relevant)
	if removed {
		return nil, true, nil
	}
	if len(used) == 0 {
		return l, false, nil
	}
	if err := a.Check.Listener(c); err != nil {
		return l, false, refused(used, "listener", l.GetName(), err)
	}
	return c, false, nil
}

// RouteConfiguration applies the ROUTE_CONFIGURATION, VIRTUAL_HOST and HTTP_ROUTE patches to
// route configuration rc (an RDS resource) of context ctx, returning rc itself, its patched copy,
// or rc and the refusals when the Checker refuses the copy.
func (a *Applier) RouteConfiguration(ctx networking.EnvoyFilter_PatchContext, rc *routev3.RouteConfiguration) (*routev3.RouteConfiguration, []error) {
	relevant := a.relevant(ctx, func(p *Patch) bool { return isRoutePatch(p) && routeConfigMatch(p, rc) })
	if len(relevant) == 0 {
		return rc, nil
	}
	c := proto.Clone(rc).(*routev3.RouteConfiguration)
	used := patchRouteConfig(c, relevant)
	if len(used) == 0 {
		return rc, nil
	}
	if err := a.Check.RouteConfiguration(c); err != nil {
		return rc, refused(used, "route configuration", rc.GetName(), err)
	}
	return c, nil
}

// Cluster applies the CLUSTER patches (MERGE, REMOVE) to cluster c of context ctx, returning c
// itself, nil and removed, its patched copy, or c and the refusals.
func (a *Applier) Cluster(ctx networking.EnvoyFilter_PatchContext, c *clusterv3.Cluster) (out *clusterv3.Cluster, removed bool, errs []error) {
	relevant := a.relevant(ctx, func(p *Patch) bool {
		return p.ApplyTo == networking.EnvoyFilter_CLUSTER && p.Op != networking.EnvoyFilter_Patch_ADD && clusterMatch(p, c)
	})
	if len(relevant) == 0 {
		return c, false, nil
	}
	cc := proto.Clone(c).(*clusterv3.Cluster)
	var used []*Patch
	for _, p := range relevant {
		switch p.Op {
		case networking.EnvoyFilter_Patch_REMOVE:
			return nil, true, nil
		case networking.EnvoyFilter_Patch_MERGE:
			merge(cc, p.Value)
			used = append(used, p)
		}
	}
	if len(used) == 0 {
		return c, false, nil
	}
	if err := a.Check.Cluster(cc); err != nil {
		return c, false, refused(used, "cluster", c.GetName(), err)
	}
	return cc, false, nil
}

// AddedListeners returns the listeners LISTENER ADD patches add for a proxy whose resources
// have the contexts ctxs (a patch of context ANY adds its listener once), each checked: one the
// Checker refuses is left out with an error.
func (a *Applier) AddedListeners(ctxs ...networking.EnvoyFilter_PatchContext) ([]*listenerv3.Listener, []error) {
	var out []*listenerv3.Listener
	var errs []error
	for _, p := range a.added(networking.EnvoyFilter_LISTENER, ctxs) {
		l := proto.Clone(p.Value).(*listenerv3.Listener)
		if err := a.Check.Listener(l); err != nil {
			errs = append(errs, refused([]*Patch{p}, "added listener", l.GetName(), err)...)
			continue
		}
		out = append(out, l)
	}
	return out, errs
}

// AddedClusters is AddedListeners for CLUSTER ADD patches.
func (a *Applier) AddedClusters(ctxs ...networking.EnvoyFilter_PatchContext) ([]*clusterv3.Cluster, []error) {
	var out []*clusterv3.Cluster
	var errs []error
	for _, p := range a.added(networking.EnvoyFilter_CLUSTER, ctxs) {
		c := proto.Clone(p.Value).(*clusterv3.Cluster)
		if err := a.Check.Cluster(c); err != nil {
			errs = append(errs, refused([]*Patch{p}, "added cluster", c.GetName(), err)...)
			continue
		}
		out = append(out, c)
	}
	return out, errs
}

// added returns the ADD patches of applyTo whose context is one of ctxs or ANY.
func (a *Applier) added(applyTo networking.EnvoyFilter_ApplyTo, ctxs []networking.EnvoyFilter_PatchContext) []*Patch {
	var out []*Patch
	for _, p := range a.Patches {
		if p.ApplyTo == applyTo && p.Op == networking.EnvoyFilter_Patch_ADD &&
			(p.Context() == networking.EnvoyFilter_ANY || slices.Contains(ctxs, p.Context())) {
			out = append(out, p)
		}
	}
	return out
}

// relevant returns the patches of context ctx (or ANY) for which keep is true.
func (a *Applier) relevant(ctx networking.EnvoyFilter_PatchContext, keep func(*Patch) bool) []*Patch {
	var out []*Patch
	for _, p := range a.Patches {
		if contextMatch(p.Context(), ctx) && keep(p) {
			out = append(out, p)
		}
	}
	return out
}

// refused returns, for each patch that changed a resource strait-proxy would not accept, the
// error naming the patch, the resource and why.
func refused(used []*Patch, what, name string, cause error) []error {
	var errs []error
	seen := map[*Patch]bool{}
	for _, p := range used {
		if seen[p] {
			continue
		}
		seen[p] = true
		errs = append(errs, &config.Error{Kind: config.EnvoyFilter, Namespace: p.Object.Namespace, Name: p.Object.Name,
			Field: fmt.Sprintf("spec.configPatches[%d]", p.Index),
			Msg: fmt.Sprintf("the patched %s %q is refused: strait-proxy would reject it (%v); the proxy keeps the unpatched %s",
				what, name, cause, what)})
	}
	return errs
}

func isRoutePatch(p *Patch) bool {
	switch p.ApplyTo {
	case networking.EnvoyFilter_ROUTE_CONFIGURATION, networking.EnvoyFilter_VIRTUAL_HOST, networking.EnvoyFilter_HTTP_ROUTE:
		return true
	}
	return false
}

// patchListener applies the relevant patches to l (a copy) in Istio's order: route
// configurations inline in connection managers, the listener, its filter chains, their network
// filters, their HTTP filters. It returns the patches that changed something, or removed.
func patchListener(ctx networking.EnvoyFilter_PatchContext, l *listenerv3.Listener, patches []*Patch) (used []*Patch, removed bool) {
	chains := func() []*listenerv3.FilterChain {
		fcs := l.GetFilterChains()
		if l.GetDefaultFilterChain() != nil {
			fcs = append(slices.Clip(fcs), l.GetDefaultFilterChain())
		}
		return fcs
	}
	var routePatches []*Patch
	for _, p := range patches {
		if isRoutePatch(p) {
			routePatches = append(routePatches, p)
		}
	}
	if len(routePatches) > 0 {
		for _, fc := range chains() {
			for _, f := range fc.GetFilters() {
				hcm := decodeHCM(f)
				if hcm.GetRouteConfig() == nil {
					continue
				}
				var rel []*Patch
				for _, p := range routePatches {
					if routeConfigMatch(p, hcm.GetRouteConfig()) {
						rel = append(rel, p)
					}
				}
				if u := patchRouteConfig(hcm.GetRouteConfig(), rel); len(u) > 0 && encodeHCM(f, hcm) == nil {
					used = append(used, u...)
				}
			}
		}
	}
	for _, p := range patches {
		if p.ApplyTo != networking.EnvoyFilter_LISTENER {
			continue
		}
		switch p.Op {
		case networking.EnvoyFilter_Patch_REMOVE:
			return nil, true
		case networking.EnvoyFilter_Patch_MERGE:
			merge(l, p.Value)
			used = append(used, p)
		}
	}
	for _, p := range patches {
		if p.ApplyTo != networking.EnvoyFilter_FILTER_CHAIN {
			continue
		}
		switch p.Op {
		case networking.EnvoyFilter_Patch_ADD:
			l.FilterChains = append(l.FilterChains, proto.Clone(p.Value).(*listenerv3.FilterChain))
			used = append(used, p)
		case networking.EnvoyFilter_Patch_REMOVE:
			n := len(l.FilterChains)
			l.FilterChains = slices.DeleteFunc(l.FilterChains, func(fc *listenerv3.FilterChain) bool { return filterChainMatch(p, l, fc) })
			changed := len(l.FilterChains) != n
			if l.DefaultFilterChain != nil && filterChainMatch(p, l, l.DefaultFilterChain) {
				l.DefaultFilterChain = nil
				changed = true
			}
			if changed {
				used = append(used, p)
			}
		case networking.EnvoyFilter_Patch_MERGE:
			for _, fc := range chains() {
				if filterChainMatch(p, l, fc) {
					merge(fc, p.Value)
					used = append(used, p)
				}
			}
		}
	}
	for _, p := range patches {
		if p.ApplyTo != networking.EnvoyFilter_NETWORK_FILTER {
			continue
		}
		for _, fc := range chains() {
			if !filterChainMatch(p, l, fc) {
				continue
			}
			if fs, ok := patchList(p, fc.Filters, networkFilterName(p), networkFilterIndex, func(f *listenerv3.Filter) bool {
				return config.CanonicalFilterName(f.GetName()) == networkFilterName(p)
			}); ok {
				fc.Filters = fs
				used = append(used, p)
			}
		}
	}
	for _, p := range patches {
		if p.ApplyTo != networking.EnvoyFilter_HTTP_FILTER {
			continue
		}
		for _, fc := range chains() {
			if !filterChainMatch(p, l, fc) {
				continue
			}
			for _, f := range fc.GetFilters() {
				hcm := decodeHCM(f)
				if hcm == nil {
					continue
				}
				name := httpFilterName(p)
				fs, ok := patchList(p, hcm.HttpFilters, name, httpFilterIndex, func(hf *hcmv3.HttpFilter) bool {
					return config.CanonicalFilterName(hf.GetName()) == name
				})
				if !ok {
					continue
				}
				hcm.HttpFilters = fs
				if encodeHCM(f, hcm) == nil {
					used = append(used, p)
				}
			}
		}
	}
	return used, false
}

// patchList applies a filter patch (NETWORK_FILTER or HTTP_FILTER) to a list of filters: name
// is the filter the patch selects ("" for none), index finds it and named reports whether an
// item is it. ADD appends; INSERT_FIRST prepends; INSERT_BEFORE and INSERT_AFTER insert next to
// the first selected filter, or without one at the front and at the end (with one that is not
// there, nothing happens); REMOVE, REPLACE and MERGE act on every selected filter. It returns
// the new list and whether it changed.
func patchList[T proto.Message](p *Patch, list []T, name string, index func([]T, string) int, named func(T) bool) ([]T, bool) {
	value := func() T { return proto.Clone(p.Value).(T) }
	switch p.Op {
	case networking.EnvoyFilter_Patch_ADD:
		return append(list, value()), true
	case networking.EnvoyFilter_Patch_INSERT_FIRST:
		return slices.Insert(list, 0, value()), true
	case networking.EnvoyFilter_Patch_INSERT_BEFORE, networking.EnvoyFilter_Patch_INSERT_AFTER:
		at := 0
		if p.Op == networking.EnvoyFilter_Patch_INSERT_AFTER {
			at = len(list)
		}
		if name != "" {
			i := index(list, name)
			if i < 0 {
				return list, false
			}
			at = i
			if p.Op == networking.EnvoyFilter_Patch_INSERT_AFTER {
				at = i + 1
			}
		}
		return slices.Insert(list, at, value()), true
	case networking.EnvoyFilter_Patch_REMOVE:
		if name == "" {
			return list, false
		}
		n := len(list)
		list = slices.DeleteFunc(list, named)
		return list, len(list) != n
	case networking.EnvoyFilter_Patch_REPLACE, networking.EnvoyFilter_Patch_MERGE:
		changed := false
		if name == "" {
			return list, false
		}
		for i, f := range list {
			if !named(f) {
				continue
			}
			if p.Op == networking.EnvoyFilter_Patch_REPLACE {
				list[i] = value()
			} else {
				merge(f, p.Value)
			}
			changed = true
		}
		return list, changed
	}
	return list, false
}

// patchRouteConfig applies route patches (already matched to rc's name and port) to rc, a
// copy, in Istio's order: ROUTE_CONFIGURATION MERGE; VIRTUAL_HOST REMOVE and MERGE; HTTP_ROUTE
// patches in each remaining virtual host; VIRTUAL_HOST ADD. It returns the patches that changed
// something.
func patchRouteConfig(rc *routev3.RouteConfiguration, patches []*Patch) (used []*Patch) {
	for _, p := range patches {
		if p.ApplyTo == networking.EnvoyFilter_ROUTE_CONFIGURATION && p.Op == networking.EnvoyFilter_Patch_MERGE {
			merge(rc, p.Value)
			used = append(used, p)
		}
	}
	for _, p := range patches {
		if p.ApplyTo != networking.EnvoyFilter_VIRTUAL_HOST {
			continue
		}
		switch p.Op {
		case networking.EnvoyFilter_Patch_REMOVE:
			n := len(rc.VirtualHosts)
			rc.VirtualHosts = slices.DeleteFunc(rc.VirtualHosts, func(vh *routev3.VirtualHost) bool { return vhostMatch(p, vh) })
			if len(rc.VirtualHosts) != n {
				used = append(used, p)
			}
		case networking.EnvoyFilter_Patch_MERGE:
			for _, vh := range rc.VirtualHosts {
				if vhostMatch(p, vh) {
					merge(vh, p.Value)
					used = append(used, p)
				}
			}
		}
	}
	for _, p := range patches {
		if p.ApplyTo != networking.EnvoyFilter_HTTP_ROUTE {
			continue
		}
		for _, vh := range rc.VirtualHosts {
			if vhostMatch(p, vh) && patchRoutes(p, vh) {
				used = append(used, p)
			}
		}
	}
	for _, p := range patches {
		if p.ApplyTo == networking.EnvoyFilter_VIRTUAL_HOST && p.Op == networking.EnvoyFilter_Patch_ADD {
			rc.VirtualHosts = append(rc.VirtualHosts, proto.Clone(p.Value).(*routev3.VirtualHost))
			used = append(used, p)
		}
	}
	return used
}

// patchRoutes applies an HTTP_ROUTE patch to the routes of vh: MERGE and REMOVE act on every
// matching route; INSERT_BEFORE and INSERT_AFTER insert next to the first matching route when
// the match selects one (by name or action), otherwise at the front and at the end;
// INSERT_FIRST at the front. It reports whether vh changed.
func patchRoutes(p *Patch, vh *routev3.VirtualHost) bool {
	value := func() *routev3.Route { return proto.Clone(p.Value).(*routev3.Route) }
	switch p.Op {
	case networking.EnvoyFilter_Patch_MERGE:
		changed := false
		for _, r := range vh.Routes {
			if routeMatch(p, r) {
				merge(r, p.Value)
				changed = true
			}
		}
		return changed
	case networking.EnvoyFilter_Patch_REMOVE:
		n := len(vh.Routes)
		vh.Routes = slices.DeleteFunc(vh.Routes, func(r *routev3.Route) bool { return routeMatch(p, r) })
		return len(vh.Routes) != n
	case networking.EnvoyFilter_Patch_INSERT_FIRST:
		vh.Routes = slices.Insert(vh.Routes, 0, value())
		return true
	case networking.EnvoyFilter_Patch_INSERT_BEFORE, networking.EnvoyFilter_Patch_INSERT_AFTER:
		at := 0
		if p.Op == networking.EnvoyFilter_Patch_INSERT_AFTER {
			at = len(vh.Routes)
		}
		if routeSelected(p) {
			i := slices.IndexFunc(vh.Routes, func(r *routev3.Route) bool { return routeMatch(p, r) })
			if i < 0 {
				return false
			}
			at = i
			if p.Op == networking.EnvoyFilter_Patch_INSERT_AFTER {
				at = i + 1
			}
		}
		vh.Routes = slices.Insert(vh.Routes, at, value())
		return true
	}
	return false
}
