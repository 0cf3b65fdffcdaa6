package route

import (
	"fmt"
	"net/http"
	"sync/atomic"

	"github.com/strait-mesh/strait/proxy/ratelimit"
	"github.com/strait-mesh/strait/proxy/xdsfield"
	ratelimitv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/common/ratelimit/v3"
	lrlv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/local_ratelimit/v3"
	typev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/v3"
)

// LocalRateLimitFilterName is the name under which Envoy's HTTP local rate limit filter is
// usually configured (and the key of its typed_per_filter_config).
const LocalRateLimitFilterName = "envoy.filters.http.local_ratelimit"

const typeLocalRateLimit = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"

// LocalRateLimit is a compiled envoy.filters.http.local_ratelimit config, at the connection
// manager or per route / virtual host / route configuration. Its buckets live as long as the
// compiled config (a new config starts with full buckets, as in Envoy). Read-only after
// compilation except for the counters cache, which the filter fills on first use.
type LocalRateLimit struct {
	// StatPrefix roots the filter's statistics: <stat_prefix>.http_local_rate_limit.*.
	StatPrefix string
	// Status is the status of a limited request (429 unless a status of at least 400 is set).
	Status int
	// Enabled and Enforced are filter_enabled and filter_enforced (0 when unset: Envoy then
	// neither checks nor enforces).
	Enabled, Enforced Fraction
	// ResponseHeaders are response_headers_to_add, applied to the limited request's reply.
	ResponseHeaders HeaderOps
	// RequestHeadersWhenNotEnforced are added to a request over the limit that is not enforced.
	RequestHeadersWhenNotEnforced HeaderOps
	// Stage selects the rate_limits policies of this stage.
	Stage uint32
	// PerConnection gives each downstream connection its own buckets
	// (local_rate_limit_per_downstream_connection); Limiter is then unused and NewLimiter builds
	// a connection's.
	PerConnection bool
	// XRateLimitHeaders adds x-ratelimit-limit, -remaining and -reset (DRAFT_VERSION_03).
	XRateLimitHeaders bool
	// GRPCResourceExhausted answers gRPC requests with RESOURCE_EXHAUSTED instead of UNAVAILABLE.
	GRPCResourceExhausted bool
	// VhRateLimits says how the virtual host's rate_limits join the route's.
	VhRateLimits VhRateLimits
	// Limiter holds the buckets shared by all requests (nil in per-connection mode).
	Limiter *ratelimit.Limiter

	limiterConfig ratelimit.Config
	rateLimits    []rateLimitPolicy // the filter's own rate_limits, replacing the route's
	ownRateLimits bool
	stats         atomic.Pointer[ratelimit.HTTPStats]
}

// vhRateLimitsOptions are Envoy's VhRateLimitsOptions by the VhRateLimits they select.
var vhRateLimitsOptions = map[ratelimitv3.VhRateLimitsOptions]VhRateLimits{
	ratelimitv3.VhRateLimitsOptions_OVERRIDE: VhOverride,
	ratelimitv3.VhRateLimitsOptions_INCLUDE:  VhInclude,
	ratelimitv3.VhRateLimitsOptions_IGNORE:   VhIgnore,
}

// CompileLocalRateLimit compiles a LocalRateLimit. perRoute is true for a typed_per_filter_config,
// which must carry a token_bucket as in Envoy; at the connection manager the bucket may be
// omitted (the filter is then enabled per route).
func CompileLocalRateLimit(field string, c *lrlv3.LocalRateLimit, perRoute bool) (*LocalRateLimit, error) {
	// local_cluster_rate_limit needs the local cluster's membership and enable_retry_after_header
	// is not implemented: both are refused by name.
	if err := xdsfield.Check(c, field, "stat_prefix", "status", "token_bucket", "filter_enabled",
		"filter_enforced", "request_headers_to_add_when_not_enforced", "response_headers_to_add",
		"descriptors", "stage", "local_rate_limit_per_downstream_connection", "enable_x_ratelimit_headers",
		"vh_rate_limits", "always_consume_default_token_bucket", "rate_limited_as_resource_exhausted",
		"rate_limits", "max_dynamic_descriptors"); err != nil {
		return nil, err
	}
	if c.GetStatPrefix() == "" {
		return nil, fmt.Errorf("%s.stat_prefix: empty", field)
	}
	l := &LocalRateLimit{
		StatPrefix:            c.GetStatPrefix(),
		Status:                http.StatusTooManyRequests,
		Stage:                 c.GetStage(),
		PerConnection:         c.GetLocalRateLimitPerDownstreamConnection(),
		XRateLimitHeaders:     c.GetEnableXRatelimitHeaders() == ratelimitv3.XRateLimitHeadersRFCVersion_DRAFT_VERSION_03,
		GRPCResourceExhausted: c.GetRateLimitedAsResourceExhausted(),
	}
	if s := c.GetStatus(); s != nil {
		if err := xdsfield.Check(s, field+".status", "code"); err != nil {
			return nil, err
		}
		if code := int(s.GetCode()); code >= 400 && code <= 599 {
			l.Status = code
		}
	}
	if l.Stage > maxRateLimitStage {
		return nil, fmt.Errorf("%s.stage: %d exceeds %d", field, l.Stage, maxRateLimitStage)
	}
	vh, ok := vhRateLimitsOptions[c.GetVhRateLimits()]
	if !ok {
		return nil, xdsfield.Unsupported(field+".vh_rate_limits", "%v", c.GetVhRateLimits())
	}
	l.VhRateLimits = vh
	var err error
	if e := c.GetFilterEnabled(); e != nil {
		if l.Enabled, err = runtimeFraction(field+".filter_enabled", e); err != nil {
			return nil, err
		}
	}
	if e := c.GetFilterEnforced(); e != nil {
		if l.Enforced, err = runtimeFraction(field+".filter_enforced", e); err != nil {
			return nil, err
		}
	}
	if l.ResponseHeaders, err = compileResponseHeaderOps(field+".response_headers_to_add", c.GetResponseHeadersToAdd(), nil); err != nil {
		return nil, err
	}
	if l.RequestHeadersWhenNotEnforced, err = compileHeaderOps(field+".request_headers_to_add_when_not_enforced", c.GetRequestHeadersToAddWhenNotEnforced(), nil); err != nil {
		return nil, err
	}
	if l.rateLimits, err = compileRateLimits(field+".rate_limits", c.GetRateLimits()); err != nil {
		return nil, err
	}
	l.ownRateLimits = len(l.rateLimits) > 0
	cfg := ratelimit.Config{AlwaysConsumeDefault: c.GetAlwaysConsumeDefaultTokenBucket() == nil || c.GetAlwaysConsumeDefaultTokenBucket().GetValue()}
	if m := c.GetMaxDynamicDescriptors(); m != nil {
		if m.GetValue() < 1 {
			return nil, fmt.Errorf("%s.max_dynamic_descriptors: %d, want at least 1", field, m.GetValue())
		}
		cfg.MaxDynamic = m.GetValue()
	}
	if tb := c.GetTokenBucket(); tb != nil {
		b, err := CompileTokenBucket(field+".token_bucket", tb)
		if err != nil {
			return nil, err
		}
		cfg.Default = &b
	} else if perRoute {
		return nil, fmt.Errorf("%s.token_bucket: required in a per-route local rate limit config", field)
	}
	for i, d := range c.GetDescriptors() {
		f := fmt.Sprintf("%s.descriptors[%d]", field, i)
		if err := xdsfield.Check(d, f, "entries", "token_bucket"); err != nil {
			return nil, err
		}
		dc := ratelimit.DescriptorConfig{}
		for j, e := range d.GetEntries() {
			if err := xdsfield.Check(e, fmt.Sprintf("%s.entries[%d]", f, j), "key", "value"); err != nil {
				return nil, err
			}
			dc.Entries = append(dc.Entries, ratelimit.Entry{Key: e.GetKey(), Value: e.GetValue()})
		}
		if d.GetTokenBucket() == nil {
			return nil, fmt.Errorf("%s.token_bucket: required", f)
		}
		if dc.Bucket, err = CompileTokenBucket(f+".token_bucket", d.GetTokenBucket()); err != nil {
			return nil, err
		}
		cfg.Descriptors = append(cfg.Descriptors, dc)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%s.%w", field, err)
	}
	l.limiterConfig = cfg
	if !l.PerConnection {
		if l.Limiter, err = ratelimit.NewLimiter(cfg, nil); err != nil {
			return nil, fmt.Errorf("%s: %w", field, err)
		}
	}
	return l, nil
}

// CompileTokenBucket compiles an envoy.type.v3.TokenBucket (tokens_per_fill defaults to 1).
func CompileTokenBucket(field string, tb *typev3.TokenBucket) (ratelimit.TokenBucket, error) {
	if err := xdsfield.Check(tb, field, "max_tokens", "tokens_per_fill", "fill_interval"); err != nil {
		return ratelimit.TokenBucket{}, err
	}
	b := ratelimit.TokenBucket{MaxTokens: tb.GetMaxTokens(), TokensPerFill: 1}
	if v := tb.GetTokensPerFill(); v != nil {
		b.TokensPerFill = v.GetValue()
	}
	if fi := tb.GetFillInterval(); fi != nil {
		if err := fi.CheckValid(); err != nil {
			return ratelimit.TokenBucket{}, fmt.Errorf("%s.fill_interval: %w", field, err)
		}
		b.FillInterval = fi.AsDuration()
	}
	if err := b.Validate(); err != nil {
		return ratelimit.TokenBucket{}, fmt.Errorf("%s: %w", field, err)
	}
	return b, nil
}

// NewLimiter builds a fresh set of the config's buckets (one downstream connection's in
// per-connection mode).
func (l *LocalRateLimit) NewLimiter() *ratelimit.Limiter {
	lim, err := ratelimit.NewLimiter(l.limiterConfig, nil)
	if err != nil {
		panic("route: local rate limit config validated at compile time: " + err.Error())
	}
	return lim
}

// NeedsDescriptors reports whether requests must compute descriptors: only when descriptor
// buckets are configured, as in Envoy.
func (l *LocalRateLimit) NeedsDescriptors() bool { return len(l.limiterConfig.Descriptors) > 0 }

// AppendDescriptors appends the request's descriptors for this config: from the filter's own
// rate_limits when it has them, else from the route's (and its virtual host's).
func (l *LocalRateLimit) AppendDescriptors(d *ratelimit.Descriptors, rt *Route, r Request, info *RequestInfo, cluster string) {
	if l.ownRateLimits {
		appendDescriptors(d, l.rateLimits, l.Stage, r, info, cluster)
		return
	}
	if rt != nil {
		rt.AppendRateLimitDescriptors(d, l.Stage, l.VhRateLimits, r, info, cluster)
	}
}

// Stats returns the config's counters, resolving them with resolve on first use.
func (l *LocalRateLimit) Stats(resolve func(prefix string) *ratelimit.HTTPStats) *ratelimit.HTTPStats {
	if s := l.stats.Load(); s != nil {
		return s
	}
	s := resolve(l.StatPrefix)
	l.stats.Store(s)
	return s
}
