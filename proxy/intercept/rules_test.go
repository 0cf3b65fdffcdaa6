package intercept

import (
	"flag"
	"net/netip"
	"path/filepath"
	"strings"
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

func TestParseAndSelectBackend(t *testing.T) {
	for _, s := range []string{"auto", "iptables", "nftables"} {
		if b, err := ParseBackend(s); err != nil || string(b) != s {
			t.Errorf("ParseBackend(%q) = %q, %v", s, b, err)
		}
	}
	for _, s := range []string{"", "nft", "IPTABLES"} {
		if _, err := ParseBackend(s); err == nil {
			t.Errorf("ParseBackend(%q): no error", s)
		}
	}
	for _, b := range []Backend{BackendIPTables, BackendNFTables} {
		if got, why, err := SelectBackend(b); got != b || why != "" || err != nil {
			t.Errorf("SelectBackend(%s) = %s, %q, %v", b, got, why, err)
		}
	}
	// auto follows the iptables tools: here, whatever is installed; without them, nftables.
	got, why, err := SelectBackend("")
	if err != nil || why == "" {
		t.Fatalf("SelectBackend(auto) = %s, %q, %v", got, why, err)
	}
	if want := map[bool]Backend{true: BackendIPTables, false: BackendNFTables}[IPTablesAvailable() == nil]; got != want {
		t.Errorf("SelectBackend(auto) = %s, want %s", got, want)
	}
	t.Setenv("PATH", t.TempDir())
	saved := sbinDirs
	sbinDirs = nil
	t.Cleanup(func() { sbinDirs = saved })
	if got, why, err := SelectBackend(BackendAuto); got != BackendNFTables || !strings.Contains(why, "iptables-restore") || err != nil {
		t.Errorf("SelectBackend(auto) without iptables = %s, %q, %v", got, why, err)
	}
	if _, _, err := SelectBackend("bpf"); err == nil {
		t.Error("SelectBackend(bpf): no error")
	}
}

// TestRuleInexpressible checks that a rule neither backend can express is refused by name.
func TestRuleInexpressible(t *testing.T) {
	for _, r := range []Rule{
		{Chain: ChainOutput, DPort: 53, Action: Return},
		{Chain: ChainOutput, Action: Redirect, ToPort: 15001},
		{Chain: ChainOutput, Action: Jump, Target: "OUTPUT"},
		{Chain: "INPUT", Action: Return},
		{Chain: ChainOutput, Dst: netip.MustParsePrefix("fd00::/8"), Action: Return},
	} {
		if _, err := r.nftExprs(IPv4); err == nil {
			t.Errorf("%s: no error", r.iptables())
		}
	}
}
