// Package accesslog implements Envoy's file access logger (envoy.access_loggers.file) for
// strait-proxy: the substitution format (Envoy's command operators, text and JSON), compiled once
// per configuration into a slice of operators, and a writer per file that takes formatted lines
// off the request path through a bounded queue.
//
// The HTTP connection manager (package l7) and the TCP proxy (package l4) compile their
// access_log lists with Compile and call Logger.Log once per finished request or connection with
// an Entry describing it. Log formats the line synchronously into a pooled buffer (no maps, no
// fmt) and hands it to the file's writer goroutine; when that queue is full the line is dropped
// and counted (filesystem.write_dropped), never waited for.
package accesslog

import (
	"crypto/x509"
	"net/http"
	"net/netip"
	"time"

	"google.golang.org/protobuf/types/known/structpb"
)

// Entry is what one access log line is made of: a finished HTTP request or TCP connection. The
// caller fills it and passes it to Logger.Log, which does not retain it (nor its headers) after
// returning. Zero values are "not set" and print as Envoy prints missing values ("-", or null in
// JSON).
type Entry struct {
	// Start is when the request (TCP: the downstream connection) started; Duration its length.
	Start    time.Time
	Duration time.Duration
	// Protocol is "HTTP/1.1", "HTTP/1.0" or "HTTP/2"; empty for TCP.
	Protocol string
	// Method, Authority, Path and Scheme are the request's pseudo-headers (:method, :authority,
	// :path as forwarded, :scheme).
	Method, Authority, Path, Scheme string
	// RequestHeaders, ResponseHeaders: the downstream request's headers and the response's
	// headers. Response trailers are in ResponseHeaders under http.TrailerPrefix, as net/http
	// keeps them.
	RequestHeaders, ResponseHeaders http.Header
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
