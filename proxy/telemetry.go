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
// identity and source address (destination), the server by the upstream host (source).
var _ l4.Observer = l4Env{}

// tcpSeries finds the metrics series of a connection.
func (e l4Env) tcpSeries(r *l4.Record) *telemetry.TCPSeries {
	if e.telemetry == nil {
		return nil
	}
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
	return e.telemetry.TCP(&c)
}

// TCPOpened implements l4.Observer: istio_tcp_connections_opened_total.
func (e l4Env) TCPOpened(r *l4.Record) { e.tcpSeries(r).Opened() }

// TCPClosed implements l4.Observer: istio_tcp_connections_closed_total and the byte counters,
// for connections whose upstream was established (as Envoy's istio stats filter counts them).
func (e l4Env) TCPClosed(r *l4.Record) {
	if r.Upstream == nil {
		return
	}
	s := e.tcpSeries(r)
	s.Closed()
	s.Bytes(int64(r.BytesReceived), int64(r.BytesSent))
}
