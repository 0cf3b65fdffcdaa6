package l7

import (
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/strait-mesh/strait/proxy/route"
)

// ResponseFlags is a set of Envoy response flags describing why a request ended as it did.
type ResponseFlags uint32

// Envoy response flags (names as in Envoy's access log %RESPONSE_FLAGS%).
const (
	FlagNoHealthyUpstream        ResponseFlags = 1 << iota // UH
	FlagUpstreamConnectFailure                             // UF
	FlagUpstreamOverflow                                   // UO
	FlagNoRouteFound                                       // NR
	FlagUpstreamRetryLimitExceed                           // URX
	FlagUpstreamRequestTimeout                             // UT
	FlagDownstreamConnTerminated                           // DC
	FlagDelayInjected                                      // DI
	FlagFaultInjected                                      // FI
	FlagUpstreamConnTerminated                             // UC
	FlagUpstreamRemoteReset                                // UR
	FlagLocalReset                                         // LR
	FlagStreamIdleTimeout                                  // SI
	FlagNoClusterFound                                     // NC
	FlagDownstreamProtocolError                            // DPE
	FlagUpstreamProtocolError                              // UPE
	FlagMaxDurationReached                                 // UMSDR
	FlagOverloadManager                                    // OM
	FlagUnauthorizedExtService                             // UAEX
	FlagRateLimited                                        // RL
	FlagRateLimitServiceError                              // RLSE
	flagCount                    = iota
)

var flagNames = [flagCount]string{"UH", "UF", "UO", "NR", "URX", "UT", "DC", "DI", "FI", "UC", "UR", "LR", "SI", "NC", "DPE", "UPE", "UMSDR", "OM", "UAEX", "RL", "RLSE"}

// String renders the flags as Envoy does ("UF,URX"), or "-" when none are set.
func (f ResponseFlags) String() string {
	if f == 0 {
		return "-"
	}
	var b strings.Builder
	for i := 0; i < flagCount; i++ {
		if f&(1<<i) != 0 {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(flagNames[i])
		}
	}
	return b.String()
}

// FlagByName returns the flag with Envoy's short name (e.g. "UF").
func FlagByName(name string) (ResponseFlags, bool) {
	for i, n := range flagNames {
		if n == name {
			return 1 << i, true
		}
	}
	return 0, false
}

// RequestInfo is the per-request record of what happened, for access logs and telemetry. It is
// available from the request context (InfoFrom) while the request runs and is passed to
// Options.OnComplete when it ends.
type RequestInfo struct {
	// Start is when the request headers were received; Duration is the total time.
	Start    time.Time
	Duration time.Duration
	// Conn describes the downstream connection.
	Conn *ConnInfo
	// Remote is the downstream client address after x-forwarded-for processing.
	Remote netip.AddrPort
	// Protocol is "HTTP/1.1", "HTTP/1.0" or "HTTP/2".
	Protocol string
	// Method, Authority and Path are the request as received.
	Method, Authority, Path string
	// RequestID is the x-request-id.
	RequestID string
	// RouteName is the matched route's name; Cluster is the chosen upstream cluster.
	RouteName, Cluster string
	// Status is the response status sent downstream (0 if none was sent).
	Status int
	// GRPCStatus is the grpc-status of a local gRPC reply or of the upstream response headers /
	// trailers ("" when not gRPC or unknown).
	GRPCStatus string
	// Flags are the response flags.
	Flags ResponseFlags
	// Attempts is the number of upstream attempts (including retries).
	Attempts int
	// BytesReceived and BytesSent count body bytes from and to the downstream.
	BytesReceived, BytesSent int64
	// UpstreamServiceTime is the time until upstream response headers arrived.
	UpstreamServiceTime time.Duration
	// Details is Envoy's %RESPONSE_CODE_DETAILS%: a short reason for local replies,
	// "via_upstream" for a response from the upstream.
	Details string
	// UpstreamHost is the address of the upstream host of the last attempt ("ip:port"), when
	// the connection manager has an access log (the only reader).
	UpstreamHost string
	// TransportFailureReason is %UPSTREAM_TRANSPORT_FAILURE_REASON%: why connecting upstream
	// failed (UF), with spaces as underscores as Envoy writes it.
	TransportFailureReason string
}

type infoKey struct{}

// InfoFrom returns the RequestInfo of the request whose context this is, or nil.
func InfoFrom(r *http.Request) *RequestInfo {
	s, _ := r.Context().Value(infoKey{}).(*Stream)
	if s == nil {
		return nil
	}
	return &s.Info
}

// grpcStatusFor maps an HTTP status of a local reply to a gRPC status code as Envoy does.
func grpcStatusFor(status int) int {
	switch status {
	case 400:
		return 13 // INTERNAL
	case 401:
		return 16 // UNAUTHENTICATED
	case 403:
		return 7 // PERMISSION_DENIED
	case 404:
		return 12 // UNIMPLEMENTED
	case 429, 502, 503, 504:
		return 14 // UNAVAILABLE
	}
	return 2 // UNKNOWN
}

// localReply answers the request from the proxy itself. For gRPC requests the answer is a
// trailers-only gRPC response (HTTP 200 with grpc-status and grpc-message) unless grpcStatus
// forces a code; otherwise a text/plain body. flags are recorded on the request.
func (s *Stream) localReply(status int, flags ResponseFlags, details, body string, grpcStatus int) {
	s.Info.Flags |= flags
	s.Info.Details = details
	if s.wroteHeader {
		// The response is already under way: the only signal left is to abort the stream.
		s.abort = true
		return
	}
	hdr := s.w.Header()
	hdr.Reset()
	if s.Route != nil && (s.Route.Action != route.ActionForward || flags&(FlagFaultInjected) != 0) {
		s.Route.ApplyResponseHeaders(hdr, s, &s.rinfo, s.Target)
	}
	s.applyCommonResponseHeaders(hdr)
	if s.closeReply {
		hdr.Set("Connection", "close") // the codec closes the connection after the reply
	}
	if flags&FlagUpstreamOverflow != 0 && !s.h.suppressEnvoyHdrs {
		// Envoy marks requests dropped by circuit breaking so that clients do not retry them.
		hdr.Set("X-Envoy-Overloaded", "true")
	}
	if s.grpc || grpcStatus >= 0 {
		if grpcStatus < 0 {
			grpcStatus = grpcStatusFor(status)
		}
		hdr.Set("Content-Type", "application/grpc")
		hdr.Set("Grpc-Status", strconv.Itoa(grpcStatus))
		if body != "" {
			hdr.Set("Grpc-Message", grpcEncode(body))
		}
		s.Info.GRPCStatus = strconv.Itoa(grpcStatus)
		s.writeHeader(http.StatusOK)
		return
	}
	if body != "" {
		hdr.Set("Content-Type", "text/plain")
	}
	if status != http.StatusNoContent && status != http.StatusNotModified {
		hdr.Set("Content-Length", strconv.Itoa(len(body)))
	}
	s.writeHeader(status)
	if body != "" && s.method != http.MethodHead {
		n, _ := s.w.Write([]byte(body))
		s.Info.BytesSent += int64(n)
	}
}

// grpcEncode percent-encodes a grpc-message value as the gRPC spec asks.
func grpcEncode(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '%' {
			return strings.ReplaceAll(url.PathEscape(s), "+", "%2B")
		}
	}
	return s
}
