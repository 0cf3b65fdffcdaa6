package route

import (
	"strconv"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/config"
)

// delegatedRoutes resolves a root HTTPRoute's delegate and translates the delegate's HTTP routes
// merged under the root route, as Istio does:
//
//   - each delegate route's match blocks are intersected with each of the root's (root AND
//     delegate); a pair whose conditions contradict (e.g. a delegate uri outside the root's
//     prefix, a different value for the same header) yields no block, and a delegate route left
//     with no block does not take effect — Istio's documented conflict rule;
//   - the delegate's forwarding fields win; rewrite, timeout, retries, fault, mirror(s), corsPolicy
//     and headers of the root apply to delegate routes that do not set them;
//   - destinations resolve in the delegate's namespace; only one level of delegation is allowed,
//     and a delegate must not have hosts.
//
// It reports whether a catch-all was generated.
func (c *routeCtx) delegatedRoutes(root *networking.HTTPRoute, field string) ([]*routev3.Route, bool, error) {
	field += ".delegate"
	if len(root.Route) > 0 || root.Redirect != nil || root.DirectResponse != nil {
		return nil, false, errf(field, "cannot be combined with route, redirect or directResponse")
	}
	if c.proxyless {
		return nil, false, errf(field, "delegation is not supported for proxyless gRPC clients")
	}
	name, ns := root.Delegate.Name, root.Delegate.Namespace
	if ns == "" {
		ns = c.obj.Namespace
	}
	if name == "" {
		return nil, false, errf(field+".name", "required")
	}
	obj := c.delegate(name, ns)
	if obj == nil {
		return nil, false, errf(field, "VirtualService %s/%s not found (or not exported to %s)", ns, name, c.obj.Namespace)
	}
	spec, ok := obj.Spec.(*networking.VirtualService)
	if !ok {
		return nil, false, errf(field, "%s/%s holds %T, want *VirtualService", ns, name, obj.Spec)
	}
	if len(spec.Hosts) > 0 {
		return nil, false, errf(field, "delegate VirtualService %s/%s must not have hosts", ns, name)
	}
	cc := *c
	cc.obj, cc.meta = obj, nil
	var out []*routev3.Route
	for j, cr := range spec.Http {
		cfield := field + "(" + ns + "/" + name + ").http[" + strconv.Itoa(j) + "]"
		if cr.Delegate != nil {
			return nil, false, errf(cfield+".delegate", "only one level of delegation is supported")
		}
		merged, ok := mergeRoute(root, cr)
		if !ok {
			continue // conflicting matches: the delegate route does not take effect (Istio)
		}
		routes, catchAll, err := cc.translateHTTPRoute(merged)
		if err != nil {
			return nil, false, atField(cfield, err)
		}
		out = append(out, routes...)
		if catchAll {
			return out, true, nil
		}
	}
	return out, false, nil
}

func (b *Builder) lookupDelegate(name, ns string) *config.Object {
	if b.in.Delegate == nil {
		return nil
	}
	return b.in.Delegate(name, ns)
}

// mergeRoute merges a delegate route under its root route; ok is false when no match block
// survives the intersection.
func mergeRoute(root, child *networking.HTTPRoute) (*networking.HTTPRoute, bool) {
	out := proto.Clone(child).(*networking.HTTPRoute)
	if len(root.Match) > 0 {
		childMatches := child.Match
		if len(childMatches) == 0 {
			childMatches = []*networking.HTTPMatchRequest{nil}
		}
		var ms []*networking.HTTPMatchRequest
		for _, rm := range root.Match {
			for _, cm := range childMatches {
				if m, ok := mergeMatch(rm, cm); ok {
					ms = append(ms, m)
				}
			}
		}
		if len(ms) == 0 {
			return nil, false
		}
		out.Match = ms
	}
	if root.Name != "" && child.Name != "" {
		out.Name = root.Name + "." + child.Name
	} else if child.Name == "" {
		out.Name = root.Name
	}
	if out.Rewrite == nil {
		out.Rewrite = root.Rewrite
	}
	if out.Timeout == nil {
		out.Timeout = root.Timeout
	}
	if out.Retries == nil {
		out.Retries = root.Retries
	}
	if out.Fault == nil {
		out.Fault = root.Fault
	}
	if out.Mirror == nil && len(out.Mirrors) == 0 {
		out.Mirror, out.Mirrors = root.Mirror, root.Mirrors
		out.MirrorPercentage, out.MirrorPercent = root.MirrorPercentage, root.MirrorPercent
	}
	if out.CorsPolicy == nil {
		out.CorsPolicy = root.CorsPolicy
	}
	if out.Headers == nil {
		out.Headers = root.Headers
	}
	return out, true
}

// mergeMatch intersects a root match block with a delegate's (nil: no conditions); ok is false
// when they contradict.
func mergeMatch(root, child *networking.HTTPMatchRequest) (*networking.HTTPMatchRequest, bool) {
	if child == nil {
		return proto.Clone(root).(*networking.HTTPMatchRequest), true
	}
	out := proto.Clone(child).(*networking.HTTPMatchRequest)
	switch {
	case root.Uri == nil:
	case child.Uri == nil:
		out.Uri, out.IgnoreUriCase = root.Uri, root.IgnoreUriCase
	case !uriWithin(root.Uri, child.Uri):
		return nil, false
	}
	for _, p := range []struct{ r, c **networking.StringMatch }{
		{&root.Scheme, &out.Scheme}, {&root.Method, &out.Method}, {&root.Authority, &out.Authority},
	} {
		if *p.r == nil {
			continue
		}
		if *p.c != nil && !proto.Equal(*p.r, *p.c) {
			return nil, false
		}
		*p.c = *p.r
	}
	var ok bool
	if out.Headers, ok = mergeStringMatches(root.Headers, out.Headers); !ok {
		return nil, false
	}
	if out.WithoutHeaders, ok = mergeStringMatches(root.WithoutHeaders, out.WithoutHeaders); !ok {
		return nil, false
	}
	if out.QueryParams, ok = mergeStringMatches(root.QueryParams, out.QueryParams); !ok {
		return nil, false
	}
	if root.Port != 0 {
		if out.Port != 0 && out.Port != root.Port {
			return nil, false
		}
		out.Port = root.Port
	}
	for k, v := range root.SourceLabels {
		if cv, has := out.SourceLabels[k]; has && cv != v {
			return nil, false
		}
		if out.SourceLabels == nil {
			out.SourceLabels = map[string]string{}
		}
		out.SourceLabels[k] = v
	}
	if len(root.Gateways) > 0 {
		if len(out.Gateways) > 0 && !sameSet(root.Gateways, out.Gateways) {
			return nil, false
		}
		out.Gateways = root.Gateways
	}
	if root.SourceNamespace != "" {
		if out.SourceNamespace != "" && out.SourceNamespace != root.SourceNamespace {
			return nil, false
		}
		out.SourceNamespace = root.SourceNamespace
	}
	if root.Name != "" && out.Name != "" {
		out.Name = root.Name + "." + out.Name
	} else if out.Name == "" {
		out.Name = root.Name
	}
	if out.StatPrefix == "" {
		out.StatPrefix = root.StatPrefix
	}
	return out, true
}

// uriWithin reports whether every URI the delegate's condition matches is also matched by the
// root's: a delegate prefix or exact path under a root prefix, the same exact path, or the same
// regex.
func uriWithin(root, child *networking.StringMatch) bool {
	switch r := root.MatchType.(type) {
	case *networking.StringMatch_Prefix:
		switch c := child.MatchType.(type) {
		case *networking.StringMatch_Prefix:
			return len(c.Prefix) >= len(r.Prefix) && c.Prefix[:len(r.Prefix)] == r.Prefix
		case *networking.StringMatch_Exact:
			return len(c.Exact) >= len(r.Prefix) && c.Exact[:len(r.Prefix)] == r.Prefix
		}
		return false
	}
	return proto.Equal(root, child)
}

func mergeStringMatches(root, child map[string]*networking.StringMatch) (map[string]*networking.StringMatch, bool) {
	if len(root) == 0 {
		return child, true
	}
	out := make(map[string]*networking.StringMatch, len(root)+len(child))
	for k, v := range child {
		out[k] = v
	}
	for k, v := range root {
		if cv, has := out[k]; has && !proto.Equal(cv, v) {
			return nil, false
		}
		out[k] = v
	}
	return out, true
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !contains(b, x) {
			return false
		}
	}
	return true
}
