package l7

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/strait-mesh/strait/proxy/balance"
	"github.com/strait-mesh/strait/proxy/extauthz"
	"github.com/strait-mesh/strait/proxy/http1"
	"github.com/strait-mesh/strait/proxy/stats"
	extauthzv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/ext_authz/v3"
	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
)

// typeExtAuthz is the type URL of the external authorization filter (AuthorizationPolicy
// action CUSTOM).
const typeExtAuthz = extauthz.TypeURL

// extAuthzStats are the filter's counters, http.<prefix>.ext_authz[.<stat_prefix>].*.
type extAuthzStats struct {
	ok, denied, errors, disabled, failureModeAllowed, invalid, ignoredMetadata *stats.Counter
}

func (h *Handler) newExtAuthzStats(prefix string) *extAuthzStats {
	c := func(name string) *stats.Counter { return h.httpCounter(prefix + name) }
	return &extAuthzStats{ok: c("ok"), denied: c("denied"), errors: c("error"), disabled: c("disabled"),
		failureModeAllowed: c("failure_mode_allowed"), invalid: c("invalid"), ignoredMetadata: c("ignored_dynamic_metadata")}
}

// extAuthzFilter enforces envoy.filters.http.ext_authz (proxy/extauthz) with Envoy's replies: a
// request the filter is enabled for (filter_enabled, filter_enabled_metadata — Istio's CUSTOM
// action enables it from the RBAC filter's shadow metadata) is checked with the authorization
// service over the proxy's own cluster; an allowed one continues with the service's header and
// query mutations (and response headers added to whatever answers it later); a denied one gets
// the service's status, headers and body with the flag UAEX and the details ext_authz_denied; a
// failed check gets status_on_error (UAEX, ext_authz_error) unless failure_mode_allow. A route
// whose typed_per_filter_config disables the filter by name skips it (an ExtAuthzPerRoute is
// refused when the route is compiled).
func (h *Handler) extAuthzFilter(field, name string, cfg *extauthzv3.ExtAuthz, disabled bool) (Filter, error) {
	c, err := extauthz.Compile(cfg, field+".typed_config")
	if err != nil {
		return nil, err
	}
	st := h.newExtAuthzStats(c.StatPrefix)
	return func(next StreamHandler) StreamHandler {
		return func(s *Stream) {
			if s.filterOff(name, disabled) {
				next(s)
				return
			}
			if !c.Enabled(s.DynamicMetadata) {
				st.disabled.Inc()
				if c.DenyAtDisable {
					s.localReply(c.StatusOnError, FlagUnauthorizedExtService, extauthz.DetailsError, "", -1)
					return
				}
				next(s)
				return
			}
			h.extAuthzCheck(s, c, st, next)
		}
	}, nil
}

// extAuthzCheck runs one check and applies its outcome.
func (h *Handler) extAuthzCheck(s *Stream, c *extauthz.Config, st *extAuthzStats, next StreamHandler) {
	req := s.extAuthzRequest()
	if c.Body != nil && s.hasBody() {
		body, partial, ok := s.extAuthzBody(c.Body)
		if !ok {
			return
		}
		req.Body, req.PartialBody, req.BodyBuffered = body, partial, true
	}
	res := c.Check(s.Context(), clusterCaller{env: h.env, name: c.Cluster}, &req)
	if s.Context().Err() != nil {
		// The client went away while the check ran: nobody is left to answer.
		s.Info.Flags |= FlagDownstreamConnTerminated
		s.Info.Details = "downstream_remote_disconnect"
		return
	}
	if res.Metadata != nil {
		if c.IngestMetadata {
			s.SetDynamicMetadata(extauthz.FilterName, res.Metadata)
		} else {
			st.ignoredMetadata.Inc()
		}
	}
	switch res.Status {
	case extauthz.StatusOK:
		if res.Invalid {
			st.invalid.Inc()
			s.localReply(http.StatusInternalServerError, 0, extauthz.DetailsInvalid, "", -1)
			return
		}
		if !s.applyExtAuthzOK(c, res) {
			st.invalid.Inc()
			s.localReply(http.StatusInternalServerError, 0, extauthz.DetailsInvalid, "", -1)
			return
		}
		st.ok.Inc()
		if len(res.ResponseHeaders) == 0 {
			next(s)
			return
		}
		// Envoy adds these as the response is encoded: to the upstream's response or to a
		// local reply of a later stage alike.
		n := s.pushHook(authzHeaderHook(res.ResponseHeaders))
		next(s)
		s.popHook(n)
	case extauthz.StatusDenied:
		st.denied.Inc()
		s.extAuthzReply(res.Code, res.Body, res.ResponseHeaders, extauthz.DetailsDenied)
	default:
		st.errors.Inc()
		h.log.Debug("ext_authz: check failed", "cluster", c.Cluster, "error", res.Err)
		if c.FailureModeAllow {
			st.failureModeAllowed.Inc()
			if c.FailureModeAllowHeaderAdd {
				s.SetHeader("X-Envoy-Auth-Failure-Mode-Allowed", "true")
			}
			next(s)
			return
		}
		code := res.Code
		if code == 0 {
			code = c.StatusOnError
		}
		s.extAuthzReply(code, res.Body, res.ResponseHeaders, extauthz.DetailsError)
	}
}

// extAuthzRequest is what the check sees of the stream.
func (s *Stream) extAuthzRequest() extauthz.Request {
	req := extauthz.Request{
		Method: s.Method(), Path: s.Path(), Host: s.Authority(), Scheme: s.Scheme(), Protocol: s.Info.Protocol,
		ID: s.Info.RequestID, Header: httpHeader(s.reqHeader()), ContentLength: s.ContentLength(), Time: s.Info.Start,
		Metadata: s.DynamicMetadata,
	}
	if req.ID == "" {
		req.ID = s.Header("X-Request-Id")
	}
	if c := s.Info.Conn; c != nil {
		req.Source, req.Destination, req.TLS, req.SNI = c.Source, c.OriginalDst, c.TLS, c.SNI
		if len(c.PeerCertificates) > 0 {
			req.SourcePrincipal = extauthz.CertPrincipal(c.PeerCertificates[0])
		}
		req.DestinationPrincipal = extauthz.CertPrincipal(c.LocalCertificate)
	}
	if !req.Source.IsValid() {
		req.Source = s.remoteAddr()
	}
	return req
}

// extAuthzBody reads the start of the request body for the check (with_request_body) and puts
// it back in front of the rest for the router. A body longer than MaxBytes is refused with 413
// unless AllowPartial, when its first MaxBytes are sent (partial). ok is false when the
// request was answered or its client went away.
func (s *Stream) extAuthzBody(b *extauthz.BodySettings) (body []byte, partial, ok bool) {
	cl, rb := s.ContentLength(), s.Body()
	if cl > int64(b.MaxBytes) && !b.AllowPartial {
		s.localReply(http.StatusRequestEntityTooLarge, 0, "request_payload_too_large", "Payload Too Large", -1)
		return nil, false, false
	}
	want := b.MaxBytes + 1 // one byte more tells a longer body
	if cl >= 0 && cl <= int64(b.MaxBytes) {
		want = int(cl)
	}
	buf := make([]byte, want)
	n, err := fill(rb, buf)
	buf = buf[:n]
	if err != nil {
		if v, isViolation := http1.IsViolation(err); isViolation {
			s.localReply(v.Status, FlagDownstreamProtocolError, v.Details, "", -1)
			return nil, false, false
		}
		s.Info.Flags |= FlagDownstreamConnTerminated
		s.Info.Details = "downstream_remote_disconnect"
		return nil, false, false
	}
	if n > 0 {
		s.setBody(&prefixedBody{Reader: io.MultiReader(bytes.NewReader(buf), rb), Closer: rb})
	}
	if n > b.MaxBytes {
		if !b.AllowPartial {
			s.localReply(http.StatusRequestEntityTooLarge, 0, "request_payload_too_large", "Payload Too Large", -1)
			return nil, false, false
		}
		return buf[:b.MaxBytes], true, true
	}
	return buf, false, true
}

// fill reads into buf until it is full or the body ends; the end is not an error.
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// prefixedBody is a request body whose first bytes were already read.
type prefixedBody struct {
	io.Reader
	io.Closer
}

// applyExtAuthzOK applies an allowing reply's request mutations, and chooses the route again
// when clear_route_cache asks for it. It returns false when the mutated request target does
// not parse.
func (s *Stream) applyExtAuthzOK(c *extauthz.Config, res *extauthz.Response) bool {
	hdr := s.reqHeader()
	var mutated []string
	if c.ClearRouteCache {
		for i := range res.RequestHeaders {
			if extauthz.ApplyHeaders(hdr, res.RequestHeaders[i:i+1]) {
				mutated = append(mutated, res.RequestHeaders[i].Name)
			}
		}
		for _, n := range res.RemoveHeaders {
			if extauthz.RemoveHeaders(hdr, []string{n}) {
				mutated = append(mutated, n)
			}
		}
	} else {
		extauthz.ApplyHeaders(hdr, res.RequestHeaders)
		extauthz.RemoveHeaders(hdr, res.RemoveHeaders)
	}
	queryChanged := false
	if len(res.QuerySet) > 0 || len(res.QueryRemove) > 0 {
		path, query, _ := strings.Cut(s.Path(), "?")
		if q, changed := extauthz.MutateQuery(query, res.QuerySet, res.QueryRemove); changed {
			uri := path
			if q != "" {
				uri += "?" + q
			}
			if err := s.SetPath(uri); err != nil {
				return false
			}
			queryChanged = true
		}
	}
	if c.ClearRouteCache && c.RouteRelevant(mutated, queryChanged) {
		s.rematchRoute()
	}
	return true
}

// extAuthzReply answers a denied or failed check: a local reply (flag UAEX) carrying the
// authorization service's headers, which replace the reply's own of the same name.
func (s *Stream) extAuthzReply(code int, body string, ops []extauthz.HeaderOp, details string) {
	if len(ops) == 0 {
		s.localReply(code, FlagUnauthorizedExtService, details, body, -1)
		return
	}
	n := s.pushHook(authzHeaderHook(ops))
	s.localReply(code, FlagUnauthorizedExtService, details, body, -1)
	s.popHook(n)
}

// authzHeaderHook applies the authorization service's response headers to the final response
// head. The connection manager's server header keeps its transformation, as Envoy applies it
// after the filters.
type authzHeaderHook []extauthz.HeaderOp

func (k authzHeaderHook) encodeHeaders(s *Stream, _ int) {
	if !extauthz.ApplyHeaders(s.respHeader(), k) {
		return
	}
	switch s.h.serverTransform {
	case hcmv3.HttpConnectionManager_OVERWRITE:
		s.SetResponseHeader("Server", s.h.serverName)
	case hcmv3.HttpConnectionManager_APPEND_IF_ABSENT:
		if s.ResponseHeader("Server") == "" {
			s.SetResponseHeader("Server", s.h.serverName)
		}
	}
}

// clusterCaller sends checks through the named cluster of the current runtime, with the
// router's load balancing and pools.
type clusterCaller struct {
	env  Env
	name string
}

func (c clusterCaller) RoundTrip(req *http.Request) (*http.Response, error) {
	up := c.env.Cluster(c.name)
	if up == nil {
		return nil, fmt.Errorf("cluster %q not found", c.name)
	}
	return up.RoundTrip(req, balance.Context{})
}
