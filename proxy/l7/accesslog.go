package l7

import (
	"errors"
	"strings"
	"sync"

	"github.com/strait-mesh/strait/proxy/accesslog"
	"github.com/strait-mesh/strait/proxy/upstream"
	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
)

// compileAccessLog compiles the connection manager's access_log (Envoy's file access logger;
// anything else is refused by name).
func (h *Handler) compileAccessLog(hcm *hcmv3.HttpConnectionManager) error {
	if len(hcm.GetAccessLog()) == 0 {
		return nil
	}
	files := h.opts.AccessLogFiles
	if files == nil {
		files = accesslog.Shared(h.opts.Stats)
	}
	l, err := accesslog.Compile("http_connection_manager.access_log", hcm.GetAccessLog(), files)
	if err != nil {
		return err
	}
	h.accessLog = l
	return nil
}

// logAccess records the upstream host in the request's RequestInfo (for what finish runs
// after it) and writes the finished request's access log lines. It runs in finish, after the
// response went out, on the request's goroutine; the line is formatted into a pooled buffer and
// written by the file's own goroutine. The store is here, not in finish, so that finish's
// common path (no access log) has no code for it.
func (h *Handler) logAccess(s *Stream) {
	s.Info.UpstreamHost = s.hostReport.Host
	e := h.record(s)
	h.accessLog.Log(e)
	putRecord(e)
}

// recordPool recycles the finished requests' records: a record is large (about 500 bytes) and
// the access log's operators and filters see it through function values, so it would
// otherwise be allocated for every request.
var recordPool = sync.Pool{New: func() any { return new(accesslog.Entry) }}

// putRecord returns a record taken with record once nothing uses it any more.
func putRecord(e *accesslog.Entry) {
	*e = accesslog.Entry{}
	recordPool.Put(e)
}

// record describes the finished request for the access log and CEL expressions (Envoy's
// attributes). The record comes from recordPool: the caller returns it with putRecord and
// must not keep it (nor what it points to) after that.
func (h *Handler) record(s *Stream) *accesslog.Entry {
	in := &s.Info
	e := recordPool.Get().(*accesslog.Entry)
	*e = accesslog.Entry{
		Start:                          in.Start,
		Duration:                       in.Duration,
		Protocol:                       in.Protocol,
		Method:                         in.Method,
		RequestHeaders:                 (*requestHeaders)(s),
		ResponseHeaders:                s.sentHeaders(),
		ResponseTrailers:               s.sentTrailers(),
		ResponseCode:                   in.Status,
		ResponseCodeDetails:            in.Details,
		UpstreamTransportFailureReason: in.TransportFailureReason,
		BytesReceived:                  in.BytesReceived,
		BytesSent:                      in.BytesSent,
		UpstreamHost:                   s.hostReport.Host,
		UpstreamCluster:                in.Cluster,
		DownstreamRemote:               in.Remote,
		RouteName:                      in.RouteName,
		Attempts:                       in.Attempts,
		GRPCStatus:                     in.GRPCStatus,
		DynamicMetadata:                s.metadata,
	}
	// The request as forwarded: host and path after normalization and rewrites (a rewrite
	// keeps the original in x-envoy-original-path), as Envoy's header map has them.
	e.Authority, e.Path, e.Scheme = s.Authority(), s.Path(), s.Scheme()
	if in.Flags != 0 {
		e.ResponseFlags = in.Flags.String()
	}
	if c := in.Conn; c != nil {
		e.DownstreamLocal, e.DownstreamDirect = c.OriginalDst, c.Source
		e.RequestedServerName = c.SNI
		e.PeerCertificates, e.LocalCertificate = c.PeerCertificates, c.LocalCertificate
	}
	if !e.DownstreamRemote.IsValid() {
		e.DownstreamRemote = e.DownstreamDirect
	}
	return e
}

// transportFailure renders why connecting upstream failed as Envoy's
// %UPSTREAM_TRANSPORT_FAILURE_REASON% does: the reason with whitespace as underscores.
func transportFailure(err error) string {
	var ue *upstream.Error
	if errors.As(err, &ue) && ue.Err != nil {
		err = ue.Err
	}
	if err == nil {
		return ""
	}
	return strings.Join(strings.Fields(err.Error()), "_")
}
