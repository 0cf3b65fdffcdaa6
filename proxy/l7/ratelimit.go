package l7

import (
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"weak"

	lrlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"

	"github.com/strait-mesh/strait/proxy/ratelimit"
	"github.com/strait-mesh/strait/proxy/route"
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
				cfg.AppendDescriptors(&d, s.Route, s.R, &s.rinfo, s.Cluster)
			}
			allowed, bucket := lim.Allow(&d)
			var w *rateLimitHeaderWriter
			if cfg.XRateLimitHeaders && bucket != nil {
				w = &rateLimitHeaderWriter{ResponseWriter: s.W, bucket: bucket}
			}
			if allowed {
				st.OK.Inc()
				h.serveWith(s, w, next)
				return
			}
			st.RateLimited.Inc()
			if !cfg.Enforced.Sample() {
				cfg.RequestHeadersWhenNotEnforced.Apply(s.R.Header, s.R, &s.rinfo)
				h.serveWith(s, w, next)
				return
			}
			st.Enforced.Inc()
			if w == nil {
				w = &rateLimitHeaderWriter{ResponseWriter: s.W}
			}
			w.s, w.ops = s, &cfg.ResponseHeaders
			grpcStatus := -1
			if s.grpc && cfg.GRPCResourceExhausted {
				grpcStatus = grpcResourceExhausted
			}
			orig := s.W
			s.W = w
			s.localReply(cfg.Status, FlagRateLimited, localRateLimitDetails, localRateLimitDetails, grpcStatus)
			s.W = orig
		}
	}, nil
}

// serveWith runs next with s.W wrapped by w (when not nil), restoring it afterwards.
func (h *Handler) serveWith(s *Stream, w *rateLimitHeaderWriter, next StreamHandler) {
	if w == nil {
		next(s)
		return
	}
	orig := s.W
	s.W = w
	next(s)
	s.W = orig
}

// rateLimitHeaderWriter adds the x-ratelimit-* headers of bucket (when set) and, for a limited
// request's reply, response_headers_to_add (ops) as the response headers are written, as Envoy's
// filter does in its encodeHeaders.
type rateLimitHeaderWriter struct {
	http.ResponseWriter
	bucket *ratelimit.Bucket
	s      *Stream
	ops    *route.HeaderOps
	done   bool
}

func (w *rateLimitHeaderWriter) WriteHeader(code int) {
	if !w.done && code >= 200 {
		w.done = true
		hdr := w.ResponseWriter.Header()
		if w.ops != nil {
			w.ops.Apply(hdr, w.s.R, &w.s.rinfo)
		}
		if b := w.bucket; b != nil {
			hdr["X-Ratelimit-Limit"] = []string{strconv.FormatUint(uint64(b.Max()), 10)}
			hdr["X-Ratelimit-Remaining"] = []string{strconv.FormatUint(uint64(b.Remaining()), 10)}
			hdr["X-Ratelimit-Reset"] = []string{strconv.FormatUint(uint64(b.ResetSeconds()), 10)}
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *rateLimitHeaderWriter) Write(b []byte) (int, error) {
	if !w.done {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap gives http.ResponseController the writer underneath (flush, deadlines, hijack).
func (w *rateLimitHeaderWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

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
