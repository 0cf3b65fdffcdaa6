package mesh

import "strings"

// HostMatches reports whether host is covered by pattern: equal, pattern "*", or a wildcard
// pattern "*.suffix" and host ends in ".suffix" (a wildcard host "*.a.suffix" is covered too).
func HostMatches(pattern, host string) bool {
	if pattern == host || pattern == "*" {
		return true
	}
	if strings.HasPrefix(pattern, "*") {
		return strings.HasSuffix(host, pattern[1:])
	}
	return false
}

// HostsOverlap reports whether two host patterns may match a common name (either covers the other).
func HostsOverlap(a, b string) bool { return HostMatches(a, b) || HostMatches(b, a) }

// ResolveShortName expands a short host name as Istio does for VirtualService, DestinationRule and
// Sidecar hosts: a name without dots ("reviews") becomes reviews.<ns>.svc.cluster.local; names with
// dots, wildcards and "*" are returned as written.
func ResolveShortName(host, ns string) string {
	if host == "" || strings.Contains(host, ".") || strings.HasPrefix(host, "*") {
		return host
	}
	return host + "." + ns + ".svc." + DefaultDomainSuffix
}

// moreSpecific orders host patterns: exact names before wildcards, longer wildcards first.
func moreSpecific(a, b string) bool {
	aw, bw := strings.HasPrefix(a, "*"), strings.HasPrefix(b, "*")
	if aw != bw {
		return !aw
	}
	if len(a) != len(b) {
		return len(a) > len(b)
	}
	return a < b
}
