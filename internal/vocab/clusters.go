package vocab

import (
	"strconv"
	"strings"
)

// Istio's special clusters.
const (
	// PassthroughCluster forwards to wherever the client connected (ORIGINAL_DST).
	PassthroughCluster = "PassthroughCluster"
	// BlackHoleCluster has no endpoints: traffic to it fails.
	BlackHoleCluster = "BlackHoleCluster"
	// InboundPassthroughCluster forwards inbound traffic for ports without a service to the
	// workload, from InboundPassthroughBindIP.
	InboundPassthroughCluster = "InboundPassthroughCluster"
)

// RateLimitServiceCluster is the cluster, added by straitd to the proxies that a RateLimit
// with a Global rule selects, through which their global rate limit filters reach straitd's
// rate limit service. It is not a service's cluster: it does not parse as one.
const RateLimitServiceCluster = "strait-ratelimit"

// InboundPassthroughBindIP is the source address Istio binds inbound passthrough connections to,
// so that iptables does not capture them again.
const InboundPassthroughBindIP = "127.0.0.6"

// Istio's capture listeners and the names of their catch-all filter chains.
const (
	VirtualOutbound = "virtualOutbound"
	VirtualInbound  = "virtualInbound"

	PassthroughFilterChain        = "PassthroughFilterChain"
	BlackHoleFilterChain          = "BlackHoleFilterChain"
	InboundPassthroughFilterChain = "InboundPassthroughFilterChain"
)

// Directions of a service cluster name.
const (
	Outbound = "outbound"
	Inbound  = "inbound"
)

// OutboundClusterName is Istio's outbound cluster name: outbound|9080|v1|reviews.default.svc.cluster.local.
func OutboundClusterName(port uint32, subset, host string) string {
	return Outbound + "|" + strconv.FormatUint(uint64(port), 10) + "|" + subset + "|" + host
}

// InboundClusterName is Istio's inbound cluster name (and the name of the inbound route
// configuration): inbound|9080||.
func InboundClusterName(port uint32) string {
	return Inbound + "|" + strconv.FormatUint(uint64(port), 10) + "||"
}

// ClusterName is a parsed service cluster name.
type ClusterName struct {
	Direction string // Outbound or Inbound
	Port      uint32
	Subset    string // "" for the default cluster and for inbound clusters
	Host      string // "" for inbound clusters
}

// String renders n as OutboundClusterName or InboundClusterName does.
func (n ClusterName) String() string {
	return n.Direction + "|" + strconv.FormatUint(uint64(n.Port), 10) + "|" + n.Subset + "|" + n.Host
}

// ParseClusterName parses direction|port|subset|host. It reports false for any other name
// (PassthroughCluster, a name with a bad port or too few parts).
func ParseClusterName(s string) (ClusterName, bool) {
	dir, rest, ok := strings.Cut(s, "|")
	if !ok || dir != Outbound && dir != Inbound {
		return ClusterName{}, false
	}
	port, rest, ok := strings.Cut(rest, "|")
	if !ok {
		return ClusterName{}, false
	}
	subset, host, ok := strings.Cut(rest, "|")
	if !ok {
		return ClusterName{}, false
	}
	p, err := strconv.ParseUint(port, 10, 32)
	if err != nil {
		return ClusterName{}, false
	}
	return ClusterName{Direction: dir, Port: uint32(p), Subset: subset, Host: host}, true
}
