package route

import (
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/internal/vocab"
)

// envoyDefaultMaxDirectResponseBody is Envoy's default limit for direct response bodies; larger
// bodies need RouteConfiguration.max_direct_response_body_size_bytes.
const envoyDefaultMaxDirectResponseBody = 4096

// setAction sets the route's action from exactly one of route, redirect and directResponse, and
// the forwarding policies that only a route action carries (rewrite, timeout, retries, mirrors,
// hash policy). Fields that have no meaning with the chosen action are errors, not ignored.
func (c *routeCtx) setAction(out *routev3.Route, r *networking.HTTPRoute, m *networking.HTTPMatchRequest) (*headerOps, error) {
	n := 0
	if len(r.Route) > 0 {
		n++
	}
	if r.Redirect != nil {
		n++
	}
	if r.DirectResponse != nil {
		n++
	}
	if n != 1 {
		return nil, errf("", "exactly one of route, redirect, directResponse or delegate is required, got %d", n)
	}
	if len(r.Route) == 0 {
		for _, f := range []struct {
			name string
			set  bool
		}{
			{"rewrite", r.Rewrite != nil}, {"timeout", r.Timeout != nil}, {"retries", r.Retries != nil},
			{"mirror", r.Mirror != nil}, {"mirrors", len(r.Mirrors) > 0},
			{"mirrorPercentage", r.MirrorPercentage != nil}, {"mirrorPercent", r.MirrorPercent != nil},
		} {
			if f.set {
				return nil, errf(f.name, "only valid on a route that forwards (route), not with redirect or directResponse")
			}
		}
	}
	switch {
	case r.Redirect != nil:
		if c.proxyless {
			return nil, errf("redirect", "not supported by proxyless gRPC clients")
		}
		rd, err := c.redirect(r.Redirect, m)
		if err != nil {
			return nil, atField("redirect", err)
		}
		out.Action = &routev3.Route_Redirect{Redirect: rd}
		return nil, nil
	case r.DirectResponse != nil:
		if c.proxyless {
			return nil, errf("directResponse", "not supported by proxyless gRPC clients")
		}
		dr, err := directResponse(r.DirectResponse)
		if err != nil {
			return nil, atField("directResponse", err)
		}
		out.Action = &routev3.Route_DirectResponse{DirectResponse: dr}
		return nil, nil
	}
	action, destOps, err := c.routeAction(r)
	if err != nil {
		return nil, err
	}
	out.Action = &routev3.Route_Route{Route: action}
	return destOps, nil
}

// dest is one resolved destination of a route.
type dest struct {
	cluster, host, subset string
	port                  uint32
	weight                uint32
	ops                   *headerOps
}

// routeAction builds the forwarding action: a single cluster or weighted clusters, rewrite,
// timeout, retries, mirrors and the DestinationRule's hash policy. For a single destination it
// returns the destination-level header operations, which the caller applies after the route's.
func (c *routeCtx) routeAction(r *networking.HTTPRoute) (*routev3.RouteAction, *headerOps, error) {
	var dests []dest
	for i, d := range r.Route {
		field := "route[" + strconv.Itoa(i) + "]"
		if d.Destination == nil {
			return nil, nil, errf(field+".destination", "required")
		}
		if d.Weight < 0 {
			return nil, nil, errf(field+".weight", "negative weight %d", d.Weight)
		}
		if len(r.Route) > 1 && d.Weight == 0 {
			continue // Istio: a zero-weight destination of a split receives no traffic
		}
		rd, err := c.destination(d.Destination)
		if err != nil {
			return nil, nil, atField(field+".destination", err)
		}
		rd.weight = uint32(d.Weight)
		if d.Headers != nil {
			if c.proxyless {
				return nil, nil, errf(field+".headers", "header operations are not supported by proxyless gRPC clients")
			}
			ops, err := translateHeaders(d.Headers)
			if err != nil {
				return nil, nil, atField(field+".headers", err)
			}
			rd.ops = ops
		}
		dests = append(dests, rd)
	}
	if len(dests) == 0 {
		return nil, nil, errf("route", "every destination has weight 0")
	}
	action := &routev3.RouteAction{}
	var destOps *headerOps
	if len(dests) == 1 {
		action.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: dests[0].cluster}
		destOps = dests[0].ops
	} else {
		wc := &routev3.WeightedCluster{}
		for _, d := range dests {
			cw := &routev3.WeightedCluster_ClusterWeight{Name: d.cluster, Weight: wrapperspb.UInt32(d.weight)}
			if d.ops != nil {
				cw.RequestHeadersToAdd, cw.RequestHeadersToRemove = d.ops.reqAdd, d.ops.reqRemove
				cw.ResponseHeadersToAdd, cw.ResponseHeadersToRemove = d.ops.respAdd, d.ops.respRemove
				if d.ops.hostRewrite != "" {
					cw.HostRewriteSpecifier = &routev3.WeightedCluster_ClusterWeight_HostRewriteLiteral{HostRewriteLiteral: d.ops.hostRewrite}
				}
			}
			wc.Clusters = append(wc.Clusters, cw)
		}
		action.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}
	}
	if err := c.rewrite(action, r.Rewrite); err != nil {
		return nil, nil, atField("rewrite", err)
	}
	if err := c.timeout(action, r.Timeout); err != nil {
		return nil, nil, atField("timeout", err)
	}
	hp, err := c.hashPolicy(dests)
	if err != nil {
		return nil, nil, err
	}
	action.HashPolicy = hp
	rp, err := c.retryPolicy(r.Retries, len(hp) > 0)
	if err != nil {
		return nil, nil, atField("retries", err)
	}
	action.RetryPolicy = rp
	if err := c.mirrors(action, r); err != nil {
		return nil, nil, err
	}
	return action, destOps, nil
}

// destination resolves a Destination to its outbound cluster. The port is the destination's, else
// the service's only port, else (sidecars and proxyless clients) the port the request came in on,
// as Istio does; a gateway needs an explicit port for a multi-port or unknown service.
func (c *routeCtx) destination(d *networking.Destination) (dest, error) {
	if d.Host == "" {
		return dest{}, errf("host", "required")
	}
	host := c.b.resolveHost(d.Host, c.obj.Namespace)
	port := d.GetPort().GetNumber()
	if port == 0 {
		svc := c.service(host)
		switch {
		case svc != nil && len(svc.Ports) == 1:
			port = svc.Ports[0].Number
		case c.gateway == MeshGateway:
			port = c.port
		case svc == nil:
			return dest{}, errf("port", "required: %s is not a known service", host)
		default:
			return dest{}, errf("port", "required: service %s has %d ports", host, len(svc.Ports))
		}
	}
	return dest{cluster: vocab.OutboundClusterName(port, d.Subset, host), host: host, subset: d.Subset, port: port}, nil
}

// rewrite maps HTTPRewrite: uri to prefix_rewrite (Envoy swaps the matched prefix, or the whole
// path for exact and regex matches, as Istio relies on), uriRegexRewrite to regex_rewrite,
// authority to host_rewrite_literal.
func (c *routeCtx) rewrite(action *routev3.RouteAction, rw *networking.HTTPRewrite) error {
	if rw == nil {
		return nil
	}
	if c.proxyless {
		return errf("", "not supported by proxyless gRPC clients")
	}
	if rw.Uri != "" && rw.UriRegexRewrite != nil {
		return errf("", "uri and uriRegexRewrite are mutually exclusive")
	}
	if rw.Uri != "" {
		action.PrefixRewrite = rw.Uri
	}
	if rr := rw.UriRegexRewrite; rr != nil {
		if err := checkRegex(rr.Match); err != nil {
			return atField("uriRegexRewrite.match", err)
		}
		action.RegexRewrite = &matcherv3.RegexMatchAndSubstitute{
			Pattern:      &matcherv3.RegexMatcher{Regex: rr.Match},
			Substitution: rr.Rewrite,
		}
	}
	if rw.Authority != "" {
		action.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: rw.Authority}
	}
	return nil
}

// redirect maps HTTPRedirect to Envoy's RedirectAction.
func (c *routeCtx) redirect(in *networking.HTTPRedirect, m *networking.HTTPMatchRequest) (*routev3.RedirectAction, error) {
	out := &routev3.RedirectAction{HostRedirect: in.Authority}
	switch {
	case in.Uri != "" && in.PrefixRewrite != "":
		return nil, errf("", "uri and prefixRewrite are mutually exclusive")
	case in.Uri != "":
		out.PathRewriteSpecifier = &routev3.RedirectAction_PathRedirect{PathRedirect: in.Uri}
	case in.PrefixRewrite != "":
		if _, ok := m.GetUri().GetMatchType().(*networking.StringMatch_Prefix); !ok && m.GetUri() != nil {
			return nil, errf("prefixRewrite", "requires a uri prefix match")
		}
		out.PathRewriteSpecifier = &routev3.RedirectAction_PrefixRewrite{PrefixRewrite: in.PrefixRewrite}
	}
	if in.Scheme != "" {
		out.SchemeRewriteSpecifier = &routev3.RedirectAction_SchemeRedirect{SchemeRedirect: in.Scheme}
	}
	switch p := in.RedirectPort.(type) {
	case *networking.HTTPRedirect_Port:
		out.PortRedirect = p.Port
	case *networking.HTTPRedirect_DerivePort:
		// Envoy cannot derive the port from the request, but routes are generated per port, so
		// FROM_REQUEST_PORT is that port. FROM_PROTOCOL_DEFAULT is Envoy's own behaviour (the
		// scheme's default port), so nothing is set.
		if p.DerivePort == networking.HTTPRedirect_FROM_REQUEST_PORT {
			out.PortRedirect = c.port
		}
	}
	if in.RedirectPort != nil {
		// No explicit :80 for http or :443 for https, as Istio.
		scheme := in.Scheme
		if scheme == "" {
			scheme = "http"
			if c.tls {
				scheme = "https"
			}
		}
		if out.PortRedirect == 80 && scheme == "http" || out.PortRedirect == 443 && scheme == "https" {
			out.PortRedirect = 0
		}
	}
	switch in.RedirectCode {
	case 0, 301:
		out.ResponseCode = routev3.RedirectAction_MOVED_PERMANENTLY
	case 302:
		out.ResponseCode = routev3.RedirectAction_FOUND
	case 303:
		out.ResponseCode = routev3.RedirectAction_SEE_OTHER
	case 307:
		out.ResponseCode = routev3.RedirectAction_TEMPORARY_REDIRECT
	case 308:
		out.ResponseCode = routev3.RedirectAction_PERMANENT_REDIRECT
	default:
		return nil, errf("redirectCode", "%d is not a redirect code Envoy supports (301, 302, 303, 307, 308)", in.RedirectCode)
	}
	return out, nil
}

// directResponse maps HTTPDirectResponse: a status and an optional inline body.
func directResponse(in *networking.HTTPDirectResponse) (*routev3.DirectResponseAction, error) {
	if in.Status < 200 || in.Status > 599 {
		return nil, errf("status", "%d is not an HTTP status in [200, 599]", in.Status)
	}
	out := &routev3.DirectResponseAction{Status: in.Status}
	switch b := in.GetBody().GetSpecifier().(type) {
	case nil:
	case *networking.HTTPBody_String_:
		out.Body = &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: b.String_}}
	case *networking.HTTPBody_Bytes:
		out.Body = &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b.Bytes}}
	}
	return out, nil
}

// directResponseBodyLimit returns the largest direct response body in rc, if any exceeds Envoy's
// default limit; 0 otherwise.
func directResponseBodyLimit(vhosts []*routev3.VirtualHost) uint32 {
	var max int
	for _, vh := range vhosts {
		for _, r := range vh.Routes {
			dr := r.GetDirectResponse()
			if dr == nil || dr.Body == nil {
				continue
			}
			n := len(dr.Body.GetInlineString()) + len(dr.Body.GetInlineBytes())
			if n > max {
				max = n
			}
		}
	}
	if max <= envoyDefaultMaxDirectResponseBody {
		return 0
	}
	return uint32(max)
}

// zeroDuration is Envoy's "disabled" for route timeouts.
func zeroDuration() *durationpb.Duration { return durationpb.New(0) }

// timeout sets the route timeout: the VirtualService's, else 0 (disabled), Istio's default.
// Proxyless gRPC clients read max_stream_duration instead of timeout, so they get that (0s:
// no limit).
func (c *routeCtx) timeout(action *routev3.RouteAction, d *durationpb.Duration) error {
	if d != nil {
		if err := d.CheckValid(); err != nil || d.AsDuration() < 0 {
			return errf("", "invalid duration %v", d)
		}
	}
	if c.proxyless {
		md := c.b.zeroTimeout
		if d != nil {
			md = proto.Clone(d).(*durationpb.Duration)
		}
		action.MaxStreamDuration = &routev3.RouteAction_MaxStreamDuration{MaxStreamDuration: md}
		return nil
	}
	if d == nil {
		action.Timeout = c.b.zeroTimeout
		return nil
	}
	action.Timeout = proto.Clone(d).(*durationpb.Duration)
	return nil
}
