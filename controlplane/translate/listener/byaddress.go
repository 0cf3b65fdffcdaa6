package listener

import (
	"net/netip"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/strait-mesh/strait/controlplane/registry"
	"github.com/strait-mesh/strait/controlplane/translate/route"
)

// Listeners per service address (issue 13, item 2).
//
// virtualOutbound carries a filter chain per TCP (and TLS, and undeclared-protocol) service
// port, matched by the service's addresses: ~1,000 chains, 287 KiB, at 1,000 services. A
// listener is one xDS resource, so adding or changing one TCP service re-sent all of it to
// every proxy. As Istio does, the chains that match exact service addresses get listeners of
// their own, named "ADDRESS_PORT", with bind_to_port false: virtualOutbound (use_original_dst)
// hands a connection whose original destination is exactly ADDRESS:PORT to that listener, and
// a service change now re-sends its own small listeners only.
//
// Routing is unchanged. Envoy (and strait-proxy) select a filter chain by destination port,
// then the most specific destination prefix, then server name, transport protocol and so on,
// never backtracking to a less specific candidate. For a connection to A:P where some chain on
// port P matches the host prefix A/32 (/128), only the chains matching A/32 on P are ever
// candidates, and when none of them matches the rest, the default chain is taken. The
// listener of A:P holds exactly those chains, in the same order, and virtualOutbound's default
// chain: the same choice. Chains whose every prefix is a host address are moved (one chain
// with several addresses goes to each address's listener); a chain that also matches a wider
// prefix keeps its addresses' chains in virtualOutbound (their group cannot be split), and so
// does an address whose listener name an explicit egress listener already has. The hand-off
// takes the exact address only, never a wildcard "0.0.0.0_PORT" listener, which would take
// other services' connections on the port.

// addrPort is a service address and port with chains of their own.
type addrPort struct {
	addr netip.Addr
	port uint32
}

// addressGroup is the chains that match one address and port, and whether they may move.
type addressGroup struct {
	chains  chainSet
	blocked bool // a chain matching A/32 also matches a wider prefix
}

// splitByAddress returns the chains of cs that stay on virtualOutbound, and a listener per
// service address and port for the others (see above), in the order of their first chains.
// taken reports listener names already in use; def is virtualOutbound's default chain; parts
// may be nil.
func splitByAddress(cs *chainSet, def *listenerv3.FilterChain, taken func(name string) bool, parts Parts) (*chainSet, []*listenerv3.Listener) {
	groups := map[addrPort]*addressGroup{}
	var order []addrPort
	hosts := make([][]addrPort, len(cs.chains)) // per chain: its host addresses
	movable := make([]bool, len(cs.chains))     // every prefix of the chain is a host address
	for i, c := range cs.chains {
		m := c.GetFilterChainMatch()
		port := m.GetDestinationPort().GetValue()
		movable[i] = port != 0 && len(m.GetPrefixRanges()) > 0
		for _, r := range m.GetPrefixRanges() {
			a, ok := hostAddress(r)
			if !ok {
				movable[i] = false
				continue
			}
			if port == 0 {
				continue
			}
			k := addrPort{a, port}
			g := groups[k]
			if g == nil {
				g = &addressGroup{}
				groups[k] = g
				order = append(order, k)
			}
			hosts[i] = append(hosts[i], k)
		}
	}
	for i, c := range cs.chains {
		for _, k := range hosts[i] {
			g := groups[k]
			g.blocked = g.blocked || !movable[i]
			g.chains.add(c)
		}
	}
	moved := func(k addrPort) bool {
		return !groups[k].blocked && !taken(listenerName(k.addr.String(), k.port))
	}
	rest := &chainSet{}
	for i, c := range cs.chains {
		stays := !movable[i]
		for _, k := range hosts[i] {
			stays = stays || !moved(k)
		}
		if stays {
			rest.add(c)
		}
	}
	var own []*listenerv3.Listener
	for _, k := range order {
		if !moved(k) {
			continue
		}
		g := groups[k]
		name := listenerName(k.addr.String(), k.port)
		build := func() *listenerv3.Listener {
			lf := []*listenerv3.ListenerFilter{}
			if g.chains.tls {
				lf = append(lf, tlsInspector())
			}
			if g.chains.http {
				lf = append(lf, httpInspector())
			}
			return &listenerv3.Listener{
				Name:               name,
				Address:            socketAddress(k.addr.String(), k.port),
				ListenerFilters:    lf,
				FilterChains:       g.chains.chains,
				DefaultFilterChain: def,
				BindToPort:         wrapperspb.Bool(false),
				TrafficDirection:   corev3.TrafficDirection_OUTBOUND,
			}
		}
		if parts != nil {
			own = append(own, parts.AddressListener(name, g.chains.chains, def, build))
		} else {
			own = append(own, build())
		}
	}
	return rest, own
}

// hostAddress returns the address of a prefix range that names exactly one address (/32 for
// IPv4, /128 for IPv6).
func hostAddress(r *corev3.CidrRange) (netip.Addr, bool) {
	a, err := netip.ParseAddr(r.GetAddressPrefix())
	if err != nil || r.GetPrefixLen() == nil || int(r.GetPrefixLen().GetValue()) != a.BitLen() {
		return netip.Addr{}, false
	}
	return a, true
}

// Parts keeps service chains and address listeners between builds of a scope's outbound
// listeners (Outbound.Parts), so that a config change rebuilds (and the xDS server re-marshals)
// only the chains and listeners whose inputs it changed. Each method returns build's result or
// l, or one built earlier with the same content; results must not be modified. A Parts serves
// one build at a time.
type Parts interface {
	// ServiceChains returns the chains of one service port. Besides in, they read the scope's
	// telemetry and mesh config (access log, path normalization), and the DestinationRule of
	// the service's hostname for the workload (TCP idle timeout and maximum duration).
	ServiceChains(in *ChainInputs, build func() ([]*listenerv3.FilterChain, error)) ([]*listenerv3.FilterChain, error)
	// DefaultChain returns the default chain of captured connections. Besides registryOnly it
	// reads the scope's telemetry and mesh config.
	DefaultChain(registryOnly bool, build func() *listenerv3.FilterChain) *listenerv3.FilterChain
	// AddressListener returns the listener of one service address: build's, or the one built
	// before under the same name from the same chain and default chain objects (what Parts
	// returned, so the same content), which is all it is made of.
	AddressListener(name string, chains []*listenerv3.FilterChain, def *listenerv3.FilterChain, build func() *listenerv3.Listener) *listenerv3.Listener
	// Listener returns l (virtualOutbound or an egress listener) or an earlier listener of the
	// same content.
	Listener(l *listenerv3.Listener) *listenerv3.Listener
}

// ChainInputs is what the filter chains of one service port are built from, with what Parts
// documents.
type ChainInputs struct {
	Service *registry.Service
	// Port is the service port, with the egress listener's protocol when it overrides it.
	Port registry.Port
	// Bound is true on a listener of its own (explicit egress): no destination matching.
	Bound bool
	// Routes are the VirtualService tcp or tls routes of the port (Outbound.TCPRoutes).
	Routes []route.L4Route
}
