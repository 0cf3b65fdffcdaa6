package proxy

import (
	"net"

	"github.com/strait-mesh/strait/proxy/l4"
	"github.com/strait-mesh/strait/proxy/telemetry"
)

// newTelemetry creates the recorder of Istio's standard metrics for the proxy's workload,
// rendered on the admin's /stats/prometheus with the other statistics. The SPIFFE ID used
// where no connection certificate says it is the agent's identity, when there is an agent.
func (p *Proxy) newTelemetry() *telemetry.Recorder {
	n := p.opts.Node
	o := telemetry.Options{
		Local: telemetry.NodeWorkload(n.Name, n.Namespace, n.ClusterID, n.Labels, n.Extra),
		Stats: p.stats,
	}
	if a := p.agent; a != nil {
		o.LocalPrincipal = a.Identity
	}
	return telemetry.New(o)
}

// l4Env reports every proxied TCP connection in Istio's istio_tcp_* metrics (l4.Observer): the
// reporter from the tcp_proxy's stat prefix (Istio sets it to the cluster), the peer from the
// connection's certificates and addresses through the workload table: the client by its
// identity and source address (destination), the server by the upstream host (source). The
// istio.stats network filter before the tcp_proxy, when there is one, overrides the metrics
// (its dimensions are evaluated once, when the upstream connection is established) and sets how
// often the bytes of an open connection are reported; without it they are reported every
// telemetry.DefaultTCPReportingDuration, as with Istio's default filter.
var _ l4.Observer = l4Env{}

// tcpConn describes a connection for its metrics series.
func (e l4Env) tcpConn(r *l4.Record) telemetry.TCPConn {
	c := telemetry.TCPConn{Reporter: telemetry.ReporterForTCPStatPrefix(r.StatPrefix),
		Cluster: r.Cluster, Peer: r.PeerCertificate, Local: r.LocalCertificate, Source: r.Source.Addr()}
	if rt := e.rt.Load(); rt != nil {
		if cl := rt.Clusters[r.Cluster]; cl != nil {
			c.Services = cl.IstioServices()
		}
	}
	if a, ok := r.Upstream.(*net.TCPAddr); ok {
		c.Upstream = a.AddrPort().Addr()
	}
	c.UpstreamPeer = r.UpstreamPeerCertificate
	if r.Live != nil {
		c.Received, c.Sent = &r.Live.Received, &r.Live.Sent
	}
	if cfg := r.IstioStats; cfg != nil {
		c.ReportEvery = cfg.TCPReportingDuration
		if o := cfg.TCPOverrides; o != nil {
			c.Overrides = o
			if o.HasDimensions() {
				attrs := r.Entry()
				o.Evaluate(&attrs, &c.Dimensions)
			}
		}
	}
	return c
}

// TCPOpened implements l4.Observer: istio_tcp_connections_opened_total, and the connection's
// bytes are reported periodically from now on.
func (e l4Env) TCPOpened(r *l4.Record) {
	if e.telemetry == nil || (r.IstioStats != nil && r.IstioStats.TCPOverrides.DropsAll()) {
		return
	}
	c := e.tcpConn(r)
	r.Report = e.telemetry.OpenTCP(&c)
}

// TCPClosed implements l4.Observer: istio_tcp_connections_closed_total and the bytes not
// reported yet, for connections whose upstream was established (as Envoy's istio stats filter
// counts them).
func (e l4Env) TCPClosed(r *l4.Record) {
	r.Report.Close(r.BytesReceived, r.BytesSent)
	r.Report = nil
}
