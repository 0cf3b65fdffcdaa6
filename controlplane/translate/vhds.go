package translate

import (
	"fmt"
	"github.com/strait-mesh/strait/internal/protoshallow"
	"slices"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/strait-mesh/strait/controlplane/mesh"
)

// Virtual hosts through VHDS (issue 13, item 1).
//
// A sidecar's outbound route configuration holds a virtual host per service port it can reach:
// with 1,000 services, ~1,000 virtual hosts and ~0.6 MB per HTTP port. Adding a service or
// editing a VirtualService changes one or two of them, but a route configuration is one xDS
// resource, so every proxy of every namespace was re-sent all of it (1.3 MB per proxy per
// change at 1,000 services × 3 ports, measured with bench/xdsload). Three designs were weighed:
//
//   - Per-service route configurations: Envoy's HTTP connection manager names exactly one route
//     configuration, so splitting by service would mean a listener (or filter chain) per service
//     and routing by destination address instead of Host, which changes behaviour for
//     VirtualService hosts that are not services and for passthrough traffic. Refused.
//   - Caching built virtual hosts and sharing equal route configurations between namespaces:
//     saves control-plane CPU, but a route configuration is still one resource, so the bytes
//     per change stay ~1.3 MB per proxy. Not enough on its own.
//   - VHDS (chosen): Envoy's Virtual Host Discovery Service delivers virtual hosts as their own
//     Delta xDS resources (type envoy.config.route.v3.VirtualHost, named "<route configuration
//     name>/<virtual host name>"), and the route configuration carries `vhds` instead of them.
//     Delta then sends exactly the virtual hosts whose content changed: one service added is
//     two virtual hosts (~1 KiB) per proxy instead of two route configurations.
//
// The split is the last step of generation, after RateLimits and EnvoyFilters, so whatever they
// patched into a route configuration is distributed as is; the virtual hosts (and domains) are
// exactly those of the unsplit configuration. It applies only to proxies that announce
// node.FeatureVHDS (strait-proxy on Delta streams); others, and proxyless gRPC clients, get
// whole route configurations as before. The delivery is wildcard: the control plane sends every
// virtual host of the proxy's route configurations (on-demand subscription by host is item 3).
//
// Sharing: every virtual host is built once with its VHDS form and carried over between
// snapshots while its inputs are unchanged (routeparts.go), so an edit re-marshals and re-sends
// only the virtual hosts it changes. The split of a route configuration built that way is made
// with it from those forms; a route configuration patched later (RateLimits, EnvoyFilters) is
// split here, memoized on the object. The split list of a proxy's route configurations is shared
// by every proxy with the same ones, and virtual hosts with equal content in different
// namespaces share their marshaled bytes in the xDS server. Nothing here depends on pointer
// identity for correctness: a new object is split anew.

// vhdsKey memoizes the split of one route configuration object.
type vhdsKey struct{ rc *routev3.RouteConfiguration }

// vhdsSplit is a route configuration without its virtual hosts, and those virtual hosts as
// VHDS resources.
type vhdsSplit struct {
	rc     *routev3.RouteConfiguration
	vhosts []types.Resource
}

// adsSource is the config source of VHDS: the proxy's ADS stream.
var adsSource = &corev3.ConfigSource{
	ResourceApiVersion:    corev3.ApiVersion_V3,
	ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
}

// virtualHosts moves the virtual hosts of every route configuration in res to VHDS: each route
// configuration gets `vhds` and no virtual hosts, and res gets a VirtualHost resource per moved
// virtual host (an empty list when there is none, so that stale ones are removed). The lists are
// shared by every proxy with the same route configurations, so that the xDS server recognizes
// them without a pass over their items.
func (g *generator) virtualHosts(snap *mesh.Snapshot, res Resources) Resources {
	out := make(Resources, len(res)+1)
	for typ, list := range res {
		out[typ] = list
	}
	in := res[resource.RouteType]
	key := vhdsListKey{hash: resourcesHash(g.c, in), n: len(in)}
	build := func() *vhdsList {
		l := &vhdsList{from: in, routes: make([]types.Resource, 0, len(in))}
		for _, r := range in {
			rc, ok := r.(*routev3.RouteConfiguration)
			if !ok {
				l.routes = append(l.routes, r)
				continue
			}
			split := g.c.vhdsSplits.Get(snap.Version, vhdsKey{rc}, struct{}{}, func() *vhdsSplit {
				return splitRouteConfiguration(rc, func(*routev3.VirtualHost) *routev3.VirtualHost { return nil })
			})
			l.routes = append(l.routes, split.rc)
			l.vhosts = append(l.vhosts, split.vhosts...)
		}
		return l
	}
	l := g.c.vhdsLists.Get(snap.Version, key, struct{}{}, build)
	if !slices.Equal(l.from, in) { // a hash collision: do not share
		l = build()
	}
	out[resource.RouteType] = l.routes
	out[resource.VirtualHostType] = l.vhosts
	return out
}

// vhdsListKey memoizes the VHDS split of a list of route configurations, by the serials of
// its items (a hash; the entry holds the list to compare).
type vhdsListKey struct {
	hash uint64
	n    int
}

// vhdsList is the split of the route configurations from: route configurations with `vhds`, and
// all their virtual hosts.
type vhdsList struct {
	from   []types.Resource
	routes []types.Resource
	vhosts []types.Resource
}

// splitRouteConfiguration returns rc with `vhds` in place of its virtual hosts, and the virtual
// hosts renamed to their VHDS resource names: form's result for a virtual host when it has one
// (a VHDS form built with the virtual host, see routeParts), else a new one. rc is not modified;
// the new messages share rc's sub-messages (every field is carried, whatever the API version
// adds).
func splitRouteConfiguration(rc *routev3.RouteConfiguration, form func(*routev3.VirtualHost) *routev3.VirtualHost) *vhdsSplit {
	out := protoshallow.Copy(rc, "virtual_hosts")
	out.Vhds = &routev3.Vhds{ConfigSource: adsSource}
	split := &vhdsSplit{rc: out, vhosts: make([]types.Resource, 0, len(rc.VirtualHosts))}
	for _, vh := range rc.VirtualHosts {
		v := form(vh)
		if v == nil {
			v = vhdsForm(rc.Name, vh)
		}
		split.vhosts = append(split.vhosts, v)
	}
	return split
}

// vhdsForm returns virtual host vh of route configuration rc as a VHDS resource: renamed, its
// other fields shared.
func vhdsForm(rc string, vh *routev3.VirtualHost) *routev3.VirtualHost {
	v := protoshallow.Copy(vh, "name")
	v.Name = VHDSName(rc, vh.Name)
	return v
}

// VHDSName is the VHDS resource name of virtual host vh of route configuration rc, as Envoy
// names them: "<route configuration name>/<virtual host name>" (virtual host names hold no
// "/", so the route configuration's name is everything before the last one).
func VHDSName(rc, vh string) string { return fmt.Sprintf("%s/%s", rc, vh) }
