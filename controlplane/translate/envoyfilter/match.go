package envoyfilter

import (
	"slices"
	"strconv"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/config"
)

// Names of a sidecar's capture listeners. Their filter chains stand for Istio's per-port
// listeners: a listener portNumber is matched against a chain's destination_port, and on
// virtualOutbound a listener name against a chain's name too ("0.0.0.0_8080", as Istio names
// its outbound listeners).
const (
	virtualInbound  = "virtualInbound"
	virtualOutbound = "virtualOutbound"
)

func isVirtual(l *listenerv3.Listener) bool {
	return l.GetName() == virtualInbound || l.GetName() == virtualOutbound
}

// listenerMatch reports whether listener l matches p's listener match (name, portNumber). With
// perChain (patches to filter chains and filters), the match of a virtual listener's port, and
// of virtualOutbound's chain names, is left to filterChainMatch.
func listenerMatch(p *Patch, l *listenerv3.Listener, perChain bool) bool {
	lm := p.Match.GetListener()
	if lm == nil {
		return true
	}
	deferred := perChain && isVirtual(l)
	if lm.GetName() != "" && lm.GetName() != l.GetName() && !(deferred && l.GetName() == virtualOutbound) {
		return false
	}
	if n := lm.GetPortNumber(); n != 0 && !deferred {
		if l.GetAddress().GetSocketAddress().GetPortValue() != n {
			return false
		}
	}
	return true
}

// filterChainMatch reports whether filter chain fc of listener l matches p's filterChain match
// (name, sni, transportProtocol, applicationProtocols, destinationPort, filter and subFilter)
// and, on a virtual listener, the listener's portNumber (and on virtualOutbound its name).
func filterChainMatch(p *Patch, l *listenerv3.Listener, fc *listenerv3.FilterChain) bool {
	lm := p.Match.GetListener()
	if isVirtual(l) {
		if n := lm.GetPortNumber(); n != 0 && fc.GetFilterChainMatch().GetDestinationPort().GetValue() != n {
			return false
		}
		if name := lm.GetName(); name != "" && name != l.GetName() && name != fc.GetName() {
			return false
		}
	}
	m := lm.GetFilterChain()
	if m == nil {
		return true
	}
	fcm := fc.GetFilterChainMatch()
	if m.GetName() != "" && m.GetName() != fc.GetName() {
		return false
	}
	if m.GetSni() != "" && !slices.Contains(fcm.GetServerNames(), m.GetSni()) {
		return false
	}
	if m.GetTransportProtocol() != "" && m.GetTransportProtocol() != fcm.GetTransportProtocol() {
		return false
	}
	if ap := m.GetApplicationProtocols(); ap != "" {
		for _, proto := range strings.Split(ap, ",") {
			if !slices.Contains(fcm.GetApplicationProtocols(), strings.TrimSpace(proto)) {
				return false
			}
		}
	}
	if n := m.GetDestinationPort(); n != 0 && fcm.GetDestinationPort().GetValue() != n {
		return false
	}
	if f := m.GetFilter(); f != nil && f.GetName() != "" {
		name := config.CanonicalFilterName(f.GetName())
		i := slices.IndexFunc(fc.GetFilters(), func(nf *listenerv3.Filter) bool { return config.CanonicalFilterName(nf.GetName()) == name })
		if i < 0 {
			return false
		}
		if sub := f.GetSubFilter().GetName(); sub != "" {
			hcm := decodeHCM(fc.GetFilters()[i])
			if hcm == nil || httpFilterIndex(hcm.GetHttpFilters(), sub) < 0 {
				return false
			}
		}
	}
	return true
}

// networkFilterName is the network filter p names (match.listener.filterChain.filter.name), in
// its current spelling, or "".
func networkFilterName(p *Patch) string {
	return config.CanonicalFilterName(p.Match.GetListener().GetFilterChain().GetFilter().GetName())
}

// httpFilterName is the HTTP filter p names (the filter match's subFilter.name), or "".
func httpFilterName(p *Patch) string {
	return config.CanonicalFilterName(p.Match.GetListener().GetFilterChain().GetFilter().GetSubFilter().GetName())
}

// httpFilterIndex is the index of the first HTTP filter named name (either spelling), or -1.
func httpFilterIndex(fs []*hcmv3.HttpFilter, name string) int {
	name = config.CanonicalFilterName(name)
	return slices.IndexFunc(fs, func(f *hcmv3.HttpFilter) bool { return config.CanonicalFilterName(f.GetName()) == name })
}

// networkFilterIndex is the index of the first network filter named name, or -1.
func networkFilterIndex(fs []*listenerv3.Filter, name string) int {
	return slices.IndexFunc(fs, func(f *listenerv3.Filter) bool { return config.CanonicalFilterName(f.GetName()) == name })
}

// routeConfigMatch reports whether route configuration rc matches p's routeConfiguration match
// (name, portNumber, and for gateways portName and gateway), reading the port, port name and
// gateway from rc's name as Istio names them: "inbound|PORT||" (inbound), "PORT" or
// "HOST:PORT" (outbound), "http.PORT" or "https.PORT.PORTNAME.GATEWAY.NAMESPACE" (gateways).
func routeConfigMatch(p *Patch, rc *routev3.RouteConfiguration) bool {
	m := p.Match.GetRouteConfiguration()
	if m == nil {
		return true
	}
	if m.GetName() != "" && m.GetName() != rc.GetName() {
		return false
	}
	port, portName, gw := parseRouteName(rc.GetName())
	if m.GetPortNumber() != 0 && m.GetPortNumber() != port {
		return false
	}
	if m.GetPortName() != "" && !strings.EqualFold(m.GetPortName(), portName) {
		return false
	}
	if m.GetGateway() != "" && m.GetGateway() != gw {
		return false
	}
	return true
}

// parseRouteName returns the port, gateway server port name and gateway ("namespace/name") a
// route configuration's name encodes (see routeConfigMatch); zero values where it has none.
func parseRouteName(name string) (port uint32, portName, gateway string) {
	num := func(s string) uint32 {
		n, err := strconv.ParseUint(s, 10, 16)
		if err != nil {
			return 0
		}
		return uint32(n)
	}
	switch {
	case strings.HasPrefix(name, "inbound|"):
		parts := strings.Split(name, "|")
		return num(parts[1]), "", ""
	case strings.HasPrefix(name, "http.") || strings.HasPrefix(name, "https."):
		parts := strings.SplitN(name, ".", 5)
		port = num(parts[1])
		if len(parts) == 5 {
			return port, parts[2], parts[4] + "/" + parts[3]
		}
		return port, "", ""
	}
	if i := strings.LastIndexByte(name, ':'); i >= 0 {
		return num(name[i+1:]), "", ""
	}
	return num(name), "", ""
}

// vhostMatch reports whether virtual host vh matches p's vhost match (name, domainName).
func vhostMatch(p *Patch, vh *routev3.VirtualHost) bool {
	m := p.Match.GetRouteConfiguration().GetVhost()
	if m == nil {
		return true
	}
	if m.GetName() != "" && m.GetName() != vh.GetName() {
		return false
	}
	if m.GetDomainName() != "" && !slices.Contains(vh.GetDomains(), m.GetDomainName()) {
		return false
	}
	return true
}

// routeMatch reports whether route r matches p's route match (name, action).
func routeMatch(p *Patch, r *routev3.Route) bool {
	m := p.Match.GetRouteConfiguration().GetVhost().GetRoute()
	if m == nil {
		return true
	}
	if m.GetName() != "" && m.GetName() != r.GetName() {
		return false
	}
	switch m.GetAction() {
	case networking.EnvoyFilter_RouteConfigurationMatch_RouteMatch_ROUTE:
		return r.GetRoute() != nil
	case networking.EnvoyFilter_RouteConfigurationMatch_RouteMatch_REDIRECT:
		return r.GetRedirect() != nil
	case networking.EnvoyFilter_RouteConfigurationMatch_RouteMatch_DIRECT_RESPONSE:
		return r.GetDirectResponse() != nil
	}
	return true
}

// routeSelected reports whether p's route match selects one route (a name or an action): INSERT
// operations are then relative to it.
func routeSelected(p *Patch) bool {
	m := p.Match.GetRouteConfiguration().GetVhost().GetRoute()
	return m.GetName() != "" || m.GetAction() != networking.EnvoyFilter_RouteConfigurationMatch_RouteMatch_ANY
}

// clusterMatch reports whether cluster c matches p's cluster match (name, and portNumber,
// service and subset read from Istio's cluster name "DIRECTION|PORT|SUBSET|HOST").
func clusterMatch(p *Patch, c *clusterv3.Cluster) bool {
	m := p.Match.GetCluster()
	if m == nil {
		return true
	}
	if m.GetName() != "" && m.GetName() != c.GetName() {
		return false
	}
	if m.GetPortNumber() == 0 && m.GetService() == "" && m.GetSubset() == "" {
		return true
	}
	parts := strings.Split(c.GetName(), "|")
	if len(parts) != 4 {
		return false
	}
	if m.GetPortNumber() != 0 && parts[1] != strconv.FormatUint(uint64(m.GetPortNumber()), 10) {
		return false
	}
	if m.GetSubset() != "" && m.GetSubset() != parts[2] {
		return false
	}
	if m.GetService() != "" && m.GetService() != parts[3] {
		return false
	}
	return true
}
