package listener

import (
	"fmt"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	meshconfig "istio.io/api/mesh/v1alpha1"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/translate/route"
)

// GatewayTCPRouter returns the VirtualService tls/tcp routes bound to one Gateway server: for TLS
// passthrough servers each route carries its SNI server names; for TCP servers one route. The
// route package supplies it.
type GatewayTCPRouter func(gw *config.Object, s *networking.Server) ([]route.L4Route, error)

// Gateway is the input of router (gateway) listeners.
type Gateway struct {
	// Gateways are the Gateway objects selecting the router, oldest first.
	Gateways []*config.Object
	// TCPRoutes supplies routes for TCP servers and TLS passthrough; nil leaves such servers
	// without chains (an error is returned if one exists).
	TCPRoutes GatewayTCPRouter
	// Report receives conflicts that do not stop generation: a server whose filter chain match
	// (port and SNI hosts) repeats an earlier server's is left out, as in Istio. May be nil.
	Report func(error)
	// TrustedProxies is the number of proxies in front of the gateway whose x-forwarded-for
	// entries are trusted: the HTTP connection managers' xff_num_trusted_hops. Istio takes it
	// from ProxyConfig.gatewayTopology.numTrustedProxies (MeshConfig.defaultConfig for strait).
	TrustedProxies uint32
	// HTTPFilters and NetworkFilters enforce the gateway workload's AuthorizationPolicies: they
	// go first on every HTTP connection manager and TCP chain.
	HTTPFilters    []*hcmv3.HttpFilter
	NetworkFilters []*listenerv3.Filter
	// PathNormalization is MeshConfig.pathNormalization.normalization.
	PathNormalization meshconfig.MeshConfig_ProxyPathNormalization_NormalizationType
	// AccessLog is MeshConfig's access log, on every connection manager and TCP proxy.
	AccessLog AccessLog
	// Telemetry is the gateway's telemetry (a gateway is a client, as istiod sees it).
	Telemetry Telemetry

	accessLog []*accesslogv3.AccessLog // Telemetry's or AccessLog, built once by BuildGateway
}

// BuildGateway returns one listener per distinct (bind, port) of the Gateway servers, named
// "0.0.0.0_8080": plaintext HTTP servers share one chain with RDS "http.PORT"; TLS-terminating
// HTTPS servers get a chain per server matched by SNI (their hosts) with RDS
// "https.PORT.PORTNAME.GATEWAY.NAMESPACE"; TLS passthrough and TCP servers get tcp_proxy chains
// from VirtualService tls/tcp routes.
func BuildGateway(in Gateway) ([]*listenerv3.Listener, error) {
	in.accessLog = in.Telemetry.accessLogOr(in.AccessLog)
	type lis struct {
		bind   string
		port   uint32
		chains chainSet
	}
	byKey := map[string]*lis{}
	var order []string
	for _, gw := range in.Gateways {
		spec := gw.Spec.(*networking.Gateway)
		for i, s := range spec.GetServers() {
			where := fmt.Sprintf("Gateway %s/%s: servers[%d]", gw.Namespace, gw.Name, i)
			bind := s.GetBind()
			if bind == "" {
				bind = "0.0.0.0"
			}
			if strings.HasPrefix(bind, "unix://") {
				return nil, fmt.Errorf("%s.bind: unix domain socket binds are not supported", where)
			}
			if s.GetDefaultEndpoint() != "" && in.Report != nil {
				in.Report(fmt.Errorf("%s.defaultEndpoint: not implemented (nor by Istio); ignored", where))
			}
			port := s.GetPort().GetNumber()
			key := listenerName(bind, port)
			l := byKey[key]
			if l == nil {
				l = &lis{bind: bind, port: port}
				byKey[key] = l
				order = append(order, key)
			}
			chains, err := serverChains(in, gw, s, where)
			if err != nil {
				return nil, err
			}
			for _, c := range chains {
				// Plain HTTP servers on one port share the chain "http.PORT" (routing is by
				// host); any other repeated match is a conflict.
				if prev := l.chains.addOrExisting(c); prev != nil && prev.GetName() != c.GetName() && in.Report != nil {
					in.Report(&ConflictError{Server: where, Chain: c.GetName(), Listener: key})
				}
			}
		}
	}
	var out []*listenerv3.Listener
	for _, key := range order {
		l := byKey[key]
		if len(l.chains.chains) == 0 {
			continue
		}
		out = append(out, &listenerv3.Listener{
			Name:             key,
			Address:          socketAddress(l.bind, l.port),
			FilterChains:     l.chains.chains,
			ListenerFilters:  inspectors(&l.chains),
			TrafficDirection: corev3.TrafficDirection_OUTBOUND,
		})
	}
	return out, nil
}

// ConflictError reports a Gateway server left out because an earlier server already matches the
// same connections (same listener, port and SNI hosts).
type ConflictError struct {
	Server   string // "Gateway ns/name: servers[i]"
	Chain    string // the filter chain left out (for HTTPS servers, its route configuration name)
	Listener string
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("%s: filter chain %q matches the same connections as an earlier server on %s; left out", e.Server, e.Chain, e.Listener)
}

// gatewayHCM is Istio's gateway connection manager: the gateway is the mesh's edge, so it uses
// the connection's peer address (use_remote_address) and trusts gatewayTopology's number of
// proxies in front of it; like Istio it sets no internal_address_config, so no client is internal
// and every client's x-envoy-* control headers are removed.
func gatewayHCM(in Gateway, statPrefix, rds string) hcmOptions {
	return hcmOptions{statPrefix: statPrefix, rds: rds, useRemoteAddr: true, xffTrustedHops: in.TrustedProxies, authz: in.HTTPFilters,
		pathNorm: in.PathNormalization, accessLog: in.accessLog, tel: in.Telemetry}
}

// serverChains builds the filter chains of one Gateway server.
func serverChains(in Gateway, gw *config.Object, s *networking.Server, where string) ([]*listenerv3.FilterChain, error) {
	port := s.GetPort().GetNumber()
	p := strconv.FormatUint(uint64(port), 10)
	proto := strings.ToUpper(s.GetPort().GetProtocol())
	tlsMode := s.GetTls().GetMode()
	terminates := s.GetTls() != nil && tlsMode != networking.ServerTLSSettings_PASSTHROUGH && tlsMode != networking.ServerTLSSettings_AUTO_PASSTHROUGH
	if tlsMode == networking.ServerTLSSettings_AUTO_PASSTHROUGH {
		return nil, fmt.Errorf("%s.tls.mode: AUTO_PASSTHROUGH (multi-network SNI clusters) is not supported", where)
	}
	switch proto {
	case "HTTP", "HTTP2", "GRPC", "GRPC-WEB":
		if !terminates {
			return []*listenerv3.FilterChain{{Name: "http." + p, FilterChainMatch: &listenerv3.FilterChainMatch{},
				Filters: []*listenerv3.Filter{hcm(gatewayHCM(in, "outbound_0.0.0.0_"+p, route.GatewayRouteName(port)))}}}, nil
		}
		fallthrough
	case "HTTPS":
		if !terminates {
			return passthroughChains(in, gw, s, where)
		}
		ts, err := DownstreamTLS(s.GetTls(), where+".tls")
		if err != nil {
			return nil, err
		}
		name := route.GatewayTLSRouteName(gw, s)
		return []*listenerv3.FilterChain{{Name: name,
			FilterChainMatch: &listenerv3.FilterChainMatch{ServerNames: serverNames(s.GetHosts())},
			TransportSocket:  ts,
			Filters:          []*listenerv3.Filter{hcm(gatewayHCM(in, "outbound_0.0.0.0_"+p, name))}}}, nil
	case "TLS":
		if !terminates {
			return passthroughChains(in, gw, s, where)
		}
		ts, err := DownstreamTLS(s.GetTls(), where+".tls")
		if err != nil {
			return nil, err
		}
		chains, err := tcpServerChains(in, gw, s, where)
		if err != nil {
			return nil, err
		}
		for _, c := range chains {
			c.TransportSocket = ts
			if c.FilterChainMatch == nil {
				c.FilterChainMatch = &listenerv3.FilterChainMatch{}
			}
			if len(c.FilterChainMatch.ServerNames) == 0 {
				c.FilterChainMatch.ServerNames = serverNames(s.GetHosts())
			}
		}
		return chains, nil
	case "TCP", "MONGO", "REDIS", "MYSQL":
		return tcpServerChains(in, gw, s, where)
	}
	return nil, fmt.Errorf("%s.port.protocol: %q is not supported on gateways", where, s.GetPort().GetProtocol())
}

// passthroughChains routes TLS by SNI without terminating it.
func passthroughChains(in Gateway, gw *config.Object, s *networking.Server, where string) ([]*listenerv3.FilterChain, error) {
	chains, err := tcpServerChains(in, gw, s, where)
	if err != nil {
		return nil, err
	}
	for _, c := range chains {
		if c.FilterChainMatch == nil {
			c.FilterChainMatch = &listenerv3.FilterChainMatch{}
		}
		c.FilterChainMatch.TransportProtocol = "tls"
		if len(c.FilterChainMatch.ServerNames) == 0 {
			c.FilterChainMatch.ServerNames = serverNames(s.GetHosts())
		}
	}
	return chains, nil
}

func tcpServerChains(in Gateway, gw *config.Object, s *networking.Server, where string) ([]*listenerv3.FilterChain, error) {
	if in.TCPRoutes == nil {
		return nil, fmt.Errorf("%s: TCP/TLS passthrough routing is not available", where)
	}
	routes, err := in.TCPRoutes(gw, s)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	var out []*listenerv3.FilterChain
	for _, rt := range routes {
		m := &listenerv3.FilterChainMatch{}
		if rt.Match != nil {
			m = proto.Clone(rt.Match).(*listenerv3.FilterChainMatch)
			m.DestinationPort = nil // the listener is the server port
		}
		out = append(out, &listenerv3.FilterChain{
			Name:             rt.Source,
			FilterChainMatch: m,
			Filters:          withTCPStats(in.Telemetry.TCPStats, append(append([]*listenerv3.Filter{}, in.NetworkFilters...), tcpFilter(rt.TCPProxy, 0, 0, in.accessLog))...),
		})
	}
	return out, nil
}

// serverNames turns Gateway server hosts ("ns/host" or "host") into SNI names; "*" matches
// everything, so it yields none.
func serverNames(hosts []string) []string {
	var out []string
	for _, h := range hosts {
		if i := strings.IndexByte(h, '/'); i >= 0 {
			h = h[i+1:]
		}
		if h == "*" {
			return nil
		}
		out = append(out, h)
	}
	return out
}
