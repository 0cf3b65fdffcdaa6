package l7

import "github.com/strait-mesh/strait/proxy/telemetry"

// recordTelemetry records the finished request in Istio's standard metrics (Options.Telemetry).
// The reporter follows from the stat_prefix: Istio names a sidecar's inbound connection
// managers "inbound_...", which report as the destination; every other reports as the source.
// The peer workload comes from the recorder's workload table: the client by its certificate and
// source address (destination), the server by the upstream host the cluster picked (source).
// It runs in finish on the request's goroutine and does not allocate once the request's label
// combination is known.
func (h *Handler) recordTelemetry(s *Stream) {
	in := &s.Info
	q := telemetry.HTTPRequest{
		Reporter:      telemetry.ReporterForStatPrefix(h.statPrefix),
		Code:          in.Status,
		GRPC:          s.grpc,
		GRPCStatus:    in.GRPCStatus,
		Flags:         uint64(in.Flags),
		FlagText:      flagText,
		Cluster:       in.Cluster,
		Authority:     in.Authority,
		Services:      s.services,
		Duration:      in.Duration,
		RequestBytes:  in.BytesReceived,
		ResponseBytes: in.BytesSent,
	}
	if s.grpc {
		setGRPCMessages(s, &q)
	}
	if c := in.Conn; c != nil {
		if len(c.PeerCertificates) > 0 {
			q.Peer = c.PeerCertificates[0]
		}
		q.Local = c.LocalCertificate
		q.Source = c.Source.Addr()
	}
	if q.Reporter == telemetry.Source {
		q.Upstream = s.hostReport.Host
		q.UpstreamPeer = s.hostReport.PeerCertificate
	}
	// With no istio.stats filter nothing is applied: no call (the filter's work is out of
	// line, its branch predicted not taken).
	if h.istioStats != nil && !h.applyIstioStats(s, &q) { // istiostats.go
		return
	}
	h.opts.Telemetry.RecordHTTP(&q)
}

// setGRPCMessages sets q's counts of the gRPC messages of the request's bodies. Out of
// recordTelemetry's common path (a request that is not gRPC).
//
//go:noinline
func setGRPCMessages(s *Stream, q *telemetry.HTTPRequest) {
	q.RequestMessages, q.ResponseMessages = s.reqBody.grpcMessages(), s.respGRPC.Messages()
}

// countsGRPCMessages reports whether the router counts the gRPC messages of the request's
// bodies (istio_request_messages_total, istio_response_messages_total): for gRPC requests when
// the standard metrics are on. The request body counts what it reads from the downstream
// (replayBody), the response copy what it writes downstream (Stream.respGRPC); a retry's
// replayed bytes are not counted again.
func (h *Handler) countsGRPCMessages(s *Stream) bool {
	return s.grpc && h.opts.Telemetry != nil
}

// telemetryNeedsHost reports whether the router must learn the upstream host the cluster picks
// (upstream.WithHostReport) for the standard metrics: at the source reporter, whose peer is
// that host's workload in the workload table.
func (h *Handler) telemetryNeedsHost() bool {
	return h.opts.Telemetry != nil && telemetry.ReporterForStatPrefix(h.statPrefix) == telemetry.Source
}

// istioServicer is a cluster that knows its services from istiod's metadata
// (upstream.Cluster), which the destination reporter names as destination_service.
type istioServicer interface {
	IstioServices() []telemetry.Service
}

// flagText renders response flags for the response_flags label.
func flagText(f uint64) string { return ResponseFlags(f).String() }
