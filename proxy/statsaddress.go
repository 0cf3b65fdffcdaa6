package proxy

import (
	"maps"
	"net"
	"net/netip"

	"github.com/strait-mesh/strait/internal/node"
	"github.com/strait-mesh/strait/proxy/xdsclient"
)

// withAddresses returns node info that tells the control plane where the proxy's Prometheus
// statistics (node.MetaStatsAddress) and admin interface (node.MetaAdminAddress) are: the
// --prometheus-address when set, else the admin address, which serves /stats/prometheus too.
// The status address is not offered: it merges the application's own metrics, which could
// then forge Istio's series. An address whose port is 0 (known only once bound) or whose host
// is not an IP literal (other than localhost) is left out, as straitd takes only those.
func withAddresses(n xdsclient.NodeInfo, o *Options) xdsclient.NodeInfo {
	stats := reportable(o.PrometheusAddress)
	admin := reportable(o.AdminAddress)
	if stats == "" {
		stats = admin
	}
	if stats == "" && admin == "" {
		return n
	}
	extra := maps.Clone(n.Extra)
	if extra == nil {
		extra = map[string]string{}
	}
	if stats != "" {
		extra[node.MetaStatsAddress] = stats
	}
	if admin != "" {
		extra[node.MetaAdminAddress] = admin
	}
	n.Extra = extra
	return n
}

// reportable returns addr as the control plane accepts it in node metadata, or "".
func reportable(addr string) string {
	if addr == "" || addr == "-" {
		return ""
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "0" {
		return ""
	}
	if host == "localhost" {
		host = "127.0.0.1"
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil {
			return ""
		}
	}
	return net.JoinHostPort(host, port)
}
