// Package listener generates Envoy v3 listeners (LDS) with Istio's names and layout:
//
//   - sidecars: "virtualOutbound" on 0.0.0.0:15001 (original_dst listener filter, one filter chain
//     per service port, PassthroughCluster or BlackHoleCluster by default) and "virtualInbound" on
//     0.0.0.0:15006 (a chain per workload port to inbound|PORT||, InboundPassthroughCluster by
//     default); in explicit mode (INTERCEPTION_MODE=NONE, or Sidecar egress/ingress with a bind or
//     captureMode NONE) real listeners bound per port instead;
//   - routers: one listener per Gateway server port ("0.0.0.0_8080") with HTTP, HTTPS (TLS
//     termination), TLS passthrough and TCP chains;
//   - proxyless gRPC: API listeners named "host:port".
//
// Route configurations are referenced by name (RDS) and built by package route; clusters by
// Istio names built by package cluster.
package listener

import (
	"fmt"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	"net/netip"
	"strconv"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	httpinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/http_inspector/v3"
	originaldstv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	meshconfig "istio.io/api/mesh/v1alpha1"

	"github.com/strait-mesh/strait/controlplane/translate/cluster"
	"github.com/strait-mesh/strait/internal/vocab"
)

// sniffedALPN are the application protocols http_inspector reports for plaintext HTTP; chains
// share it and never modify it.
var sniffedALPN = vocab.SniffedHTTPALPN()

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(fmt.Sprintf("encoding %T: %v", m, err)) // only fails for invalid messages we build
	}
	return a
}

func listenerFilter(name string, m proto.Message) *listenerv3.ListenerFilter {
	return &listenerv3.ListenerFilter{Name: name, ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(m)}}
}

func originalDst() *listenerv3.ListenerFilter {
	return listenerFilter(vocab.FilterOriginalDst, &originaldstv3.OriginalDst{})
}
func tlsInspector() *listenerv3.ListenerFilter {
	return listenerFilter(vocab.FilterTLSInspector, &tlsinspectorv3.TlsInspector{})
}
func httpInspector() *listenerv3.ListenerFilter {
	return listenerFilter(vocab.FilterHTTPInspector, &httpinspectorv3.HttpInspector{})
}

func networkFilter(name string, m proto.Message) *listenerv3.Filter {
	return &listenerv3.Filter{Name: name, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(m)}}
}

// HTTPFilters are the HTTP filters of every sidecar and gateway connection manager, in order:
// fault injection and CORS (configured per route by VirtualServices), then the router.
func HTTPFilters(proxyless bool) []*hcmv3.HttpFilter {
	router := &hcmv3.HttpFilter{Name: vocab.FilterRouter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})}}
	fault := &hcmv3.HttpFilter{Name: vocab.FilterFault, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&faultv3.HTTPFault{})}}
	if proxyless {
		// gRPC's xDS client implements fault injection and the router, not CORS.
		return []*hcmv3.HttpFilter{fault, router}
	}
	cors := &hcmv3.HttpFilter{Name: vocab.FilterCORS, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&corsv3.Cors{})}}
	return []*hcmv3.HttpFilter{fault, cors, router}
}

// hcmOptions configure one http_connection_manager.
type hcmOptions struct {
	statPrefix     string
	rds            string                      // route configuration name for RDS
	inline         *routev3.RouteConfiguration // or an inline route configuration
	useRemoteAddr  bool                        // gateways: trust the peer address for XFF
	xffTrustedHops uint32                      // gateways: gatewayTopology.numTrustedProxies
	// appendXFCC: sidecar inbound, as Istio: x-forwarded-client-cert APPEND_FORWARD with the
	// peer certificate's subject, URI and DNS SANs (the header is removed on plaintext).
	appendXFCC bool
	// authz are the RBAC filters of the workload's AuthorizationPolicies, before all others.
	authz []*hcmv3.HttpFilter
	// pathNorm is MeshConfig.pathNormalization (DEFAULT is BASE).
	pathNorm meshconfig.MeshConfig_ProxyPathNormalization_NormalizationType
	// accessLog is the access_log list (AccessLog.Build), shared read-only; nil: none.
	accessLog []*accesslogv3.AccessLog
	// tel adds tracing, the request ID extension and the istio.stats filter (its access log
	// is accessLog).
	tel Telemetry
}

// pathNormalization sets the connection manager's path options as istiod does for MeshConfig
// pathNormalization: NONE none, BASE (the default) normalize_path, MERGE_SLASHES adds
// merge_slashes, DECODE_AND_MERGE_SLASHES adds UNESCAPE_AND_FORWARD for %2F and %5C.
func pathNormalization(m *hcmv3.HttpConnectionManager, n meshconfig.MeshConfig_ProxyPathNormalization_NormalizationType) {
	m.PathWithEscapedSlashesAction = hcmv3.HttpConnectionManager_KEEP_UNCHANGED
	switch n {
	case meshconfig.MeshConfig_ProxyPathNormalization_NONE:
		m.NormalizePath = wrapperspb.Bool(false)
	case meshconfig.MeshConfig_ProxyPathNormalization_MERGE_SLASHES:
		m.NormalizePath, m.MergeSlashes = wrapperspb.Bool(true), true
	case meshconfig.MeshConfig_ProxyPathNormalization_DECODE_AND_MERGE_SLASHES:
		m.NormalizePath, m.MergeSlashes = wrapperspb.Bool(true), true
		m.PathWithEscapedSlashesAction = hcmv3.HttpConnectionManager_UNESCAPE_AND_FORWARD
	default: // DEFAULT, BASE
		m.NormalizePath = wrapperspb.Bool(true)
	}
}

// hcm builds an http_connection_manager network filter.
//
// Like Istio's, it sets no internal_address_config (Istio sets one only from meshNetworks
// fromCidr endpoints behind istiod's ENABLE_HCM_INTERNAL_NETWORKS, which Strait does not have):
// in current Envoy, and in strait-proxy, no client is then internal, so x-envoy-* control headers
// are removed from every request before the router sees them. Sidecars (use_remote_address
// false, as Istio without PILOT_SIDECAR_USE_REMOTE_ADDRESS) lose Envoy's list of control headers
// and keep the rest; gateways (use_remote_address true) are the edge and lose every x-envoy-*
// header, get x-envoy-external-address and a fresh x-request-id.
func hcm(o hcmOptions) *listenerv3.Filter {
	m := &hcmv3.HttpConnectionManager{
		StatPrefix:        o.statPrefix,
		CodecType:         hcmv3.HttpConnectionManager_AUTO,
		HttpFilters:       httpFilters(o.authz, o.tel.HTTPStats),
		UseRemoteAddress:  wrapperspb.Bool(o.useRemoteAddr),
		XffNumTrustedHops: o.xffTrustedHops,
		// Istio's defaults: WebSocket upgrades pass, streams have no idle timeout beyond the route's.
		UpgradeConfigs: []*hcmv3.HttpConnectionManager_UpgradeConfig{{UpgradeType: "websocket"}},
		AccessLog:      o.accessLog,
		Tracing:        o.tel.Tracing,
	}
	if o.tel.Tracing != nil {
		m.RequestIdExtension = o.tel.RequestID
	}
	pathNormalization(m, o.pathNorm)
	if o.appendXFCC {
		m.ForwardClientCertDetails = hcmv3.HttpConnectionManager_APPEND_FORWARD
		m.SetCurrentClientCertDetails = &hcmv3.HttpConnectionManager_SetCurrentClientCertDetails{
			Subject: wrapperspb.Bool(true), Uri: true, Dns: true}
	}
	if o.inline != nil {
		m.RouteSpecifier = &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: o.inline}
	} else {
		m.RouteSpecifier = &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{ConfigSource: cluster.ADS(), RouteConfigName: o.rds}}
	}
	return networkFilter(vocab.FilterHCM, m)
}

// httpFilters are a connection manager's HTTP filters: the authorization filters, then
// HTTPFilters with the istio.stats filter (when set) before the router, as istiod orders them.
func httpFilters(authz []*hcmv3.HttpFilter, stats *hcmv3.HttpFilter) []*hcmv3.HttpFilter {
	std := HTTPFilters(false)
	out := make([]*hcmv3.HttpFilter, 0, len(authz)+len(std)+1)
	out = append(append(out, authz...), std[:len(std)-1]...)
	if stats != nil {
		out = append(out, stats)
	}
	return append(out, std[len(std)-1])
}

// tcpOptions configure one tcp_proxy.
type tcpOptions struct {
	statPrefix  string
	cluster     string
	weighted    []*tcpproxyv3.TcpProxy_WeightedCluster_ClusterWeight
	idle        time.Duration // 0: Envoy's default (1h)
	maxDuration time.Duration
	accessLog   []*accesslogv3.AccessLog // AccessLog.Build; nil: none
}

func tcpProxy(o tcpOptions) *listenerv3.Filter {
	m := &tcpproxyv3.TcpProxy{StatPrefix: o.statPrefix, AccessLog: o.accessLog}
	if len(o.weighted) > 0 {
		m.ClusterSpecifier = &tcpproxyv3.TcpProxy_WeightedClusters{WeightedClusters: &tcpproxyv3.TcpProxy_WeightedCluster{Clusters: o.weighted}}
	} else {
		m.ClusterSpecifier = &tcpproxyv3.TcpProxy_Cluster{Cluster: o.cluster}
	}
	if o.idle > 0 {
		m.IdleTimeout = durationpb.New(o.idle)
	}
	if o.maxDuration > 0 {
		m.MaxDownstreamConnectionDuration = durationpb.New(o.maxDuration)
	}
	return networkFilter(vocab.FilterTCPProxy, m)
}

// socketAddress builds addr:port.
func socketAddress(addr string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: addr, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}
}

// listenerName is Istio's "ADDRESS_PORT" listener name.
func listenerName(addr string, port uint32) string {
	return addr + "_" + strconv.FormatUint(uint64(port), 10)
}

// cidrRanges converts service addresses (IPs or CIDRs) to prefix ranges; invalid ones are skipped.
func cidrRanges(addrs []string) []*corev3.CidrRange {
	var out []*corev3.CidrRange
	for _, a := range addrs {
		var p netip.Prefix
		if pp, err := netip.ParsePrefix(a); err == nil {
			p = pp
		} else if ip, err := netip.ParseAddr(a); err == nil {
			p = netip.PrefixFrom(ip, ip.BitLen())
		} else {
			continue
		}
		out = append(out, &corev3.CidrRange{AddressPrefix: p.Addr().String(), PrefixLen: wrapperspb.UInt32(uint32(p.Bits()))})
	}
	return out
}

// chainSet collects filter chains, dropping a chain whose match equals an earlier one (Envoy
// rejects duplicate matches; the first — oldest service, then hostname order — wins, as in Istio).
type chainSet struct {
	chains []*listenerv3.FilterChain
	seen   map[string]*listenerv3.FilterChain // by match
	tls    bool                               // a chain matches server names or transport protocol: needs tls_inspector
	http   bool                               // a chain matches application protocols: needs http_inspector
}

func (cs *chainSet) add(c *listenerv3.FilterChain) bool {
	return cs.addOrExisting(c) == nil
}

// addOrExisting adds c, or returns the earlier chain with the same match (c is then dropped).
func (cs *chainSet) addOrExisting(c *listenerv3.FilterChain) *listenerv3.FilterChain {
	if cs.seen == nil {
		cs.seen = make(map[string]*listenerv3.FilterChain)
	}
	key := matchKey(c.GetFilterChainMatch())
	if prev := cs.seen[key]; prev != nil {
		return prev
	}
	cs.seen[key] = c
	m := c.GetFilterChainMatch()
	if len(m.GetServerNames()) > 0 || m.GetTransportProtocol() != "" {
		cs.tls = true
	}
	if len(m.GetApplicationProtocols()) > 0 {
		cs.http = true
	}
	cs.chains = append(cs.chains, c)
	return nil
}

func matchKey(m *listenerv3.FilterChainMatch) string {
	if m == nil {
		return ""
	}
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	return string(b)
}

func u32(v uint32) *wrapperspb.UInt32Value { return wrapperspb.UInt32(v) }
