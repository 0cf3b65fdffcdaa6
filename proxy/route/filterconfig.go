package route

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/strait-mesh/strait/internal/vocab"
	"github.com/strait-mesh/strait/proxy/matcher"
	"github.com/strait-mesh/strait/proxy/xdsfield"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
	faultcommonv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/common/fault/v3"
	corsv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/cors/v3"
	faultv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/fault/v3"
	lrlv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/local_ratelimit/v3"
	matcherv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/matcher/v3"
)

// Names under which Envoy's HTTP filters are usually configured (also the keys of
// typed_per_filter_config): vocab's, under the names the connection manager's pipeline uses.
const (
	FaultFilterName  = vocab.FilterFault
	CORSFilterName   = vocab.FilterCORS
	RouterFilterName = vocab.FilterRouter
)

// FilterDisabled is returned by FilterConfig when the route disables the filter.
type FilterDisabled struct{}

type filterConfig struct {
	name string
	cfg  any // *Fault, *CORS, *LocalRateLimit or FilterDisabled
}

const (
	typeFilterConfig = "type.googleapis.com/envoy.config.route.v3.FilterConfig"
	typeFault        = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
	typeCORSPolicy   = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy"
)

func compileFilterConfigs(field string, m map[string]*anypb.Any) ([]filterConfig, error) {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	var out []filterConfig
	for _, name := range names {
		f := field + "[" + name + "]"
		a := m[name]
		optional := false
		if a.GetTypeUrl() == typeFilterConfig {
			var fc routev3.FilterConfig
			if err := a.UnmarshalTo(&fc); err != nil {
				return nil, fmt.Errorf("%s: decoding FilterConfig: %w", f, err)
			}
			if err := xdsfield.Check(&fc, f, "config", "is_optional", "disabled"); err != nil {
				return nil, err
			}
			if fc.GetDisabled() {
				out = append(out, filterConfig{name: name, cfg: FilterDisabled{}})
				continue
			}
			optional, a = fc.GetIsOptional(), fc.GetConfig()
		}
		cfg, err := compileFilterConfig(f, a)
		if err != nil {
			var ue *UnsupportedError
			if optional && asUnsupported(err, &ue) {
				continue // Envoy ignores optional per-route configs for unknown filters
			}
			return nil, err
		}
		out = append(out, filterConfig{name: name, cfg: cfg})
	}
	return out, nil
}

func asUnsupported(err error, target **UnsupportedError) bool {
	ue, ok := err.(*UnsupportedError)
	if ok {
		*target = ue
	}
	return ok
}

func compileFilterConfig(field string, a *anypb.Any) (any, error) {
	switch a.GetTypeUrl() {
	case typeFault:
		var hf faultv3.HTTPFault
		if err := a.UnmarshalTo(&hf); err != nil {
			return nil, fmt.Errorf("%s: decoding HTTPFault: %w", field, err)
		}
		return CompileFault(field, &hf)
	case typeLocalRateLimit:
		var lc lrlv3.LocalRateLimit
		if err := a.UnmarshalTo(&lc); err != nil {
			return nil, fmt.Errorf("%s: decoding LocalRateLimit: %w", field, err)
		}
		return CompileLocalRateLimit(field, &lc, true)
	case typeCORSPolicy:
		var cp corsv3.CorsPolicy
		if err := a.UnmarshalTo(&cp); err != nil {
			return nil, fmt.Errorf("%s: decoding CorsPolicy: %w", field, err)
		}
		return compileCORS(field, &cp)
	}
	return nil, &UnsupportedError{Field: field, Detail: "per-filter config type " + a.GetTypeUrl()}
}

// mergeFilterConfigs returns specific plus the entries of outer it does not override.
func mergeFilterConfigs(specific, outer []filterConfig) []filterConfig {
	out := append([]filterConfig(nil), specific...)
	for _, o := range outer {
		found := false
		for _, s := range specific {
			if s.name == o.name {
				found = true
				break
			}
		}
		if !found {
			out = append(out, o)
		}
	}
	return out
}

// FilterConfig returns the most specific per-filter config for the filter named name: *Fault,
// *CORS, *LocalRateLimit, FilterDisabled{} or nil. The scan is over a handful of entries, without allocation.
func (rt *Route) FilterConfig(name string) any {
	for i := range rt.filters {
		if rt.filters[i].name == name {
			return rt.filters[i].cfg
		}
	}
	return nil
}

// Fault is a compiled HTTPFault (filter level or per route).
type Fault struct {
	// Delay is the fixed delay; HeaderDelay takes it from x-envoy-fault-delay-request instead.
	Delay       time.Duration
	HeaderDelay bool
	// DelayFraction is the share of requests delayed.
	DelayFraction Fraction
	// HasAbort says an abort is configured.
	HasAbort bool
	// AbortStatus is the HTTP status of the abort (0 with AbortGRPC set means gRPC-only).
	AbortStatus int
	// AbortGRPC is the gRPC status of the abort, or -1.
	AbortGRPC int
	// HeaderAbort takes the status from x-envoy-fault-abort-request / -grpc-request.
	HeaderAbort bool
	// AbortFraction is the share of requests aborted.
	AbortFraction Fraction
	// AbortBody is the response body of an abort.
	AbortBody string
	// UpstreamCluster limits the fault to requests routed to this cluster when non-empty.
	UpstreamCluster string
	// DownstreamNodes limits the fault to these x-envoy-downstream-service-node values.
	DownstreamNodes []string
	// MaxActive caps concurrently active faults; 0 means unlimited.
	MaxActive int

	headers []headerMatcher
}

// CompileFault compiles an HTTPFault; l7 uses it for the filter-level config too.
func CompileFault(field string, hf *faultv3.HTTPFault) (*Fault, error) {
	// The *_runtime fields only name runtime keys, which do not exist without a runtime layer;
	// Envoy then uses the configured values, as here.
	if err := xdsfield.Check(hf, field, "delay", "abort", "upstream_cluster", "headers", "downstream_nodes",
		"max_active_faults", "delay_percent_runtime", "abort_percent_runtime", "delay_duration_runtime",
		"abort_http_status_runtime", "max_active_faults_runtime", "abort_grpc_status_runtime",
		"disable_downstream_cluster_stats"); err != nil {
		return nil, err
	}
	f := &Fault{AbortGRPC: -1, UpstreamCluster: hf.GetUpstreamCluster(), DownstreamNodes: hf.GetDownstreamNodes(),
		MaxActive: int(hf.GetMaxActiveFaults().GetValue())}
	if d := hf.GetDelay(); d != nil {
		if err := xdsfield.Check(d, field+".delay", "fixed_delay", "header_delay", "percentage"); err != nil {
			return nil, err
		}
		switch t := d.GetFaultDelaySecifier().(type) {
		case *faultcommonv3.FaultDelay_FixedDelay:
			f.Delay = t.FixedDelay.AsDuration()
		case *faultcommonv3.FaultDelay_HeaderDelay_:
			f.HeaderDelay = true
		default:
			return nil, fmt.Errorf("%s.delay: no delay type set", field)
		}
		f.DelayFraction = percentOrAll(d.GetPercentage() != nil, fractionOf(d.GetPercentage()))
	}
	if a := hf.GetAbort(); a != nil {
		if err := xdsfield.Check(a, field+".abort", "http_status", "grpc_status", "header_abort", "percentage", "response_body"); err != nil {
			return nil, err
		}
		f.HasAbort, f.AbortBody = true, a.GetResponseBody()
		switch t := a.GetErrorType().(type) {
		case *faultv3.FaultAbort_HttpStatus:
			if t.HttpStatus < 200 || t.HttpStatus > 599 {
				return nil, fmt.Errorf("%s.abort.http_status: %d out of range [200, 599]", field, t.HttpStatus)
			}
			f.AbortStatus = int(t.HttpStatus)
		case *faultv3.FaultAbort_GrpcStatus:
			f.AbortGRPC = int(t.GrpcStatus)
		case *faultv3.FaultAbort_HeaderAbort_:
			f.HeaderAbort = true
		default:
			return nil, fmt.Errorf("%s.abort: no error_type set", field)
		}
		f.AbortFraction = percentOrAll(a.GetPercentage() != nil, fractionOf(a.GetPercentage()))
	}
	var err error
	if f.headers, err = compileHeaderMatchers(field+".headers", hf.GetHeaders()); err != nil {
		return nil, err
	}
	return f, nil
}

// percentOrAll: Envoy's fault percentages default to 100% when unset.
func percentOrAll(set bool, f Fraction) Fraction {
	if !set {
		return Million
	}
	return f
}

// Applies reports whether the fault's header, node and cluster conditions hold for r routed to
// cluster.
func (f *Fault) Applies(r Request, cluster string) bool {
	if f.UpstreamCluster != "" && f.UpstreamCluster != cluster {
		return false
	}
	if len(f.DownstreamNodes) > 0 {
		node := firstValue(r, "X-Envoy-Downstream-Service-Node")
		ok := false
		for _, n := range f.DownstreamNodes {
			if n == node {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for i := range f.headers {
		if !f.headers[i].match(r) {
			return false
		}
	}
	return true
}

// Inert reports whether f injects nothing: no delay (fixed or from headers) and no abort. Such a
// fault leaves every request alone, as Envoy's filter does when neither is enabled.
func (f *Fault) Inert() bool { return f.Delay == 0 && !f.HeaderDelay && !f.HasAbort }

// DelayFor returns the delay to inject for r (0 for none), sampling DelayFraction.
func (f *Fault) DelayFor(r Request) time.Duration {
	if f.Delay == 0 && !f.HeaderDelay || !f.DelayFraction.Sample() {
		return 0
	}
	if f.HeaderDelay {
		ms, err := strconv.ParseUint(firstValue(r, "X-Envoy-Fault-Delay-Request"), 10, 32)
		if err != nil {
			return 0
		}
		return time.Duration(ms) * time.Millisecond
	}
	return f.Delay
}

// AbortFor returns the abort to inject for r: an HTTP status (0 for none) and a gRPC status
// (-1 for none), sampling AbortFraction.
func (f *Fault) AbortFor(r Request) (status, grpcStatus int) {
	if !f.HasAbort || !f.AbortFraction.Sample() {
		return 0, -1
	}
	if !f.HeaderAbort {
		return f.AbortStatus, f.AbortGRPC
	}
	status, grpcStatus = 0, -1
	if n, err := strconv.Atoi(firstValue(r, "X-Envoy-Fault-Abort-Request")); err == nil && n >= 200 && n < 600 {
		status = n
	}
	if n, err := strconv.Atoi(firstValue(r, "X-Envoy-Fault-Abort-Grpc-Request")); err == nil && n >= 0 {
		grpcStatus = n
	}
	return status, grpcStatus
}

// CORS is a compiled CORS policy.
type CORS struct {
	// Origins are the allowed origins.
	Origins []matcher.String
	// AllowMethods, AllowHeaders, ExposeHeaders and MaxAge are sent as configured.
	AllowMethods, AllowHeaders, ExposeHeaders, MaxAge string
	// AllowCredentials adds access-control-allow-credentials: true.
	AllowCredentials bool
	// AllowPrivateNetworkAccess answers private network access preflights.
	AllowPrivateNetworkAccess bool
	// ForwardNotMatchingPreflights passes preflights with an unknown origin upstream (default).
	ForwardNotMatchingPreflights bool
	// Enabled is the share of requests the policy is enforced on.
	Enabled Fraction
}

// AllowsOrigin reports whether origin is allowed.
func (c *CORS) AllowsOrigin(origin string) bool {
	for i := range c.Origins {
		if c.Origins[i].Match(origin) {
			return true
		}
	}
	return false
}

// corsPolicy is a CORS policy as the cors filter's config and the route's (the same fields).
type corsPolicy interface {
	proto.Message
	GetAllowOriginStringMatch() []*matcherv3.StringMatcher
	GetAllowMethods() string
	GetAllowHeaders() string
	GetExposeHeaders() string
	GetMaxAge() string
	GetAllowCredentials() *wrapperspb.BoolValue
	GetAllowPrivateNetworkAccess() *wrapperspb.BoolValue
	GetForwardNotMatchingPreflights() *wrapperspb.BoolValue
	GetFilterEnabled() *corev3.RuntimeFractionalPercent
}

var (
	_ corsPolicy = (*corsv3.CorsPolicy)(nil)
	_ corsPolicy = (*routev3.CorsPolicy)(nil)
)

// compileCORS compiles a CORS policy of the cors filter's config or of a route.
func compileCORS(field string, p corsPolicy) (*CORS, error) {
	if err := xdsfield.Check(p, field, "allow_origin_string_match", "allow_methods", "allow_headers",
		"expose_headers", "max_age", "allow_credentials", "filter_enabled", "allow_private_network_access",
		"forward_not_matching_preflights"); err != nil {
		return nil, err
	}
	c := &CORS{
		AllowMethods:                 p.GetAllowMethods(),
		AllowHeaders:                 p.GetAllowHeaders(),
		ExposeHeaders:                p.GetExposeHeaders(),
		MaxAge:                       p.GetMaxAge(),
		AllowCredentials:             p.GetAllowCredentials().GetValue(),
		AllowPrivateNetworkAccess:    p.GetAllowPrivateNetworkAccess().GetValue(),
		ForwardNotMatchingPreflights: p.GetForwardNotMatchingPreflights() == nil || p.GetForwardNotMatchingPreflights().GetValue(),
		Enabled:                      Million,
	}
	if c.MaxAge != "" {
		if _, err := strconv.ParseUint(c.MaxAge, 10, 32); err != nil {
			return nil, fmt.Errorf("%s.max_age: %q is not a number of seconds", field, c.MaxAge)
		}
	}
	for i, o := range p.GetAllowOriginStringMatch() {
		sm, err := matcher.CompileString(fmt.Sprintf("%s.allow_origin_string_match[%d]", field, i), o, matchOptions)
		if err != nil {
			return nil, err
		}
		c.Origins = append(c.Origins, sm)
	}
	if enabled := p.GetFilterEnabled(); enabled != nil {
		var err error
		if c.Enabled, err = runtimeFraction(field+".filter_enabled", enabled); err != nil {
			return nil, err
		}
	}
	for _, s := range []string{c.AllowMethods, c.AllowHeaders, c.ExposeHeaders} {
		if strings.ContainsAny(s, "\r\n") {
			return nil, fmt.Errorf("%s: header list contains a line break", field)
		}
	}
	return c, nil
}
