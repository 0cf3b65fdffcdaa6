package extauthz

import (
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/strait-mesh/strait/internal/vocab"
	"github.com/strait-mesh/strait/proxy/authz"
	"github.com/strait-mesh/strait/proxy/grpcunary"
	"github.com/strait-mesh/strait/proxy/matcher"
	"github.com/strait-mesh/strait/proxy/route"
	"github.com/strait-mesh/strait/proxy/xdsfield"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	extauthzv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/ext_authz/v3"
	matcherv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/matcher/v3"
	typev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/v3"
)

// Names and limits of the filter.
const (
	// FilterName is the filter's well-known name, and the dynamic metadata namespace its
	// authorization service's metadata is written to.
	FilterName = vocab.FilterHTTPExtAuthz
	// TypeURL is the type URL of the filter's configuration.
	TypeURL = "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz"

	// DefaultTimeout bounds a check whose service sets no timeout (Envoy's 200ms).
	DefaultTimeout = 200 * time.Millisecond
	// MaxRequestBytesLimit bounds with_request_body.max_request_bytes: a larger buffer is refused
	// rather than held in memory per request.
	MaxRequestBytesLimit = 8 << 20
	// MaxHTTPResponseBytes bounds the body of an HTTP authorization service's reply; a larger one
	// is an error.
	MaxHTTPResponseBytes = 1 << 20
)

// Headers the filter reads or writes, lower case.
const (
	// FailureModeAllowedHeader is added to a request let through by failure_mode_allow when
	// failure_mode_allow_header_add is set.
	FailureModeAllowedHeader = "x-envoy-auth-failure-mode-allowed"
	// HeadersToRemoveHeader is how an HTTP authorization service lists request headers to remove
	// (comma separated) in its 200 reply; it is never copied anywhere.
	HeadersToRemoveHeader = "x-envoy-auth-headers-to-remove"
	// PartialBodyHeader tells the authorization service whether the body it got was cut at
	// max_request_bytes ("true") or is complete ("false").
	PartialBodyHeader = "x-envoy-auth-partial-body"
)

// Response code details of the filter's local replies (Envoy's).
const (
	DetailsDenied  = "ext_authz_denied"
	DetailsError   = "ext_authz_error"
	DetailsInvalid = "ext_authz_invalid"
)

// Config is a compiled ExtAuthz. It is immutable and safe for concurrent use.
type Config struct {
	// Cluster is the cluster checks are sent to (http_service.server_uri.cluster or
	// grpc_service.envoy_grpc.cluster_name).
	Cluster string
	// GRPC says the service is envoy.service.auth.v3.Authorization over gRPC; otherwise it is an
	// HTTP service.
	GRPC bool
	// Timeout bounds one check; 0 means no bound beyond the downstream request's.
	Timeout time.Duration
	// FailureModeAllow lets a request through when the check fails (error, 5xx, timeout);
	// FailureModeAllowHeaderAdd then adds FailureModeAllowedHeader to it.
	FailureModeAllow, FailureModeAllowHeaderAdd bool
	// StatusOnError is the status of the reply to a failed check (status_on_error, 403).
	StatusOnError int
	// Body configures sending the request body (with_request_body); nil: no body is sent.
	Body *BodySettings
	// ClearRouteCache makes the route be chosen again after an allowing reply changed the
	// request (clear_route_cache); see Response.RouteRelevant.
	ClearRouteCache bool
	// DenyAtDisable answers StatusOnError to requests the filter is not enabled for
	// (deny_at_disable's default value; there is no runtime layer).
	DenyAtDisable bool
	// MaxDeniedBodyBytes cuts the body of a denial sent to the client; 0: no limit.
	MaxDeniedBodyBytes int
	// ValidateMutations turns an invalid header or query mutation into Response.Invalid
	// (validate_mutations); otherwise invalid mutations are skipped.
	ValidateMutations bool
	// IngestMetadata sets the service's dynamic metadata on the request
	// (enable_dynamic_metadata_ingestion, default true); otherwise it is ignored and counted.
	IngestMetadata bool
	// StatPrefix is the filter's part of its statistics' names: "ext_authz." or
	// "ext_authz.<stat_prefix>.", under http.<connection manager stat_prefix>.
	StatPrefix string

	enabled            route.Fraction
	enabledMeta        *authz.MetadataMatcher
	clearRouteHeaders  []string // lower case; empty: any mutation clears
	metadataNamespaces []string
	includeTLSSession  bool
	allowed            *nameList // nil: unset
	disallowed         *nameList

	// HTTP service.
	pathPrefix, pathOverride string
	headersToAdd             []header
	upstream                 *nameList // allowed_upstream_headers (set)
	upstreamAppend           *nameList // allowed_upstream_headers_to_append (add)
	client                   *nameList // allowed_client_headers plus its defaults; nil: all but host
	clientOnSuccess          *nameList
	metadataFromHeaders      *nameList

	// gRPC service.
	grpc grpcunary.Client
}

// BodySettings are with_request_body's.
type BodySettings struct {
	// MaxBytes is max_request_bytes: the most of the body sent to the service.
	MaxBytes int
	// AllowPartial sends the first MaxBytes of a larger body instead of refusing the request
	// with 413.
	AllowPartial bool
	// PackAsBytes sends the body as raw_body instead of body (gRPC service only).
	PackAsBytes bool
}

type header struct{ name, value string }

// matchOptions are the filter's choices for string matchers: RBAC's regex bounds, Envoy's
// refusal of ignore_case with safe_regex, ASCII case folding.
var matchOptions = matcher.Options{
	MaxProgramSize: authz.MaxRegexProgramSize,
	MaxRegexLen:    64 << 10,
}

// nameList is a compiled ListStringMatcher over lower-case header names: any pattern matches.
type nameList struct{ patterns []matcher.String }

func (l *nameList) match(name string) bool {
	if l == nil {
		return false
	}
	for i := range l.patterns {
		if l.patterns[i].Match(name) {
			return true
		}
	}
	return false
}

func compileList(field string, l *matcherv3.ListStringMatcher) (*nameList, error) {
	if l == nil {
		return nil, nil
	}
	if err := xdsfield.Check(l, field, "patterns"); err != nil {
		return nil, err
	}
	nl := &nameList{}
	for i, p := range l.GetPatterns() {
		sm, err := matcher.CompileString(fmt.Sprintf("%s.patterns[%d]", field, i), p, matchOptions)
		if err != nil {
			return nil, err
		}
		nl.patterns = append(nl.patterns, sm)
	}
	return nl, nil
}

// withExact adds exact matchers for names to l.
func (l *nameList) withExact(names ...string) *nameList {
	for _, n := range names {
		l.patterns = append(l.patterns, mustExact(n))
	}
	return l
}

func mustExact(name string) matcher.String {
	sm, err := matcher.CompileString("", &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: name}}, matchOptions)
	if err != nil {
		panic(err) // an exact matcher always compiles
	}
	return sm
}

var topFields = []string{"grpc_service", "http_service", "transport_api_version", "failure_mode_allow",
	"failure_mode_allow_header_add", "with_request_body", "clear_route_cache", "clear_route_cache_headers",
	"status_on_error", "validate_mutations", "metadata_context_namespaces", "filter_enabled",
	"filter_enabled_metadata", "deny_at_disable", "stat_prefix", "allowed_headers", "disallowed_headers",
	"include_tls_session", "charge_cluster_response_stats", "enable_dynamic_metadata_ingestion",
	"max_denied_response_body_bytes", "emit_client_span"}

// Compile compiles an ExtAuthz; path names it in errors (e.g. "http_filters[1].typed_config").
// Fields this package does not implement are *xdsfield.UnsupportedError naming them.
//
// Accepted without effect: emit_client_span (the proxy emits no spans: the connection manager
// refuses tracing) and charge_cluster_response_stats: false (the route's cluster is never
// charged; true is refused).
func Compile(cfg *extauthzv3.ExtAuthz, path string) (*Config, error) {
	if cfg == nil {
		return nil, fmt.Errorf("%s: missing ExtAuthz config", path)
	}
	if err := xdsfield.Check(cfg, path, topFields...); err != nil {
		return nil, err
	}
	if v := cfg.GetTransportApiVersion(); v != corev3.ApiVersion_V3 && v != corev3.ApiVersion_AUTO {
		return nil, xdsfield.Unsupported(path+".transport_api_version", "%s (only V3)", v)
	}
	if c := cfg.GetChargeClusterResponseStats(); c != nil && c.GetValue() {
		return nil, xdsfield.Unsupported(path+".charge_cluster_response_stats", "true (the route's cluster is not charged)")
	}
	c := &Config{
		FailureModeAllow:          cfg.GetFailureModeAllow(),
		FailureModeAllowHeaderAdd: cfg.GetFailureModeAllowHeaderAdd(),
		StatusOnError:             403,
		ClearRouteCache:           cfg.GetClearRouteCache(),
		ValidateMutations:         cfg.GetValidateMutations(),
		IngestMetadata:            cfg.GetEnableDynamicMetadataIngestion() == nil || cfg.GetEnableDynamicMetadataIngestion().GetValue(),
		MaxDeniedBodyBytes:        int(cfg.GetMaxDeniedResponseBodyBytes()),
		StatPrefix:                "ext_authz.",
		enabled:                   route.Million,
		includeTLSSession:         cfg.GetIncludeTlsSession(),
	}
	if p := cfg.GetStatPrefix(); p != "" {
		c.StatPrefix += p + "."
	}
	if s := cfg.GetStatusOnError(); s != nil {
		if err := xdsfield.Check(s, path+".status_on_error", "code"); err != nil {
			return nil, err
		}
		c.StatusOnError = errorCode(s.GetCode())
	}
	for i, h := range cfg.GetClearRouteCacheHeaders() {
		if h == "" {
			return nil, fmt.Errorf("%s.clear_route_cache_headers[%d]: empty", path, i)
		}
		c.clearRouteHeaders = append(c.clearRouteHeaders, strings.ToLower(h))
	}
	var err error
	if c.metadataNamespaces, err = metadataNamespaces(path, cfg.GetMetadataContextNamespaces()); err != nil {
		return nil, err
	}
	if b := cfg.GetWithRequestBody(); b != nil {
		f := path + ".with_request_body"
		if err := xdsfield.Check(b, f, "max_request_bytes", "allow_partial_message", "pack_as_bytes"); err != nil {
			return nil, err
		}
		if b.GetMaxRequestBytes() == 0 {
			return nil, fmt.Errorf("%s.max_request_bytes: must be greater than 0", f)
		}
		if b.GetMaxRequestBytes() > MaxRequestBytesLimit {
			return nil, xdsfield.Unsupported(f+".max_request_bytes", "%d (at most %d)", b.GetMaxRequestBytes(), MaxRequestBytesLimit)
		}
		c.Body = &BodySettings{MaxBytes: int(b.GetMaxRequestBytes()), AllowPartial: b.GetAllowPartialMessage(), PackAsBytes: b.GetPackAsBytes()}
	}
	if fe := cfg.GetFilterEnabled(); fe != nil {
		var err error
		if c.enabled, err = runtimeFraction(path+".filter_enabled", fe); err != nil {
			return nil, err
		}
	}
	if m := cfg.GetFilterEnabledMetadata(); m != nil {
		mm, err := authz.CompileMetadataMatcher(path+".filter_enabled_metadata", m)
		if err != nil {
			return nil, err
		}
		c.enabledMeta = mm
	}
	if d := cfg.GetDenyAtDisable(); d != nil {
		// There is no runtime layer: runtime_key never overrides the default.
		if err := xdsfield.Check(d, path+".deny_at_disable", "default_value", "runtime_key"); err != nil {
			return nil, err
		}
		c.DenyAtDisable = d.GetDefaultValue().GetValue()
	}
	if c.allowed, err = compileList(path+".allowed_headers", cfg.GetAllowedHeaders()); err != nil {
		return nil, err
	}
	if c.disallowed, err = compileList(path+".disallowed_headers", cfg.GetDisallowedHeaders()); err != nil {
		return nil, err
	}
	switch {
	case cfg.GetGrpcService() != nil:
		err = c.compileGRPC(path+".grpc_service", cfg.GetGrpcService())
	case cfg.GetHttpService() != nil:
		err = c.compileHTTP(path+".http_service", cfg.GetHttpService())
	default:
		err = fmt.Errorf("%s: one of grpc_service or http_service is required", path)
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

// errorCode is Envoy's toErrorCode: a configured status the proxy can answer with, else 403.
func errorCode(code typev3.StatusCode) int {
	if _, known := typev3.StatusCode_name[int32(code)]; known && code >= 200 && code <= 599 {
		return int(code)
	}
	return 403
}

// runtimeFraction compiles a RuntimeFractionalPercent; there is no runtime layer, so the
// runtime_key never overrides the default value.
func runtimeFraction(field string, p *corev3.RuntimeFractionalPercent) (route.Fraction, error) {
	if err := xdsfield.Check(p, field, "default_value", "runtime_key"); err != nil {
		return 0, err
	}
	d := p.GetDefaultValue()
	if err := xdsfield.Check(d, field+".default_value", "numerator", "denominator"); err != nil {
		return 0, err
	}
	n := uint64(d.GetNumerator())
	switch d.GetDenominator() {
	case typev3.FractionalPercent_HUNDRED:
		n *= 10_000
	case typev3.FractionalPercent_TEN_THOUSAND:
		n *= 100
	}
	return route.Fraction(min(n, uint64(route.Million))), nil
}

func (c *Config) compileHTTP(field string, hs *extauthzv3.HttpService) error {
	if err := xdsfield.Check(hs, field, "server_uri", "path_prefix", "path_override", "authorization_request",
		"authorization_response"); err != nil {
		return err
	}
	u := hs.GetServerUri()
	if u == nil {
		return fmt.Errorf("%s.server_uri: missing", field)
	}
	if err := xdsfield.Check(u, field+".server_uri", "uri", "cluster", "timeout"); err != nil {
		return err
	}
	if c.Cluster = u.GetCluster(); c.Cluster == "" {
		return fmt.Errorf("%s.server_uri.cluster: empty", field)
	}
	c.Timeout = DefaultTimeout
	if t := u.GetTimeout(); t != nil {
		c.Timeout = t.AsDuration()
	}
	if c.Timeout < 0 {
		return fmt.Errorf("%s.server_uri.timeout: negative", field)
	}
	c.pathPrefix, c.pathOverride = hs.GetPathPrefix(), hs.GetPathOverride()
	if c.pathPrefix != "" && c.pathOverride != "" {
		return fmt.Errorf("%s: only one of path_prefix and path_override may be set", field)
	}
	for name, p := range map[string]string{"path_prefix": c.pathPrefix, "path_override": c.pathOverride} {
		if p == "" {
			continue
		}
		if p[0] != '/' || strings.ContainsAny(p, " \t\r\n\x00#") {
			return fmt.Errorf("%s.%s: %q is not a path", field, name, p)
		}
	}
	if ar := hs.GetAuthorizationRequest(); ar != nil {
		f := field + ".authorization_request"
		if err := xdsfield.Check(ar, f, "allowed_headers", "headers_to_add"); err != nil {
			return err
		}
		if c.allowed == nil {
			// The top-level allowed_headers, when set, replaces this deprecated one.
			l, err := compileList(f+".allowed_headers", ar.GetAllowedHeaders())
			if err != nil {
				return err
			}
			c.allowed = l
		}
		var err error
		if c.headersToAdd, err = compileHeaders(f+".headers_to_add", ar.GetHeadersToAdd()); err != nil {
			return err
		}
	}
	if ar := hs.GetAuthorizationResponse(); ar != nil {
		f := field + ".authorization_response"
		if err := xdsfield.Check(ar, f, "allowed_upstream_headers", "allowed_upstream_headers_to_append",
			"allowed_client_headers", "allowed_client_headers_on_success", "dynamic_metadata_from_headers"); err != nil {
			return err
		}
		var err error
		if c.upstream, err = compileList(f+".allowed_upstream_headers", ar.GetAllowedUpstreamHeaders()); err != nil {
			return err
		}
		if c.upstreamAppend, err = compileList(f+".allowed_upstream_headers_to_append", ar.GetAllowedUpstreamHeadersToAppend()); err != nil {
			return err
		}
		if c.client, err = compileList(f+".allowed_client_headers", ar.GetAllowedClientHeaders()); err != nil {
			return err
		}
		if c.clientOnSuccess, err = compileList(f+".allowed_client_headers_on_success", ar.GetAllowedClientHeadersOnSuccess()); err != nil {
			return err
		}
		if c.metadataFromHeaders, err = compileList(f+".dynamic_metadata_from_headers", ar.GetDynamicMetadataFromHeaders()); err != nil {
			return err
		}
	}
	if c.client != nil && len(c.client.patterns) == 0 {
		c.client = nil // an empty list is the default: every header but Host
	}
	if c.client != nil {
		c.client.withExact(":status", "content-length", ":path", "location", "www-authenticate")
	}
	return nil
}

func (c *Config) compileGRPC(field string, gs *corev3.GrpcService) error {
	g, err := compileGRPCClient(field, gs)
	if err != nil {
		return err
	}
	c.GRPC, c.grpc = true, g
	c.Cluster, c.Timeout = g.Cluster, g.Timeout
	return nil
}

func compileHeaders(field string, hs []*corev3.HeaderValue) ([]header, error) {
	var out []header
	for i, h := range hs {
		f := fmt.Sprintf("%s[%d]", field, i)
		if err := xdsfield.Check(h, f, "key", "value"); err != nil {
			return nil, err
		}
		name := strings.ToLower(h.GetKey())
		if !validName(name) || forbidden(name) {
			return nil, fmt.Errorf("%s.key: %q cannot be sent", f, h.GetKey())
		}
		if !validValue(h.GetValue()) {
			return nil, fmt.Errorf("%s.value: invalid header value", f)
		}
		out = append(out, header{name: name, value: h.GetValue()})
	}
	return out, nil
}

// Enabled reports whether a request is checked (filter_enabled, sampled, and
// filter_enabled_metadata on the request's dynamic metadata md).
func (c *Config) Enabled(md func(namespace string) *structpb.Struct) bool {
	if c.enabledMeta != nil && !c.enabledMeta.Match(md) {
		return false
	}
	return c.enabled.Sample()
}
