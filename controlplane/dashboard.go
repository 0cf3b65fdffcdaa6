package controlplane

import (
	"github.com/strait-mesh/strait/controlplane/topology"
	"github.com/strait-mesh/strait/controlplane/xds"
	"github.com/strait-mesh/strait/internal/node"
)

// scrapeTargets turns the connected proxies into the dashboard scraper's targets: each is
// scraped only at the stats address its own node reported.
func scrapeTargets(proxies []xds.ProxyStatus) []topology.Target {
	out := make([]topology.Target, 0, len(proxies))
	for _, p := range proxies {
		id, err := node.Parse(p.Proxy)
		if err != nil {
			continue
		}
		out = append(out, topology.Target{Proxy: p.Proxy, Workload: id.Name, Namespace: id.Namespace,
			Gateway: id.Type == node.Router, Address: p.StatsAddress})
	}
	return out
}
