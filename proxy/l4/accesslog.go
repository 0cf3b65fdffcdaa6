package l4

import (
	"net"
	"net/netip"

	"github.com/strait-mesh/strait/proxy/accesslog"
)

// logAccess writes the access log lines of a closed connection. TCP lines have no HTTP fields:
// %PROTOCOL%, headers and route print "-", %RESPONSE_CODE% prints 0, as in Envoy.
func (p *TCPProxy) logAccess(rec *Record) {
	e := rec.Entry()
	p.accessLog.Log(&e)
}

// Entry returns the connection as an access log entry, which is also the attributes.Record
// that CEL expressions (access log filters, istio.stats dimensions) read. Bytes and duration
// are as far as the Record has them (set on close).
func (rec *Record) Entry() accesslog.Entry {
	e := accesslog.Entry{
		Start:               rec.Start,
		Duration:            rec.Duration,
		ResponseFlags:       rec.Flag,
		BytesReceived:       int64(rec.BytesReceived),
		BytesSent:           int64(rec.BytesSent),
		UpstreamCluster:     rec.Cluster,
		UpstreamLocal:       addrPort(rec.UpstreamLocal),
		DownstreamLocal:     rec.OriginalDst,
		DownstreamRemote:    rec.Source,
		DownstreamDirect:    rec.Source,
		RequestedServerName: rec.ServerName,
		Attempts:            rec.Attempts,
		PeerCertificates:    rec.PeerCertificates,
		LocalCertificate:    rec.LocalCertificate,
	}
	if rec.Upstream != nil {
		e.UpstreamHost = rec.Upstream.String()
	}
	return e
}

// addrPort converts a TCP address (nil or not TCP: invalid).
func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort()
	}
	return netip.AddrPort{}
}
