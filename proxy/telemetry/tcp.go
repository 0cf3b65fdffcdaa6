package telemetry

import (
	"crypto/x509"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"
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
	// UpstreamPeer is the verified certificate (leaf) the upstream host presented on a TLS
	// connection (source reporter: destination_principal); nil otherwise.
	UpstreamPeer *x509.Certificate
	// Overrides, when set, are the istio.stats network filter's TCP metric overrides, and
	// Dimensions the connection's values of their expressions (Overrides.Evaluate).
	Overrides  *Overrides
	Dimensions Dimensions
	// ReportEvery is how often OpenTCP reports the bytes of the open connection
	// (tcp_reporting_duration; 0: DefaultTCPReportingDuration).
	ReportEvery time.Duration
	// Received and Sent, for OpenTCP, are the connection's byte counts so far (from and to the
	// downstream), which the proxy updates while the connection is open; nil: the bytes are
	// reported when it closes.
	Received, Sent *atomic.Uint64
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
// counted as dropped) or every TCP metric is dropped by its overrides. The caller keeps it for
// the connection's life. It does not allocate once the label combination has been seen.
func (r *Recorder) TCP(c *TCPConn) *TCPSeries {
	if c.Overrides.DropsAll() {
		return nil
	}
	k := tcpKey{reporter: c.Reporter}
	if c.Reporter == Destination {
		k.peer, k.local, k.mtls = spiffeOf(c.Peer), spiffeOf(c.Local), c.Peer != nil
		k.peerWL = r.peers.Load().downstream(k.peer, c.Source)
		if svc := PickService(c.Services, ""); svc != nil {
			k.service = *svc
		}
	} else {
		k.cluster = c.Cluster
		k.peer = spiffeOf(c.UpstreamPeer)
		k.peerWL = r.peers.Load().byAddress(c.Upstream)
	}
	s := r.tcp.get(k, func(k tcpKey) *TCPSeries { return &TCPSeries{key: k} })
	if s != nil && c.Overrides != nil {
		s = r.tcpOverridden(s, c)
	}
	if s == nil {
		r.dropped.Inc()
	}
	return s
}

// tcpOverSeries is an overridden TCP series: its counters, and per metric (tcpMetricNames) its
// labels, or dropped.
type tcpOverSeries struct {
	TCPSeries
	labels [tcpFamilySize]string
	drop   [tcpFamilySize]bool
}

// tcpOverridden returns the series that records a connection whose standard series is base
// and which carries overrides; nil beyond the cap.
func (r *Recorder) tcpOverridden(base *TCPSeries, c *TCPConn) *TCPSeries {
	o := c.Overrides
	k := overKey[*TCPSeries]{base: base, key: o.key, dims: o.used(&c.Dimensions)}
	s := r.tcpOver.get(k, func(k overKey[*TCPSeries]) *tcpOverSeries {
		s := &tcpOverSeries{TCPSeries: TCPSeries{key: base.key}}
		o.label(r.tcpLabels(k.base.key), &k.dims, s.labels[:], s.drop[:])
		return s
	})
	if s == nil {
		return nil
	}
	return &s.TCPSeries
}

func (r *Recorder) tcpLabels(k tcpKey) string {
	src, dst, srcP, dstP := r.sides(k.reporter, k.peer, k.local, k.peerWL)
	svc := Service{Host: Unknown, Name: Unknown, Namespace: Unknown}
	if k.service.Host != "" {
		svc = k.service
	} else if k.reporter == Source && outboundCluster(k.cluster) {
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

// recorded reports whether the series counted anything.
func (s *TCPSeries) recorded() bool {
	return s.opened.Load() > 0 || s.closed.Load() > 0 || s.sent.Load() > 0 || s.recv.Load() > 0
}

// tcpCounters reads metric m (an index of tcpMetricNames) of a series.
var tcpCounters = [tcpFamilySize]func(*TCPSeries) uint64{
	func(s *TCPSeries) uint64 { return s.closed.Load() },
	func(s *TCPSeries) uint64 { return s.opened.Load() },
	func(s *TCPSeries) uint64 { return s.recv.Load() },
	func(s *TCPSeries) uint64 { return s.sent.Load() },
}

// writeTCP renders the TCP families, series sorted by labels: the standard series that
// recorded something and the overridden series that do not drop the metric, added up where
// their labels coincide.
func (r *Recorder) writeTCP(b *strings.Builder) {
	var ss []*TCPSeries
	var labels []string
	for _, s := range r.tcp.series() {
		if s.recorded() {
			ss = append(ss, s)
			labels = append(labels, r.tcpLabels(s.key))
		}
	}
	over := r.tcpOver.series()
	for m, name := range tcpMetricNames {
		ms, ml := ss, labels
		for _, s := range over {
			if !s.drop[m] && s.recorded() {
				ms = append(ms[:len(ms):len(ms)], &s.TCPSeries)
				ml = append(ml[:len(ml):len(ml)], s.labels[m])
			}
		}
		if len(ms) == 0 {
			continue
		}
		name = "istio_" + name
		b.WriteString("# TYPE " + name + " counter\n")
		for _, g := range byLabels(ms, ml) {
			var n uint64
			for _, s := range g.series {
				n += tcpCounters[m](s)
			}
			sample(b, name, g.labels, n)
		}
	}
}
