package route

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	previoushostsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
)

// RetryOn is a set of retry conditions (Envoy's x-envoy-retry-on / retry_on values).
type RetryOn uint32

// Retry conditions.
const (
	Retry5xx RetryOn = 1 << iota
	RetryGatewayError
	RetryReset
	RetryConnectFailure
	RetryRefusedStream
	RetryRetriable4xx
	RetryRetriableStatusCodes
	RetryRetriableHeaders
	RetryGrpcCancelled
	RetryGrpcDeadlineExceeded
	RetryGrpcInternal
	RetryGrpcResourceExhausted
	RetryGrpcUnavailable
	RetryEnvoyRateLimited
	RetryHTTP3PostConnectFailure
)

var retryOnNames = map[string]RetryOn{
	"5xx":                        Retry5xx,
	"gateway-error":              RetryGatewayError,
	"reset":                      RetryReset,
	"connect-failure":            RetryConnectFailure,
	"refused-stream":             RetryRefusedStream,
	"retriable-4xx":              RetryRetriable4xx,
	"retriable-status-codes":     RetryRetriableStatusCodes,
	"retriable-headers":          RetryRetriableHeaders,
	"cancelled":                  RetryGrpcCancelled,
	"deadline-exceeded":          RetryGrpcDeadlineExceeded,
	"internal":                   RetryGrpcInternal,
	"resource-exhausted":         RetryGrpcResourceExhausted,
	"unavailable":                RetryGrpcUnavailable,
	"envoy-ratelimited":          RetryEnvoyRateLimited,
	"http3-post-connect-failure": RetryHTTP3PostConnectFailure,
}

// ParseRetryOn parses a comma-separated retry_on list. Unknown names are an error.
func ParseRetryOn(s string) (RetryOn, error) {
	var on RetryOn
	for _, n := range strings.Split(s, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		v, ok := retryOnNames[n]
		if !ok {
			return 0, fmt.Errorf("unknown retry condition %q", n)
		}
		on |= v
	}
	return on, nil
}

// PreviousHostsPredicate is the retry host predicate that avoids hosts already tried.
const PreviousHostsPredicate = "envoy.retry_host_predicates.previous_hosts"

// RetryPolicy is a compiled routev3.RetryPolicy.
type RetryPolicy struct {
	// On is the set of retry conditions.
	On RetryOn
	// NumRetries is the maximum number of retries (Envoy default 1).
	NumRetries int
	// PerTryTimeout bounds each attempt; 0 means only the route timeout applies.
	PerTryTimeout time.Duration
	// StatusCodes are the retriable-status-codes.
	StatusCodes []int
	// AvoidPreviousHosts is set by the previous_hosts retry host predicate. The load balancer
	// API has no exclusion list, so l7 approximates it: round robin, least request and random
	// move on by themselves, and for hash-based balancing each retry perturbs the hash so that
	// it lands on another ring position.
	AvoidPreviousHosts bool
	// HostSelectionMaxAttempts is how often Envoy re-runs host selection to satisfy the
	// predicate; with the approximation above a single selection is made per attempt.
	HostSelectionMaxAttempts int
	// BackoffBase and BackoffMax bound the fully jittered exponential back-off between attempts
	// (Envoy defaults 25 ms and 10 × base).
	BackoffBase, BackoffMax time.Duration

	headers    []headerMatcher
	reqHeaders []headerMatcher
}

func compileRetry(field string, p *routev3.RetryPolicy) (*RetryPolicy, error) {
	if err := checkFields(field, p, "retry_on", "num_retries", "per_try_timeout",
		"retry_host_predicate", "host_selection_retry_max_attempts", "retriable_status_codes",
		"retry_back_off", "retriable_headers", "retriable_request_headers"); err != nil {
		return nil, err
	}
	on, err := ParseRetryOn(p.GetRetryOn())
	if err != nil {
		return nil, unsupported(field+".retry_on", "%v", err)
	}
	rp := &RetryPolicy{On: on, NumRetries: 1, BackoffBase: 25 * time.Millisecond,
		HostSelectionMaxAttempts: int(p.GetHostSelectionRetryMaxAttempts())}
	if n := p.GetNumRetries(); n != nil {
		rp.NumRetries = int(n.GetValue())
	}
	rp.PerTryTimeout = p.GetPerTryTimeout().AsDuration()
	for _, c := range p.GetRetriableStatusCodes() {
		rp.StatusCodes = append(rp.StatusCodes, int(c))
	}
	for i, hp := range p.GetRetryHostPredicate() {
		f := fmt.Sprintf("%s.retry_host_predicate[%d]", field, i)
		name := hp.GetName()
		if tc := hp.GetTypedConfig(); tc != nil {
			// The typed config decides, as in Envoy; decoding it also links the type, so that
			// config dumps can render it.
			var ph previoushostsv3.PreviousHostsPredicate
			if err := tc.UnmarshalTo(&ph); err != nil {
				return nil, unsupported(f, "retry host predicate %s", tc.GetTypeUrl())
			}
			if err := checkFields(f+".typed_config", &ph); err != nil {
				return nil, err
			}
			name = PreviousHostsPredicate
		}
		if name != PreviousHostsPredicate {
			return nil, unsupported(f, "retry host predicate %q", hp.GetName())
		}
		rp.AvoidPreviousHosts = true
	}
	if b := p.GetRetryBackOff(); b != nil {
		if err := checkFields(field+".retry_back_off", b, "base_interval", "max_interval"); err != nil {
			return nil, err
		}
		rp.BackoffBase = b.GetBaseInterval().AsDuration()
		if rp.BackoffBase <= 0 {
			return nil, fmt.Errorf("%s.retry_back_off.base_interval: must be positive", field)
		}
		rp.BackoffMax = b.GetMaxInterval().AsDuration()
	}
	if rp.BackoffMax <= 0 {
		rp.BackoffMax = 10 * rp.BackoffBase
	}
	if rp.headers, err = compileHeaderMatchers(field+".retriable_headers", p.GetRetriableHeaders()); err != nil {
		return nil, err
	}
	if rp.reqHeaders, err = compileHeaderMatchers(field+".retriable_request_headers", p.GetRetriableRequestHeaders()); err != nil {
		return nil, err
	}
	return rp, nil
}

// RequestRetriable reports whether r may be retried at all (retriable_request_headers).
func (p *RetryPolicy) RequestRetriable(r *http.Request) bool {
	if len(p.reqHeaders) == 0 {
		return true
	}
	for i := range p.reqHeaders {
		if p.reqHeaders[i].match(r) {
			return true
		}
	}
	return false
}

// FailureKind classifies an upstream failure for retry decisions.
type FailureKind uint8

// Upstream failure kinds.
const (
	// FailConnect is a connection failure (response flag UF).
	FailConnect FailureKind = iota
	// FailReset is a reset or disconnect after connecting (UC/UR).
	FailReset
	// FailRefusedStream is an HTTP/2 REFUSED_STREAM.
	FailRefusedStream
	// FailPerTryTimeout is a per-try timeout.
	FailPerTryTimeout
	// FailOverflow is a circuit-breaker overflow (UO): never retried.
	FailOverflow
	// FailNoHealthy is no healthy upstream (UH).
	FailNoHealthy
)

// RetryOnFailure reports whether a failed attempt (no response) should be retried.
func (p *RetryPolicy) RetryOnFailure(k FailureKind) bool {
	switch k {
	case FailConnect:
		return p.On&(RetryConnectFailure|Retry5xx|RetryGatewayError|RetryReset) != 0
	case FailReset:
		return p.On&(RetryReset|Retry5xx|RetryGatewayError) != 0
	case FailRefusedStream:
		return p.On&(RetryRefusedStream|Retry5xx|RetryGatewayError|RetryReset) != 0
	case FailPerTryTimeout:
		return p.On&(Retry5xx|RetryGatewayError) != 0
	}
	return false
}

var grpcRetry = map[string]RetryOn{
	"1": RetryGrpcCancelled, "4": RetryGrpcDeadlineExceeded, "13": RetryGrpcInternal,
	"8": RetryGrpcResourceExhausted, "14": RetryGrpcUnavailable,
}

// RetryOnResponse reports whether a response with these status and headers should be retried.
func (p *RetryPolicy) RetryOnResponse(resp *http.Response) bool {
	code := resp.StatusCode
	switch {
	case p.On&Retry5xx != 0 && code >= 500:
		return true
	case p.On&RetryGatewayError != 0 && (code == 502 || code == 503 || code == 504):
		return true
	case p.On&RetryRetriable4xx != 0 && code == 409:
		return true
	case p.On&RetryEnvoyRateLimited != 0 && resp.Header.Get("X-Envoy-Ratelimited") != "":
		return true
	}
	if p.On&RetryRetriableStatusCodes != 0 {
		for _, c := range p.StatusCodes {
			if c == code {
				return true
			}
		}
	}
	if p.On&RetryRetriableHeaders != 0 && len(p.headers) > 0 {
		fake := http.Request{Header: resp.Header}
		for i := range p.headers {
			if p.headers[i].name[0] == ':' {
				if p.headers[i].name == ":status" && p.headers[i].matchValue(strconv.Itoa(code), true) {
					return true
				}
				continue
			}
			if p.headers[i].match(&fake) {
				return true
			}
		}
	}
	if gs := resp.Header["Grpc-Status"]; len(gs) == 1 {
		if v, ok := grpcRetry[gs[0]]; ok && p.On&v != 0 {
			return true
		}
	}
	return false
}

// Backoff returns the delay before retry number n (1-based): fully jittered exponential
// back-off between 0 and min(base × 2^(n-1), max).
func (p *RetryPolicy) Backoff(n int) time.Duration {
	d := p.BackoffBase
	for i := 1; i < n && d < p.BackoffMax; i++ {
		d *= 2
	}
	if d > p.BackoffMax {
		d = p.BackoffMax
	}
	if d <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(d)))
}
