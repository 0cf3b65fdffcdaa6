package l7

import (
	"net/http"

	jwtauthnv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"

	"github.com/strait-mesh/strait/proxy/jwtauthn"
	"github.com/strait-mesh/strait/proxy/route"
	"github.com/strait-mesh/strait/proxy/stats"
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
	w := s.W
	s.W = &challengeWriter{ResponseWriter: w, value: jwtauthn.Challenge(s.R.URL.Scheme, s.R.Host, s.R.RequestURI, st)}
	s.localReply(st.HTTPCode(), 0, st.Details(), st.String(), -1)
	s.W = w
}

// challengeWriter sets www-authenticate on the response it writes.
type challengeWriter struct {
	http.ResponseWriter
	value string
}

func (w *challengeWriter) WriteHeader(code int) {
	w.ResponseWriter.Header()["Www-Authenticate"] = []string{w.value}
	w.ResponseWriter.WriteHeader(code)
}

// rematchRoute chooses the route again after the filter changed headers routing may look at
// (clear_route_cache), as serveHTTP chose it first.
func (s *Stream) rematchRoute() {
	if s.Table == nil {
		return
	}
	s.Route = s.Table.Match(s.R)
	s.Cluster, s.Target = "", nil
	s.Info.RouteName, s.Info.Cluster = "", ""
	if s.Route == nil {
		return
	}
	s.Info.RouteName = s.Route.Name
	if s.Route.Action == route.ActionForward {
		s.Cluster, s.Target = s.Route.PickCluster(s.R)
		s.Info.Cluster = s.Cluster
	}
}

// jwtRequest is what the JWT filter sees of a Stream (jwtauthn.Request); a conversion of the
// Stream pointer, so adapting costs no allocation.
type jwtRequest Stream

func (r *jwtRequest) Method() string              { return r.R.Method }
func (r *jwtRequest) Path() string                { return r.R.RequestURI }
func (r *jwtRequest) Header(name string) []string { return r.R.Header[name] }
func (r *jwtRequest) DelHeader(name string)       { delete(r.R.Header, name) }

func (r *jwtRequest) SetPath(path string) {
	// The path comes from the request's own, less a query parameter: it parses.
	_ = setRequestURI(r.R, path)
}

func (r *jwtRequest) AddHeader(name, value string) {
	r.R.Header[name] = append(r.R.Header[name], value)
}
