package ratelimit

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/strait-mesh/strait/proxy/grpcunary"
	commonrlv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/service/ratelimit/v3"
)

// ShouldRateLimitPath is the gRPC method of the rate limit service.
const ShouldRateLimitPath = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"

// RoundTripper sends one request to the named cluster and returns its response with the body
// unread: the proxy's own cluster, so endpoints, pools and mTLS are its own.
type RoundTripper interface {
	RoundTrip(req *http.Request) (*http.Response, error)
}

// Client is a unary envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit client over an
// envoy_grpc cluster, framed by package grpcunary.
type Client struct {
	grpcunary.Client
}

// Code is the outcome of a check.
type Code uint8

// The outcomes.
const (
	// CodeOK: the service answered OK; the request continues.
	CodeOK Code = iota
	// CodeOverLimit: the service answered OVER_LIMIT.
	CodeOverLimit
	// CodeError: the service could not be asked, or answered something else.
	CodeError
)

// Outcome is the interpretation of one call.
type Outcome struct {
	Code Code
	// Err says what failed, for CodeError.
	Err error
	// ResponseHeaders (response_headers_to_add) go on the downstream response;
	// RequestHeaders (request_headers_to_add) on the upstream request of an allowed one. Names
	// are canonical; invalid ones are dropped.
	ResponseHeaders, RequestHeaders [][2]string
	// Body is raw_body, the body of a limited request's reply.
	Body []byte
	// Metadata is the reply's dynamic_metadata, nil when empty.
	Metadata *structpb.Struct
	// Statuses are the reply's per-descriptor statuses (x-ratelimit-* headers).
	Statuses []*rlsv3.RateLimitResponse_DescriptorStatus
}

// Check asks the service whether d's descriptors in domain are over their limits, through rt
// within the client's timeout and ctx. An empty d is not sent: it is OK. It never panics on
// a hostile reply: every failure is an Outcome with CodeError.
func (c *Client) Check(ctx context.Context, rt RoundTripper, domain string, d *Descriptors) Outcome {
	req := &rlsv3.RateLimitRequest{Domain: domain, Descriptors: make([]*commonrlv3.RateLimitDescriptor, 0, d.Len())}
	for i := 0; i < d.Len(); i++ {
		es := d.At(i)
		desc := &commonrlv3.RateLimitDescriptor{Entries: make([]*commonrlv3.RateLimitDescriptor_Entry, len(es))}
		for j, e := range es {
			desc.Entries[j] = &commonrlv3.RateLimitDescriptor_Entry{Key: e.Key, Value: e.Value}
		}
		req.Descriptors = append(req.Descriptors, desc)
	}
	resp, err := c.call(ctx, rt, req)
	if err != nil {
		return Outcome{Code: CodeError, Err: err}
	}
	return FromResponse(resp)
}

// FromResponse interprets a RateLimitResponse: OK and OVER_LIMIT as such, UNKNOWN (or any
// other code) an error.
func FromResponse(r *rlsv3.RateLimitResponse) Outcome {
	var o Outcome
	switch r.GetOverallCode() {
	case rlsv3.RateLimitResponse_OK:
		o.Code = CodeOK
	case rlsv3.RateLimitResponse_OVER_LIMIT:
		o.Code = CodeOverLimit
	default:
		return Outcome{Code: CodeError, Err: fmt.Errorf("the rate limit service answered %s", r.GetOverallCode())}
	}
	o.ResponseHeaders = headerValues(r.GetResponseHeadersToAdd())
	o.RequestHeaders = headerValues(r.GetRequestHeadersToAdd())
	o.Body = r.GetRawBody()
	if len(r.GetDynamicMetadata().GetFields()) > 0 {
		o.Metadata = r.GetDynamicMetadata()
	}
	o.Statuses = r.GetStatuses()
	return o
}

// headerValues are the valid headers of hs; pseudo-headers, hop-by-hop and framing headers are
// skipped (a rate limit service cannot change the request's framing or target).
func headerValues[H interface {
	GetKey() string
	GetValue() string
	GetRawValue() []byte
}](hs []H) [][2]string {
	var out [][2]string
	for _, h := range hs {
		k, v := h.GetKey(), h.GetValue()
		if v == "" && len(h.GetRawValue()) > 0 {
			v = string(h.GetRawValue())
		}
		if !validHeader(k, v) {
			continue
		}
		k = http.CanonicalHeaderKey(k)
		switch k {
		case "Host", "Content-Length", "Transfer-Encoding", "Te", "Trailer", "Connection", "Keep-Alive",
			"Proxy-Connection", "Upgrade":
			continue
		}
		out = append(out, [2]string{k, v})
	}
	return out
}

// validHeader reports whether k is an HTTP token and v a field value without CR, LF or NUL.
func validHeader(k, v string) bool {
	if k == "" || len(k) > 1024 || len(v) > 16<<10 {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return !strings.ContainsAny(v, "\r\n\x00")
}

// call sends req and returns the service's reply; any failure (transport, HTTP status,
// grpc-status, oversized or malformed reply) is an error.
func (c *Client) call(ctx context.Context, rt RoundTripper, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	var resp rlsv3.RateLimitResponse
	if err := c.Call(ctx, rt, ShouldRateLimitPath, req, &resp); err != nil {
		return nil, fmt.Errorf("the rate limit service: %w", err)
	}
	return &resp, nil
}

// unitSeconds are the seconds of a RateLimitResponse unit, 0 for UNKNOWN.
func unitSeconds(u rlsv3.RateLimitResponse_RateLimit_Unit) int64 {
	switch u {
	case rlsv3.RateLimitResponse_RateLimit_SECOND:
		return 1
	case rlsv3.RateLimitResponse_RateLimit_MINUTE:
		return 60
	case rlsv3.RateLimitResponse_RateLimit_HOUR:
		return 3600
	case rlsv3.RateLimitResponse_RateLimit_DAY:
		return 86400
	case rlsv3.RateLimitResponse_RateLimit_WEEK:
		return 7 * 86400
	case rlsv3.RateLimitResponse_RateLimit_MONTH:
		return 30 * 86400
	case rlsv3.RateLimitResponse_RateLimit_YEAR:
		return 365 * 86400
	}
	return 0
}

// XRateLimitHeaders renders the DRAFT_VERSION_03 headers of a reply's statuses as Envoy does:
// of the statuses with a current_limit, the one with the fewest requests remaining gives
// X-RateLimit-Remaining and X-RateLimit-Reset (seconds until its window resets), and
// X-RateLimit-Limit is its requests_per_unit followed by every limit's quota policy
// ("10, 10;w=60, 100;w=3600;name=\"per-path\""). ok is false when no status has a limit.
func XRateLimitHeaders(statuses []*rlsv3.RateLimitResponse_DescriptorStatus) (limit, remaining, reset string, ok bool) {
	var minSt *rlsv3.RateLimitResponse_DescriptorStatus
	var b strings.Builder
	for _, st := range statuses {
		cl := st.GetCurrentLimit()
		if cl == nil {
			continue
		}
		if minSt == nil || st.GetLimitRemaining() < minSt.GetLimitRemaining() {
			minSt = st
		}
		w := unitSeconds(cl.GetUnit())
		if m := cl.GetUnitMultiplier(); m != nil && m.GetValue() > 1 {
			w *= int64(m.GetValue())
		}
		b.WriteString(", ")
		b.WriteString(strconv.FormatUint(uint64(cl.GetRequestsPerUnit()), 10))
		b.WriteString(";w=")
		b.WriteString(strconv.FormatInt(w, 10))
		if n := cl.GetName(); n != "" && validHeader("x", n) && !strings.ContainsAny(n, "\"\\") {
			b.WriteString(";name=\"")
			b.WriteString(n)
			b.WriteByte('"')
		}
	}
	if minSt == nil {
		return "", "", "", false
	}
	limit = strconv.FormatUint(uint64(minSt.GetCurrentLimit().GetRequestsPerUnit()), 10) + b.String()
	remaining = strconv.FormatUint(uint64(minSt.GetLimitRemaining()), 10)
	reset = strconv.FormatInt(int64(minSt.GetDurationUntilReset().AsDuration()/time.Second), 10)
	return limit, remaining, reset, true
}
