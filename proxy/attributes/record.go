package attributes

import (
	"crypto/x509"
	"net/netip"
	"time"

	"google.golang.org/protobuf/types/known/structpb"
)

// Record is what the proxy knows of a finished HTTP request or TCP connection: what an access
// log line is made of (package accesslog calls it Entry) and what CEL expressions see as Envoy's
// attributes (Activation). The connection manager (package l7) and the TCP proxy (package l4)
// fill one when a request or connection ends; consumers do not retain it (nor its headers) after
// returning. Zero values are "not set": access logs print them as Envoy prints missing values
// ("-", or null in JSON) and CEL sees the attribute as absent.
type Record struct {
	// Start is when the request (TCP: the downstream connection) started; Duration its length.
	Start    time.Time
	Duration time.Duration
	// Protocol is "HTTP/1.1", "HTTP/1.0" or "HTTP/2"; empty for TCP.
	Protocol string
	// Method, Authority, Path and Scheme are the request's pseudo-headers (:method, :authority,
	// :path as forwarded, :scheme).
	Method, Authority, Path, Scheme string
	// RequestHeaders, ResponseHeaders and ResponseTrailers: the downstream request's headers,
	// the response's headers and its trailers as sent downstream (nil: none).
	RequestHeaders, ResponseHeaders, ResponseTrailers Headers
	// ResponseCode is the status sent downstream (0: none; TCP: 0).
	ResponseCode int
	// ResponseFlags are Envoy's response flags rendered ("UF,URX"); "" or "-" when none.
	ResponseFlags string
	// ResponseCodeDetails is %RESPONSE_CODE_DETAILS% ("via_upstream", "route_not_found", ...).
	ResponseCodeDetails string
	// ConnectionTerminationDetails is %CONNECTION_TERMINATION_DETAILS%.
	ConnectionTerminationDetails string
	// UpstreamTransportFailureReason is %UPSTREAM_TRANSPORT_FAILURE_REASON%.
	UpstreamTransportFailureReason string
	// BytesReceived and BytesSent count body bytes (TCP: all bytes) from and to the downstream.
	BytesReceived, BytesSent int64
	// UpstreamHost is the upstream host's address ("ip:port"); "" when none was chosen.
	UpstreamHost string
	// UpstreamCluster is the upstream cluster's name.
	UpstreamCluster string
	// UpstreamLocal is the local address of the upstream connection, when known.
	UpstreamLocal netip.AddrPort
	// DownstreamLocal is the downstream connection's local (original destination) address;
	// DownstreamRemote the client address after x-forwarded-for processing; DownstreamDirect
	// the connection's peer.
	DownstreamLocal, DownstreamRemote, DownstreamDirect netip.AddrPort
	// RequestedServerName is the TLS SNI.
	RequestedServerName string
	// RouteName is the matched route's name.
	RouteName string
	// Attempts is the number of upstream attempts (0: none was made).
	Attempts int
	// GRPCStatus is the grpc-status of the response ("" when not gRPC).
	GRPCStatus string
	// PeerCertificates and LocalCertificate are the downstream TLS connection's certificates.
	PeerCertificates []*x509.Certificate
	LocalCertificate *x509.Certificate
	// DynamicMetadata is the request's dynamic metadata by filter namespace (may be nil).
	DynamicMetadata map[string]*structpb.Struct
}
