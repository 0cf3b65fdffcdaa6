package route

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/strait-mesh/strait/controlplane/registry"
)

// hostPort joins a host and a port as Envoy virtual host names and domains spell them.
func hostPort(host string, port uint32) string {
	return host + ":" + strconv.FormatUint(uint64(port), 10)
}

// domainBases returns the names under which a client in proxyNS reaches svc, without port, in
// Istio's order: the FQDN, the short names valid from proxyNS (for Kubernetes-style hostnames
// name.ns.svc.<suffix>: "name" only from the same namespace, then "name.ns.svc" and "name.ns"),
// then the service VIPs. CIDR and unspecified addresses are not domains. Each base becomes two
// domains of a virtual host: the base and base:port.
func domainBases(svc *registry.Service, proxyNS, suffix string) []string {
	out := make([]string, 0, 5)
	out = append(out, svc.Hostname)
	if name, ns, ok := splitKubeHost(svc.Hostname, suffix); ok {
		if ns == proxyNS {
			out = append(out, name)
		}
		out = append(out, name+"."+ns+".svc", name+"."+ns)
	}
	for _, a := range svc.Addresses {
		ip, err := netip.ParseAddr(a)
		if err != nil || ip.IsUnspecified() {
			continue // a CIDR or a name: not a Host header value
		}
		if ip.Is6() && !ip.Is4In6() {
			out = append(out, "["+ip.String()+"]")
			continue
		}
		out = append(out, ip.String())
	}
	return out
}

// splitKubeHost splits name.ns.svc.<suffix> into name and ns.
func splitKubeHost(host, suffix string) (name, ns string, ok bool) {
	rest, found := strings.CutSuffix(host, ".svc."+suffix)
	if !found {
		return "", "", false
	}
	name, ns, found = strings.Cut(rest, ".")
	if !found || name == "" || ns == "" || strings.Contains(ns, ".") || strings.Contains(name, "*") {
		return "", "", false
	}
	return name, ns, true
}

// hostMatches reports whether pattern (a hostname, possibly a wildcard "*.example.com" or "*")
// matches host (possibly itself a wildcard, which matches only if it is at least as specific).
func hostMatches(pattern, host string) bool {
	if pattern == host || pattern == "*" {
		return true
	}
	if !strings.HasPrefix(pattern, "*") {
		return false
	}
	suffix := pattern[1:] // ".example.com"
	if strings.HasPrefix(host, "*") {
		return strings.HasSuffix(host[1:], suffix)
	}
	return strings.HasSuffix(host, suffix)
}

// isHTTPPort reports whether a service port is routed by an HTTP route configuration: explicit
// HTTP protocols, and ports whose protocol is sniffed at runtime.
func isHTTPPort(p registry.Port) bool {
	return p.Protocol.IsHTTP() || p.Protocol == registry.Unsupported || p.Protocol == ""
}

// servicePort returns the service's port with number n.
func servicePort(svc *registry.Service, n uint32) (registry.Port, bool) {
	for _, p := range svc.Ports {
		if p.Number == n {
			return p, true
		}
	}
	return registry.Port{}, false
}
