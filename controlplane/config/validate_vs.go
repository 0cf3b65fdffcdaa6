package config

import (
	"fmt"
	"strconv"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
)

// validateVirtualService checks a VirtualService as Istio does.
func validateVirtualService(fe *fieldErrs, vs *networking.VirtualService) {
	delegate := len(vs.Hosts) == 0
	appliesToMesh := len(vs.Gateways) == 0
	for i, gw := range vs.Gateways {
		validateGatewayRef(fe, fmt.Sprintf("spec.gateways[%d]", i), gw)
		if gw == "mesh" {
			appliesToMesh = true
		}
	}
	if delegate {
		if len(vs.Gateways) > 0 {
			fe.add("spec.gateways", "a delegate VirtualService (one without hosts) must not set gateways")
		}
		if len(vs.Tcp) > 0 || len(vs.Tls) > 0 {
			fe.add("spec", "a delegate VirtualService (one without hosts) supports only http routes")
		}
	}
	seenHosts := map[string]bool{}
	for i, h := range vs.Hosts {
		p := fmt.Sprintf("spec.hosts[%d]", i)
		switch {
		case strings.Contains(h, "/"):
			fe.add(p, "host %s must not contain a namespace; use exportTo to control visibility", quoteShort(h))
		case isIP(h):
		default:
			if msg := wildcardHostErr(h); msg != "" {
				fe.add(p, "%s", msg)
			}
		}
		if appliesToMesh && h == "*" {
			fe.add(p, "wildcard host \"*\" is not allowed for VirtualServices bound to the mesh gateway")
		}
		if seenHosts[strings.ToLower(h)] {
			fe.add(p, "duplicate host %s", quoteShort(h))
		}
		seenHosts[strings.ToLower(h)] = true
	}
	if len(vs.Http) == 0 && len(vs.Tcp) == 0 && len(vs.Tls) == 0 {
		fe.add("spec", "at least one of http, tcp or tls routes is required")
	}
	routeNames := map[string]int{}
	eachItem(fe, "spec.http", vs.Http, "route", func(i int, p string, r *networking.HTTPRoute) {
		if r.Name != "" {
			if j, dup := routeNames[r.Name]; dup {
				fe.add(p+".name", "duplicate route name %s (also spec.http[%d])", quoteShort(r.Name), j)
			} else {
				routeNames[r.Name] = i
			}
		}
		validateHTTPRoute(fe, p, r, delegate)
	})
	eachItem(fe, "spec.tls", vs.Tls, "route", func(_ int, p string, r *networking.TLSRoute) {
		validateTLSRoute(fe, p, r, vs.Hosts)
	})
	eachItem(fe, "spec.tcp", vs.Tcp, "route", func(_ int, p string, r *networking.TCPRoute) {
		validateTCPRoute(fe, p, r)
	})
	validateExportTo(fe, "spec.exportTo", vs.ExportTo)
}

// validateHTTPRoute checks one HTTP route. inDelegate is true inside a delegate VirtualService,
// where routes may not delegate again.
func validateHTTPRoute(fe *fieldErrs, p string, r *networking.HTTPRoute, inDelegate bool) {
	if r.Delegate != nil {
		if inDelegate {
			fe.add(p+".delegate", "a delegate VirtualService must not delegate again")
		}
		if r.Delegate.Name == "" {
			fe.add(p+".delegate.name", "delegate name is required")
		} else if !isDNS1123Subdomain(r.Delegate.Name) {
			fe.add(p+".delegate.name", "invalid delegate name %s: %s", quoteShort(r.Delegate.Name), dns1123SubdomainMsg)
		}
		if r.Delegate.Namespace != "" && !isDNS1123Label(r.Delegate.Namespace) {
			fe.add(p+".delegate.namespace", "invalid namespace %s: %s", quoteShort(r.Delegate.Namespace), dns1123LabelMsg)
		}
		if len(r.Route) > 0 || r.Redirect != nil || r.DirectResponse != nil {
			fe.add(p+".delegate", "delegate cannot be combined with route, redirect or directResponse")
		}
	}
	actions := 0
	for _, set := range []bool{len(r.Route) > 0, r.Redirect != nil, r.DirectResponse != nil} {
		if set {
			actions++
		}
	}
	if actions == 0 && r.Delegate == nil {
		fe.add(p, "one of route, redirect, directResponse or delegate is required")
	}
	if actions > 1 {
		fe.add(p, "only one of route, redirect and directResponse may be set")
	}
	if r.Rewrite != nil && r.Redirect != nil {
		fe.add(p+".rewrite", "rewrite cannot be combined with redirect")
	}
	for i, m := range r.Match {
		validateHTTPMatch(fe, fmt.Sprintf("%s.match[%d]", p, i), m)
	}
	validateHTTPRouteDestinations(fe, p+".route", r.Route)
	if r.Redirect != nil {
		validateRedirect(fe, p+".redirect", r.Redirect)
	}
	if r.DirectResponse != nil {
		validateDirectResponse(fe, p+".directResponse", r.DirectResponse)
	}
	if r.Rewrite != nil {
		validateRewrite(fe, p+".rewrite", r.Rewrite)
	}
	validateDurationOrZero(fe, p+".timeout", r.Timeout)
	if r.Retries != nil {
		validateRetries(fe, p+".retries", r.Retries)
	}
	if r.Fault != nil {
		validateFault(fe, p+".fault", r.Fault)
	}
	validateMirrors(fe, p, r)
	if r.CorsPolicy != nil {
		validateCors(fe, p+".corsPolicy", r.CorsPolicy)
	}
	validateHeaders(fe, p+".headers", r.Headers)
}

// validateHTTPMatch checks one match condition.
func validateHTTPMatch(fe *fieldErrs, p string, m *networking.HTTPMatchRequest) {
	if m == nil {
		fe.add(p, "match must not be null")
		return
	}
	validateStringMatch(fe, p+".uri", m.Uri)
	validateStringMatch(fe, p+".scheme", m.Scheme)
	validateStringMatch(fe, p+".method", m.Method)
	validateStringMatch(fe, p+".authority", m.Authority)
	for _, set := range []struct {
		name string
		m    map[string]*networking.StringMatch
	}{{"headers", m.Headers}, {"withoutHeaders", m.WithoutHeaders}} {
		for _, k := range sortedStringKeys(set.m) {
			hp := p + "." + set.name + "[" + strconv.Quote(k) + "]"
			validateHeaderName(fe, hp, k)
			if strings.HasPrefix(k, ":") {
				fe.add(hp, "pseudo-header %s cannot be matched as a header; use uri, method, scheme or authority", quoteShort(k))
			}
			if k != strings.ToLower(k) {
				fe.add(hp, "header name %s must be lower case", quoteShort(k))
			}
			if set.m[k] != nil && set.m[k].MatchType == nil && set.name == "headers" {
				// An empty match on headers means "header present": Istio accepts it.
				continue
			}
			if set.m[k] != nil && set.m[k].MatchType != nil {
				validateStringMatch(fe, hp, set.m[k])
			}
		}
	}
	for _, k := range sortedStringKeys(m.QueryParams) {
		qp := p + ".queryParams[" + strconv.Quote(k) + "]"
		if k == "" {
			fe.add(qp, "query parameter name must not be empty")
		}
		if q := m.QueryParams[k]; q != nil && q.MatchType != nil {
			validateStringMatch(fe, qp, q)
		}
	}
	if m.Port != 0 {
		validatePort(fe, p+".port", m.Port)
	}
	validateLabels(fe, p+".sourceLabels", m.SourceLabels)
	for i, gw := range m.Gateways {
		validateGatewayRef(fe, fmt.Sprintf("%s.gateways[%d]", p, i), gw)
	}
	if m.SourceNamespace != "" && !isDNS1123Label(m.SourceNamespace) {
		fe.add(p+".sourceNamespace", "invalid namespace %s: %s", quoteShort(m.SourceNamespace), dns1123LabelMsg)
	}
}

// validateDestination checks a route destination.
func validateDestination(fe *fieldErrs, p string, d *networking.Destination) {
	if d == nil {
		fe.add(p, "destination is required")
		return
	}
	switch {
	case d.Host == "":
		fe.add(p+".host", "destination host is required")
	case d.Host == "*":
		fe.add(p+".host", "destination host must not be \"*\"")
	default:
		if msg := wildcardHostErr(d.Host); msg != "" {
			fe.add(p+".host", "%s", msg)
		}
	}
	if d.Subset != "" && !isDNS1123Label(d.Subset) {
		fe.add(p+".subset", "invalid subset name %s: %s", quoteShort(d.Subset), dns1123LabelMsg)
	}
	if d.Port != nil {
		validatePort(fe, p+".port.number", d.Port.Number)
	}
}

// maxTotalWeight keeps the sum of weights within Envoy's uint32 total_weight.
const maxTotalWeight = 1 << 31

// validateHTTPRouteDestinations checks HTTP route destinations (see validateWeighted) and their
// header operations.
func validateHTTPRouteDestinations(fe *fieldErrs, p string, ds []*networking.HTTPRouteDestination) {
	validateWeighted(fe, p, ds, func(dp string, d *networking.HTTPRouteDestination) {
		validateHeaders(fe, dp+".headers", d.Headers)
	})
}

// validateRouteDestinations checks TCP and TLS route destinations (see validateWeighted): at
// least one is required.
func validateRouteDestinations(fe *fieldErrs, p string, ds []*networking.RouteDestination) {
	if len(ds) == 0 {
		fe.add(p, "at least one route destination is required")
	}
	validateWeighted(fe, p, ds, func(string, *networking.RouteDestination) {})
}

// weightedDestination is an HTTP or a TCP/TLS route destination.
type weightedDestination interface {
	comparable
	GetDestination() *networking.Destination
	GetWeight() int32
}

// validateWeighted checks destinations and weights, what HTTP and TCP/TLS routes share: weights
// are relative (Istio no longer requires them to add up to 100), must not be negative, and with
// more than one destination they must not all be 0. more checks what only one kind has.
func validateWeighted[D weightedDestination](fe *fieldErrs, p string, ds []D, more func(dp string, d D)) {
	var total int64
	eachItem(fe, p, ds, "destination", func(_ int, dp string, d D) {
		validateDestination(fe, dp+".destination", d.GetDestination())
		if d.GetWeight() < 0 {
			fe.add(dp+".weight", "weight %d must not be negative", d.GetWeight())
		}
		total += int64(d.GetWeight())
		more(dp, d)
	})
	if len(ds) > 1 && total == 0 {
		fe.add(p, "the total weight of the destinations must be greater than 0")
	}
	if total >= maxTotalWeight {
		fe.add(p, "the total weight of the destinations (%d) is too large", total)
	}
}

// validateTLSRoute checks a TLS route: matches with SNI hosts that match the VirtualService hosts.
func validateTLSRoute(fe *fieldErrs, p string, r *networking.TLSRoute, vsHosts []string) {
	if len(r.Match) == 0 {
		fe.add(p+".match", "a TLS route needs at least one match")
	}
	eachItem(fe, p+".match", r.Match, "match", func(_ int, mp string, m *networking.TLSMatchAttributes) {
		if len(m.SniHosts) == 0 {
			fe.add(mp+".sniHosts", "a TLS match needs at least one SNI host")
		}
		for j, sni := range m.SniHosts {
			sp := fmt.Sprintf("%s.sniHosts[%d]", mp, j)
			if msg := wildcardHostErr(sni); msg != "" {
				fe.add(sp, "%s", msg)
				continue
			}
			if !sniMatchesHosts(sni, vsHosts) {
				fe.add(sp, "SNI host %s does not match any of the VirtualService hosts", quoteShort(sni))
			}
		}
		validateL4Match(fe, mp, m.DestinationSubnets, m.Port, m.SourceLabels, m.Gateways, m.SourceNamespace)
	})
	validateRouteDestinations(fe, p+".route", r.Route)
}

// sniMatchesHosts reports whether an SNI host is covered by one of the hosts (wildcards on either
// side). A short VirtualService host is taken as matching its FQDN forms.
func sniMatchesHosts(sni string, hosts []string) bool {
	for _, h := range hosts {
		if hostsOverlap(sni, h) || strings.HasPrefix(sni, h+".") {
			return true
		}
	}
	return false
}

// hostsOverlap reports whether two hosts, each possibly a wildcard, can name the same host.
func hostsOverlap(a, b string) bool {
	a, b = strings.ToLower(a), strings.ToLower(b)
	if a == b || a == "*" || b == "*" {
		return true
	}
	if strings.HasPrefix(a, "*") && strings.HasSuffix(b, a[1:]) {
		return true
	}
	if strings.HasPrefix(b, "*") && strings.HasSuffix(a, b[1:]) {
		return true
	}
	return false
}

// validateTCPRoute checks a TCP route.
func validateTCPRoute(fe *fieldErrs, p string, r *networking.TCPRoute) {
	eachItem(fe, p+".match", r.Match, "match", func(_ int, mp string, m *networking.L4MatchAttributes) {
		validateL4Match(fe, mp, m.DestinationSubnets, m.Port, m.SourceLabels, m.Gateways, m.SourceNamespace)
		if m.SourceSubnet != "" && !isIP(m.SourceSubnet) && !isCIDR(m.SourceSubnet) {
			fe.add(mp+".sourceSubnet", "%s is not an IP address or CIDR", quoteShort(m.SourceSubnet))
		}
	})
	validateRouteDestinations(fe, p+".route", r.Route)
}

// validateL4Match checks the match fields shared by TCP and TLS routes.
func validateL4Match(fe *fieldErrs, p string, subnets []string, port uint32, labels map[string]string, gateways []string, ns string) {
	for i, s := range subnets {
		if !isIP(s) && !isCIDR(s) {
			fe.add(fmt.Sprintf("%s.destinationSubnets[%d]", p, i), "%s is not an IP address or CIDR", quoteShort(s))
		}
	}
	if port != 0 {
		validatePort(fe, p+".port", port)
	}
	validateLabels(fe, p+".sourceLabels", labels)
	for i, gw := range gateways {
		validateGatewayRef(fe, fmt.Sprintf("%s.gateways[%d]", p, i), gw)
	}
	if ns != "" && !isDNS1123Label(ns) {
		fe.add(p+".sourceNamespace", "invalid namespace %s: %s", quoteShort(ns), dns1123LabelMsg)
	}
}
