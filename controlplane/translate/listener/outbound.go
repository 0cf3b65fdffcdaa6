package listener

import (
	"fmt"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/registry"
	"github.com/strait-mesh/strait/controlplane/translate/cluster"
	"github.com/strait-mesh/strait/controlplane/translate/route"
	"github.com/strait-mesh/strait/internal/vocab"
)

// TCPRouter returns the VirtualService tcp routes (TCP ports) or tls routes (TLS/HTTPS ports) for
// a service port, or nil to send everything to the service's default cluster. The top-level
// generator adapts route.Builder.TCPRoutes/TLSRoutes.
type TCPRouter func(svc *registry.Service, port registry.Port) ([]route.L4Route, error)

// Outbound is the input of the sidecar outbound listeners.
type Outbound struct {
	Snap     *mesh.Snapshot
	Scope    *mesh.Scope
	Workload mesh.Workload
	// Explicit is true for INTERCEPTION_MODE=NONE: no 15001 capture; every egress port gets a
	// listener bound on loopback (or the egress listener's bind address).
	Explicit bool
	// TCPRoutes applies VirtualService tcp/tls routes; nil routes to the service cluster.
	TCPRoutes TCPRouter
	// Report receives services left out because an earlier service's filter chain matches the
	// same connections (e.g. two TCP services without addresses on one port). May be nil.
	Report func(error)
	// Telemetry is the workload's client-side telemetry (Telemetry API, MeshConfig).
	Telemetry Telemetry
	// Parts, when set, lets the caller reuse service chains and address listeners built
	// earlier from the same inputs (see Parts); nil builds everything.
	Parts Parts

	accessLog []*accesslogv3.AccessLog // Telemetry's or Snap.Mesh's, built once by BuildOutbound
}

// BuildOutbound returns the sidecar's outbound listeners: virtualOutbound (unless every egress
// listener is explicit), one bound listener per explicit egress port, and a bind_to_port=false
// listener per service address with chains of its own (byaddress.go), reached from
// virtualOutbound by original destination.
func BuildOutbound(in Outbound) ([]*listenerv3.Listener, error) {
	in.accessLog = in.Telemetry.accessLogOr(AccessLogFromMesh(in.Snap.Mesh))
	var out []*listenerv3.Listener
	var captured chainSet
	memo := map[httpChainKey]*listenerv3.FilterChain{}
	explicit := map[string]*explicitListener{}
	var explicitOrder []string
	for _, l := range in.Scope.Egress {
		bind, isExplicit, bound := egressBind(l, in.Explicit)
		for _, svc := range l.Services {
			for _, port := range in.Scope.Ports(svc) {
				if l.Port != 0 && port.Number != l.Port {
					continue
				}
				if p := l.Spec.GetPort().GetProtocol(); p != "" {
					port.Protocol = registry.ParseProtocol(p)
				}
				chains, err := serviceChains(in, svc, port, isExplicit, memo)
				if err != nil {
					return nil, err
				}
				if !isExplicit {
					for _, c := range chains {
						in.conflict(captured.addOrExisting(c), c, svc, vocab.VirtualOutbound)
					}
					continue
				}
				key := listenerName(bind, port.Number)
				el := explicit[key]
				if el == nil {
					el = &explicitListener{bind: bind, port: port.Number, bound: bound}
					explicit[key] = el
					explicitOrder = append(explicitOrder, key)
				}
				for _, c := range chains {
					in.conflict(el.chains.addOrExisting(c), c, svc, key)
				}
			}
		}
	}
	handoff := false
	for _, el := range explicit {
		handoff = handoff || !el.bound
	}
	var own []*listenerv3.Listener
	if !allExplicit(in) {
		def := defaultChain(in)
		if in.Parts != nil {
			def = in.Parts.DefaultChain(in.Scope.RegistryOnly, func() *listenerv3.FilterChain { return def })
		}
		rest, byAddr := splitByAddress(&captured, def, func(name string) bool { return explicit[name] != nil }, in.Parts)

		vo := virtualOutbound(in, rest, def)
		if handoff || len(byAddr) > 0 {
			// Captured connections whose original destination is a bind_to_port=false
			// listener's address are handed to it, as Istio's virtualOutbound does.
			vo.UseOriginalDst = wrapperspb.Bool(true)
		}
		out = append(out, vo)
		own = byAddr
	}
	for _, key := range explicitOrder {
		el := explicit[key]
		var bindToPort *wrapperspb.BoolValue
		if !el.bound {
			bindToPort = wrapperspb.Bool(false)
		}
		lf := []*listenerv3.ListenerFilter{}
		if el.chains.tls {
			lf = append(lf, tlsInspector())
		}
		if el.chains.http {
			lf = append(lf, httpInspector())
		}
		out = append(out, &listenerv3.Listener{
			Name:             key,
			Address:          socketAddress(el.bind, el.port),
			FilterChains:     el.chains.chains,
			ListenerFilters:  lf,
			BindToPort:       bindToPort,
			TrafficDirection: corev3.TrafficDirection_OUTBOUND,
		})
	}
	if in.Parts != nil {
		for i, l := range out {
			out[i] = in.Parts.Listener(l)
		}
	}
	return append(out, own...), nil
}

// httpChainKey identifies the shared plain HTTP chain of a port.
type httpChainKey struct {
	port  uint32
	bound bool
}

// conflict reports chain c of svc, dropped because prev already matches its connections, unless
// prev has the same name or does the same with them (a chain several services build alike).
func (in Outbound) conflict(prev, c *listenerv3.FilterChain, svc *registry.Service, listenerName string) {
	if prev == nil || prev.GetName() == c.GetName() || in.Report == nil || sameFilters(prev, c) {
		return
	}
	in.Report(fmt.Errorf("service %s (%s): filter chain %q on %s matches the same connections as %q; its traffic goes there",
		svc.Hostname, svc.Origin, c.GetName(), listenerName, prev.GetName()))
}

// sameFilters reports whether two chains handle their connections alike.
func sameFilters(a, b *listenerv3.FilterChain) bool {
	if len(a.GetFilters()) != len(b.GetFilters()) {
		return false
	}
	for i, f := range a.GetFilters() {
		if !proto.Equal(f, b.GetFilters()[i]) {
			return false
		}
	}
	return true
}

type explicitListener struct {
	bind   string
	port   uint32
	bound  bool // false: bind_to_port=false, reached by hand-off from virtualOutbound
	chains chainSet
}

// egressBind says whether an egress listener gets a listener of its own (own), where, and whether
// that listener binds its port. As Istio's getBindToPort: it binds with captureMode NONE, or with
// DEFAULT on a proxy without interception; otherwise (a bind address on a captured proxy) its
// traffic is captured and virtualOutbound hands it over by original destination.
func egressBind(l *mesh.EgressListener, explicitProxy bool) (bind string, own, bound bool) {
	spec := l.Spec
	mode := spec.GetCaptureMode()
	bound = mode == networking.CaptureMode_NONE || (mode == networking.CaptureMode_DEFAULT && explicitProxy)
	if spec.GetBind() != "" {
		return spec.GetBind(), true, bound
	}
	if explicitProxy || mode == networking.CaptureMode_NONE {
		return "127.0.0.1", true, true
	}
	return "", false, false
}

// allExplicit reports whether every egress listener binds a listener of its own, so that no
// traffic is captured and virtualOutbound is not needed.
func allExplicit(in Outbound) bool {
	for _, l := range in.Scope.Egress {
		if _, own, bound := egressBind(l, in.Explicit); !own || !bound {
			return false
		}
	}
	return true
}

// defaultChain is the chain of captured connections no other chain matches: to
// PassthroughCluster, or BlackHoleCluster when the scope is REGISTRY_ONLY.
func defaultChain(in Outbound) *listenerv3.FilterChain {
	if in.Scope.RegistryOnly {
		return &listenerv3.FilterChain{Name: vocab.BlackHoleFilterChain, Filters: withTCPStats(in.Telemetry.TCPStats,
			tcpProxy(tcpOptions{statPrefix: vocab.BlackHoleCluster, cluster: vocab.BlackHoleCluster, accessLog: in.accessLog}))}
	}
	return &listenerv3.FilterChain{Name: vocab.PassthroughFilterChain, Filters: withTCPStats(in.Telemetry.TCPStats,
		tcpProxy(tcpOptions{statPrefix: vocab.PassthroughCluster, cluster: vocab.PassthroughCluster, accessLog: in.accessLog}))}
}

// virtualOutbound builds the 15001 capture listener from the collected chains and the default
// chain.
func virtualOutbound(in Outbound, cs *chainSet, def *listenerv3.FilterChain) *listenerv3.Listener {
	lf := []*listenerv3.ListenerFilter{originalDst()}
	if cs.tls {
		lf = append(lf, tlsInspector())
	}
	if cs.http {
		lf = append(lf, httpInspector())
	}
	return &listenerv3.Listener{
		Name:               vocab.VirtualOutbound,
		Address:            socketAddress("0.0.0.0", vocab.OutboundCapturePort),
		ListenerFilters:    lf,
		FilterChains:       cs.chains,
		DefaultFilterChain: def,
		TrafficDirection:   corev3.TrafficDirection_OUTBOUND,
	}
}

// serviceChains returns the filter chains of one service port: HTTP (connection manager with
// RDS "PORT"), TCP (tcp_proxy, matched by the service addresses when it has any), TLS/HTTPS
// (tcp_proxy matched by SNI), or, for undeclared protocols, both behind http_inspector.
// bound is true for explicit listeners, where destination addresses are the listener's own and
// cannot be matched.
func serviceChains(in Outbound, svc *registry.Service, port registry.Port, bound bool, memo map[httpChainKey]*listenerv3.FilterChain) ([]*listenerv3.FilterChain, error) {
	p := strconv.FormatUint(uint64(port.Number), 10)
	match := func() *listenerv3.FilterChainMatch {
		m := &listenerv3.FilterChainMatch{}
		if !bound {
			m.DestinationPort = u32(port.Number)
		}
		return m
	}
	httpChain := func(m *listenerv3.FilterChainMatch) *listenerv3.FilterChain {
		return &listenerv3.FilterChain{Name: "0.0.0.0_" + p, FilterChainMatch: m,
			Filters: []*listenerv3.Filter{hcm(hcmOptions{statPrefix: "outbound_0.0.0.0_" + p, rds: p,
				pathNorm: in.Snap.Mesh.GetPathNormalization().GetNormalization(), accessLog: in.accessLog, tel: in.Telemetry})}}
	}
	switch {
	case port.Protocol.IsHTTP():
		// Every HTTP service on a port shares one chain (routing is by Host): build it once.
		key := httpChainKey{port.Number, bound}
		c := memo[key]
		if c == nil {
			c = httpChain(match())
			memo[key] = c
		}
		return []*listenerv3.FilterChain{c}, nil
	case port.Protocol == registry.UDP:
		return nil, nil // UDP is not proxied (Istio captures TCP only)
	}
	var routes []route.L4Route
	if in.TCPRoutes != nil {
		r, err := in.TCPRoutes(svc, port)
		if err != nil {
			return nil, err
		}
		routes = r
	}
	build := func() ([]*listenerv3.FilterChain, error) {
		tcpChains := tcpChains(in, svc, port, bound, routes, match)
		if port.Protocol != registry.Unsupported {
			return tcpChains, nil
		}
		m := match()
		if !bound {
			m.PrefixRanges = cidrRanges(svc.Addresses)
		}
		m.ApplicationProtocols = sniffedALPN
		return append([]*listenerv3.FilterChain{httpChain(m)}, tcpChains...), nil
	}
	if in.Parts == nil {
		return build()
	}
	return in.Parts.ServiceChains(&ChainInputs{Service: svc, Port: port, Bound: bound, Routes: routes}, build)
}

// tcpChains returns the tcp_proxy chains of a service port, one per VirtualService TCP/TLS route
// (routes) or one to the default cluster.
func tcpChains(in Outbound, svc *registry.Service, port registry.Port, bound bool, routes []route.L4Route, match func() *listenerv3.FilterChainMatch) []*listenerv3.FilterChain {
	def := vocab.OutboundClusterName(port.Number, "", svc.Hostname)
	dr := cluster.RuleOf(in.Snap.DestinationRule(in.Workload, svc.Hostname))
	var tp *networking.TrafficPolicy
	if dr != nil {
		tp = cluster.EffectivePolicy(dr.Spec, nil, port.Number)
	}
	idle, maxDur := cluster.TCPSettings(tp)
	if len(routes) == 0 {
		routes = []route.L4Route{{TCPProxy: &tcpproxyv3.TcpProxy{StatPrefix: def,
			ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: def}}}}
	}
	var out []*listenerv3.FilterChain
	for _, rt := range routes {
		m := match()
		add := rt.Match
		if !bound {
			m.PrefixRanges = add.GetPrefixRanges()
			// A TLS chain matches by SNI; an auto-allocated VIP would only turn away
			// clients that resolved the name elsewhere, so it is not matched.
			if len(m.PrefixRanges) == 0 && !(port.Protocol.IsTLS() && svc.AutoAllocated) {
				m.PrefixRanges = cidrRanges(svc.Addresses)
			}
			m.SourcePrefixRanges = add.GetSourcePrefixRanges()
		}
		name := def
		if port.Protocol.IsTLS() {
			m.TransportProtocol = "tls"
			m.ServerNames = add.GetServerNames()
			if len(m.ServerNames) == 0 && svc.Hostname != "*" {
				m.ServerNames = []string{svc.Hostname}
			}
			name = tlsChainName(def, port.Number, svc.Hostname, m.ServerNames)
		}
		out = append(out, &listenerv3.FilterChain{Name: name, FilterChainMatch: m, Filters: withTCPStats(in.Telemetry.TCPStats,
			tcpFilter(rt.TCPProxy, idle, maxDur, in.accessLog))})
	}
	return out
}

// tlsChainName names a TLS chain of the service host: its default cluster def, unless the chain
// matches only other hosts' SNI names (a tls route of a VirtualService for several hosts, which
// every one of those hosts' services builds): then the first such host's default cluster, so that
// each host's chain carries that host's name whichever service builds it first.
func tlsChainName(def string, port uint32, host string, serverNames []string) string {
	for _, sni := range serverNames {
		if mesh.HostsOverlap(sni, host) {
			return def
		}
	}
	for _, sni := range serverNames {
		if !strings.HasPrefix(sni, "*") {
			return vocab.OutboundClusterName(port, "", sni)
		}
	}
	return def
}

// tcpFilter wraps a tcp_proxy config from the route package, adding the DestinationRule's idle
// timeout and maximum connection duration and the access log (on a copy: route results may be
// shared).
func tcpFilter(tp *tcpproxyv3.TcpProxy, idle, maxDur time.Duration, al []*accesslogv3.AccessLog) *listenerv3.Filter {
	if idle > 0 || maxDur > 0 || len(al) > 0 {
		tp = proto.Clone(tp).(*tcpproxyv3.TcpProxy)
		tp.AccessLog = al
		if idle > 0 {
			tp.IdleTimeout = durationpb.New(idle)
		}
		if maxDur > 0 {
			tp.MaxDownstreamConnectionDuration = durationpb.New(maxDur)
		}
	}
	return networkFilter(vocab.FilterTCPProxy, tp)
}
