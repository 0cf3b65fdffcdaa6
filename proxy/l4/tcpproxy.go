// Package l4 implements Envoy's envoy.filters.network.tcp_proxy: it connects each downstream
// connection to an upstream host of a cluster (or of one of weighted clusters) and copies bytes
// both ways, propagating half-closes, until both sides are done, an error occurs, or the idle
// timeout expires.
package l4

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/strait-mesh/strait/proxy/accesslog"
	"github.com/strait-mesh/strait/proxy/balance"
	"github.com/strait-mesh/strait/proxy/stats"
	"github.com/strait-mesh/strait/proxy/telemetry"
	"github.com/strait-mesh/strait/proxy/upstream"
	"github.com/strait-mesh/strait/proxy/xdsfield"
	tcpv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/tcp_proxy/v3"
	typev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/v3"
)

// Upstream is the part of a cluster the TCP proxy uses; *upstream.Cluster satisfies it. Dial
// connects to one host chosen with lb; an ORIGINAL_DST cluster reads the destination from ctx.
type Upstream interface {
	Dial(ctx context.Context, lb balance.Context) (net.Conn, error)
}

// Env is what the TCP proxy needs from the proxy core. Cluster is called once per connection
// (clusters may appear after the listener) and returns nil for an unknown cluster. Stats may
// return nil for a private store. WithOriginalDst attaches the connection's original destination
// to the dial context (upstream.WithOriginalDst); nil leaves ctx as is.
type Env interface {
	Cluster(name string) Upstream
	Stats() *stats.Store
	WithOriginalDst(ctx context.Context, dst netip.AddrPort) context.Context
}

// ConnInfo describes an accepted downstream connection.
type ConnInfo struct {
	// Source is the downstream peer address.
	Source netip.AddrPort
	// OriginalDst is the address the client connected to (SO_ORIGINAL_DST or the local address).
	OriginalDst netip.AddrPort
	// ServerName is the TLS SNI if one was seen.
	ServerName string
	// PeerCertificates and LocalCertificate are the certificates of a TLS-terminated
	// connection (for access logs).
	PeerCertificates []*x509.Certificate
	LocalCertificate *x509.Certificate
}

// AccessLogEnv, when implemented by an Env, gives the files tcp_proxy access logs write to;
// otherwise they use accesslog.Shared.
type AccessLogEnv interface {
	AccessLogFiles() *accesslog.Files
}

// Defaults, as in Envoy.
const (
	DefaultIdleTimeout = time.Hour
	// copyBufferSize is the size of each direction's pooled buffer.
	copyBufferSize = 32 * 1024
)

type weighted struct {
	name   string
	weight uint64
}

// TCPProxy is a compiled tcp_proxy filter. It is immutable and safe for concurrent use.
type TCPProxy struct {
	env         Env
	statPrefix  string
	clusters    []weighted // one entry for a plain cluster
	totalWeight uint64
	hashSource  bool
	idle        time.Duration // 0: disabled
	maxDuration time.Duration // 0: unlimited
	attempts    int
	st          *proxyStats
	accessLog   *accesslog.Logger      // access_log; nil: none
	istioStats  *telemetry.StatsConfig // the istio.stats network filter before it; nil: none
	// On-demand clusters (ondemand.go): demander nil is off.
	demander      ClusterDemander
	demandTimeout time.Duration
}

type proxyStats struct {
	cxTotal, noRoute, rxBytes, txBytes, idleTimeout, maxDuration, connectFail, attemptsExceeded *stats.Counter
	active                                                                                      *stats.Gauge
	demandFound, demandNotFound, demandFailed                                                   *stats.Counter
}

func newStats(s *stats.Store, prefix string) *proxyStats {
	if s == nil {
		s = stats.NewStore()
	}
	tag := stats.Tag{Name: "envoy_tcp_prefix", Value: prefix}
	c := func(n string) *stats.Counter {
		return s.Counter("tcp."+prefix+"."+n, "envoy_tcp_"+n, tag)
	}
	return &proxyStats{
		cxTotal:          c("downstream_cx_total"),
		noRoute:          c("downstream_cx_no_route"),
		rxBytes:          c("downstream_cx_rx_bytes_total"),
		txBytes:          c("downstream_cx_tx_bytes_total"),
		idleTimeout:      c("idle_timeout"),
		maxDuration:      c("max_downstream_connection_duration"),
		connectFail:      c("upstream_connect_fail"),
		attemptsExceeded: c("upstream_connect_attempts_exceeded"),
		demandFound:      s.Counter("tcp."+prefix+".on_demand.found", "strait_tcp_on_demand_found", tag),
		demandNotFound:   s.Counter("tcp."+prefix+".on_demand.not_found", "strait_tcp_on_demand_not_found", tag),
		demandFailed:     s.Counter("tcp."+prefix+".on_demand.failed", "strait_tcp_on_demand_failed", tag),
		active:           s.Gauge("tcp."+prefix+".downstream_cx_active", "envoy_tcp_downstream_cx_active", tag),
	}
}

// New compiles a TcpProxy. Unsupported fields are errors naming the field.
func New(tp *tcpv3.TcpProxy, env Env) (*TCPProxy, error) {
	if tp == nil {
		return nil, errors.New("tcp_proxy config is nil")
	}
	if env == nil {
		return nil, errors.New("tcp_proxy needs an environment")
	}
	if err := xdsfield.Check(tp, "tcp_proxy", "stat_prefix", "cluster", "weighted_clusters", "idle_timeout",
		"max_connect_attempts", "hash_policy", "max_downstream_connection_duration", "access_log"); err != nil {
		return nil, err
	}
	if tp.GetStatPrefix() == "" {
		return nil, errors.New("tcp_proxy.stat_prefix is required")
	}
	p := &TCPProxy{env: env, statPrefix: tp.GetStatPrefix(), idle: DefaultIdleTimeout, attempts: 1}
	switch cs := tp.GetClusterSpecifier().(type) {
	case *tcpv3.TcpProxy_Cluster:
		if cs.Cluster == "" {
			return nil, errors.New("tcp_proxy.cluster is empty")
		}
		p.clusters = []weighted{{name: cs.Cluster, weight: 1}}
	case *tcpv3.TcpProxy_WeightedClusters:
		if err := xdsfield.Check(cs.WeightedClusters, "tcp_proxy.weighted_clusters", "clusters"); err != nil {
			return nil, err
		}
		for i, wc := range cs.WeightedClusters.GetClusters() {
			path := fmt.Sprintf("tcp_proxy.weighted_clusters.clusters[%d]", i)
			if err := xdsfield.Check(wc, path, "name", "weight"); err != nil {
				return nil, err
			}
			if wc.GetName() == "" {
				return nil, fmt.Errorf("%s.name is empty", path)
			}
			if wc.GetWeight() == 0 {
				continue // a zero-weight cluster never receives traffic
			}
			p.clusters = append(p.clusters, weighted{name: wc.GetName(), weight: uint64(wc.GetWeight())})
		}
		if len(p.clusters) == 0 {
			return nil, errors.New("tcp_proxy.weighted_clusters has no cluster with a positive weight")
		}
	default:
		return nil, errors.New("tcp_proxy: cluster or weighted_clusters is required")
	}
	for _, w := range p.clusters {
		p.totalWeight += w.weight
	}
	if d := tp.GetIdleTimeout(); d != nil {
		if err := d.CheckValid(); err != nil {
			return nil, fmt.Errorf("tcp_proxy.idle_timeout: %w", err)
		}
		p.idle = d.AsDuration()
	}
	if d := tp.GetMaxDownstreamConnectionDuration(); d != nil {
		if err := d.CheckValid(); err != nil {
			return nil, fmt.Errorf("tcp_proxy.max_downstream_connection_duration: %w", err)
		}
		p.maxDuration = d.AsDuration()
	}
	if a := tp.GetMaxConnectAttempts(); a != nil {
		if a.GetValue() < 1 {
			return nil, errors.New("tcp_proxy.max_connect_attempts must be at least 1")
		}
		p.attempts = int(min(a.GetValue(), 100))
	}
	for i, hp := range tp.GetHashPolicy() {
		if _, ok := hp.GetPolicySpecifier().(*typev3.HashPolicy_SourceIp_); !ok {
			return nil, fmt.Errorf("tcp_proxy.hash_policy[%d]: only source_ip is supported", i)
		}
		p.hashSource = true
	}
	p.st = newStats(env.Stats(), tp.GetStatPrefix())
	p.initOnDemand()
	if len(tp.GetAccessLog()) > 0 {
		var files *accesslog.Files
		if ae, ok := env.(AccessLogEnv); ok {
			files = ae.AccessLogFiles()
		}
		if files == nil {
			files = accesslog.Shared(env.Stats())
		}
		l, err := accesslog.Compile("tcp_proxy.access_log", tp.GetAccessLog(), files)
		if err != nil {
			return nil, err
		}
		p.accessLog = l
	}
	return p, nil
}

// SetIstioStats gives the configuration of the istio.stats network filter that precedes the
// tcp_proxy in its filter chain; the Observer finds it in each connection's Record. It must be
// called before the proxy serves connections.
func (p *TCPProxy) SetIstioStats(c *telemetry.StatsConfig) { p.istioStats = c }

// pick chooses the cluster for one connection.
func (p *TCPProxy) pick() string {
	if len(p.clusters) == 1 {
		return p.clusters[0].name
	}
	r := rand.Uint64N(p.totalWeight)
	for _, w := range p.clusters {
		if r < w.weight {
			return w.name
		}
		r -= w.weight
	}
	return p.clusters[len(p.clusters)-1].name
}

// hashAddr is FNV-1a over the 16-byte form of the source IP: stable per client address, no
// allocation.
func hashAddr(a netip.Addr) uint64 {
	b := a.As16()
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

// ServeConn serves one downstream connection until it is done and closes it. It is the listener
// chain's terminal for a tcp_proxy filter chain.
func (p *TCPProxy) ServeConn(c net.Conn, info ConnInfo) {
	p.Serve(context.Background(), c, info)
}

// Record describes one proxied connection, for access logs and TCP telemetry
// (istio_tcp_connections_opened_total, istio_tcp_sent_bytes_total, ...).
type Record struct {
	// StatPrefix is the tcp_proxy's stat_prefix; Cluster the cluster chosen for the connection.
	StatPrefix, Cluster string
	// Source, OriginalDst and ServerName come from the listener.
	Source, OriginalDst netip.AddrPort
	ServerName          string
	// Upstream is the upstream peer address; nil when no upstream connection was made.
	// UpstreamLocal is the local address of that connection. UpstreamPeerCertificate is the
	// verified certificate (leaf) the upstream host presented when the connection uses TLS.
	Upstream, UpstreamLocal net.Addr
	UpstreamPeerCertificate *x509.Certificate
	// Attempts counts the upstream connect attempts.
	Attempts int
	// Start is when the downstream connection reached the proxy; Duration is set on close.
	Start    time.Time
	Duration time.Duration
	// BytesReceived and BytesSent count downstream bytes (from and to the client), set on close.
	BytesReceived, BytesSent uint64
	// Live counts the same bytes while the connection is open (for an Observer; it may read
	// them until TCPClosed returns).
	Live *Counters
	// Flag is Envoy's response flag: "" for a normal connection, "NR" for an unknown cluster, and
	// UF, UH, UO (from the cluster's *upstream.Error) when connecting failed.
	Flag string
	// PeerCertificate is the verified client certificate (leaf) of a TLS-terminated connection,
	// LocalCertificate the proxy's own on it; nil otherwise. PeerCertificates is the verified
	// client chain, leaf first.
	PeerCertificate, LocalCertificate *x509.Certificate
	PeerCertificates                  []*x509.Certificate
	// IstioStats is the configuration of the istio.stats network filter before the tcp_proxy
	// (nil: none), for the Observer's TCP metrics.
	IstioStats *telemetry.StatsConfig
	// Report is the Observer's handle of the connection in the TCP metrics, which its
	// TCPOpened sets for its TCPClosed; nil otherwise.
	Report *telemetry.TCPConnection
}

// Counters are a connection's bytes from and to the downstream so far, updated atomically
// while it is open.
type Counters struct {
	Received, Sent atomic.Uint64
}

// Observer, when implemented by an Env, is told when a connection's upstream is established
// (TCPOpened; not called when connecting fails) and when the connection ends (TCPClosed, always).
// The Record must not be retained after TCPClosed returns.
type Observer interface {
	TCPOpened(r *Record)
	TCPClosed(r *Record)
}

// Serve connects c to an upstream and proxies until both directions finish, an error occurs,
// the idle timeout or maximum duration expires, or ctx is canceled. It always closes c.
func (p *TCPProxy) Serve(ctx context.Context, c net.Conn, info ConnInfo) {
	defer c.Close()
	p.st.cxTotal.Inc()
	p.st.active.Inc()
	defer p.st.active.Dec()
	name := p.pick()
	var rec *Record
	obs, observed := p.env.(Observer)
	if observed || p.accessLog != nil {
		rec = &Record{StatPrefix: p.statPrefix, Cluster: name, Source: info.Source, OriginalDst: info.OriginalDst,
			ServerName: info.ServerName, Start: time.Now(), LocalCertificate: info.LocalCertificate,
			PeerCertificates: info.PeerCertificates, IstioStats: p.istioStats}
		if observed {
			rec.Live = new(Counters)
		}
		if len(info.PeerCertificates) > 0 {
			rec.PeerCertificate = info.PeerCertificates[0]
		}
		defer func() {
			rec.Duration = time.Since(rec.Start)
			if p.accessLog != nil {
				p.logAccess(rec)
			}
			if observed {
				obs.TCPClosed(rec)
			}
		}()
	}
	up := p.cluster(ctx, name) // ondemand.go: demanded first when unknown and on-demand is on
	if up == nil {
		p.st.noRoute.Inc()
		if rec != nil {
			rec.Flag = "NR"
		}
		return
	}
	var lb balance.Context
	if p.hashSource && info.Source.IsValid() {
		lb = balance.Context{Hash: hashAddr(info.Source.Addr()), HasHash: true}
	}
	dctx := ctx
	if info.OriginalDst.IsValid() {
		dctx = p.env.WithOriginalDst(ctx, info.OriginalDst)
	}
	var uc net.Conn
	var err error
	for i := 0; i < p.attempts; i++ {
		if rec != nil {
			rec.Attempts = i + 1
		}
		if uc, err = up.Dial(dctx, lb); err == nil {
			break
		}
		p.st.connectFail.Inc()
		if ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		if p.attempts > 1 {
			p.st.attemptsExceeded.Inc()
		}
		if rec != nil {
			rec.Flag = upstream.FlagConnectFailure
			var ue *upstream.Error
			if errors.As(err, &ue) && ue.Flag != "" {
				rec.Flag = ue.Flag
			}
		}
		return
	}
	defer uc.Close()
	if rec != nil {
		rec.Upstream, rec.UpstreamLocal = uc.RemoteAddr(), uc.LocalAddr()
		if pc, ok := uc.(interface{ PeerCertificate() *x509.Certificate }); ok {
			rec.UpstreamPeerCertificate = pc.PeerCertificate()
		}
		if observed {
			obs.TCPOpened(rec)
		}
	}
	var live *Counters
	if rec != nil {
		live = rec.Live
	}
	rx, tx := p.splice(ctx, c, uc, live)
	if rec != nil {
		rec.BytesReceived, rec.BytesSent = rx, tx
	}
}
