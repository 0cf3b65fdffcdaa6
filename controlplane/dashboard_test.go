package controlplane

import (
	"strings"
	"testing"

	"github.com/strait-mesh/strait/controlplane/xds"
)

func TestScrapeTargets(t *testing.T) {
	got := scrapeTargets([]xds.ProxyStatus{
		{Proxy: "sidecar~127.0.0.5~reviews-v1.shop~shop.svc.cluster.local", StatsAddress: "127.0.0.5:15090"},
		{Proxy: "router~127.0.0.1~ingress.default~default.svc.cluster.local", StatsAddress: "127.0.0.1:15000"},
		{Proxy: "sidecar~10.1.0.7~ratings-v1.shop~shop.svc.cluster.local", StatsAddress: "127.0.0.1:15000"},
		{Proxy: "sidecar~10.1.0.8~details-v1.shop~shop.svc.cluster.local", StatsAddress: "10.1.0.8:15090"},
		{Proxy: "sidecar~10.1.0.9~old.shop~shop.svc.cluster.local"},
		{Proxy: "not a node id"},
	})
	if len(got) != 5 {
		t.Fatalf("targets: %+v", got)
	}
	if g := got[0]; g.Workload != "reviews-v1" || g.Namespace != "shop" || g.Gateway || g.Address != "127.0.0.5:15090" || g.Problem != "" {
		t.Errorf("reviews: %+v", g)
	}
	if g := got[1]; !g.Gateway || g.Problem != "" {
		t.Errorf("ingress: %+v", g)
	}
	// Another network namespace's loopback is not scraped.
	if g := got[2]; !strings.Contains(g.Problem, "--prometheus-address 10.1.0.7:15090") {
		t.Errorf("ratings: %+v", g)
	}
	if g := got[3]; g.Problem != "" || g.Address != "10.1.0.8:15090" {
		t.Errorf("details: %+v", g)
	}
	if g := got[4]; g.Address != "" || g.Problem != "" {
		t.Errorf("old: %+v", g)
	}
}
