package intercept

import (
	"flag"
	"path/filepath"
	"testing"

	"github.com/strait-mesh/strait/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite golden files")

// goldenCases are the configurations of the golden files, also installed by
// TestBackendsInstallThePlan.
var goldenCases = map[string]Config{
	"defaults": {},
	"options": {
		ProxyUID: 2000, ProxyGID: 2001,
		InboundPorts:         []string{"9080", "15021", "8080"},
		IncludeOutboundCIDRs: []string{"10.96.0.0/12", "198.18.0.0/15", "fd00::/8"},
		ExcludeOutboundCIDRs: []string{"10.96.0.1", "fd00::1"},
		ExcludeOutboundPorts: []uint16{5432, 22, 5432},
	},
	"exclude-inbound": {ExcludeInboundPorts: []uint16{22, 15000}, IncludeOutboundCIDRs: []string{"*"}},
	"dns":             {RedirectDNS: true},
	"dns-servers":     {RedirectDNS: true, DNSServers: []string{"127.0.0.53", "10.96.0.10", "fd00::10"}},
}

// TestRulesGolden compares the generated rulesets with testdata/NAME.FAMILY.golden (iptables) and
// testdata/NAME.FAMILY.nft.golden (nftables, in nft syntax).
func TestRulesGolden(t *testing.T) {
	for name, c := range goldenCases {
		for _, fam := range []Family{IPv4, IPv6} {
			t.Run(name+"/"+fam.String(), func(t *testing.T) {
				got, err := Rules(c, fam)
				if err != nil {
					t.Fatal(err)
				}
				testenv.Golden(t, filepath.Join("testdata", name+"."+fam.String()+".golden"), got, *update)
				got, err = NFTRules(c, fam)
				if err != nil {
					t.Fatal(err)
				}
				testenv.Golden(t, filepath.Join("testdata", name+"."+fam.String()+".nft.golden"), got, *update)
			})
		}
	}
}

func TestRulesInvalid(t *testing.T) {
	for _, c := range []Config{
		{IncludeOutboundCIDRs: []string{"10.0.0.0/33"}},
		{ExcludeOutboundCIDRs: []string{"nope"}},
		{InboundPorts: []string{"0"}},
		{InboundPorts: []string{"x"}},
		{RedirectDNS: true, DNSServers: []string{"x"}},
	} {
		if _, err := Rules(c, IPv4); err == nil {
			t.Errorf("Rules(%+v): no error", c)
		}
	}
}
