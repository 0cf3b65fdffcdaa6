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

// reportHost records ep in ctx's HostReport, if any, for a new attempt.
func reportHost(ctx context.Context, ep *endpoint) {
	if r, ok := ctx.Value(hostReportKey{}).(*HostReport); ok {
		r.Host, r.PeerCertificate = ep.dialAddr(), nil
	}
}

// reportPeer records the certificate of the connection that answered (st is the response's
// TLS state, nil for plaintext) in ctx's HostReport, if any. The handshake verified it.
func reportPeer(ctx context.Context, st *tls.ConnectionState) {
	if st == nil || len(st.PeerCertificates) == 0 {
		return
	}
	if r, ok := ctx.Value(hostReportKey{}).(*HostReport); ok {
		r.PeerCertificate = st.PeerCertificates[0]
	}
}
