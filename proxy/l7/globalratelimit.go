package l7

import (
	"sync"

	"github.com/strait-mesh/strait/proxy/ratelimit"
	"github.com/strait-mesh/strait/proxy/route"
	rlhttpv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/ratelimit/v3"
)

// typeGlobalRateLimit is the type URL of envoy.filters.http.ratelimit.
const typeGlobalRateLimit = ratelimit.GlobalTypeURL

// globalRateLimitDetails and rateLimiterErrorDetails are Envoy's %RESPONSE_CODE_DETAILS% of a
// request the rate limit service limited, and of one denied because the service failed.
const (
	globalRateLimitDetails  = "request_rate_limited"
	rateLimiterErrorDetails = "rate_limiter_error"
)

// globalRateLimitFilter implements envoy.filters.http.ratelimit with Envoy's semantics: a
// request of the configured request_type whose route forwards to a cluster is checked when its
// route's rate_limits of the filter's stage (and its virtual host's, when the route has none or
// include_vh_rate_limits) produce descriptors: one ShouldRateLimit call through the proxy's own
// rate limit service cluster, within the filter's timeout. OK continues, with the reply's
// request_headers_to_add set on the upstream request and its response_headers_to_add (and the
// x-ratelimit-* headers, when enabled) added to the response. OVER_LIMIT answers
// rate_limited_status (429) with response flag RL, x-envoy-ratelimited: true (unless disabled),
// the reply's headers and raw_body and the filter's response_headers_to_add. A failed call is
// let through (failure_mode_allowed) or, with failure_mode_deny, answered status_on_error (500)
// with flag RLSE. A route whose typed_per_filter_config disables the filter by name skips it
// (a RateLimitPerRoute is refused when the route is compiled). Counters are
// cluster.<route target cluster>.ratelimit.{ok,over_limit,error,failure_mode_allowed}.
func (h *Handler) globalRateLimitFilter(field, name string, c *rlhttpv3.RateLimit, disabled bool) (Filter, error) {
	g, err := ratelimit.CompileGlobal(field+".typed_config", c)
	if err != nil {
		return nil, err
	}
	respOps, err := route.CompileResponseHeaderOps(field+".typed_config.response_headers_to_add", c.GetResponseHeadersToAdd())
	if err != nil {
		return nil, err
	}
	caller := clusterCaller{env: h.env, name: g.Client.Cluster}
	var byCluster sync.Map // route target cluster → *ratelimit.GlobalStats
	statsFor := func(cluster string) *ratelimit.GlobalStats {
		if v, ok := byCluster.Load(cluster); ok {
			return v.(*ratelimit.GlobalStats)
		}
		v, _ := byCluster.LoadOrStore(cluster, ratelimit.NewGlobalStats(h.opts.Stats, cluster))
		return v.(*ratelimit.GlobalStats)
	}
	return func(next StreamHandler) StreamHandler {
		return func(s *Stream) {
			if s.filterOff(name, disabled) || s.Route == nil || s.Cluster == "" || !g.RequestType.Applies(!s.external) {
				next(s)
				return
			}
			var entries [8]ratelimit.Entry
			var ends [4]int
			d := ratelimit.Descriptors{Entries: entries[:0], Ends: ends[:0]}
			s.routeRateLimitDescriptors(&d, g.Stage)
			if d.Len() == 0 {
				next(s)
				return
			}
			out := g.Client.Check(s.Context(), caller, g.Domain, &d)
			if s.Context().Err() != nil {
				// The client went away while the call ran: nobody is left to answer.
				s.Info.Flags |= FlagDownstreamConnTerminated
				s.Info.Details = "downstream_remote_disconnect"
				return
			}
			st := statsFor(s.Cluster)
			switch out.Code {
			case ratelimit.CodeOK:
				st.OK.Inc()
				if out.Metadata != nil {
					s.SetDynamicMetadata(ratelimit.GlobalFilterName, out.Metadata)
				}
				for _, kv := range out.RequestHeaders {
					s.SetHeader(kv[0], kv[1])
				}
				add := responseHeadersOf(g, &out)
				if len(add) == 0 {
					next(s)
					return
				}
				n := s.pushHook(&globalRateLimitHook{add: add})
				next(s)
				s.popHook(n)
			case ratelimit.CodeOverLimit:
				st.OverLimit.Inc()
				if out.Metadata != nil {
					s.SetDynamicMetadata(ratelimit.GlobalFilterName, out.Metadata)
				}
				add := responseHeadersOf(g, &out)
				if !g.DisableXEnvoyRateLimited {
					add = append(add, [2]string{"X-Envoy-Ratelimited", "true"})
				}
				grpcStatus := -1
				if s.grpc && g.ResourceExhausted {
					grpcStatus = grpcResourceExhausted
				}
				n := s.pushHook(&globalRateLimitHook{add: add, ops: &respOps})
				s.localReply(g.RateLimitedStatus, FlagRateLimited, globalRateLimitDetails, string(out.Body), grpcStatus)
				s.popHook(n)
			default:
				st.Error.Inc()
				h.log.Debug("ratelimit: the rate limit service call failed", "cluster", g.Client.Cluster, "error", out.Err)
				if !g.FailureModeDeny {
					st.FailureModeAllowed.Inc()
					next(s)
					return
				}
				s.localReply(g.StatusOnError, FlagRateLimitServiceError, rateLimiterErrorDetails, "", -1)
			}
		}
	}, nil
}

// responseHeadersOf are the headers a checked request's response gets: the reply's
// response_headers_to_add and, when enabled, the x-ratelimit-* headers of its statuses.
func responseHeadersOf(g *ratelimit.Global, out *ratelimit.Outcome) [][2]string {
	add := out.ResponseHeaders
	if g.XRateLimitHeaders {
		if limit, remaining, reset, ok := ratelimit.XRateLimitHeaders(out.Statuses); ok {
			add = append(add[:len(add):len(add)],
				[2]string{"X-Ratelimit-Limit", limit}, [2]string{"X-Ratelimit-Remaining", remaining},
				[2]string{"X-Ratelimit-Reset", reset})
		}
	}
	return add
}

// globalRateLimitHook adds the rate limit service's headers (add) and, for a limited
// request's reply, the filter's response_headers_to_add (ops) to the response head, as Envoy's
// filter does in its encodeHeaders.
type globalRateLimitHook struct {
	add [][2]string
	ops *route.HeaderOps
}

func (k *globalRateLimitHook) encodeHeaders(s *Stream, _ int) {
	for _, kv := range k.add {
		s.AddResponseHeader(kv[0], kv[1])
	}
	if k.ops != nil {
		s.applyResponseOps(k.ops)
	}
}
