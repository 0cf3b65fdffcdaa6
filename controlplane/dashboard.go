package controlplane

import (
	"net"
	"net/netip"

	"github.com/strait-mesh/strait/controlplane/topology"
	"github.com/strait-mesh/strait/controlplane/xds"
	"github.com/strait-mesh/strait/internal/node"
)

// scrapeTargets turns the connected proxies into the dashboard scraper's targets: each is
// scraped only at the stats address its own node reported. A loopback address of a proxy
// whose own IP is not loopback (a sidecar in its own network namespace) is another host's
// loopback from here: it is not scraped, so that no other process's statistics are taken for
// that proxy's.
func scrapeTargets(proxies []xds.ProxyStatus) []topology.Target {
	out := make([]topology.Target, 0, len(proxies))
	for _, p := range proxies {
		id, err := node.Parse(p.Proxy)
		if err != nil {
			continue
		}
		t := topology.Target{Proxy: p.Proxy, Workload: id.Name, Namespace: id.Namespace,
			Gateway: id.Type == node.Router, Address: p.StatsAddress}
		if host, _, err := net.SplitHostPort(p.StatsAddress); err == nil {
			stats, err1 := netip.ParseAddr(host)
			own, err2 := netip.ParseAddr(id.IP)
			if err1 == nil && err2 == nil && stats.IsLoopback() && !own.IsLoopback() {
				t.Problem = "its stats address " + p.StatsAddress + " is on the loopback of a proxy at " + id.IP +
					", which straitd cannot reach: give the proxy --prometheus-address " + net.JoinHostPort(id.IP, "15090")
			}
		}
		out = append(out, t)
	}
	return out
}
