package listener

import (
	"net/netip"
	"strings"
	"testing"

	glistenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/strait-mesh/strait/proxy/xdspb"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	listenerv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/listener/v3"
)

func cidr(s string) *corev3.CidrRange {
	p := netip.MustParsePrefix(s)
	return &corev3.CidrRange{AddressPrefix: p.Addr().String(), PrefixLen: wrapperspb.UInt32(uint32(p.Bits()))}
}

func buildMatcher(t *testing.T, ms map[string]*listenerv3.FilterChainMatch) *matcher {
	t.Helper()
	var chains []*chain
	for name, m := range ms {
		cm, err := compileChainMatch(m, name)
		if err != nil {
			t.Fatal(err)
		}
		chains = append(chains, &chain{name: name, match: cm})
	}
	mt, err := newMatcher(chains)
	if err != nil {
		t.Fatal(err)
	}
	return mt
}

func TestMatchOrder(t *testing.T) {
	m := buildMatcher(t, map[string]*listenerv3.FilterChainMatch{
		"port80-sni":   {DestinationPort: wrapperspb.UInt32(80), ServerNames: []string{"a.example.com"}},
		"any":          {},
		"ip10":         {PrefixRanges: []*corev3.CidrRange{cidr("10.0.0.0/8")}},
		"ip10.1":       {PrefixRanges: []*corev3.CidrRange{cidr("10.1.0.0/16")}},
		"wild":         {ServerNames: []string{"*.example.com"}},
		"wild-deep":    {ServerNames: []string{"*.b.example.com"}},
		"exact":        {ServerNames: []string{"x.b.example.com"}},
		"tls":          {TransportProtocol: "tls", PrefixRanges: []*corev3.CidrRange{cidr("192.168.0.0/16")}},
		"tls-h2":       {TransportProtocol: "tls", ApplicationProtocols: []string{"h2"}, PrefixRanges: []*corev3.CidrRange{cidr("192.168.0.0/16")}},
		"raw-http":     {TransportProtocol: "raw_buffer", ApplicationProtocols: []string{"http/1.1", "h2c"}, PrefixRanges: []*corev3.CidrRange{cidr("192.168.0.0/16")}},
		"src":          {PrefixRanges: []*corev3.CidrRange{cidr("172.16.0.0/12")}, SourcePrefixRanges: []*corev3.CidrRange{cidr("1.2.3.0/24")}},
		"src-port":     {PrefixRanges: []*corev3.CidrRange{cidr("172.16.0.0/12")}, SourcePrefixRanges: []*corev3.CidrRange{cidr("1.2.3.0/24")}, SourcePorts: []uint32{4444}},
		"src-any":      {PrefixRanges: []*corev3.CidrRange{cidr("172.16.0.0/12")}},
		"v6":           {PrefixRanges: []*corev3.CidrRange{cidr("fd00::/8")}},
		"v6-local":     {PrefixRanges: []*corev3.CidrRange{cidr("fd00::/8")}, SourceType: listenerv3.FilterChainMatch_SAME_IP_OR_LOOPBACK},
		"direct":       {PrefixRanges: []*corev3.CidrRange{cidr("10.9.0.0/16")}, DirectSourcePrefixRanges: []*corev3.CidrRange{cidr("5.5.0.0/16")}},
		"direct-other": {PrefixRanges: []*corev3.CidrRange{cidr("10.9.0.0/16")}},
	})
	cases := []struct {
		dst, src, sni, transport string
		alpn                     []string
		want                     string
	}{
		{"1.1.1.1:80", "9.9.9.9:1", "a.example.com", "tls", nil, "port80-sni"},
		// Port 80 has chains, so a non-matching SNI does not fall back to port-less chains.
		{"1.1.1.1:80", "9.9.9.9:1", "other.com", "tls", nil, ""},
		{"1.1.1.1:81", "9.9.9.9:1", "", "raw_buffer", nil, "any"},
		{"10.2.0.1:81", "9.9.9.9:1", "", "raw_buffer", nil, "ip10"},
		{"10.1.0.1:81", "9.9.9.9:1", "", "raw_buffer", nil, "ip10.1"},
		{"1.1.1.1:81", "9.9.9.9:1", "q.example.com", "tls", nil, "wild"},
		{"1.1.1.1:81", "9.9.9.9:1", "q.b.example.com", "tls", nil, "wild-deep"},
		{"1.1.1.1:81", "9.9.9.9:1", "x.b.example.com", "tls", nil, "exact"},
		{"1.1.1.1:81", "9.9.9.9:1", "example.com", "tls", nil, "any"},
		{"192.168.1.1:81", "9.9.9.9:1", "", "tls", []string{"http/1.1", "h2"}, "tls-h2"},
		{"192.168.1.1:81", "9.9.9.9:1", "", "tls", []string{"istio"}, "tls"},
		{"192.168.1.1:81", "9.9.9.9:1", "", "raw_buffer", []string{"h2c"}, "raw-http"},
		{"192.168.1.1:81", "9.9.9.9:1", "", "raw_buffer", nil, ""},
		{"172.16.0.1:81", "1.2.3.4:4444", "", "raw_buffer", nil, "src-port"},
		{"172.16.0.1:81", "1.2.3.4:5555", "", "raw_buffer", nil, "src"},
		{"172.16.0.1:81", "8.8.8.8:4444", "", "raw_buffer", nil, "src-any"},
		{"[fd00::1]:81", "[fd00::1]:9", "", "raw_buffer", nil, "v6-local"},
		{"[fd00::1]:81", "[fd00::2]:9", "", "raw_buffer", nil, "v6"},
		{"10.9.0.1:81", "5.5.1.1:9", "", "raw_buffer", nil, "direct"},
		{"10.9.0.1:81", "6.6.1.1:9", "", "raw_buffer", nil, "direct-other"},
	}
	for _, c := range cases {
		f := connFacts{dst: netip.MustParseAddrPort(c.dst), src: netip.MustParseAddrPort(c.src), serverName: c.sni, transport: c.transport, alpn: c.alpn}
		got := ""
		if ch := m.find(&f); ch != nil {
			got = ch.name
		}
		if got != c.want {
			t.Errorf("dst=%s src=%s sni=%q %s %v: chain %q, want %q", c.dst, c.src, c.sni, c.transport, c.alpn, got, c.want)
		}
	}
}

func TestDuplicateAndInvalidMatches(t *testing.T) {
	a, _ := compileChainMatch(&listenerv3.FilterChainMatch{ServerNames: []string{"a", "b"}}, "x")
	b, _ := compileChainMatch(&listenerv3.FilterChainMatch{ServerNames: []string{"b", "a"}}, "y")
	if _, err := newMatcher([]*chain{{name: "x", match: a}, {name: "y", match: b}}); err == nil || !strings.Contains(err.Error(), "same filter_chain_match") {
		t.Fatalf("err = %v", err)
	}
	for _, m := range []*listenerv3.FilterChainMatch{
		{ServerNames: []string{"a.*.com"}},
		{TransportProtocol: "quic"},
		xdspb.MustFrom[*listenerv3.FilterChainMatch](&glistenerv3.FilterChainMatch{AddressSuffix: "x"}), // not read by strait-proxy
		{PrefixRanges: []*corev3.CidrRange{{AddressPrefix: "10.0.0.0", PrefixLen: wrapperspb.UInt32(33)}}},
	} {
		if _, err := compileChainMatch(m, "m"); err == nil {
			t.Errorf("%v: no error", m)
		}
	}
}

func BenchmarkMatch(b *testing.B) {
	var chains []*chain
	for i := 0; i < 50; i++ {
		cm, _ := compileChainMatch(&listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(uint32(8000 + i)), TransportProtocol: "tls", ApplicationProtocols: []string{"istio-http/1.1", "istio-h2"}}, "m")
		chains = append(chains, &chain{match: cm})
		cm2, _ := compileChainMatch(&listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(uint32(8000 + i)), TransportProtocol: "raw_buffer"}, "m")
		chains = append(chains, &chain{match: cm2})
	}
	m, err := newMatcher(chains)
	if err != nil {
		b.Fatal(err)
	}
	f := connFacts{dst: netip.MustParseAddrPort("10.0.0.1:8025"), src: netip.MustParseAddrPort("10.0.0.2:4000"), transport: "tls", alpn: []string{"istio-h2"}}
	b.ReportAllocs()
	for b.Loop() {
		if m.find(&f) == nil {
			b.Fatal("no match")
		}
	}
}
