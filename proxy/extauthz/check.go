package extauthz

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"time"

	"google.golang.org/protobuf/types/known/structpb"
)

// Request is what a check sees of the downstream request, after the connection manager's
// normalization. The caller owns it; Check only reads it.
type Request struct {
	// Method, Path (the request target: path and query), Host (authority) and Scheme.
	Method, Path, Host, Scheme string
	// Protocol is "HTTP/1.0", "HTTP/1.1" or "HTTP/2".
	Protocol string
	// ID is the x-request-id.
	ID string
	// Header holds the request headers (without Host and Content-Length, as net/http keeps
	// them).
	Header http.Header
	// ContentLength is the body's length: 0 without a body, -1 when unknown.
	ContentLength int64
	// Body is the buffered request body (Config.Body); BodyBuffered says buffering happened
	// (the request had a body) and PartialBody that Body is only its first MaxBytes.
	Body                      []byte
	BodyBuffered, PartialBody bool
	// Time is when the request's headers arrived.
	Time time.Time
	// Source is the downstream peer's address; Destination the local address it connected to.
	Source, Destination netip.AddrPort
	// SourcePrincipal and DestinationPrincipal are the peer's and the proxy's certificate
	// identities (URI SAN, else DNS SAN, else subject), "" without.
	SourcePrincipal, DestinationPrincipal string
	// TLS says the connection is TLS; SNI is its server name.
	TLS bool
	SNI string
	// Metadata returns the request's dynamic metadata namespace, or nil; Metadata may be nil.
	Metadata func(namespace string) *structpb.Struct
}

// Status is a check's outcome.
type Status uint8

const (
	// StatusOK allows the request, with the Response's mutations.
	StatusOK Status = iota
	// StatusDenied refuses it with the Response's reply.
	StatusDenied
	// StatusError is a failed check: status_on_error (or the service's error_response), unless
	// failure_mode_allow.
	StatusError
)

// String names the status as Envoy's CheckStatus.
func (s Status) String() string {
	switch s {
	case StatusOK:
		return "OK"
	case StatusDenied:
		return "Denied"
	}
	return "Error"
}

// Response is a check's outcome and what the caller applies.
type Response struct {
	Status Status
	// Err says why a check failed (StatusError), for logs.
	Err error

	// With StatusOK, the upstream request's mutations: header changes, removals (lower-case
	// names) and query parameter changes.
	RequestHeaders []HeaderOp
	RemoveHeaders  []string
	QuerySet       []QueryParam
	QueryRemove    []string
	// Invalid (StatusOK, with Config.ValidateMutations) says the reply asked for an invalid
	// mutation: the request fails with 500 and DetailsInvalid instead.
	Invalid bool

	// ResponseHeaders change the downstream response: the upstream's (StatusOK) or the
	// filter's reply (StatusDenied, StatusError).
	ResponseHeaders []HeaderOp
	// Code and Body are the reply's (StatusDenied; StatusError from a service's error_response,
	// where Code 0 means Config.StatusOnError). Body is cut to Config.MaxDeniedBodyBytes.
	Code int
	Body string

	// Metadata is the service's dynamic metadata for the FilterName namespace, or nil.
	Metadata *structpb.Struct
}

// RouteRelevant reports whether an allowing reply changed something routing may look at: with
// clear_route_cache_headers, a header named there or the query; otherwise any header or query
// change. mutated lists the headers the caller changed (lower case).
func (c *Config) RouteRelevant(mutated []string, queryChanged bool) bool {
	if queryChanged {
		return true
	}
	if len(c.clearRouteHeaders) == 0 {
		return len(mutated) > 0
	}
	for _, m := range mutated {
		if slices.Contains(c.clearRouteHeaders, m) {
			return true
		}
	}
	return false
}

// RoundTripper sends one request to the configured cluster and returns its response with the
// body unread; the proxy's cluster RoundTrip, so endpoints, pools and mTLS are its own.
type RoundTripper interface {
	RoundTrip(req *http.Request) (*http.Response, error)
}

// Check asks the authorization service about req through rt, within Timeout and ctx (the
// downstream request's context), and interprets the reply. It never returns nil.
func (c *Config) Check(ctx context.Context, rt RoundTripper, req *Request) *Response {
	if c.GRPC {
		cr, err := callCheck(ctx, &c.grpc, rt, c.checkRequest(req))
		if err != nil {
			return errorResponse(err)
		}
		return c.fromCheckResponse(cr)
	}
	ctx, cancel := withTimeout(ctx, c.Timeout)
	defer cancel()
	out, err := c.httpRequest(req)
	if err != nil {
		return errorResponse(err)
	}
	resp, err := rt.RoundTrip(out.WithContext(ctx))
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		return errorResponse(fmt.Errorf("calling the authorization service on %s: %w", c.Cluster, err))
	}
	defer resp.Body.Close()
	return c.fromHTTPResponse(resp)
}

func errorResponse(err error) *Response { return &Response{Status: StatusError, Err: err} }

var errTooLarge = errors.New("reply larger than the limit")

// readAtMost reads r to its end, failing with errTooLarge beyond limit bytes.
func readAtMost(r io.Reader, limit int) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(b) > limit {
		return nil, fmt.Errorf("%w of %d bytes", errTooLarge, limit)
	}
	return b, nil
}

// cutBody applies MaxDeniedBodyBytes.
func (c *Config) cutBody(b string) string {
	if c.MaxDeniedBodyBytes > 0 && len(b) > c.MaxDeniedBodyBytes {
		return b[:c.MaxDeniedBodyBytes]
	}
	return b
}
