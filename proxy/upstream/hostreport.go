package upstream

import "context"

// HostReport receives the address of the host a request was sent to, for access logs
// (%UPSTREAM_HOST%). The caller attaches it to the request context with WithHostReport;
// RoundTrip sets Host after choosing the endpoint, on the caller's goroutine.
type HostReport struct {
	// Host is the endpoint's dial address ("ip:port", or a socket path) of the last attempt.
	Host string
}

type hostReportKey struct{}

// WithHostReport returns ctx carrying r.
func WithHostReport(ctx context.Context, r *HostReport) context.Context {
	return context.WithValue(ctx, hostReportKey{}, r)
}

// reportHost records ep in ctx's HostReport, if any.
func reportHost(ctx context.Context, ep *endpoint) {
	if r, ok := ctx.Value(hostReportKey{}).(*HostReport); ok {
		r.Host = ep.dialAddr()
	}
}
