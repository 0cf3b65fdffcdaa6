package ratelimit

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/strait-mesh/strait/proxy/grpcunary"
	"github.com/strait-mesh/strait/proxy/xdsfield"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	ratelimitconfv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/ratelimit/v3"
	rlhttpv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/ratelimit/v3"
)

// GlobalTypeURL is the type URL of envoy.filters.http.ratelimit, the global rate limit filter.
const GlobalTypeURL = "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit"

// GlobalFilterName is the dynamic metadata namespace of the global rate limit filter (the
// rate limit service's dynamic_metadata goes there), Envoy's canonical filter name.
const GlobalFilterName = "envoy.filters.http.ratelimit"

// DefaultGlobalTimeout bounds a rate limit service call when the filter sets no timeout
// (Envoy's 20 ms).
const DefaultGlobalTimeout = 20 * time.Millisecond

// maxStage is the highest stage Envoy accepts for the filter.
const maxStage = 10

// RequestType says which requests the global filter applies to (request_type).
type RequestType uint8

// The request types, as Envoy names them.
const (
	// RequestBoth applies to every request ("both", the default).
	RequestBoth RequestType = iota
	// RequestInternal applies only to internal requests (x-envoy-internal: true).
	RequestInternal
	// RequestExternal applies only to requests that are not internal.
	RequestExternal
)

// Applies reports whether a request that is (or is not) internal is checked.
func (t RequestType) Applies(internal bool) bool {
	switch t {
	case RequestInternal:
		return internal
	case RequestExternal:
		return !internal
	}
	return true
}

// Global is a compiled envoy.filters.http.ratelimit config (see package doc, "Global rate
// limiting"). It is immutable and safe for concurrent use.
type Global struct {
	// Domain is the rate limit domain sent with every request.
	Domain string
	// Stage selects the route rate_limits whose descriptors are sent.
	Stage uint32
	// RequestType selects the requests checked.
	RequestType RequestType
	// FailureModeDeny answers StatusOnError when the service cannot be asked (else the
	// request continues).
	FailureModeDeny bool
	// ResourceExhausted answers a limited gRPC request with RESOURCE_EXHAUSTED rather than
	// UNAVAILABLE (rate_limited_as_resource_exhausted).
	ResourceExhausted bool
	// XRateLimitHeaders adds the DRAFT_VERSION_03 x-ratelimit-* headers from the reply's
	// descriptor statuses.
	XRateLimitHeaders bool
	// DisableXEnvoyRateLimited omits x-envoy-ratelimited: true on limited requests' replies.
	DisableXEnvoyRateLimited bool
	// RateLimitedStatus is the status of a limited request's reply (429 unless set to at
	// least 400); StatusOnError the status of a failed check with FailureModeDeny (500).
	RateLimitedStatus, StatusOnError int
	// Client calls the rate limit service.
	Client Client
}

// CompileGlobal compiles c; field names the config in errors. Fields strait-proxy does not
// implement are *xdsfield.UnsupportedError naming them. response_headers_to_add is the
// caller's to compile (it needs the route package's header formatter).
func CompileGlobal(field string, c *rlhttpv3.RateLimit) (*Global, error) {
	// filter_enabled, filter_enforced, failure_mode_deny_percent, rate_limits,
	// metadata_namespace, enable_retry_after_header and stat_prefix are not implemented.
	if err := xdsfield.Check(c, field, "domain", "stage", "request_type", "timeout", "failure_mode_deny",
		"rate_limited_as_resource_exhausted", "rate_limit_service", "enable_x_ratelimit_headers",
		"disable_x_envoy_ratelimited_header", "rate_limited_status", "response_headers_to_add",
		"status_on_error"); err != nil {
		return nil, err
	}
	g := &Global{
		Domain:                   c.GetDomain(),
		Stage:                    c.GetStage(),
		FailureModeDeny:          c.GetFailureModeDeny(),
		ResourceExhausted:        c.GetRateLimitedAsResourceExhausted(),
		XRateLimitHeaders:        c.GetEnableXRatelimitHeaders() == rlhttpv3.RateLimit_DRAFT_VERSION_03,
		DisableXEnvoyRateLimited: c.GetDisableXEnvoyRatelimitedHeader(),
		RateLimitedStatus:        http.StatusTooManyRequests,
		StatusOnError:            http.StatusInternalServerError,
	}
	if g.Domain == "" {
		return nil, fmt.Errorf("%s.domain: empty", field)
	}
	if g.Stage > maxStage {
		return nil, fmt.Errorf("%s.stage: %d exceeds %d", field, g.Stage, maxStage)
	}
	switch c.GetRequestType() {
	case "", "both":
	case "internal":
		g.RequestType = RequestInternal
	case "external":
		g.RequestType = RequestExternal
	default:
		return nil, fmt.Errorf("%s.request_type: %q is not internal, external or both", field, c.GetRequestType())
	}
	if s := c.GetRateLimitedStatus(); s != nil && s.GetCode() >= 400 {
		g.RateLimitedStatus = int(s.GetCode()) // Envoy: a code below 400 keeps 429
	}
	if s := c.GetStatusOnError(); s != nil {
		if s.GetCode() < 200 || s.GetCode() > 599 {
			return nil, fmt.Errorf("%s.status_on_error.code: %d is not an HTTP status", field, s.GetCode())
		}
		g.StatusOnError = int(s.GetCode())
	}
	var err error
	if g.Client, err = compileService(field, c.GetTimeout(), c.GetRateLimitService()); err != nil {
		return nil, err
	}
	return g, nil
}

// compileService compiles a filter's rate_limit_service and timeout (field names the filter's
// config) into the client that calls the service: the global HTTP and network filters share it.
func compileService(field string, t *durationpb.Duration, svc *ratelimitconfv3.RateLimitServiceConfig) (Client, error) {
	timeout := DefaultGlobalTimeout
	if t != nil {
		if err := t.CheckValid(); err != nil {
			return Client{}, fmt.Errorf("%s.timeout: %w", field, err)
		}
		if timeout = t.AsDuration(); timeout < 0 {
			return Client{}, fmt.Errorf("%s.timeout: negative", field)
		}
	}
	sf := field + ".rate_limit_service"
	if svc == nil {
		return Client{}, fmt.Errorf("%s: missing", sf)
	}
	if err := xdsfield.Check(svc, sf, "grpc_service", "transport_api_version"); err != nil {
		return Client{}, err
	}
	// AUTO is the only other version Envoy still accepts, and means the one the proxy speaks.
	if v := svc.GetTransportApiVersion(); v != corev3.ApiVersion_V3 && v != corev3.ApiVersion_AUTO {
		return Client{}, fmt.Errorf("%s.transport_api_version: %s is not supported (V3 only)", sf, v)
	}
	return compileClient(sf+".grpc_service", svc.GetGrpcService(), timeout)
}

// compileClient compiles the envoy_grpc target of gs; the call's timeout is the filter's
// (grpc_service.timeout is refused, as its meaning would compete with the filter's).
func compileClient(field string, gs *corev3.GrpcService, timeout time.Duration) (Client, error) {
	var cl Client
	if gs == nil {
		return cl, fmt.Errorf("%s: missing", field)
	}
	if err := xdsfield.Check(gs, field, "envoy_grpc", "initial_metadata"); err != nil {
		return cl, err
	}
	var err error
	if cl.Client, err = grpcunary.CompileEnvoyGRPC(field, gs); err != nil {
		return cl, err
	}
	cl.Timeout = timeout
	for i, h := range gs.GetInitialMetadata() {
		hf := fmt.Sprintf("%s.initial_metadata[%d]", field, i)
		if err := xdsfield.Check(h, hf, "key", "value"); err != nil {
			return cl, err
		}
		k := strings.ToLower(h.GetKey())
		if k == "" || strings.HasPrefix(k, ":") || strings.ContainsAny(k, " \t\r\n\x00:") ||
			strings.ContainsAny(h.GetValue(), "\r\n\x00") {
			return cl, fmt.Errorf("%s: invalid header %q", hf, h.GetKey())
		}
		cl.Metadata = append(cl.Metadata, [2]string{http.CanonicalHeaderKey(k), h.GetValue()})
	}
	return cl, nil
}
