package l7

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/strait-mesh/strait/proxy/httpmsg"
	"github.com/strait-mesh/strait/proxy/route"
	"github.com/strait-mesh/strait/proxy/stats"
	"github.com/strait-mesh/strait/proxy/telemetry"
	corsv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/cors/v3"
	extauthzv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/ext_authz/v3"
	faultv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/fault/v3"
	jwtauthnv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/jwt_authn/v3"
	lrlv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/local_ratelimit/v3"
	rlhttpv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/ratelimit/v3"
	rbachttpv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/rbac/v3"
	routerv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
)

// Type URLs of the HTTP filters strait-proxy implements.
const (
	typeRouter = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
	typeFault  = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
	typeCORS   = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"
)

// buildPipeline assembles the HTTP filter chain in config order; it is the one place where the
// order of request processing is decided: each configured filter wraps the next, and the router
// (required, last) forwards upstream. Unknown filters are an error unless is_optional.
func (h *Handler) buildPipeline(filters []*hcmv3.HttpFilter) (StreamHandler, error) {
	var chain []Filter
	routerSeen := false
	for i, f := range filters {
		field := fmt.Sprintf("http_connection_manager.http_filters[%d]", i)
		if routerSeen {
			return nil, fmt.Errorf("%s: filter %q after the router filter", field, f.GetName())
		}
		if err := checkFields(field, f, "name", "typed_config", "is_optional", "disabled"); err != nil {
			return nil, err
		}
		tc := f.GetTypedConfig()
		typ := tc.GetTypeUrl()
		if typ == "" {
			// Envoy resolves a filter without typed_config by its well-known name.
			switch f.GetName() {
			case route.RouterFilterName:
				typ = typeRouter
			case route.FaultFilterName:
				typ = typeFault
			case route.CORSFilterName:
				typ = typeCORS
			}
		}
		var flt Filter
		switch typ {
		case typeRouter:
			if f.GetDisabled() {
				return nil, fmt.Errorf("%s.disabled: the router filter cannot be disabled", field)
			}
			var rc routerv3.Router
			if tc != nil {
				if err := tc.UnmarshalTo(&rc); err != nil {
					return nil, fmt.Errorf("%s: decoding Router: %w", field, err)
				}
			}
			// dynamic_stats only toggles per-route stats Envoy computes anyway.
			if err := checkFields(field+".typed_config", &rc, "dynamic_stats", "suppress_envoy_headers"); err != nil {
				return nil, err
			}
			h.suppressEnvoyHdrs = rc.GetSuppressEnvoyHeaders()
			routerSeen = true
			continue
		case typeFault:
			var fc faultv3.HTTPFault
			if tc != nil {
				if err := tc.UnmarshalTo(&fc); err != nil {
					return nil, fmt.Errorf("%s: decoding HTTPFault: %w", field, err)
				}
			}
			base, err := route.CompileFault(field+".typed_config", &fc)
			if err != nil {
				return nil, err
			}
			flt = h.faultFilter(f.GetName(), base, f.GetDisabled())
		case typeCORS:
			var cc corsv3.Cors
			if tc != nil {
				if err := tc.UnmarshalTo(&cc); err != nil {
					return nil, fmt.Errorf("%s: decoding Cors: %w", field, err)
				}
			}
			if err := checkFields(field+".typed_config", &cc); err != nil {
				return nil, err
			}
			flt = h.corsFilter(f.GetDisabled())
		case typeRBAC:
			var rc rbachttpv3.RBAC
			if tc != nil {
				if err := tc.UnmarshalTo(&rc); err != nil {
					return nil, fmt.Errorf("%s: decoding RBAC: %w", field, err)
				}
			}
			var err error
			if flt, err = h.rbacFilter(field, &rc, f.GetDisabled()); err != nil {
				return nil, err
			}
		case typeJWTAuthn:
			var jc jwtauthnv3.JwtAuthentication
			if tc != nil {
				if err := tc.UnmarshalTo(&jc); err != nil {
					return nil, fmt.Errorf("%s: decoding JwtAuthentication: %w", field, err)
				}
			}
			var err error
			if flt, err = h.jwtFilter(field, f.GetName(), &jc, f.GetDisabled()); err != nil {
				return nil, err
			}
		case typeExtAuthz:
			var ec extauthzv3.ExtAuthz
			if tc != nil {
				if err := tc.UnmarshalTo(&ec); err != nil {
					return nil, fmt.Errorf("%s: decoding ExtAuthz: %w", field, err)
				}
			}
			var err error
			if flt, err = h.extAuthzFilter(field, f.GetName(), &ec, f.GetDisabled()); err != nil {
				return nil, err
			}
		case typeLocalRateLimit:
			var lc lrlv3.LocalRateLimit
			if tc != nil {
				if err := tc.UnmarshalTo(&lc); err != nil {
					return nil, fmt.Errorf("%s: decoding LocalRateLimit: %w", field, err)
				}
			}
			var err error
			if flt, err = h.localRateLimitFilter(field, f.GetName(), &lc, f.GetDisabled()); err != nil {
				return nil, err
			}
		case typeGlobalRateLimit:
			var rc rlhttpv3.RateLimit
			if tc != nil {
				if err := tc.UnmarshalTo(&rc); err != nil {
					return nil, fmt.Errorf("%s: decoding RateLimit: %w", field, err)
				}
			}
			var err error
			if flt, err = h.globalRateLimitFilter(field, f.GetName(), &rc, f.GetDisabled()); err != nil {
				return nil, err
			}
		case telemetry.TypeStatsPluginConfig, telemetry.TypeUDPATypedStruct, telemetry.TypeXDSTypedStruct:
			if typ != telemetry.TypeStatsPluginConfig && !telemetry.IsStatsConfig(tc) && f.GetIsOptional() {
				continue // another TypedStruct extension Envoy may skip
			}
			var err error
			if flt, err = h.istioStatsFilter(field, f); err != nil {
				return nil, err
			}
		default:
			if f.GetIsOptional() {
				continue // Envoy skips optional filters it does not know
			}
			return nil, &route.UnsupportedError{Field: field, Detail: fmt.Sprintf("HTTP filter %q (%s)", f.GetName(), typ)}
		}
		chain = append(chain, flt)
	}
	if !routerSeen {
		return nil, fmt.Errorf("http_connection_manager.http_filters: the last filter must be %s", route.RouterFilterName)
	}
	next := StreamHandler(h.router)
	for i := len(chain) - 1; i >= 0; i-- {
		next = chain[i](next)
	}
	return next, nil
}

// filterOff reports whether the filter name is off for this stream: disabled in the connection
// manager and not enabled again by the route, or disabled by the route's per-filter config.
func (s *Stream) filterOff(name string, disabled bool) bool {
	if disabled {
		return true
	}
	if s.Route != nil {
		if _, off := s.Route.FilterConfig(name).(route.FilterDisabled); off {
			return true
		}
	}
	return false
}

// httpCounter registers the connection manager's counter http.<stat_prefix>.<stat> (Prometheus
// envoy_http_<stat with "_" for ".">, tagged with the prefix), as Envoy names filter stats.
func (h *Handler) httpCounter(stat string) *stats.Counter {
	tag := stats.Tag{Name: "envoy_http_conn_manager_prefix", Value: h.statPrefix}
	return h.opts.Stats.Counter("http."+h.statPrefix+"."+stat, "envoy_http_"+strings.ReplaceAll(stat, ".", "_"), tag)
}

// faultFilter injects delays and aborts (envoy.filters.http.fault). The route's per-filter
// config replaces the filter-level one.
func (h *Handler) faultFilter(name string, base *route.Fault, disabled bool) Filter {
	var active atomic.Int64
	return func(next StreamHandler) StreamHandler {
		return func(s *Stream) {
			f := base
			if disabled {
				f = nil
			}
			if s.Route != nil {
				switch c := s.Route.FilterConfig(name).(type) {
				case *route.Fault:
					f = c
				case route.FilterDisabled:
					f = nil
				}
			}
			if f == nil || f.Inert() {
				next(s)
				return
			}
			h.injectFault(s, f, &active, next)
		}
	}
}

// injectFault is the fault filter's work on a request whose fault may inject something (not
// route.Fault.Inert): the fault's conditions, max_active_faults, the delay, then the abort or
// next. Out of the filter's common path, where the fault config injects nothing. active counts
// the filter's requests in here.
//
//go:noinline
func (h *Handler) injectFault(s *Stream, f *route.Fault, active *atomic.Int64, next StreamHandler) {
	if !s.faultApplies(f) {
		next(s)
		return
	}
	if f.MaxActive > 0 && active.Load() >= int64(f.MaxActive) {
		next(s)
		return
	}
	active.Add(1)
	defer active.Add(-1)
	if d := s.faultDelay(f); d > 0 {
		s.Info.Flags |= FlagDelayInjected
		h.st.faultDelays.Inc()
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-s.Context().Done():
			t.Stop()
			s.Info.Flags |= FlagDownstreamConnTerminated
			return
		}
	}
	if status, grpcStatus := s.faultAbort(f); status > 0 || grpcStatus >= 0 {
		h.st.faultAborts.Inc()
		if status == 0 {
			status = http.StatusOK // gRPC abort: a trailers-only response
		}
		body := "fault filter abort"
		if f.AbortBody != "" {
			body = f.AbortBody
		}
		s.localReply(status, FlagFaultInjected, "fault_filter_abort", body, grpcStatus)
		return
	}
	next(s)
}

// corsFilter implements envoy.filters.http.cors with the route's (or virtual host's) policy.
// The policy only ever comes from route configuration, so a filter marked disabled runs exactly
// where a route enables it by carrying a policy, as in Envoy.
func (h *Handler) corsFilter(_ bool) Filter {
	return func(next StreamHandler) StreamHandler {
		return func(s *Stream) {
			origin := s.Header("Origin")
			if s.Route == nil || origin == "" {
				next(s)
				return
			}
			p := s.Route.CORS
			if p == nil || !p.Enabled.Sample() {
				next(s)
				return
			}
			preflight := s.Method() == http.MethodOptions && s.Header("Access-Control-Request-Method") != ""
			if !p.AllowsOrigin(origin) {
				h.st.corsOriginInvalid.Inc()
				if preflight && !p.ForwardNotMatchingPreflights {
					s.localReply(http.StatusOK, 0, "cors_preflight_origin_mismatch", "", -1)
					return
				}
				next(s)
				return
			}
			h.st.corsPreflight.Inc()
			if preflight {
				s.SetResponseHeader("Access-Control-Allow-Origin", origin)
				if p.AllowCredentials {
					s.SetResponseHeader("Access-Control-Allow-Credentials", "true")
				}
				if p.AllowMethods != "" {
					s.SetResponseHeader("Access-Control-Allow-Methods", p.AllowMethods)
				}
				if p.AllowHeaders != "" {
					s.SetResponseHeader("Access-Control-Allow-Headers", p.AllowHeaders)
				}
				if p.MaxAge != "" {
					s.SetResponseHeader("Access-Control-Max-Age", p.MaxAge)
				}
				if p.AllowPrivateNetworkAccess && strings.EqualFold(s.Header("Access-Control-Request-Private-Network"), "true") {
					s.SetResponseHeader("Access-Control-Allow-Private-Network", "true")
				}
				s.applyCommonResponseHeaders(s.respHeader())
				s.SetResponseHeader("Content-Length", "0")
				s.Info.Details = "cors_response"
				s.writeHeader(http.StatusOK)
				return
			}
			s.cors, s.corsOrigin = p, origin
			next(s)
		}
	}
}

// applyCORS adds the CORS response headers of an allowed simple request.
func (s *Stream) applyCORS(hdr *httpmsg.Header) {
	if s.cors == nil {
		return
	}
	hdr.Set("Access-Control-Allow-Origin", s.corsOrigin)
	if s.cors.AllowCredentials {
		hdr.Set("Access-Control-Allow-Credentials", "true")
	}
	if s.cors.ExposeHeaders != "" {
		hdr.Set("Access-Control-Expose-Headers", s.cors.ExposeHeaders)
	}
}
