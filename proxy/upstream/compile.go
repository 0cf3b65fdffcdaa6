package upstream

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/strait-mesh/strait/internal/vocab"
	"github.com/strait-mesh/strait/proxy/balance"
	"github.com/strait-mesh/strait/proxy/xdsfield"
	clusterv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/cluster/v3"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	rawv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/transport_sockets/raw_buffer/v3"
	tlsv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/upstreams/http/v3"
)

// Envoy defaults.
const (
	defaultConnectTimeout  = 5 * time.Second
	defaultIdleTimeout     = time.Hour
	defaultDNSRefresh      = 5 * time.Second
	defaultCleanupInterval = 5 * time.Second
	// maxIdlePerEndpoint bounds the idle keep-alive connections kept per endpoint and protocol.
	maxIdlePerEndpoint = 64
	// maxResponseHeaderBytes matches Envoy's default 60 KiB header limit.
	maxResponseHeaderBytes = 60 << 10
	httpProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
	transportSocketMatchMD = vocab.TransportSocketMatchMD
)

// httpOptions are the common HTTP protocol options that govern pooled connections.
type httpOptions struct {
	idleTimeout        time.Duration
	maxConnDuration    time.Duration
	maxRequestsPerConn uint32
	// HTTP/2 flow-control windows (0 = Go's defaults).
	streamWindow, connWindow int
	// maxStreams caps concurrent streams per HTTP/2 connection (0 = the server's limit).
	maxStreams int
	// HTTP/2 PING keepalive (0 = off).
	pingInterval, pingTimeout time.Duration
}

// transport is a compiled transport socket: nil means plaintext (raw_buffer).
type transport struct {
	tls           *tls.Config // nil: plaintext
	proxyProtocol int         // PROXY protocol version to send first (0: none)
}

// tlsConfig returns the TLS configuration, or nil for plaintext. Safe on a nil transport.
func (t *transport) tlsConfig() *tls.Config {
	if t == nil {
		return nil
	}
	return t.tls
}

// proxyVersion returns the PROXY protocol version to send, 0 for none. Safe on nil.
func (t *transport) proxyVersion() int {
	if t == nil {
		return 0
	}
	return t.proxyProtocol
}

// socketMatch is one transport_socket_matches entry.
type socketMatch struct {
	name  string
	match *structpb.Struct
	ts    *transport
}

// Compile validates c and builds a Cluster. Fields the proxy does not implement are errors naming
// the field, so the CDS update is NACKed. STATIC and DNS clusters take their endpoints from
// load_assignment; EDS clusters start empty until SetEndpoints. DNS clusters resolve in the
// background: Compile does not block on DNS, and requests wait for the first resolution (Ready)
// within their own deadline. Background work starts here and stops in Close.
func Compile(c *clusterv3.Cluster, deps Deps) (*Cluster, error) {
	if c.GetName() == "" {
		return nil, fmt.Errorf("compiling cluster: name is empty")
	}
	cl, err := compile(c, deps)
	if err != nil {
		return nil, fmt.Errorf("compiling cluster %q: %w", c.GetName(), err)
	}
	cl.services = istioServices(c.GetMetadata())
	return cl, nil
}

// dnsLookupFamilies are the dns_lookup_family values by the family they select.
var dnsLookupFamilies = map[clusterv3.Cluster_DnsLookupFamily]dnsFamily{
	clusterv3.Cluster_AUTO:         familyAuto,
	clusterv3.Cluster_V4_ONLY:      familyV4,
	clusterv3.Cluster_V6_ONLY:      familyV6,
	clusterv3.Cluster_V4_PREFERRED: familyV4Preferred,
	clusterv3.Cluster_ALL:          familyAll,
}

func compile(c *clusterv3.Cluster, deps Deps) (*Cluster, error) {
	if err := xdsfield.Check(c, "cluster", "name", "alt_stat_name", "type", "eds_cluster_config",
		"connect_timeout", "per_connection_buffer_limit_bytes", "lb_policy", "load_assignment",
		"max_requests_per_connection", "circuit_breakers", "common_http_protocol_options",
		"http_protocol_options", "http2_protocol_options", "typed_extension_protocol_options",
		"dns_refresh_rate", "respect_dns_ttl", "dns_lookup_family", "outlier_detection",
		"cleanup_interval", "ring_hash_lb_config", "maglev_lb_config", "original_dst_lb_config",
		"least_request_lb_config", "common_lb_config", "transport_socket", "transport_socket_matches",
		"metadata", "upstream_connection_options", "upstream_bind_config", "round_robin_lb_config"); err != nil {
		return nil, err
	}
	statsID := c.GetName()
	if c.GetAltStatName() != "" {
		statsID = c.GetAltStatName()
	}
	cl := &Cluster{
		name:           c.GetName(),
		statsID:        statsID,
		deps:           deps,
		log:            deps.Logger,
		st:             newClusterStats(deps.Stats, statsID),
		connectTimeout: defaultConnectTimeout,
		http:           httpOptions{idleTimeout: defaultIdleTimeout},
		byKey:          map[string]*endpoint{},
		stop:           make(chan struct{}),
		dnsRefresh:     defaultDNSRefresh,
		cleanupEvery:   defaultCleanupInterval,
	}
	cl.freed.Store(newFreedSignal())
	if cl.log == nil {
		cl.log = slog.Default()
	}
	cl.log = cl.log.With("cluster", cl.name)
	if d := c.GetConnectTimeout(); d != nil {
		cl.connectTimeout = d.AsDuration()
		if cl.connectTimeout <= 0 {
			return nil, fmt.Errorf("connect_timeout must be positive")
		}
	}
	if err := cl.compileDiscovery(c); err != nil {
		return nil, err
	}
	if err := cl.compileLB(c); err != nil {
		return nil, err
	}
	var err error
	if cl.breaker, err = compileBreaker(c.GetCircuitBreakers(), cl.st); err != nil {
		return nil, err
	}
	if cl.outlier, err = compileOutlier(c.GetOutlierDetection()); err != nil {
		return nil, err
	}
	if err := cl.compileProtocol(c); err != nil {
		return nil, err
	}
	if err := cl.compileTransport(c); err != nil {
		return nil, err
	}
	if err := cl.compileConnOptions(c.GetUpstreamConnectionOptions()); err != nil {
		return nil, err
	}
	if err := cl.compileBind(c.GetUpstreamBindConfig()); err != nil {
		return nil, err
	}
	cl.set.Store(&hostSet{lb: emptySet(cl.lbCfg)})
	if err := cl.start(c); err != nil {
		cl.Close()
		return nil, err
	}
	return cl, nil
}

func (cl *Cluster) compileDiscovery(c *clusterv3.Cluster) error {
	switch c.GetType() {
	case clusterv3.Cluster_STATIC:
		cl.kind = discoveryStatic
	case clusterv3.Cluster_EDS:
		cl.kind = discoveryEDS
		if ec := c.GetEdsClusterConfig(); ec != nil {
			if err := xdsfield.Check(ec, "eds_cluster_config", "eds_config", "service_name"); err != nil {
				return err
			}
		}
	case clusterv3.Cluster_STRICT_DNS:
		cl.kind = discoveryStrictDNS
	case clusterv3.Cluster_LOGICAL_DNS:
		cl.kind = discoveryLogicalDNS
	case clusterv3.Cluster_ORIGINAL_DST:
		cl.kind = discoveryOriginalDst
		if c.GetLoadAssignment() != nil && len(c.GetLoadAssignment().GetEndpoints()) > 0 {
			return fmt.Errorf("load_assignment is not allowed for ORIGINAL_DST clusters")
		}
	default:
		return fmt.Errorf("type %v is not supported", c.GetType())
	}
	if d := c.GetDnsRefreshRate(); d != nil {
		if cl.dnsRefresh = d.AsDuration(); cl.dnsRefresh < time.Millisecond {
			return fmt.Errorf("dns_refresh_rate must be at least 1ms")
		}
	}
	// The Go resolver does not expose record TTLs; with respect_dns_ttl the refresh still runs at
	// dns_refresh_rate (Envoy's lower bound for TTL-driven refresh).
	cl.respectTTL = c.GetRespectDnsTtl()
	family, ok := dnsLookupFamilies[c.GetDnsLookupFamily()]
	if !ok {
		return fmt.Errorf("dns_lookup_family %v is not supported", c.GetDnsLookupFamily())
	}
	cl.dnsFamily = family
	if d := c.GetCleanupInterval(); d != nil {
		if cl.cleanupEvery = d.AsDuration(); cl.cleanupEvery <= 0 {
			return fmt.Errorf("cleanup_interval must be positive")
		}
	}
	if o := c.GetOriginalDstLbConfig(); o != nil {
		if cl.kind != discoveryOriginalDst {
			return fmt.Errorf("original_dst_lb_config requires type ORIGINAL_DST")
		}
		if err := xdsfield.Check(o, "original_dst_lb_config", "use_http_header"); err != nil {
			return err
		}
		cl.origHeader = o.GetUseHttpHeader()
	}
	return nil
}

func (cl *Cluster) compileLB(c *clusterv3.Cluster) error {
	var p balance.Policy
	switch c.GetLbPolicy() {
	case clusterv3.Cluster_ROUND_ROBIN:
		p = balance.RoundRobin
	case clusterv3.Cluster_LEAST_REQUEST:
		p = balance.LeastRequest
	case clusterv3.Cluster_RANDOM:
		p = balance.Random
	case clusterv3.Cluster_RING_HASH:
		p = balance.RingHash
	case clusterv3.Cluster_MAGLEV:
		p = balance.Maglev
	case clusterv3.Cluster_CLUSTER_PROVIDED:
		if cl.kind != discoveryOriginalDst {
			return fmt.Errorf("lb_policy CLUSTER_PROVIDED requires type ORIGINAL_DST")
		}
	default:
		return fmt.Errorf("lb_policy %v is not supported", c.GetLbPolicy())
	}
	if cl.kind == discoveryOriginalDst && c.GetLbPolicy() != clusterv3.Cluster_CLUSTER_PROVIDED {
		return fmt.Errorf("ORIGINAL_DST clusters need lb_policy CLUSTER_PROVIDED, not %v", c.GetLbPolicy())
	}
	cfg := balance.NewConfig(p)
	if r := c.GetRingHashLbConfig(); r != nil {
		if p != balance.RingHash {
			return fmt.Errorf("ring_hash_lb_config requires lb_policy RING_HASH")
		}
		if err := xdsfield.Check(r, "ring_hash_lb_config", "minimum_ring_size", "maximum_ring_size", "hash_function"); err != nil {
			return err
		}
		if r.GetHashFunction() != clusterv3.Cluster_RingHashLbConfig_XX_HASH {
			return fmt.Errorf("ring_hash_lb_config.hash_function %v is not supported", r.GetHashFunction())
		}
		if v := r.GetMinimumRingSize(); v != nil {
			cfg.MinRingSize = v.GetValue()
		}
		if v := r.GetMaximumRingSize(); v != nil {
			cfg.MaxRingSize = v.GetValue()
		}
	}
	if m := c.GetMaglevLbConfig(); m != nil {
		if p != balance.Maglev {
			return fmt.Errorf("maglev_lb_config requires lb_policy MAGLEV")
		}
		if err := xdsfield.Check(m, "maglev_lb_config", "table_size"); err != nil {
			return err
		}
		if v := m.GetTableSize(); v != nil {
			cfg.MaglevTableSize = v.GetValue()
		}
	}
	if l := c.GetLeastRequestLbConfig(); l != nil {
		if p != balance.LeastRequest {
			return fmt.Errorf("least_request_lb_config requires lb_policy LEAST_REQUEST")
		}
		if err := xdsfield.Check(l, "least_request_lb_config", "choice_count", "active_request_bias", "slow_start_config"); err != nil {
			return err
		}
		var err error
		if cl.slowStart, err = compileSlowStart("least_request_lb_config.slow_start_config", l.GetSlowStartConfig()); err != nil {
			return err
		}
		if v := l.GetChoiceCount(); v != nil {
			if v.GetValue() < 2 {
				return fmt.Errorf("least_request_lb_config.choice_count must be at least 2")
			}
			cfg.ChoiceCount = v.GetValue()
		}
		if b := l.GetActiveRequestBias(); b != nil {
			if err := xdsfield.Check(b, "least_request_lb_config.active_request_bias", "default_value", "runtime_key"); err != nil {
				return err
			}
			cfg.ActiveRequestBias = b.GetDefaultValue()
		}
	}
	if r := c.GetRoundRobinLbConfig(); r != nil {
		if p != balance.RoundRobin {
			return fmt.Errorf("round_robin_lb_config requires lb_policy ROUND_ROBIN")
		}
		if err := xdsfield.Check(r, "round_robin_lb_config", "slow_start_config"); err != nil {
			return err
		}
		var err error
		if cl.slowStart, err = compileSlowStart("round_robin_lb_config.slow_start_config", r.GetSlowStartConfig()); err != nil {
			return err
		}
	}
	if cc := c.GetCommonLbConfig(); cc != nil {
		if err := xdsfield.Check(cc, "common_lb_config", "healthy_panic_threshold",
			"locality_weighted_lb_config", "update_merge_window", "consistent_hashing_lb_config"); err != nil {
			return err
		}
		if t := cc.GetHealthyPanicThreshold(); t != nil {
			cfg.PanicThreshold = t.GetValue()
		}
		cfg.LocalityWeighted = cc.GetLocalityWeightedLbConfig() != nil
		if ch := cc.GetConsistentHashingLbConfig(); ch != nil {
			if err := xdsfield.Check(ch, "common_lb_config.consistent_hashing_lb_config", "use_hostname_for_hashing"); err != nil {
				return err
			}
			cl.hashByHostname = ch.GetUseHostnameForHashing()
		}
	}
	if la := c.GetLoadAssignment(); la != nil && la.GetPolicy() != nil {
		if f := la.GetPolicy().GetOverprovisioningFactor(); f != nil {
			cfg.OverprovisioningFactor = f.GetValue()
		}
	}
	if _, err := balance.New(cfg, nil); err != nil {
		return err
	}
	cl.lbCfg = cfg
	return nil
}

func (cl *Cluster) compileProtocol(c *clusterv3.Cluster) error {
	if c.GetHttp2ProtocolOptions() != nil {
		cl.proto = protoHTTP2
		if err := cl.h2Options("http2_protocol_options", c.GetHttp2ProtocolOptions()); err != nil {
			return err
		}
	}
	if h := c.GetHttpProtocolOptions(); h != nil {
		if err := xdsfield.Check(h, "http_protocol_options"); err != nil {
			return err
		}
	}
	if o := c.GetCommonHttpProtocolOptions(); o != nil {
		if err := cl.commonOptions("common_http_protocol_options", o); err != nil {
			return err
		}
	}
	if v := c.GetMaxRequestsPerConnection(); v != nil {
		cl.http.maxRequestsPerConn = v.GetValue()
	}
	for key, a := range c.GetTypedExtensionProtocolOptions() {
		path := "typed_extension_protocol_options[" + key + "]"
		if key != httpProtocolOptionsKey && a.MessageName() != "envoy.extensions.upstreams.http.v3.HttpProtocolOptions" {
			return fmt.Errorf("%s is not supported", path)
		}
		var o httpv3.HttpProtocolOptions
		if err := a.UnmarshalTo(&o); err != nil {
			return fmt.Errorf("decoding %s: %w", path, err)
		}
		if err := cl.httpProtocolOptions(path, &o); err != nil {
			return err
		}
	}
	return nil
}

func (cl *Cluster) httpProtocolOptions(path string, o *httpv3.HttpProtocolOptions) error {
	if err := xdsfield.Check(o, path, "common_http_protocol_options", "explicit_http_config",
		"use_downstream_protocol_config", "auto_config"); err != nil {
		return err
	}
	if co := o.GetCommonHttpProtocolOptions(); co != nil {
		if err := cl.commonOptions(path+".common_http_protocol_options", co); err != nil {
			return err
		}
	}
	type h12 interface {
		proto.Message
		GetHttpProtocolOptions() *corev3.Http1ProtocolOptions
		GetHttp2ProtocolOptions() *corev3.Http2ProtocolOptions
	}
	var sub h12
	var subPath string
	var mode protocol
	switch {
	case o.GetExplicitHttpConfig() != nil:
		sub, subPath, mode = o.GetExplicitHttpConfig(), path+".explicit_http_config", protoHTTP1
		if o.GetExplicitHttpConfig().GetHttp2ProtocolOptions() != nil {
			mode = protoHTTP2
		}
	case o.GetUseDownstreamProtocolConfig() != nil:
		sub, subPath, mode = o.GetUseDownstreamProtocolConfig(), path+".use_downstream_protocol_config", protoDownstream
	case o.GetAutoConfig() != nil:
		sub, subPath, mode = o.GetAutoConfig(), path+".auto_config", protoAuto
	}
	if sub != nil {
		if err := xdsfield.Check(sub, subPath, "http_protocol_options", "http2_protocol_options"); err != nil {
			return err
		}
		cl.proto = mode
	}
	if sub != nil {
		if h1 := sub.GetHttpProtocolOptions(); h1 != nil {
			if err := xdsfield.Check(h1, subPath+".http_protocol_options"); err != nil {
				return err
			}
		}
		if h2 := sub.GetHttp2ProtocolOptions(); h2 != nil {
			if err := cl.h2Options(subPath+".http2_protocol_options", h2); err != nil {
				return err
			}
		}
	}
	return nil
}

func (cl *Cluster) h2Options(path string, h2 *corev3.Http2ProtocolOptions) error {
	// max_concurrent_streams caps the streams the pool puts on one upstream connection (the
	// server's SETTINGS may lower it further); the pool opens more connections as needed.
	if err := xdsfield.Check(h2, path, "initial_stream_window_size", "initial_connection_window_size",
		"max_concurrent_streams", "connection_keepalive"); err != nil {
		return err
	}
	if ka := h2.GetConnectionKeepalive(); ka != nil {
		// HTTP/2 PING keepalive: a PING after interval without frames, close after timeout.
		if err := xdsfield.Check(ka, path+".connection_keepalive", "interval", "timeout"); err != nil {
			return err
		}
		cl.http.pingInterval = ka.GetInterval().AsDuration()
		cl.http.pingTimeout = ka.GetTimeout().AsDuration()
		if ka.GetTimeout() == nil || cl.http.pingTimeout <= 0 {
			return fmt.Errorf("%s.connection_keepalive.timeout is required", path)
		}
	}
	setUint32(&cl.http.maxStreams, h2.GetMaxConcurrentStreams())
	setUint32(&cl.http.streamWindow, h2.GetInitialStreamWindowSize())
	setUint32(&cl.http.connWindow, h2.GetInitialConnectionWindowSize())
	return nil
}

// setUint32 sets *dst to v's value when v is set, leaving the default otherwise.
func setUint32[T ~int | ~int64 | ~uint32](dst *T, v *wrapperspb.UInt32Value) {
	if v != nil {
		*dst = T(v.GetValue())
	}
}

func (cl *Cluster) commonOptions(path string, o *corev3.HttpProtocolOptions) error {
	if err := xdsfield.Check(o, path, "idle_timeout", "max_connection_duration", "max_requests_per_connection"); err != nil {
		return err
	}
	if d := o.GetIdleTimeout(); d != nil {
		// Envoy: 0 disables the idle timeout.
		cl.http.idleTimeout = d.AsDuration()
	}
	if d := o.GetMaxConnectionDuration(); d != nil {
		cl.http.maxConnDuration = d.AsDuration()
	}
	if v := o.GetMaxRequestsPerConnection(); v != nil {
		cl.http.maxRequestsPerConn = v.GetValue()
	}
	return nil
}

func (cl *Cluster) compileTransport(c *clusterv3.Cluster) error {
	var err error
	if ts := c.GetTransportSocket(); ts != nil {
		if cl.defaultTLS, err = cl.compileSocket("transport_socket", ts); err != nil {
			return err
		}
	}
	for i, m := range c.GetTransportSocketMatches() {
		path := fmt.Sprintf("transport_socket_matches[%d]", i)
		if err := xdsfield.Check(m, path, "name", "match", "transport_socket"); err != nil {
			return err
		}
		sm := socketMatch{name: m.GetName(), match: m.GetMatch()}
		if m.GetTransportSocket() != nil {
			if sm.ts, err = cl.compileSocket(path+".transport_socket", m.GetTransportSocket()); err != nil {
				return err
			}
		}
		cl.sockets = append(cl.sockets, sm)
	}
	return nil
}

func (cl *Cluster) compileSocket(path string, ts *corev3.TransportSocket) (*transport, error) {
	if err := xdsfield.Check(ts, path, "name", "typed_config"); err != nil {
		return nil, err
	}
	a := ts.GetTypedConfig()
	if a == nil {
		if ts.GetName() == vocab.TransportSocketRawBuffer {
			return nil, nil
		}
		return nil, fmt.Errorf("%s %q: typed_config is required", path, ts.GetName())
	}
	switch a.MessageName() {
	case "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer":
		var rb rawv3.RawBuffer
		if err := anypb.UnmarshalTo(a, &rb, proto.UnmarshalOptions{}); err != nil {
			return nil, fmt.Errorf("decoding %s: %w", path, err)
		}
		return nil, nil
	case "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext":
		var u tlsv3.UpstreamTlsContext
		if err := anypb.UnmarshalTo(a, &u, proto.UnmarshalOptions{}); err != nil {
			return nil, fmt.Errorf("decoding %s: %w", path, err)
		}
		if cl.deps.ClientTLS == nil {
			return nil, fmt.Errorf("%s: TLS is not available (no client TLS provider)", path)
		}
		cfg, err := cl.deps.ClientTLS(&u)
		if err != nil {
			return nil, fmt.Errorf("building %s: %w", path, err)
		}
		cfg = cfg.Clone()
		if cfg.ServerName == "" && u.GetSni() != "" {
			cfg.ServerName = u.GetSni()
		}
		return &transport{tls: cfg}, nil
	case "envoy.extensions.transport_sockets.proxy_protocol.v3.ProxyProtocolUpstreamTransport":
		return cl.compileProxyProtocol(path, a)
	}
	return nil, fmt.Errorf("%s: transport socket %q (%s) is not supported", path, ts.GetName(), a.MessageName())
}

func (cl *Cluster) compileConnOptions(o *clusterv3.UpstreamConnectionOptions) error {
	cl.keepAlive = net.KeepAliveConfig{Enable: false}
	if o == nil {
		return nil
	}
	if err := xdsfield.Check(o, "upstream_connection_options", "tcp_keepalive"); err != nil {
		return err
	}
	ka := o.GetTcpKeepalive()
	if ka == nil {
		return nil
	}
	cl.keepAlive = net.KeepAliveConfig{Enable: true, Idle: -1, Interval: -1, Count: -1}
	if v := ka.GetKeepaliveTime(); v != nil {
		cl.keepAlive.Idle = time.Duration(v.GetValue()) * time.Second
	}
	if v := ka.GetKeepaliveInterval(); v != nil {
		cl.keepAlive.Interval = time.Duration(v.GetValue()) * time.Second
	}
	if v := ka.GetKeepaliveProbes(); v != nil {
		cl.keepAlive.Count = int(v.GetValue())
	}
	return nil
}

// compileBind reads upstream_bind_config: the local address upstream connections are made from
// (Istio binds InboundPassthroughCluster to 127.0.0.6 so that iptables does not capture it).
func (cl *Cluster) compileBind(b *corev3.BindConfig) error {
	if b == nil {
		return nil
	}
	if err := xdsfield.Check(b, "upstream_bind_config", "source_address"); err != nil {
		return err
	}
	sa := b.GetSourceAddress()
	if sa == nil {
		return fmt.Errorf("upstream_bind_config.source_address is required")
	}
	if err := xdsfield.Check(sa, "upstream_bind_config.source_address", "address", "port_value", "protocol"); err != nil {
		return err
	}
	ip, err := netip.ParseAddr(sa.GetAddress())
	if err != nil {
		return fmt.Errorf("upstream_bind_config.source_address: %q is not an IP address", sa.GetAddress())
	}
	if sa.GetPortValue() > 65535 {
		return fmt.Errorf("upstream_bind_config.source_address: port %d out of range", sa.GetPortValue())
	}
	cl.bindAddr = &net.TCPAddr{IP: ip.AsSlice(), Port: int(sa.GetPortValue())}
	return nil
}

// transportFor picks the transport socket of an endpoint from transport_socket_matches by its
// "envoy.transport_socket_match" metadata (first match wins), else the cluster's transport_socket.
func (cl *Cluster) transportFor(md *corev3.Metadata) *transport {
	if len(cl.sockets) == 0 {
		return cl.defaultTLS
	}
	fields := md.GetFilterMetadata()[transportSocketMatchMD].GetFields()
	for _, m := range cl.sockets {
		ok := true
		for k, want := range m.match.GetFields() {
			if got, found := fields[k]; !found || !proto.Equal(got, want) {
				ok = false
				break
			}
		}
		if ok {
			return m.ts
		}
	}
	return cl.defaultTLS
}
