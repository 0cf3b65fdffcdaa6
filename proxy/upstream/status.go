package upstream

import (
	"net"
	"strconv"

	adminv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/admin/v3"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
)

// HostStatuses describes the cluster's current hosts for the admin /clusters endpoint, as Envoy
// does: resolved addresses (DNS clusters show what they resolved to), EDS health, outlier
// ejection, weight, priority, locality and the active request count. Safe for concurrent use;
// it takes the membership lock, so it is for the admin path, not the request path.
func (c *Cluster) HostStatuses() []*adminv3.HostStatus {
	c.mu.Lock()
	eps := append([]*endpoint(nil), c.members...)
	c.mu.Unlock()
	c.orig.Range(func(_, v any) bool {
		eps = append(eps, v.(*endpoint))
		return true
	})
	out := make([]*adminv3.HostStatus, 0, len(eps))
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ep := range eps {
		eds := corev3.HealthStatus_HEALTHY
		switch {
		case !ep.healthy:
			eds = corev3.HealthStatus_UNHEALTHY
		case ep.degraded:
			eds = corev3.HealthStatus_DEGRADED
		}
		out = append(out, &adminv3.HostStatus{
			Address: ep.address(),
			HealthStatus: &adminv3.HostHealthStatus{
				EdsHealthStatus:    eds,
				FailedOutlierCheck: ep.od.ejected.Load(),
			},
			Weight:   max(ep.weight, 1),
			Hostname: ep.hostname,
			Priority: ep.priority,
			Locality: ep.localityProto,
			Stats: []*adminv3.SimpleMetric{
				{Type: adminv3.SimpleMetric_GAUGE, Name: "rq_active", Value: uint64(max(ep.active.Load(), 0))},
			},
		})
	}
	return out
}

// address renders the endpoint's current dial address as an Envoy Address.
func (ep *endpoint) address() *corev3.Address {
	a := ep.dialAddr()
	if ep.network == "unix" {
		return &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: a}}}
	}
	host, port, _ := net.SplitHostPort(a)
	p, _ := strconv.Atoi(port)
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(p)},
	}}}
}
