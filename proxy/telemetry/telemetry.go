// Package telemetry produces Istio's standard metrics (istio_requests_total,
// istio_request_duration_milliseconds, istio_request_bytes, istio_response_bytes, the gRPC
// message counters istio_request_messages_total and istio_response_messages_total, and the
// istio_tcp_* counters) from strait-proxy, with Istio's names, labels and buckets, rendered in
// Prometheus text format beside the proxy's other statistics (package stats).
//
// The request path builds a small struct of the per-request values (reporter, response code,
// flags, gRPC status, cluster, authority, peer identity and workload), finds its series by
// comparing it with a recently recorded one (a small lock-free cache, hot.go) or else by one
// lock-free map lookup, and does atomic adds. The label text is built from the key when the metrics are
// rendered, not kept: it is most of a series' size. Label combinations are
// capped per family (Options.MaxSeries); requests beyond the cap are counted in
// strait_telemetry_series_dropped_total and otherwise not recorded.
//
// The local workload's labels come from the proxy's node. The peer's come from what the
// connection proves (its SPIFFE ID) and from the workload table straitd pushes (Peers, set with
// Recorder.SetPeers): the destination side looks the client up by its identity (narrowed by its
// address), the source side the server by the address of the upstream host the cluster picked.
// A peer the table does not know is "unknown", as Istio prints it without peer metadata.
// docs/observability.md ("Peer metadata") explains the choice.
package telemetry

import (
	"crypto/x509"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/strait-mesh/strait/proxy/stats"
)

// DefaultMaxSeries is the default cap on label combinations per metric family.
const DefaultMaxSeries = 10000

// Reporter is the side of the request the proxy reports as: Istio's reporter label.
type Reporter uint8

// The reporters: a sidecar's inbound listeners report as the destination, its outbound
// listeners and gateways as the source.
const (
	Source Reporter = iota + 1
	Destination
)

// String returns the reporter label value.
func (r Reporter) String() string {
	if r == Destination {
		return "destination"
	}
	return "source"
}

// ReporterForStatPrefix returns the reporter of an HTTP connection manager from its
// stat_prefix: Istio names the inbound ones "inbound_<address>_<port>"; every other
// (outbound_..., a gateway's) reports as the source.
func ReporterForStatPrefix(prefix string) Reporter {
	if strings.HasPrefix(prefix, "inbound_") {
		return Destination
	}
	return Source
}

// ReporterForTCPStatPrefix returns the reporter of a tcp_proxy from its stat_prefix, which
// Istio sets to the cluster name: "inbound|..." and InboundPassthroughCluster are the
// destination, the rest the source.
func ReporterForTCPStatPrefix(prefix string) Reporter {
	if strings.HasPrefix(prefix, "inbound|") || prefix == "InboundPassthroughCluster" {
		return Destination
	}
	return Source
}

// Options configure a Recorder.
type Options struct {
	// Local is the proxy's own workload (NodeWorkload).
	Local Workload
	// LocalPrincipal returns the proxy's SPIFFE ID, used when the connection carries no local
	// certificate that says it (always at the source reporter); nil or "": unknown. It is
	// called when a label combination is first seen.
	LocalPrincipal func() string
	// MaxSeries caps the label combinations of each family, HTTP and TCP (0: DefaultMaxSeries).
	MaxSeries int
	// Stats, when set, renders the metrics in its Prometheus output and holds the counter
	// strait_telemetry_series_dropped_total.
	Stats *stats.Store
}

// Recorder holds one proxy's Istio metrics. It is safe for concurrent use; create it with New.
type Recorder struct {
	opts    Options
	peers   atomic.Pointer[Peers]
	http    *table[httpKey, httpSeries]
	hot     hotSeries                                // recent HTTP series, in front of http (hot.go)
	hotOver hotOverSeries                            // recent overridden HTTP series, in front of over
	over    *table[overKey[*httpSeries], overSeries] // series of requests with istio.stats overrides (overrides.go)
	tcp     *table[tcpKey, TCPSeries]
	tcpOver *table[overKey[*TCPSeries], tcpOverSeries] // series of connections with istio.stats overrides (tcp.go)
	open    tcpReporter                                // open connections whose bytes are reported periodically (tcpreport.go)
	dropped *stats.Counter
}

// New returns a Recorder, registered with o.Stats for rendering when set.
func New(o Options) *Recorder {
	if o.MaxSeries <= 0 {
		o.MaxSeries = DefaultMaxSeries
	}
	r := &Recorder{opts: o, http: newTable[httpKey, httpSeries](o.MaxSeries), tcp: newTable[tcpKey, TCPSeries](o.MaxSeries),
		over: newTable[overKey[*httpSeries], overSeries](o.MaxSeries), tcpOver: newTable[overKey[*TCPSeries], tcpOverSeries](o.MaxSeries)}
	if o.Stats != nil {
		r.dropped = o.Stats.Counter("telemetry.series_dropped", "strait_telemetry_series_dropped_total")
		o.Stats.AddCollector(r)
	} else {
		r.dropped = new(stats.Counter)
	}
	return r
}

// SetPeers installs a compiled workload table (nil: none) for the requests recorded from now on.
func (r *Recorder) SetPeers(p *Peers) { r.peers.Store(p) }

// Peers returns the workload table in force, or nil.
func (r *Recorder) Peers() *Peers { return r.peers.Load() }

// Dropped returns how many observations were not recorded because their label combination
// was beyond the cap.
func (r *Recorder) Dropped() uint64 { return r.dropped.Value() }

// Series returns the number of HTTP and TCP label combinations.
func (r *Recorder) Series() (http, tcp int) { return r.http.len(), r.tcp.len() }

// HTTPRequest is what the connection manager knows of one finished request. Recording does
// not retain the pointer; its strings may be kept as labels.
type HTTPRequest struct {
	Reporter Reporter
	// Code is the response status sent downstream (0: none).
	Code int
	// GRPC marks a gRPC request (request_protocol "grpc"); GRPCStatus is its grpc-status.
	GRPC       bool
	GRPCStatus string
	// Flags are the response flags as a bit set; FlagText renders them ("-" for none).
	Flags    uint64
	FlagText func(uint64) string
	// Cluster is the upstream cluster (source reporter: destination_service comes from it).
	Cluster string
	// Authority is the request's host (the passthrough service, and the destination
	// reporter's destination_service when Services does not decide it).
	Authority string
	// Services are the services of the upstream cluster's metadata (istiod's istio.services):
	// the destination reporter's destination_service is the only one, or the one the
	// authority names among several.
	Services []Service
	// Peer is the verified client certificate (leaf) of an mTLS connection; Local is the
	// proxy's certificate on the connection.
	Peer, Local *x509.Certificate
	// Source is the downstream client's address (destination reporter: the peer workload).
	Source netip.Addr
	// Upstream is the address ("ip:port") of the upstream host of the last attempt (source
	// reporter: the peer workload); empty when no host was picked. UpstreamPeer is the
	// verified certificate (leaf) that host presented on a TLS connection (source reporter:
	// destination_principal); nil otherwise.
	Upstream     string
	UpstreamPeer *x509.Certificate
	// Duration is the request's total time; RequestBytes and ResponseBytes its body sizes.
	Duration                    time.Duration
	RequestBytes, ResponseBytes int64
	// RequestMessages and ResponseMessages are the length-prefixed gRPC messages that went
	// through the proxy in each direction (GRPCFrames); recorded for gRPC requests only.
	RequestMessages, ResponseMessages uint64
	// Overrides, when set, are the istio.stats filter's metric overrides, and Dimensions the
	// request's values of their expressions (Overrides.Evaluate); see overrides.go.
	Overrides  *Overrides
	Dimensions Dimensions
}

// httpKey is the per-request part of the labels; the rest is fixed per proxy.
type httpKey struct {
	reporter   Reporter
	grpc, mtls bool
	code       int32
	flags      uint64
	grpcStatus string
	cluster    string
	authority  string
	service    Service // destination reporter: the service from the inbound cluster's metadata
	peer       spiffeRef
	local      spiffeRef
	peerWL     *Peer // the peer's workload from the table, nil when unknown
}

// spiffeRef is a SPIFFE ID as its URL's parts, so that a key is built without allocating.
type spiffeRef struct{ trustDomain, path string }

// spiffeOf returns the SPIFFE ID among c's URIs (none for a nil c). Not inlined: its loop
// would be a copy at each of its callers, which mostly pass nil.
//
//go:noinline
func spiffeOf(c *x509.Certificate) spiffeRef {
	if c == nil {
		return spiffeRef{}
	}
	for _, u := range c.URIs {
		if u.Scheme == "spiffe" {
			return spiffeRef{u.Host, u.Path}
		}
	}
	return spiffeRef{}
}

func (s spiffeRef) String() string {
	if s.trustDomain == "" {
		return ""
	}
	return "spiffe://" + s.trustDomain + s.path
}

// httpSeries is one label combination's metrics. Its istio_requests_total is the count of its
// duration histogram (requests), which every recorded request observes: no counter of its own.
type httpSeries struct {
	key       httpKey
	flagText  func(uint64) string
	duration  histogram // milliseconds
	reqBytes  histogram
	respBytes histogram
	reqMsgs   atomic.Uint64 // gRPC messages, request direction
	respMsgs  atomic.Uint64 // gRPC messages, response direction
}

// requests returns the number of requests recorded in s (istio_requests_total): its duration
// histogram's count.
func (s *httpSeries) requests() uint64 { return s.duration.count() }

// RecordHTTP records one finished request. It does not allocate once its label combination
// has been seen.
//
// Its common path is kept short (instruction-cache lines per request): the key is filled in
// place, field by field (a composite literal is built in a temporary and copied), the
// destination reporter's labels and a certificate's SPIFFE ID are functions of their own, and
// the histograms share one copy of observe.
func (r *Recorder) RecordHTTP(q *HTTPRequest) {
	var k httpKey
	k.reporter, k.grpc, k.code, k.flags, k.grpcStatus = q.Reporter, q.GRPC, int32(q.Code), q.Flags, q.GRPCStatus
	if q.Reporter == Destination {
		r.destinationKey(&k, q)
	} else {
		k.cluster = q.Cluster
		if !outboundCluster(q.Cluster) {
			k.authority = q.Authority
		}
		if q.UpstreamPeer != nil {
			k.peer = spiffeOf(q.UpstreamPeer)
		}
		k.peerWL = r.peers.Load().byUpstream(q.Upstream)
	}
	s, slot := r.hot.get(r.http, &k, q.FlagText)
	if s == nil {
		r.dropped.Inc()
		return
	}
	if q.Overrides != nil {
		if s = r.overridden(s, slot, q); s == nil {
			r.dropped.Inc()
			return
		}
	}
	ms := q.Duration.Milliseconds()
	if ms < 0 {
		ms = 0
	}
	s.duration.observe(uint64(ms))
	s.reqBytes.observe(nonNegative(q.RequestBytes))
	s.respBytes.observe(nonNegative(q.ResponseBytes))
	if q.GRPC {
		s.reqMsgs.Add(q.RequestMessages)
		s.respMsgs.Add(q.ResponseMessages)
	}
}

// destinationKey fills the destination reporter's part of k from q: the service (or the
// authority), the identities of the connection and the client's workload. Not inlined: it
// keeps RecordHTTP's other path (the source reporter's) short.
//
//go:noinline
func (r *Recorder) destinationKey(k *httpKey, q *HTTPRequest) {
	if svc := PickService(q.Services, q.Authority); svc != nil {
		k.service = *svc
	} else {
		k.authority = stripPort(q.Authority)
	}
	k.peer, k.local = spiffeOf(q.Peer), spiffeOf(q.Local)
	k.mtls = q.Peer != nil
	k.peerWL = r.peers.Load().downstream(k.peer, q.Source)
}

// outboundCluster reports whether name is an Istio outbound cluster's ("outbound|..."), as
// strings.HasPrefix(name, "outbound|") does, but as one eight-byte compare and a byte's: a
// constant of nine bytes is compared by a call to runtime.memequal.
func outboundCluster(name string) bool {
	return len(name) >= 9 && name[:8] == "outbound" && name[8] == '|'
}

func nonNegative(n int64) uint64 {
	if n < 0 {
		return 0
	}
	return uint64(n)
}

// sides returns the source and destination workloads and principals of a key. The peer's
// workload is peerWL's when the table knows it. peer is the certificate's SPIFFE ID the peer
// proved: the client's at the destination reporter, the upstream host's at the source reporter
// (destination_principal, as Istio takes it from the upstream connection; unknown on plaintext,
// since the table's identity of a host is not what a handshake proved).
func (r *Recorder) sides(rep Reporter, peer, local spiffeRef, peerWL *Peer) (src, dst Workload, srcP, dstP string) {
	localP := local.String()
	if localP == "" && r.opts.LocalPrincipal != nil {
		localP = r.opts.LocalPrincipal()
	}
	localP = first(localP)
	if rep == Destination {
		src = unknownWorkload
		if peerWL != nil {
			src = peerWL.Workload
		}
		if p := peer.String(); p != "" {
			srcP = p
			src.Namespace = spiffePathNamespace(peer.path)
		} else {
			srcP = Unknown
		}
		return src, r.opts.Local, srcP, localP
	}
	dst = unknownWorkload
	if peerWL != nil {
		dst = peerWL.Workload
	}
	return r.opts.Local, dst, localP, first(peer.String())
}

func (r *Recorder) httpLabels(k httpKey, flagText func(uint64) string) string {
	src, dst, srcP, dstP := r.sides(k.reporter, k.peer, k.local, k.peerWL)
	var svc Service
	if k.reporter == Destination {
		svc = k.service
		if svc.Host == "" {
			svc = ServiceFromAuthority(k.authority)
		}
	} else {
		svc = ServiceFromCluster(k.cluster, k.authority)
	}
	proto := "http"
	if k.grpc {
		proto = "grpc"
	}
	flags := "-"
	if k.flags != 0 && flagText != nil {
		flags = flagText(k.flags)
	}
	var b labelWriter
	b.workloads(k.reporter, src, dst, srcP, dstP, svc)
	b.pair("request_protocol", proto)
	b.pair("response_code", strconv.Itoa(int(k.code)))
	b.pair("grpc_response_status", k.grpcStatus)
	b.pair("response_flags", flags)
	b.pair("connection_security_policy", securityPolicy(k.reporter, k.mtls))
	return b.String()
}

// securityPolicy is Istio's connection_security_policy: known at the destination only.
func securityPolicy(rep Reporter, mtls bool) string {
	switch {
	case rep == Source:
		return Unknown
	case mtls:
		return "mutual_tls"
	}
	return "none"
}

// labelWriter renders label pairs in Istio's order.
type labelWriter struct{ strings.Builder }

func (b *labelWriter) pair(name, value string) {
	if b.Len() > 0 {
		b.WriteByte(',')
	}
	b.WriteString(name)
	b.WriteString(`="`)
	// Values can come from requests (a Host header names destination_service): escaped, and
	// invalid UTF-8 replaced, so that one request cannot make Prometheus refuse the page.
	stats.WriteLabelValue(&b.Builder, value)
	b.WriteByte('"')
}

func (b *labelWriter) workloads(rep Reporter, src, dst Workload, srcP, dstP string, svc Service) {
	b.pair("reporter", rep.String())
	b.pair("source_workload", src.Name)
	b.pair("source_canonical_service", src.CanonicalService)
	b.pair("source_canonical_revision", src.CanonicalRevision)
	b.pair("source_workload_namespace", src.Namespace)
	b.pair("source_principal", srcP)
	b.pair("source_app", src.App)
	b.pair("source_version", src.Version)
	b.pair("source_cluster", src.Cluster)
	b.pair("destination_workload", dst.Name)
	b.pair("destination_workload_namespace", dst.Namespace)
	b.pair("destination_principal", dstP)
	b.pair("destination_app", dst.App)
	b.pair("destination_version", dst.Version)
	b.pair("destination_service", svc.Host)
	b.pair("destination_canonical_service", dst.CanonicalService)
	b.pair("destination_canonical_revision", dst.CanonicalRevision)
	b.pair("destination_service_name", svc.Name)
	b.pair("destination_service_namespace", svc.Namespace)
	b.pair("destination_cluster", dst.Cluster)
}

// WritePrometheus writes the metrics in Prometheus text format (stats.Collector).
func (r *Recorder) WritePrometheus(w io.Writer) error {
	var b strings.Builder
	r.writeHTTP(&b)
	r.writeTCP(&b)
	_, err := io.WriteString(w, b.String())
	return err
}
