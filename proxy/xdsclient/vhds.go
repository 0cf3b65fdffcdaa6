package xdsclient

import (
	"errors"
	"fmt"
	"github.com/strait-mesh/strait/internal/protoshallow"
	"hash/fnv"
	"maps"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/strait-mesh/strait/proxy/xdsfield"
	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
)

// VHDS: Envoy's Virtual Host Discovery Service, Delta xDS only.
//
// A route configuration with `vhds` gets (some of) its virtual hosts as VirtualHost resources
// named "<route configuration name>/<virtual host name>" (the route configuration's name is
// everything before the last "/"). The client subscribes to them as a wildcard on Delta streams,
// where it announces node.FeatureVHDS, and never on SotW streams, where a route configuration
// with `vhds` is rejected. The Handler never sees VirtualHost resources: it is handed route
// configurations (RouteType) with their VHDS virtual hosts merged in after their own and `vhds`
// cleared, so the route compiler sees one complete table, as Envoy's does. A VHDS update that
// makes a merged route configuration fail is NACKed as VHDS; an RDS update, as RDS. Until the
// first VHDS response is accepted, route configurations with `vhds` are held back from the
// Handler (their listeners keep warming), as Envoy's initialization waits for VHDS.

// routeSet is what the Handler last accepted for RouteType: the merged route configurations,
// with the inputs each was merged from, so that one whose inputs are the same objects is
// handed on unchanged instead of merged and compiled again.
type routeSet struct {
	merged map[string]*Resource
	from   map[string]mergeInputs
	// vhds is true once a VHDS response was accepted.
	vhds bool
}

// mergeInputs are the accepted resources one merged route configuration was built from.
type mergeInputs struct {
	rc     *Resource
	vhosts []*Resource // in name order
}

func (a mergeInputs) same(b mergeInputs) bool {
	return a.rc == b.rc && slices.Equal(a.vhosts, b.vhosts)
}

// applyRoutes offers the Handler the route configurations merged from rcs and vhosts, one of
// which is the candidate set of typeURL (RouteType or VirtualHostType); the other is the
// accepted set. A VHDS update that changes no merged route configuration is accepted without
// calling the Handler.
func (c *Client) applyRoutes(typeURL string, rcs, vhosts map[string]*Resource) error {
	if typeURL == VirtualHostType && c.Protocol() != "delta" {
		return errors.New("virtual hosts (VHDS) are served on Delta xDS only")
	}
	byRC := make(map[string][]*Resource)
	for _, name := range slices.Sorted(maps.Keys(vhosts)) {
		i := strings.LastIndexByte(name, '/')
		if i <= 0 || i == len(name)-1 {
			return fmt.Errorf("virtual host %q: a VHDS resource is named <route configuration>/<virtual host>", name)
		}
		byRC[name[:i]] = append(byRC[name[:i]], vhosts[name])
	}
	next := routeSet{merged: make(map[string]*Resource, len(rcs)), from: make(map[string]mergeInputs, len(rcs)),
		vhds: c.routes.vhds || typeURL == VirtualHostType}
	var errs []error
	for name, r := range rcs {
		rc, ok := r.Message.(*routev3.RouteConfiguration)
		if !ok || rc.GetVhds() == nil {
			next.merged[name] = r // the Handler reports a wrong type
			continue
		}
		if c.Protocol() != "delta" {
			errs = append(errs, fmt.Errorf("route configuration %q: %w", name,
				xdsfield.Unsupported("route_configuration.vhds", "virtual hosts (VHDS) are served on Delta xDS only")))
			continue
		}
		if !next.vhds {
			continue // held back until the first VHDS response
		}
		in := mergeInputs{rc: r, vhosts: byRC[name]}
		if prev, ok := c.routes.from[name]; ok && prev.same(in) {
			next.merged[name], next.from[name] = c.routes.merged[name], in
			continue
		}
		m, err := c.mergeVirtualHosts(r, rc, in.vhosts)
		if err != nil {
			errs = append(errs, fmt.Errorf("route configuration %q: %w", name, err))
			continue
		}
		next.merged[name], next.from[name] = m, in
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if typeURL == VirtualHostType && c.routes.vhds && sameResources(next.merged, c.routes.merged) {
		c.routes = next
		return nil
	}
	if err := c.opts.Handler.Apply(RouteType, copySet(next.merged)); err != nil {
		return err
	}
	c.routes = next
	return nil
}

// mergeVirtualHosts returns the route configuration rc (resource r) with vhosts appended to its
// virtual hosts and `vhds` cleared. Its version combines the versions of its parts.
func (c *Client) mergeVirtualHosts(r *Resource, rc *routev3.RouteConfiguration, vhosts []*Resource) (*Resource, error) {
	// config_source says where VHDS comes from; strait-proxy always uses its ADS stream, as for RDS.
	if err := xdsfield.Check(rc.GetVhds(), "route_configuration.vhds", "config_source"); err != nil {
		return nil, err
	}
	m := proto.Clone(rc).(*routev3.RouteConfiguration)
	m.Vhds = nil
	h := fnv.New64a()
	h.Write([]byte(r.Version))
	for _, v := range vhosts {
		vh, ok := v.Message.(*routev3.VirtualHost)
		if !ok {
			return nil, fmt.Errorf("virtual host %q: not a VirtualHost", v.Name)
		}
		// The resource is named "<route configuration>/<virtual host>"; the route table, its
		// stats and `strait proxy-config route` show the virtual host's own name, as without VHDS.
		if short, ok := strings.CutPrefix(vh.GetName(), rc.GetName()+"/"); ok {
			cp := protoshallow.Copy(vh, "name") // the routes are shared, not copied
			cp.Name = short
			vh = cp
		}
		m.VirtualHosts = append(m.VirtualHosts, vh)
		h.Write([]byte{0})
		h.Write([]byte(v.Name + "=" + v.Version))
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("merging virtual hosts: %w", err)
	}
	return &Resource{Name: r.Name, Version: fmt.Sprintf("%s+vhds-%x", r.Version, h.Sum64()), Message: m,
		Any: &anypb.Any{TypeUrl: RouteType, Value: b}, Updated: r.Updated}, nil
}

// sameResources reports whether a and b hold the same resource objects under the same names.
func sameResources(a, b map[string]*Resource) bool {
	if len(a) != len(b) {
		return false
	}
	for n, r := range a {
		if b[n] != r {
			return false
		}
	}
	return true
}
