package telemetry

import (
	"crypto/x509"
	"net/netip"
	"strings"
	"sync/atomic"
)

// TCPConn describes one proxied TCP connection for the istio_tcp_* metrics.
type TCPConn struct {
	Reporter Reporter
	// Cluster is the upstream cluster (source reporter: destination_service comes from it).
	Cluster string
	// Peer is the verified client certificate (leaf) of an mTLS connection; Local is the
	// proxy's certificate on the connection.
	Peer, Local *x509.Certificate
	// Services are the upstream cluster's services (istiod's istio.services metadata): the
	// destination reporter's destination_service when there is exactly one.
	Services []Service
	// Source is the downstream client's address (destination reporter: the peer workload);
	// Upstream the address of the upstream host the tcp_proxy connected to (source reporter).
	Source, Upstream netip.Addr
}

type tcpKey struct {
	reporter Reporter
	mtls     bool
	cluster  string
	peer     spiffeRef
	local    spiffeRef
	peerWL   *Peer
	service  Service // destination reporter: the inbound cluster's only service
}

// TCPSeries is the counters of one label combination. Its methods are safe on nil (a
// connection whose labels were beyond the cap).
type TCPSeries struct {
	key                        tcpKey
	opened, closed, sent, recv atomic.Uint64
}

// TCP returns the series of a connection's labels, or nil when it is beyond the cap (then
// counted as dropped). The caller keeps it for the connection's life.
func (r *Recorder) TCP(c *TCPConn) *TCPSeries {
	k := tcpKey{reporter: c.Reporter}
	if c.Reporter == Destination {
		k.peer, k.local, k.mtls = spiffeOf(c.Peer), spiffeOf(c.Local), c.Peer != nil
		k.peerWL = r.peers.Load().downstream(k.peer, c.Source)
		if svc := PickService(c.Services, ""); svc != nil {
			k.service = *svc
		}
	} else {
		k.cluster = c.Cluster
		k.peerWL = r.peers.Load().byAddress(c.Upstream)
	}
	s := r.tcp.get(k, func(k tcpKey) *TCPSeries { return &TCPSeries{key: k} })
	if s == nil {
		r.dropped.Inc()
	}
	return s
}

func (r *Recorder) tcpLabels(k tcpKey) string {
	src, dst, srcP, dstP := r.sides(k.reporter, k.peer, k.local, k.peerWL)
	svc := Service{Host: Unknown, Name: Unknown, Namespace: Unknown}
	if k.service.Host != "" {
		svc = k.service
	} else if k.reporter == Source && strings.HasPrefix(k.cluster, "outbound|") {
		svc = ServiceFromCluster(k.cluster, "")
	} else if k.reporter == Source && k.cluster != "" {
		svc.Name = k.cluster
	}
	var b labelWriter
	b.workloads(k.reporter, src, dst, srcP, dstP, svc)
	b.pair("request_protocol", "tcp")
	b.pair("response_flags", "-")
	b.pair("connection_security_policy", securityPolicy(k.reporter, k.mtls))
	return b.String()
}

// Opened counts a new connection.
func (s *TCPSeries) Opened() {
	if s != nil {
		s.opened.Add(1)
	}
}

// Closed counts a finished connection.
func (s *TCPSeries) Closed() {
	if s != nil {
		s.closed.Add(1)
	}
}

// Bytes adds bytes received from the downstream and sent to it.
func (s *TCPSeries) Bytes(received, sent int64) {
	if s != nil {
		s.recv.Add(nonNegative(received))
		s.sent.Add(nonNegative(sent))
	}
}

func (r *Recorder) writeTCP(b *strings.Builder) {
	ss := r.tcp.series()
	if len(ss) == 0 {
		return
	}
	labels := make([]string, len(ss))
	for i, s := range ss {
		labels[i] = r.tcpLabels(s.key)
	}
	groups := byLabels(ss, labels)
	for _, f := range []struct {
		name string
		v    func(*TCPSeries) uint64
	}{
		{"istio_tcp_connections_closed_total", func(s *TCPSeries) uint64 { return s.closed.Load() }},
		{"istio_tcp_connections_opened_total", func(s *TCPSeries) uint64 { return s.opened.Load() }},
		{"istio_tcp_received_bytes_total", func(s *TCPSeries) uint64 { return s.recv.Load() }},
		{"istio_tcp_sent_bytes_total", func(s *TCPSeries) uint64 { return s.sent.Load() }},
	} {
		b.WriteString("# TYPE " + f.name + " counter\n")
		for _, g := range groups {
			var n uint64
			for _, s := range g.series {
				n += f.v(s)
			}
			sample(b, f.name, g.labels, n)
		}
	}
}
