package vocab

import (
	"fmt"
	"strconv"
	"strings"
)

// RetryOn is a set of Envoy retry conditions, one bit each.
type RetryOn uint32

// The retry conditions, in the order of Envoy's router documentation: first those of
// x-envoy-retry-on, then those of x-envoy-retry-grpc-on.
const (
	Retry5xx RetryOn = 1 << iota
	RetryGatewayError
	RetryReset
	RetryResetBeforeRequest
	RetryConnectFailure
	RetryEnvoyRateLimited
	RetryRetriable4xx
	RetryRefusedStream
	RetryRetriableStatusCodes
	RetryRetriableHeaders
	RetryHTTP3PostConnectFailure
	RetryGrpcCancelled
	RetryGrpcDeadlineExceeded
	RetryGrpcInternal
	RetryGrpcResourceExhausted
	RetryGrpcUnavailable
)

// RetryCondition is one retry condition: its name in retry_on and Istio's retryOn, its bit, and,
// for a gRPC condition, the grpc-status code it retries on.
type RetryCondition struct {
	Name string
	On   RetryOn
	// GRPCStatus is the grpc-status a gRPC condition retries on; -1 for an HTTP condition.
	GRPCStatus int
}

// GRPC reports whether c is one of x-envoy-retry-grpc-on's conditions, the only ones gRPC's own
// xDS client implements.
func (c RetryCondition) GRPC() bool { return c.GRPCStatus >= 0 }

// retryConditions is the one list of retry conditions. Istio's validation accepts exactly these
// (pkg/config/validation: supportedRetryOnPolicies), besides HTTP status codes.
var retryConditions = [...]RetryCondition{
	{"5xx", Retry5xx, -1},
	{"gateway-error", RetryGatewayError, -1},
	{"reset", RetryReset, -1},
	{"reset-before-request", RetryResetBeforeRequest, -1},
	{"connect-failure", RetryConnectFailure, -1},
	{"envoy-ratelimited", RetryEnvoyRateLimited, -1},
	{"retriable-4xx", RetryRetriable4xx, -1},
	{"refused-stream", RetryRefusedStream, -1},
	{"retriable-status-codes", RetryRetriableStatusCodes, -1},
	{"retriable-headers", RetryRetriableHeaders, -1},
	{"http3-post-connect-failure", RetryHTTP3PostConnectFailure, -1},
	{"cancelled", RetryGrpcCancelled, 1},
	{"deadline-exceeded", RetryGrpcDeadlineExceeded, 4},
	{"internal", RetryGrpcInternal, 13},
	{"resource-exhausted", RetryGrpcResourceExhausted, 8},
	{"unavailable", RetryGrpcUnavailable, 14},
}

// RetryConditions returns every retry condition, in Envoy's documentation order. The slice is a
// copy: changing it changes nothing else.
func RetryConditions() []RetryCondition {
	out := retryConditions
	return out[:]
}

// LookupRetryCondition returns the retry condition named name ("5xx", "unavailable", ...).
func LookupRetryCondition(name string) (RetryCondition, bool) {
	for _, c := range retryConditions {
		if c.Name == name {
			return c, true
		}
	}
	return RetryCondition{}, false
}

// ParseRetryOn parses a comma-separated list of retry conditions, as in retry_on or the
// x-envoy-retry-on header; blanks around names and empty entries are ignored. An unknown name is
// an error.
func ParseRetryOn(list string) (RetryOn, error) {
	var on RetryOn
	for _, n := range strings.Split(list, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		c, ok := LookupRetryCondition(n)
		if !ok {
			return 0, fmt.Errorf("unknown retry condition %q", n)
		}
		on |= c.On
	}
	return on, nil
}

// RetryOnList renders the given conditions as a retry_on list in the order given.
func RetryOnList(ons ...RetryOn) string {
	var b strings.Builder
	for _, on := range ons {
		for _, c := range retryConditions {
			if on&c.On == 0 {
				continue
			}
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(c.Name)
		}
	}
	return b.String()
}

// String renders the set as a retry_on list in Envoy's documentation order.
func (on RetryOn) String() string { return RetryOnList(on) }

// GRPCStatusRetryOn returns the gRPC condition that retries a response whose grpc-status header
// is status ("14" is unavailable), or 0. It does not allocate.
func GRPCStatusRetryOn(status string) RetryOn {
	code, err := strconv.Atoi(status)
	if err != nil || code < 0 {
		return 0
	}
	for _, c := range retryConditions {
		if c.GRPCStatus == code {
			return c.On
		}
	}
	return 0
}
