package listener

import (
	"fmt"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	"net"
	"sort"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
	meshconfig "istio.io/api/mesh/v1alpha1"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/registry"
	"github.com/strait-mesh/strait/controlplane/translate/cluster"
	"github.com/strait-mesh/strait/controlplane/translate/route"
	"github.com/strait-mesh/strait/internal/vocab"
)

// InboundPort is one port on which a workload receives mesh traffic.
type InboundPort struct {
	// Port is the port traffic arrives at (the workload port) and its protocol.
	Port registry.Port
	// Endpoint and TargetPort are where the application listens: 127.0.0.1, the instance IP, or
	// a unix:// path (TargetPort 0).
	Endpoint   string
	TargetPort uint32
	// Bind is set for explicit ingress listeners (Sidecar ingress bind or captureMode NONE).
	Bind string
	// TLS terminates TLS on the port (Sidecar ingress tls).
	TLS *networking.ServerTLSSettings
	// ConnectionPool limits connections to the application (Sidecar ingress connectionPool, else
	// inboundConnectionPool); nil means unlimited.
	ConnectionPool *networking.ConnectionPoolSettings
	// MTLS is the port's PeerAuthentication mode: which of the mutual TLS and plaintext chains
	// the port gets. A port with TLS (Sidecar ingress tls) terminates that instead.
	MTLS mesh.MTLSMode
	// Services are the services that have the workload as an endpoint on this port, sorted by
	// host: the inbound cluster names them in its metadata, where the destination reporter of
	// Istio's metrics finds destination_service.
	Services []*registry.Service
}

// InboundSecurity is what a sidecar's inbound mutual TLS needs beyond its ports.
type InboundSecurity struct {
	// PathNormalization is MeshConfig.pathNormalization.normalization: the requests that
	// authorization judges are the requests the application receives.
	PathNormalization meshconfig.MeshConfig_ProxyPathNormalization_NormalizationType
	// Passthrough is the mode of traffic to ports that are not service ports (the workload's
	// own PeerAuthentication mode, without port-level exceptions).
	Passthrough mesh.MTLSMode
	// TrustDomains are the trust domains whose identities may connect (MeshConfig trustDomain
	// and trustDomainAliases); empty accepts any certificate the mesh root signed.
	TrustDomains []string
	// HTTPFilters and NetworkFilters enforce the workload's AuthorizationPolicies: they go
	// first on every inbound HTTP chain and TCP chain (passthrough included).
	HTTPFilters    []*hcmv3.HttpFilter
	NetworkFilters []*listenerv3.Filter
	// AccessLog is MeshConfig's access log, on every connection manager and TCP proxy.
	AccessLog AccessLog
	// Telemetry is the workload's server-side telemetry (Telemetry API, MeshConfig).
	Telemetry Telemetry

	accessLog []*accesslogv3.AccessLog // Telemetry's or AccessLog, built once by BuildInbound
}

// Instance identifies the workload behind a proxy, to find the services it serves.
type Instance struct {
	IPs      []string // instance IPs: endpoints with these addresses are the workload's
	Explicit bool     // INTERCEPTION_MODE=NONE
}

// reservedPorts are the proxy's own ports (Istio's): admin, capture, HBONE, health and metrics, DNS.

// InboundPorts returns the ports a sidecar receives traffic on, sorted by port. With a Sidecar
// that lists ingress listeners, exactly those; otherwise every port of every service that has the
// workload as an endpoint (matched by instance IP, or by WorkloadEntry name and namespace), with
// the application at 127.0.0.1 on the endpoint port. In explicit mode without Sidecar ingress
// there are none: the application is reached directly.
func InboundPorts(snap *mesh.Snapshot, sidecar *networking.Sidecar, inst Instance) ([]InboundPort, error) {
	if ing := sidecar.GetIngress(); len(ing) > 0 {
		out, err := sidecarIngress(ing, sidecar.GetInboundConnectionPool(), inst)
		for i := range out {
			out[i].Services = servicesAt(snap, inst.IPs, out[i].Port.Number)
		}
		return out, err
	}
	if inst.Explicit {
		return nil, nil
	}
	seen := map[uint32]bool{}
	var out []InboundPort
	for _, ip := range inst.IPs {
		for _, ie := range snap.Instances(ip) {
			ep := ie.Endpoint
			if ep.Port == 0 || seen[ep.Port] {
				continue
			}
			sp := ie.Service.PortByName(ep.ServicePortName)
			if sp == nil {
				continue
			}
			if vocab.ReservedPort(ep.Port) {
				continue // the proxy's own ports are never inbound application ports
			}
			seen[ep.Port] = true
			out = append(out, InboundPort{Port: registry.Port{Name: sp.Name, Number: ep.Port, Protocol: sp.Protocol},
				Endpoint: "127.0.0.1", TargetPort: ep.Port, ConnectionPool: sidecar.GetInboundConnectionPool(),
				Services: servicesAt(snap, inst.IPs, ep.Port)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Port.Number < out[j].Port.Number })
	return out, nil
}

// servicesAt returns the services with an endpoint at one of ips on port, sorted by host and
// namespace, each once.
func servicesAt(snap *mesh.Snapshot, ips []string, port uint32) []*registry.Service {
	var out []*registry.Service
	seen := map[registry.ServiceKey]bool{}
	for _, ip := range ips {
		for _, ie := range snap.Instances(ip) {
			if k := ie.Service.Key(); ie.Endpoint.Port == port && !seen[k] {
				seen[k] = true
				out = append(out, ie.Service)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Hostname != out[j].Hostname {
			return out[i].Hostname < out[j].Hostname
		}
		return out[i].Namespace < out[j].Namespace
	})
	return out
}

func sidecarIngress(ing []*networking.IstioIngressListener, pool *networking.ConnectionPoolSettings, inst Instance) ([]InboundPort, error) {
	var out []InboundPort
	for i, l := range ing {
		sp := l.GetPort()
		ip := InboundPort{
			Port:           registry.Port{Name: sp.GetName(), Number: sp.GetNumber(), Protocol: registry.SelectProtocol(sp.GetName(), sp.GetProtocol(), "")},
			Endpoint:       "127.0.0.1",
			TargetPort:     sp.GetNumber(),
			TLS:            l.GetTls(),
			ConnectionPool: pool,
		}
		if l.GetConnectionPool() != nil {
			ip.ConnectionPool = l.GetConnectionPool()
		}
		if de := l.GetDefaultEndpoint(); de != "" {
			switch {
			case strings.HasPrefix(de, "unix://"):
				ip.Endpoint, ip.TargetPort = de, 0
			default:
				host, port, err := net.SplitHostPort(de)
				if err != nil {
					return nil, fmt.Errorf("sidecar ingress[%d].defaultEndpoint %q: %w", i, de, err)
				}
				n, err := strconv.ParseUint(port, 10, 32)
				if err != nil {
					return nil, fmt.Errorf("sidecar ingress[%d].defaultEndpoint %q: %w", i, de, err)
				}
				ip.Endpoint, ip.TargetPort = host, uint32(n)
				if host == "0.0.0.0" {
					ip.Endpoint = "127.0.0.1"
					if len(inst.IPs) > 0 {
						ip.Endpoint = inst.IPs[0]
					}
				}
			}
		}
		// As Istio's getBindToPort: the listener binds its port with captureMode NONE, or with
		// DEFAULT on a proxy without interception. Otherwise (a bind address on a captured
		// proxy included) the port's traffic arrives at virtualInbound, which serves it.
		mode := l.GetCaptureMode()
		if mode == networking.CaptureMode_NONE || (mode == networking.CaptureMode_DEFAULT && inst.Explicit) {
			ip.Bind = l.GetBind()
			if ip.Bind == "" {
				ip.Bind = "0.0.0.0"
				if len(inst.IPs) > 0 {
					ip.Bind = inst.IPs[0]
				}
			}
		}
		out = append(out, ip)
	}
	return out, nil
}

// BuildInbound returns virtualInbound (0.0.0.0:15006, a chain per captured inbound port to
// inbound|PORT||, InboundPassthroughCluster by default) unless the proxy is explicit, plus one
// bound listener per explicit ingress port.
func BuildInbound(ports []InboundPort, explicit bool, sec InboundSecurity) ([]*listenerv3.Listener, error) {
	sec.accessLog = sec.Telemetry.accessLogOr(sec.AccessLog)
	var captured chainSet
	var out []*listenerv3.Listener
	for _, ip := range ports {
		chains, err := inboundChains(ip, ip.Bind == "", sec)
		if err != nil {
			return nil, err
		}
		if ip.Bind == "" {
			for _, c := range chains {
				captured.add(c)
			}
			continue
		}
		var cs chainSet
		for _, c := range chains {
			cs.add(c)
		}
		out = append(out, &listenerv3.Listener{
			Name:             listenerName(ip.Bind, ip.Port.Number),
			Address:          socketAddress(ip.Bind, ip.Port.Number),
			FilterChains:     cs.chains,
			ListenerFilters:  inspectors(&cs),
			TrafficDirection: corev3.TrafficDirection_INBOUND,
		})
	}
	if explicit {
		return out, nil
	}
	// Ports that are no service port pass through to the application, under the workload's
	// mode: mutual TLS terminated first (the chains match no port, so a service port's chains
	// win), plaintext through the default chain unless STRICT.
	passthrough := func() *listenerv3.FilterChain {
		return &listenerv3.FilterChain{Name: vocab.InboundPassthroughFilterChain, Filters: withTCPStats(sec.Telemetry.TCPStats, append(append([]*listenerv3.Filter{}, sec.NetworkFilters...),
			tcpProxy(tcpOptions{statPrefix: vocab.InboundPassthroughCluster, cluster: vocab.InboundPassthroughCluster, accessLog: sec.accessLog}))...)}
	}
	var defaultChain *listenerv3.FilterChain
	if sec.Passthrough != mesh.MTLSDisable {
		c := passthrough()
		c.FilterChainMatch = &listenerv3.FilterChainMatch{TransportProtocol: transportTLS}
		if sec.Passthrough == mesh.MTLSPermissive {
			c.FilterChainMatch.ApplicationProtocols = meshALPN
		}
		c.TransportSocket = meshServerTLS(false, sec)
		captured.add(c)
	}
	if sec.Passthrough != mesh.MTLSStrict {
		defaultChain = passthrough()
	}
	lf := append([]*listenerv3.ListenerFilter{originalDst()}, inspectors(&captured)...)
	vi := &listenerv3.Listener{
		Name:               vocab.VirtualInbound,
		Address:            socketAddress("0.0.0.0", vocab.InboundCapturePort),
		ListenerFilters:    lf,
		FilterChains:       captured.chains,
		DefaultFilterChain: defaultChain,
		TrafficDirection:   corev3.TrafficDirection_INBOUND,
	}
	return append([]*listenerv3.Listener{vi}, out...), nil
}

// transportTLS and transportRaw are the transport protocols tls_inspector reports.
const (
	transportTLS = "tls"
	transportRaw = "raw_buffer"
)

// meshALPN marks a TLS connection as mesh mTLS on PERMISSIVE ports; shared, never modified.
var meshALPN = vocab.MeshMTLSALPN()

// meshServerTLS is the transport socket of a mesh mTLS chain: the workload certificate
// "default", client certificates required and verified against "ROOTCA", from one of the
// accepted trust domains; HTTP chains offer h2 and http/1.1.
func meshServerTLS(http bool, sec InboundSecurity) *corev3.TransportSocket {
	vc := &tlsv3.CertificateValidationContext{}
	for _, td := range sec.TrustDomains {
		vc.MatchTypedSubjectAltNames = append(vc.MatchTypedSubjectAltNames, &tlsv3.SubjectAltNameMatcher{
			SanType: tlsv3.SubjectAltNameMatcher_URI,
			Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "spiffe://" + td + "/"}}})
	}
	ctx := &tlsv3.DownstreamTlsContext{
		RequireClientCertificate: wrapperspb.Bool(true),
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{cluster.SDSConfig(vocab.SecretDefault)},
			ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{
				CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
					DefaultValidationContext:         vc,
					ValidationContextSdsSecretConfig: cluster.SDSConfig(vocab.SecretRootCA),
				}},
		},
	}
	if http {
		ctx.CommonTlsContext.AlpnProtocols = vocab.HTTPALPN()
	}
	ts, err := wrap(ctx)
	if err != nil {
		panic(fmt.Sprintf("encoding the mesh mTLS context: %v", err)) // only fails for invalid messages we build
	}
	return ts
}

func inspectors(cs *chainSet) []*listenerv3.ListenerFilter {
	var lf []*listenerv3.ListenerFilter
	if cs.tls {
		lf = append(lf, tlsInspector())
	}
	if cs.http {
		lf = append(lf, httpInspector())
	}
	return lf
}

// inboundChains builds the chains of one inbound port: HTTP (connection manager with the inline
// route configuration inbound|PORT||), TCP (tcp_proxy), or both behind http_inspector for
// undeclared protocols; with TLS termination when the Sidecar ingress asks. Under the port's
// PeerAuthentication mode, as Istio:
//
//	DISABLE    -> the plaintext chains
//	STRICT     -> the same chains terminating mesh mTLS (transport protocol tls); plaintext and
//	              TLS without a mesh client certificate match no chain and are closed
//	PERMISSIVE -> mesh mTLS chains for TLS that offers Istio's mesh ALPN, the plaintext chains
//	              for raw_buffer, and other TLS (the application's own) passed through as TCP
func inboundChains(ip InboundPort, captured bool, sec InboundSecurity) ([]*listenerv3.FilterChain, error) {
	name := vocab.InboundClusterName(ip.Port.Number)
	match := func(transport string, alpn []string) *listenerv3.FilterChainMatch {
		m := &listenerv3.FilterChainMatch{TransportProtocol: transport, ApplicationProtocols: alpn}
		if captured {
			m.DestinationPort = u32(ip.Port.Number)
		}
		return m
	}
	httpChain := func(m *listenerv3.FilterChainMatch, xfcc bool) *listenerv3.FilterChain {
		return &listenerv3.FilterChain{Name: name, FilterChainMatch: m, Filters: []*listenerv3.Filter{
			hcm(hcmOptions{statPrefix: "inbound_0.0.0.0_" + strconv.FormatUint(uint64(ip.Port.Number), 10), inline: route.Inbound(ip.Port.Number),
				appendXFCC: xfcc, authz: sec.HTTPFilters, pathNorm: sec.PathNormalization, accessLog: sec.accessLog, tel: sec.Telemetry})}}
	}
	tcpChain := func(m *listenerv3.FilterChainMatch) *listenerv3.FilterChain {
		return &listenerv3.FilterChain{Name: name, FilterChainMatch: m, Filters: withTCPStats(sec.Telemetry.TCPStats, append(append([]*listenerv3.Filter{}, sec.NetworkFilters...),
			tcpProxy(tcpOptions{statPrefix: name, cluster: name, accessLog: sec.accessLog}))...)}
	}
	if ip.Port.Protocol == registry.UDP {
		return nil, nil
	}
	if ip.TLS != nil {
		ts, err := DownstreamTLS(ip.TLS, "sidecar ingress tls")
		if err != nil {
			return nil, err
		}
		transport := ""
		if ts != nil && captured {
			transport = transportTLS
		}
		var c *listenerv3.FilterChain
		if ip.Port.Protocol.IsHTTP() {
			c = httpChain(match(transport, nil), false)
		} else {
			c = tcpChain(match(transport, nil))
		}
		c.TransportSocket = ts
		return []*listenerv3.FilterChain{c}, nil
	}
	undeclared := ip.Port.Protocol == registry.Unsupported
	// plain returns the plaintext chains, for connections of the given transport protocol.
	plain := func(transport string) []*listenerv3.FilterChain {
		switch {
		case ip.Port.Protocol.IsHTTP():
			return []*listenerv3.FilterChain{httpChain(match(transport, nil), true)}
		case undeclared:
			return []*listenerv3.FilterChain{httpChain(match(transport, sniffedALPN), true), tcpChain(match(transport, nil))}
		}
		return []*listenerv3.FilterChain{tcpChain(match(transport, nil))}
	}
	// mtls returns the chains terminating mesh mTLS; alpn (PERMISSIVE) restricts them to Istio's
	// mesh ALPN values.
	mtls := func(alpn []string) []*listenerv3.FilterChain {
		var chains []*listenerv3.FilterChain
		switch {
		case ip.Port.Protocol.IsHTTP():
			chains = []*listenerv3.FilterChain{httpChain(match(transportTLS, alpn), true)}
		case undeclared:
			// Istio's clients name HTTP in their ALPN (istio-http/1.0, istio-http/1.1,
			// istio-h2); the rest of the mesh is TCP.
			chains = []*listenerv3.FilterChain{
				httpChain(match(transportTLS, []string{vocab.ALPNIstioHTTP10, vocab.ALPNIstioHTTP11, vocab.ALPNIstioH2}), true),
				tcpChain(match(transportTLS, nonHTTP(alpn))),
			}
		default:
			chains = []*listenerv3.FilterChain{tcpChain(match(transportTLS, alpn))}
		}
		for _, c := range chains {
			c.TransportSocket = meshServerTLS(len(c.Filters) > 0 && c.Filters[0].GetName() == vocab.FilterHCM, sec)
		}
		return chains
	}
	switch ip.MTLS {
	case mesh.MTLSStrict:
		return mtls(nil), nil
	case mesh.MTLSPermissive:
		chains := mtls(meshALPN)
		chains = append(chains, plain(transportRaw)...)
		// TLS that is not mesh mTLS is the application's own: pass it through.
		return append(chains, tcpChain(match(transportTLS, nil))), nil
	}
	return plain(""), nil
}

// nonHTTP returns the mesh ALPN values that do not name HTTP (nil for nil: any ALPN), so that the
// TCP chain of an undeclared port does not overlap its HTTP chain.
func nonHTTP(alpn []string) []string {
	if alpn == nil {
		return nil
	}
	return vocab.IstioALPN()
}
