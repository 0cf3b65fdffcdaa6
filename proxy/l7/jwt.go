package l7

import (
	"github.com/strait-mesh/strait/proxy/jwtauthn"
	"github.com/strait-mesh/strait/proxy/route"
	"github.com/strait-mesh/strait/proxy/stats"
	jwtauthnv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/jwt_authn/v3"
)

// typeJWTAuthn is the type URL of the JWT authentication filter (RequestAuthentication).
const typeJWTAuthn = "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication"

// jwtFilter enforces envoy.filters.http.jwt_authn (proxy/jwtauthn) with Envoy's replies: a
// refused request gets 401 (403 for a disallowed audience) with Envoy's message as the body, a
// www-authenticate challenge and the details "jwt_authn_access_denied{...}"; an accepted one
// continues with the verified payloads in the dynamic metadata namespace
// envoy.filters.http.jwt_authn, where the RBAC filter's request-principal rules read them. The
// counters are http.<prefix>.jwt_authn.(allowed|denied|cors_preflight_bypassed). A route whose
// typed_per_filter_config disables the filter (by name) skips it.
func (h *Handler) jwtFilter(field, name string, cfg *jwtauthnv3.JwtAuthentication, disabled bool) (Filter, error) {
	f, err := jwtauthn.Compile(cfg, field+".typed_config")
	if err != nil {
		return nil, err
	}
	for _, w := range f.Warnings() {
		h.log.Warn("jwt_authn: accepted with a problem", "problem", w)
	}
	counter := func(stat string) *stats.Counter { return h.httpCounter("jwt_authn." + stat) }
	allowed, denied, bypassed := counter("allowed"), counter("denied"), counter("cors_preflight_bypassed")
	strip := f.StripFailureResponse()
	return func(next StreamHandler) StreamHandler {
		return func(s *Stream) {
			if s.filterOff(name, disabled) {
				next(s)
				return
			}
			res := f.Verify((*jwtRequest)(s))
			if res.CORSBypassed {
				bypassed.Inc()
			}
			if res.Status != jwtauthn.OK {
				denied.Inc()
				s.jwtReject(res.Status, strip)
				return
			}
			allowed.Inc()
			if res.Metadata != nil {
				s.SetDynamicMetadata(jwtauthn.MetadataNamespace, res.Metadata)
			}
			if res.ClearRouteCache {
				s.rematchRoute()
			}
			next(s)
		}
	}, nil
}

// jwtReject sends the filter's local reply. Envoy adds the challenge through the local reply's
// header hook; localReply has none, so the challenge is set as the status line is written.
func (s *Stream) jwtReject(st jwtauthn.Status, strip bool) {
	if strip {
		s.localReply(st.HTTPCode(), 0, st.Details(), "", -1)
		return
	}
	n := s.pushHook(challengeHook(jwtauthn.Challenge(s.Scheme(), s.Authority(), s.Path(), st)))
	s.localReply(st.HTTPCode(), 0, st.Details(), st.String(), -1)
	s.popHook(n)
}

// challengeHook sets www-authenticate on the response head.
type challengeHook string

func (k challengeHook) encodeHeaders(s *Stream, _ int) {
	s.SetResponseHeader("Www-Authenticate", string(k))
}

// rematchRoute chooses the route again after the filter changed headers routing may look at
// (clear_route_cache), as serveHTTP chose it first.
func (s *Stream) rematchRoute() {
	if s.Table == nil {
		return
	}
	s.Route = s.matchRoute()
	s.Cluster, s.Target = "", nil
	s.Info.RouteName, s.Info.Cluster = "", ""
	if s.Route == nil {
		return
	}
	s.Info.RouteName = s.Route.Name
	if s.Route.Action == route.ActionForward {
		s.Cluster, s.Target = s.pickCluster()
		s.Info.Cluster = s.Cluster
	}
}

// jwtRequest is what the JWT filter sees of a Stream (jwtauthn.Request); a conversion of the
// Stream pointer, so adapting costs no allocation.
type jwtRequest Stream

func (r *jwtRequest) Method() string              { return (*Stream)(r).Method() }
func (r *jwtRequest) Path() string                { return (*Stream)(r).Path() }
func (r *jwtRequest) Header(name string) []string { return (*Stream)(r).HeaderValues(name) }
func (r *jwtRequest) DelHeader(name string)       { (*Stream)(r).DelHeader(name) }

func (r *jwtRequest) SetPath(path string) {
	// The path comes from the request's own, less a query parameter: it parses.
	_ = (*Stream)(r).SetPath(path)
}

func (r *jwtRequest) AddHeader(name, value string) { (*Stream)(r).AddHeader(name, value) }
