package route

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/strait-mesh/strait/internal/vocab"
	"github.com/strait-mesh/strait/proxy/httpmsg"
	"github.com/strait-mesh/strait/proxy/xdsfield"
	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
	previoushostsv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/retry/host/previous_hosts/v3"
)

// RetryPolicy is a compiled routev3.RetryPolicy.
type RetryPolicy struct {
	// On is the set of retry conditions.
	On vocab.RetryOn
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
	if err := xdsfield.Check(p, field, "retry_on", "num_retries", "per_try_timeout",
		"retry_host_predicate", "host_selection_retry_max_attempts", "retriable_status_codes",
		"retry_back_off", "retriable_headers", "retriable_request_headers"); err != nil {
		return nil, err
	}
	on, err := vocab.ParseRetryOn(p.GetRetryOn())
	if err != nil {
		return nil, xdsfield.Unsupported(field+".retry_on", "%v", err)
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
				return nil, xdsfield.Unsupported(f, "retry host predicate %s", tc.GetTypeUrl())
			}
			if err := xdsfield.Check(&ph, f+".typed_config"); err != nil {
				return nil, err
			}
			name = vocab.PreviousHostsPredicate
		}
		if name != vocab.PreviousHostsPredicate {
			return nil, xdsfield.Unsupported(f, "retry host predicate %q", hp.GetName())
		}
		rp.AvoidPreviousHosts = true
	}
	if b := p.GetRetryBackOff(); b != nil {
		if err := xdsfield.Check(b, field+".retry_back_off", "base_interval", "max_interval"); err != nil {
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
func (p *RetryPolicy) RequestRetriable(r Request) bool {
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
	// FailReset is a reset or disconnect after the request (its headers at least) went
	// upstream (UC/UR).
	FailReset
	// FailRefusedStream is an HTTP/2 REFUSED_STREAM.
	FailRefusedStream
	// FailPerTryTimeout is a per-try timeout.
	FailPerTryTimeout
	// FailOverflow is a circuit-breaker overflow (UO): never retried.
	FailOverflow
	// FailNoHealthy is no healthy upstream (UH).
	FailNoHealthy
	// FailResetBeforeRequest is a reset or disconnect after connecting but before any of the
	// request went upstream (UC/UR): safe to retry even for requests that are not idempotent.
	FailResetBeforeRequest
)

// TracksRequestSent reports whether RetryOnFailure's answer depends on whether the request
// went upstream before a reset (FailResetBeforeRequest or FailReset): the caller need not find
// out otherwise.
func (p *RetryPolicy) TracksRequestSent() bool {
	return p.On&vocab.RetryResetBeforeRequest != 0 && p.On&(vocab.RetryReset|vocab.Retry5xx|vocab.RetryGatewayError) == 0
}

// RetryOnFailure reports whether a failed attempt (no response) should be retried, as Envoy's
// RetryStateImpl::wouldRetryFromReset decides: a connect failure or a reset before the request
// went upstream is retried by reset-before-request too; a per-try timeout only by 5xx and
// gateway-error.
func (p *RetryPolicy) RetryOnFailure(k FailureKind) bool {
	const resets = vocab.RetryReset | vocab.Retry5xx | vocab.RetryGatewayError
	switch k {
	case FailConnect:
		return p.On&(vocab.RetryConnectFailure|vocab.RetryResetBeforeRequest|resets) != 0
	case FailResetBeforeRequest:
		return p.On&(vocab.RetryResetBeforeRequest|resets) != 0
	case FailReset:
		return p.On&resets != 0
	case FailRefusedStream:
		return p.On&(vocab.RetryRefusedStream|resets) != 0
	case FailPerTryTimeout:
		return p.On&(vocab.Retry5xx|vocab.RetryGatewayError) != 0
	}
	return false
}

// RetryOnResponse reports whether a response with status code and header fields hdr (names
// matched in any case) should be retried.
func (p *RetryPolicy) RetryOnResponse(code int, hdr *httpmsg.Header) bool {
	// The common case: a response without x-envoy-ratelimited and grpc-status, on a policy
	// whose only status condition is retriable-status-codes (or none). Each lookup mostly
	// ends at the Header's name-length bit test.
	if p.On&(vocab.Retry5xx|vocab.RetryGatewayError|vocab.RetryRetriable4xx|vocab.RetryRetriableHeaders) == 0 &&
		!hdr.Has("X-Envoy-Ratelimited") && !hdr.Has("Grpc-Status") {
		return p.On&vocab.RetryRetriableStatusCodes != 0 && slices.Contains(p.StatusCodes, code)
	}
	return p.retryOnResponse(code, hdr)
}

// retryOnResponse is RetryOnResponse for every response and policy. Out of its common path.
//
//go:noinline
func (p *RetryPolicy) retryOnResponse(code int, hdr *httpmsg.Header) bool {
	if hdr.Has("X-Envoy-Ratelimited") {
		// A response an upstream Envoy rate limited is retried only by envoy-ratelimited.
		return p.On&vocab.RetryEnvoyRateLimited != 0
	}
	// One condition with one way out to true: the common answer, false, runs through a short
	// stretch of code.
	on := p.On
	if on&vocab.Retry5xx != 0 && code >= 500 ||
		on&vocab.RetryGatewayError != 0 && (code == 502 || code == 503 || code == 504) ||
		on&vocab.RetryRetriable4xx != 0 && code == 409 ||
		on&vocab.RetryRetriableStatusCodes != 0 && slices.Contains(p.StatusCodes, code) ||
		on&vocab.RetryRetriableHeaders != 0 && len(p.headers) > 0 && p.retryOnHeaders(code, hdr) {
		return true
	}
	if i := hdr.Index("Grpc-Status", 0); i >= 0 && hdr.Index("Grpc-Status", i+1) < 0 {
		if _, gs := hdr.Field(i); p.On&vocab.GRPCStatusRetryOn(string(gs)) != 0 {
			return true
		}
	}
	return false
}

// retryOnHeaders reports whether one of retriable_headers matches the response (:status
// against code). Out of RetryOnResponse's common path.
//
//go:noinline
func (p *RetryPolicy) retryOnHeaders(code int, hdr *httpmsg.Header) bool {
	fake := headerOnly{hdr}
	for i := range p.headers {
		if p.headers[i].name[0] == ':' {
			if p.headers[i].name == ":status" && p.headers[i].Match(strconv.Itoa(code), true) {
				return true
			}
			continue
		}
		if p.headers[i].match(fake) {
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
