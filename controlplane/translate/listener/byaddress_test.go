package listener

import (
	"slices"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
)

// TestSplitByAddress checks which chains move to listeners of their service address: every chain
// of an address and port moves together (several chains of one address, one chain of two
// addresses in both), and an address stays on virtualOutbound with all its chains when one of
// them also matches a wider prefix or an egress listener has its name.
func TestSplitByAddress(t *testing.T) {
	chain := func(name string, port uint32, sni string, prefixes ...string) *listenerv3.FilterChain {
		m := &listenerv3.FilterChainMatch{DestinationPort: u32(port), PrefixRanges: cidrRanges(prefixes)}
		if sni != "" {
			m.TransportProtocol, m.ServerNames = "tls", []string{sni}
		}
		return &listenerv3.FilterChain{Name: name, FilterChainMatch: m}
	}
	var cs chainSet
	for _, c := range []*listenerv3.FilterChain{
		chain("http", 8080, ""),                             // no address: stays
		chain("a-tls", 443, "a.example.com", "10.0.0.1"),    // with a-tls-2: 10.0.0.1_443
		chain("a-tls-2", 443, "a2.example.com", "10.0.0.1"), //
		chain("two", 5432, "", "10.0.0.2", "10.0.0.3"),      // 10.0.0.2_5432 and 10.0.0.3_5432
		chain("wide", 6379, "", "10.0.0.4", "10.1.0.0/16"),  // blocks 10.0.0.4:6379
		chain("narrow", 6379, "a.example.com", "10.0.0.4"),  // stays with it
		chain("taken", 9000, "", "10.0.0.5"),                // an egress listener is 10.0.0.5_9000
		chain("v6", 7000, "", "fd00::1"),                    // [fd00::1]:7000
	} {
		cs.add(c)
	}
	def := &listenerv3.FilterChain{Name: "PassthroughFilterChain"}
	rest, own := splitByAddress(&cs, def, func(name string) bool { return name == "10.0.0.5_9000" }, nil)
	names := func(chains []*listenerv3.FilterChain) []string {
		var out []string
		for _, c := range chains {
			out = append(out, c.GetName())
		}
		return out
	}
	if got, want := names(rest.chains), []string{"http", "wide", "narrow", "taken"}; !slices.Equal(got, want) {
		t.Errorf("virtualOutbound keeps %v, want %v", got, want)
	}
	want := map[string][]string{
		"10.0.0.1_443":  {"a-tls", "a-tls-2"},
		"10.0.0.2_5432": {"two"},
		"10.0.0.3_5432": {"two"},
		"fd00::1_7000":  {"v6"},
	}
	if len(own) != len(want) {
		t.Errorf("%d address listeners, want %d", len(own), len(want))
	}
	for _, l := range own {
		if got := names(l.GetFilterChains()); !slices.Equal(got, want[l.GetName()]) {
			t.Errorf("%s has %v, want %v", l.GetName(), got, want[l.GetName()])
		}
		if l.GetBindToPort() == nil || l.GetBindToPort().GetValue() || l.GetDefaultFilterChain() != def ||
			l.GetTrafficDirection() != corev3.TrafficDirection_OUTBOUND {
			t.Errorf("%s: bind_to_port %v, default chain %v, direction %v", l.GetName(), l.GetBindToPort(), l.GetDefaultFilterChain(), l.GetTrafficDirection())
		}
		tls := len(l.GetListenerFilters()) == 1 && l.GetListenerFilters()[0].GetName() == tlsInspector().GetName()
		if tls != (l.GetName() == "10.0.0.1_443") {
			t.Errorf("%s: listener filters %v", l.GetName(), l.GetListenerFilters())
		}
	}
}
