package l7

import (
	"runtime"
	"strconv"
	"sync"
	"weak"

	"github.com/strait-mesh/strait/proxy/ratelimit"
	"github.com/strait-mesh/strait/proxy/route"
	lrlv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/local_ratelimit/v3"
)

// typeLocalRateLimit is the type URL of envoy.filters.http.local_ratelimit.
const typeLocalRateLimit = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"

// localRateLimitDetails is the body and %RESPONSE_CODE_DETAILS% of a limited request, as Envoy's.
const localRateLimitDetails = "local_rate_limited"

// grpcResourceExhausted is gRPC's RESOURCE_EXHAUSTED (rate_limited_as_resource_exhausted).
const grpcResourceExhausted = 8

// localRateLimitFilter implements envoy.filters.http.local_ratelimit with Envoy's semantics: the
// most specific per-route config (route, virtual host, route configuration) replaces the filter's
// own; a request is checked only when filter_enabled samples true; it takes a token from the
// buckets of the descriptors its route's rate_limits produce (when descriptors are configured)
// and from the default bucket; without one it is counted rate_limited and, when filter_enforced
// samples true, answered with the config's status, body "local_rate_limited" and response flag
// RL. With enable_x_ratelimit_headers the x-ratelimit-* headers go on every response of a
// checked request.
func (h *Handler) localRateLimitFilter(field, name string, c *lrlv3.LocalRateLimit, disabled bool) (Filter, error) {
	base, err := route.CompileLocalRateLimit(field+".typed_config", c, false)
	if err != nil {
		return nil, err
	}
	if disabled {
		base = nil // enabled only where a route's per-filter config enables it
	}
	resolve := func(prefix string) *ratelimit.HTTPStats { return ratelimit.NewHTTPStats(h.opts.Stats, prefix) }
	conns := &connLimiters{}
	return func(next StreamHandler) StreamHandler {
		return func(s *Stream) {
			cfg := base
			if s.Route != nil {
				switch rc := s.Route.FilterConfig(name).(type) {
				case *route.LocalRateLimit:
					cfg = rc
				case route.FilterDisabled:
					cfg = nil
				}
			}
			if cfg == nil || !cfg.Enabled.Sample() {
				next(s)
				return
			}
			st := cfg.Stats(resolve)
			st.Enabled.Inc()
			lim := cfg.Limiter
			if cfg.PerConnection {
				if lim = conns.get(s.Info.Conn, cfg); lim == nil {
					next(s)
					return
				}
			}
			var entries [8]ratelimit.Entry
			var ends [4]int
			d := ratelimit.Descriptors{Entries: entries[:0], Ends: ends[:0]}
			if cfg.NeedsDescriptors() {
				s.localRateLimitDescriptors(cfg, &d)
			}
			allowed, bucket := lim.Allow(&d)
			var w *rateLimitHook
			if cfg.XRateLimitHeaders && bucket != nil {
				w = &rateLimitHook{bucket: bucket}
			}
			if allowed {
				st.OK.Inc()
				h.serveWith(s, w, next)
				return
			}
			st.RateLimited.Inc()
			if !cfg.Enforced.Sample() {
				s.applyRequestOps(&cfg.RequestHeadersWhenNotEnforced)
				h.serveWith(s, w, next)
				return
			}
			st.Enforced.Inc()
			if w == nil {
				w = &rateLimitHook{}
			}
			w.ops = &cfg.ResponseHeaders
			grpcStatus := -1
			if s.grpc && cfg.GRPCResourceExhausted {
				grpcStatus = grpcResourceExhausted
			}
			n := s.pushHook(w)
			s.localReply(cfg.Status, FlagRateLimited, localRateLimitDetails, localRateLimitDetails, grpcStatus)
			s.popHook(n)
		}
	}, nil
}

// serveWith runs next with hook (when not nil) on the response head.
func (h *Handler) serveWith(s *Stream, hook *rateLimitHook, next StreamHandler) {
	if hook == nil {
		next(s)
		return
	}
	n := s.pushHook(hook)
	next(s)
	s.popHook(n)
}

// rateLimitHook adds the x-ratelimit-* headers of bucket (when set) and, for a limited
// request's reply, response_headers_to_add (ops) to the response head, as Envoy's filter does
// in its encodeHeaders.
type rateLimitHook struct {
	bucket *ratelimit.Bucket
	ops    *route.HeaderOps
}

func (k *rateLimitHook) encodeHeaders(s *Stream, _ int) {
	if k.ops != nil {
		s.applyResponseOps(k.ops)
	}
	if b := k.bucket; b != nil {
		s.SetResponseHeader("X-Ratelimit-Limit", strconv.FormatUint(uint64(b.Max()), 10))
		s.SetResponseHeader("X-Ratelimit-Remaining", strconv.FormatUint(uint64(b.Remaining()), 10))
		s.SetResponseHeader("X-Ratelimit-Reset", strconv.FormatUint(uint64(b.ResetSeconds()), 10))
	}
}

// maxConnConfigs bounds the per-connection limiters one connection keeps: one per config it
// used, the oldest dropped first (a long-lived connection across many route updates).
const maxConnConfigs = 8

// connLimiters holds the buckets of local_rate_limit_per_downstream_connection: per downstream
// connection and config. An entry is keyed by a weak pointer to the connection's ConnInfo and
// removed by a cleanup once the connection is gone, so the buckets live with the connection.
type connLimiters struct {
	m sync.Map // weak.Pointer[ConnInfo] → *connLimiterSet
}

type connLimiterSet struct {
	mu   sync.Mutex
	cfgs []*route.LocalRateLimit
	lims []*ratelimit.Limiter
}

// get returns conn's limiter for cfg, creating it on first use; nil when conn is unknown.
func (c *connLimiters) get(conn *ConnInfo, cfg *route.LocalRateLimit) *ratelimit.Limiter {
	if conn == nil {
		return nil
	}
	key := weak.Make(conn)
	v, ok := c.m.Load(key)
	if !ok {
		var loaded bool
		if v, loaded = c.m.LoadOrStore(key, &connLimiterSet{}); !loaded {
			runtime.AddCleanup(conn, func(k weak.Pointer[ConnInfo]) { c.m.Delete(k) }, key)
		}
	}
	set := v.(*connLimiterSet)
	set.mu.Lock()
	defer set.mu.Unlock()
	for i, x := range set.cfgs {
		if x == cfg {
			return set.lims[i]
		}
	}
	lim := cfg.NewLimiter()
	if len(set.cfgs) == maxConnConfigs {
		set.cfgs, set.lims = set.cfgs[1:], set.lims[1:]
	}
	set.cfgs, set.lims = append(set.cfgs, cfg), append(set.lims, lim)
	return lim
}
