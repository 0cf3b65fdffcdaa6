package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
)

// HostReport receives the address of the host a request was sent to, for access logs
// (%UPSTREAM_HOST%), and the certificate it proved on the connection, for telemetry
// (destination_principal at the source reporter). The caller attaches it to the request
// context with WithHostReport; RoundTrip sets it after choosing the endpoint and after the
// response, on the caller's goroutine.
type HostReport struct {
	// Host is the endpoint's dial address ("ip:port", or a socket path) of the last attempt.
	Host string
	// PeerCertificate is the verified certificate (leaf) the host presented on the TLS
	// connection that answered the last attempt; nil for plaintext or when no response came.
	PeerCertificate *x509.Certificate
}

type hostReportKey struct{}

// WithHostReport returns ctx carrying r.
func WithHostReport(ctx context.Context, r *HostReport) context.Context {
	return context.WithValue(ctx, hostReportKey{}, r)
}

// hostReportOf returns the HostReport a request's context carries (WithHostReport), or nil;
// a MessageHead's Report comes first (Cluster.roundTrip). Not inlined: the router's requests
// carry their report in the MessageHead, and its copies would lengthen the request path.
//
//go:noinline
func hostReportOf(ctx context.Context) *HostReport {
	r, _ := ctx.Value(hostReportKey{}).(*HostReport)
	return r
}

// host records ep for a new attempt. r may be nil.
func (r *HostReport) host(ep *endpoint) {
	if r != nil {
		r.Host, r.PeerCertificate = ep.dialAddr(), nil
	}
}

// peer records the certificate of the connection that answered (st is the response's TLS
// state, nil for plaintext). The handshake verified it. r may be nil.
func (r *HostReport) peer(st *tls.ConnectionState) {
	if r != nil && st != nil && len(st.PeerCertificates) > 0 {
		r.PeerCertificate = st.PeerCertificates[0]
	}
}
