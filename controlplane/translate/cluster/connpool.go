package cluster

import (
	"fmt"
	"math"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	meshconfig "istio.io/api/mesh/v1alpha1"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/registry"
)

// HTTPProtocolOptionsKey is the typed_extension_protocol_options key of upstream HTTP options.
const HTTPProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// defaultThresholds are Istio's circuit breaker defaults: effectively unlimited, so that Envoy's
// small built-in limits (1024) never throttle mesh traffic unless a DestinationRule asks.
func defaultThresholds() *clusterv3.CircuitBreakers_Thresholds {
	return &clusterv3.CircuitBreakers_Thresholds{
		MaxConnections:     wrapperspb.UInt32(math.MaxUint32),
		MaxPendingRequests: wrapperspb.UInt32(math.MaxUint32),
		MaxRequests:        wrapperspb.UInt32(math.MaxUint32),
		MaxRetries:         wrapperspb.UInt32(math.MaxUint32),
		TrackRemaining:     true,
	}
}

// applyConnectionPool maps connectionPool (and retryBudget) to circuit breakers, connect timeout,
// TCP keepalive and upstream HTTP protocol options:
//
//	tcp.maxConnections              -> circuit_breakers max_connections
//	tcp.connectTimeout              -> connect_timeout (default MeshConfig.connectTimeout, else 10s)
//	tcp.tcpKeepalive                -> upstream_connection_options.tcp_keepalive (default MeshConfig.tcpKeepalive)
//	tcp.maxConnectionDuration       -> common_http_protocol_options.max_connection_duration (HTTP ports;
//	                                   TCP ports: tcp_proxy max_downstream_connection_duration, set by the listener)
//	tcp.idleTimeout                 -> tcp_proxy idle_timeout (set by the listener generator; see TCPSettings)
//	http.http1MaxPendingRequests    -> max_pending_requests
//	http.http2MaxRequests           -> max_requests
//	http.maxRequestsPerConnection   -> common_http_protocol_options.max_requests_per_connection
//	http.maxRetries                 -> max_retries
//	http.idleTimeout                -> common_http_protocol_options.idle_timeout
//	http.h2UpgradePolicy            -> explicit HTTP/2 for HTTP/1.1 ports (UPGRADE; default MeshConfig.h2UpgradePolicy)
//	http.useClientProtocol          -> use_downstream_protocol_config
//	http.maxConcurrentStreams       -> http2_protocol_options.max_concurrent_streams
//	http.http2KeepAlive             -> http2_protocol_options.connection_keepalive
//	retryBudget                     -> circuit_breakers retry_budget (budget_percent, min_retry_concurrency)
func applyConnectionPool(c *clusterv3.Cluster, tp *networking.TrafficPolicy, port registry.Port, m *meshconfig.MeshConfig, proxyless bool, r *Rule) error {
	cp := tp.GetConnectionPool()
	c.ConnectTimeout = durationpb.New(connectTimeout(m))
	if cp == nil && tp.GetRetryBudget() == nil {
		// The common case: Istio's defaults, shared (resources are immutable once built).
		c.CircuitBreakers = sharedBreakers
		if proxyless {
			return nil
		}
		applyKeepalive(c, nil, m)
		if port.Protocol.IsHTTP() || port.Protocol == registry.Unsupported {
			c.TypedExtensionProtocolOptions = defaultHTTPOptions(port, m)
		}
		return nil
	}
	th := defaultThresholds()
	c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{th}}
	if d := cp.GetTcp().GetConnectTimeout(); d != nil {
		c.ConnectTimeout = durationpb.New(d.AsDuration())
	}
	if n := cp.GetTcp().GetMaxConnections(); n > 0 {
		th.MaxConnections = wrapperspb.UInt32(uint32(n))
	}
	h := cp.GetHttp()
	if n := h.GetHttp1MaxPendingRequests(); n > 0 {
		th.MaxPendingRequests = wrapperspb.UInt32(uint32(n))
	}
	if n := h.GetHttp2MaxRequests(); n > 0 {
		th.MaxRequests = wrapperspb.UInt32(uint32(n))
	}
	if n := h.GetMaxRetries(); n > 0 {
		th.MaxRetries = wrapperspb.UInt32(uint32(n))
	}
	if rb := tp.GetRetryBudget(); rb != nil {
		if rb.GetBudgetInterval() != nil {
			return r.errf("trafficPolicy.retryBudget.budgetInterval", "Envoy retry budgets have no interval")
		}
		b := &clusterv3.CircuitBreakers_Thresholds_RetryBudget{}
		if p := rb.GetPercent(); p != nil {
			b.BudgetPercent = &typev3.Percent{Value: p.GetValue()}
		}
		if n := rb.GetMinRetryConcurrency(); n > 0 {
			b.MinRetryConcurrency = wrapperspb.UInt32(n)
		}
		th.RetryBudget = b
	}
	if proxyless {
		// gRPC honours only max_requests; connection options are Envoy's.
		return nil
	}
	applyKeepalive(c, cp.GetTcp().GetTcpKeepalive(), m)
	if !port.Protocol.IsHTTP() && port.Protocol != registry.Unsupported {
		return nil
	}
	opts, err := httpOptions(cp, port, m, r)
	if err != nil {
		return err
	}
	any, err := anypb.New(opts)
	if err != nil {
		return r.errf("trafficPolicy.connectionPool", "encoding http protocol options: %v", err)
	}
	c.TypedExtensionProtocolOptions = map[string]*anypb.Any{HTTPProtocolOptionsKey: any}
	return nil
}

// sharedBreakers are Istio's default circuit breakers, shared by every cluster without limits.
var sharedBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{defaultThresholds()}}

// defaultHTTPOptions returns the upstream HTTP options of a port without connection pool
// settings. It is pure (no process-wide cache): clusters are carried across snapshots by the
// generator's tables, so a port's options are encoded once per cluster build.
func defaultHTTPOptions(port registry.Port, m *meshconfig.MeshConfig) map[string]*anypb.Any {
	opts, _ := httpOptions(nil, port, m, nil) // cannot fail without settings
	a, err := anypb.New(opts)
	if err != nil {
		panic(fmt.Sprintf("encoding default http protocol options: %v", err))
	}
	return map[string]*anypb.Any{HTTPProtocolOptionsKey: a}
}

// applyKeepalive sets TCP keepalive from the DestinationRule, else MeshConfig.tcpKeepalive.
func applyKeepalive(c *clusterv3.Cluster, ka *networking.ConnectionPoolSettings_TCPSettings_TcpKeepalive, m *meshconfig.MeshConfig) {
	if ka == nil && m.GetTcpKeepalive() != nil {
		ka = m.GetTcpKeepalive()
	}
	if ka != nil {
		k := &corev3.TcpKeepalive{}
		if ka.GetProbes() > 0 {
			k.KeepaliveProbes = wrapperspb.UInt32(ka.GetProbes())
		}
		if t := ka.GetTime(); t != nil {
			k.KeepaliveTime = wrapperspb.UInt32(uint32(t.AsDuration().Seconds()))
		}
		if t := ka.GetInterval(); t != nil {
			k.KeepaliveInterval = wrapperspb.UInt32(uint32(t.AsDuration().Seconds()))
		}
		c.UpstreamConnectionOptions = &clusterv3.UpstreamConnectionOptions{TcpKeepalive: k}
	}
}

func connectTimeout(m *meshconfig.MeshConfig) time.Duration {
	if t := m.GetConnectTimeout(); t != nil {
		return t.AsDuration()
	}
	return defaultConnectTimeout
}

// httpOptions builds the upstream HttpProtocolOptions: explicit HTTP/2 for HTTP2/gRPC ports (and
// HTTP/1.1 ports with h2UpgradePolicy UPGRADE), explicit HTTP/1.1 for HTTP ports, the downstream
// protocol for sniffed ports and useClientProtocol.
func httpOptions(cp *networking.ConnectionPoolSettings, port registry.Port, m *meshconfig.MeshConfig, r *Rule) (*httpv3.HttpProtocolOptions, error) {
	h := cp.GetHttp()
	common := &corev3.HttpProtocolOptions{}
	set := false
	if d := h.GetIdleTimeout(); d != nil {
		common.IdleTimeout = durationpb.New(d.AsDuration())
		set = true
	}
	if n := h.GetMaxRequestsPerConnection(); n > 0 {
		common.MaxRequestsPerConnection = wrapperspb.UInt32(uint32(n))
		set = true
	}
	if d := cp.GetTcp().GetMaxConnectionDuration(); d != nil {
		common.MaxConnectionDuration = durationpb.New(d.AsDuration())
		set = true
	}
	h2 := &corev3.Http2ProtocolOptions{}
	if n := h.GetMaxConcurrentStreams(); n > 0 {
		h2.MaxConcurrentStreams = wrapperspb.UInt32(uint32(n))
	}
	if ka := h.GetHttp2KeepAlive(); ka != nil {
		k := &corev3.KeepaliveSettings{}
		if d := ka.GetInterval(); d != nil {
			k.Interval = durationpb.New(d.AsDuration())
		}
		if d := ka.GetTimeout(); d != nil {
			k.Timeout = durationpb.New(d.AsDuration())
		}
		if k.Interval == nil || k.Timeout == nil {
			return nil, r.errf("trafficPolicy.connectionPool.http.http2KeepAlive", "Envoy needs both interval and timeout")
		}
		h2.ConnectionKeepalive = k
	}
	out := &httpv3.HttpProtocolOptions{}
	if set {
		out.CommonHttpProtocolOptions = common
	}
	upgrade := m.GetH2UpgradePolicy() == meshconfig.MeshConfig_UPGRADE
	switch h.GetH2UpgradePolicy() {
	case networking.ConnectionPoolSettings_HTTPSettings_UPGRADE:
		upgrade = true
	case networking.ConnectionPoolSettings_HTTPSettings_DO_NOT_UPGRADE:
		upgrade = false
	}
	switch {
	case h.GetUseClientProtocol() || port.Protocol == registry.Unsupported:
		out.UpstreamProtocolOptions = &httpv3.HttpProtocolOptions_UseDownstreamProtocolConfig{
			UseDownstreamProtocolConfig: &httpv3.HttpProtocolOptions_UseDownstreamHttpConfig{
				HttpProtocolOptions: &corev3.Http1ProtocolOptions{}, Http2ProtocolOptions: h2}}
	case port.Protocol == registry.HTTP2 || port.Protocol == registry.GRPC || port.Protocol == registry.GRPCWeb ||
		(port.Protocol == registry.HTTP && upgrade):
		out.UpstreamProtocolOptions = &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: h2}}}
	default:
		out.UpstreamProtocolOptions = &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{HttpProtocolOptions: &corev3.Http1ProtocolOptions{}}}}
	}
	return out, nil
}

// defaultConnectTimeout is Istio's default upstream connect timeout.
const defaultConnectTimeout = 10 * time.Second

// TCPSettings returns the tcp_proxy settings Istio takes from a DestinationRule for TCP traffic:
// connectionPool.tcp.idleTimeout (tcp_proxy idle_timeout) and maxConnectionDuration
// (max_downstream_connection_duration). Zero values mean unset.
func TCPSettings(tp *networking.TrafficPolicy) (idle, maxDuration time.Duration) {
	t := tp.GetConnectionPool().GetTcp()
	if d := t.GetIdleTimeout(); d != nil {
		idle = d.AsDuration()
	}
	if d := t.GetMaxConnectionDuration(); d != nil {
		maxDuration = d.AsDuration()
	}
	return idle, maxDuration
}
