package proxy

import (
	"testing"

	"github.com/strait-mesh/strait/internal/node"
	"github.com/strait-mesh/strait/proxy/xdsclient"
)

func TestAddressMetadata(t *testing.T) {
	for _, c := range []struct {
		name                string
		prom, admin, status string
		wantStats, wantAdm  string
	}{
		{"prometheus port first", "127.0.0.5:15090", "127.0.0.1:15000", "127.0.0.5:15020", "127.0.0.5:15090", "127.0.0.1:15000"},
		{"admin serves the stats", "-", "127.0.0.1:15000", "127.0.0.5:15020", "127.0.0.1:15000", "127.0.0.1:15000"},
		{"unspecified host kept", ":15090", "0.0.0.0:15000", "", ":15090", "0.0.0.0:15000"},
		{"localhost is loopback", "", "localhost:15000", "", "127.0.0.1:15000", "127.0.0.1:15000"},
		{"ephemeral port and hostname left out", "127.0.0.1:0", "admin.example:15000", "", "", ""},
		{"status port never", "-", "-", "127.0.0.5:15020", "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := Options{PrometheusAddress: c.prom, AdminAddress: c.admin, StatusAddress: c.status,
				Node: xdsclient.NodeInfo{Extra: map[string]string{"OTHER": "x"}}}
			n := withAddresses(o.Node, &o)
			if got := n.Extra[node.MetaStatsAddress]; got != c.wantStats {
				t.Errorf("%s = %q, want %q", node.MetaStatsAddress, got, c.wantStats)
			}
			if got := n.Extra[node.MetaAdminAddress]; got != c.wantAdm {
				t.Errorf("%s = %q, want %q", node.MetaAdminAddress, got, c.wantAdm)
			}
			if n.Extra["OTHER"] != "x" || len(o.Node.Extra) != 1 {
				t.Errorf("extra %v (original %v)", n.Extra, o.Node.Extra)
			}
		})
	}
}
