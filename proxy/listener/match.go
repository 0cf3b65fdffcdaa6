package listener

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/strait-mesh/strait/proxy/xdsfield"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	listenerv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/listener/v3"
)

// chainMatch is a compiled FilterChainMatch. Empty slices and zero values mean "any".
type chainMatch struct {
	destPort      uint16
	destPrefixes  []netip.Prefix
	serverNames   []string // lower-case; "*.example.com" wildcards kept as written
	transport     string
	appProtocols  []string
	directSources []netip.Prefix
	sourceType    listenerv3.FilterChainMatch_ConnectionSourceType
	sources       []netip.Prefix
	sourcePorts   []uint16
}

func compileChainMatch(m *listenerv3.FilterChainMatch, path string) (chainMatch, error) {
	var cm chainMatch
	if m == nil {
		return cm, nil
	}
	if err := xdsfield.Check(m, path, "destination_port", "prefix_ranges", "direct_source_prefix_ranges",
		"source_type", "source_prefix_ranges", "source_ports", "server_names", "transport_protocol",
		"application_protocols"); err != nil {
		return cm, err
	}
	if p := m.GetDestinationPort(); p != nil {
		if p.GetValue() < 1 || p.GetValue() > 65535 {
			return cm, fmt.Errorf("%s.destination_port %d out of range", path, p.GetValue())
		}
		cm.destPort = uint16(p.GetValue())
	}
	var err error
	if cm.destPrefixes, err = prefixes(m.GetPrefixRanges(), path+".prefix_ranges"); err != nil {
		return cm, err
	}
	if cm.directSources, err = prefixes(m.GetDirectSourcePrefixRanges(), path+".direct_source_prefix_ranges"); err != nil {
		return cm, err
	}
	if cm.sources, err = prefixes(m.GetSourcePrefixRanges(), path+".source_prefix_ranges"); err != nil {
		return cm, err
	}
	for _, p := range m.GetSourcePorts() {
		if p < 1 || p > 65535 {
			return cm, fmt.Errorf("%s.source_ports: %d out of range", path, p)
		}
		cm.sourcePorts = append(cm.sourcePorts, uint16(p))
	}
	cm.sourceType = m.GetSourceType()
	for _, n := range m.GetServerNames() {
		n = strings.ToLower(strings.TrimSuffix(n, "."))
		if n == "" || strings.Contains(n[1:], "*") || (strings.HasPrefix(n, "*") && !strings.HasPrefix(n, "*.")) {
			return cm, fmt.Errorf("%s.server_names: %q is not an exact name or a \"*.suffix\" wildcard", path, n)
		}
		cm.serverNames = append(cm.serverNames, n)
	}
	switch t := m.GetTransportProtocol(); t {
	case "", "raw_buffer", "tls":
		cm.transport = t
	default:
		return cm, fmt.Errorf("%s.transport_protocol %q is not supported (raw_buffer or tls)", path, t)
	}
	cm.appProtocols = slices.Clone(m.GetApplicationProtocols())
	return cm, nil
}

func prefixes(rs []*corev3.CidrRange, path string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for i, r := range rs {
		p := fmt.Sprintf("%s[%d]", path, i)
		if err := xdsfield.Check(r, p, "address_prefix", "prefix_len"); err != nil {
			return nil, err
		}
		ip, err := netip.ParseAddr(r.GetAddressPrefix())
		if err != nil {
			return nil, fmt.Errorf("%s.address_prefix: %w", p, err)
		}
		ip = ip.Unmap()
		bits := int(r.GetPrefixLen().GetValue())
		if bits > ip.BitLen() {
			return nil, fmt.Errorf("%s.prefix_len %d is too long", p, bits)
		}
		out = append(out, netip.PrefixFrom(ip, bits).Masked())
	}
	return out, nil
}

// key is a canonical form used to reject duplicate matches, as Envoy does.
func (m *chainMatch) key() string {
	sortedP := func(ps []netip.Prefix) []string {
		s := make([]string, len(ps))
		for i, p := range ps {
			s[i] = p.String()
		}
		slices.Sort(s)
		return s
	}
	sn := slices.Clone(m.serverNames)
	slices.Sort(sn)
	ap := slices.Clone(m.appProtocols)
	slices.Sort(ap)
	sp := slices.Clone(m.sourcePorts)
	slices.Sort(sp)
	return fmt.Sprint(m.destPort, sortedP(m.destPrefixes), sn, m.transport, ap, sortedP(m.directSources), m.sourceType, sortedP(m.sources), sp)
}

// matcher selects a chain with Envoy's rules: criteria are applied in the order destination
// port, destination IP, server name, transport protocol, application protocols, direct source IP,
// source type, source IP, source port. At each step only the most specific candidates that match
// survive (an exact value beats "any", a longer prefix beats a shorter one); there is no
// backtracking to less specific candidates when a later step eliminates them all.
type matcher struct {
	chains  []*chain
	byPort  map[uint16][]int // chains with that destination_port
	anyPort []int            // chains without destination_port
}

func newMatcher(chains []*chain) (*matcher, error) {
	m := &matcher{chains: chains, byPort: map[uint16][]int{}}
	seen := map[string]string{}
	for i, c := range chains {
		k := c.match.key()
		if other, dup := seen[k]; dup {
			return nil, fmt.Errorf("filter chains %q and %q have the same filter_chain_match", other, c.name)
		}
		seen[k] = c.name
		if c.match.destPort != 0 {
			m.byPort[c.match.destPort] = append(m.byPort[c.match.destPort], i)
		} else {
			m.anyPort = append(m.anyPort, i)
		}
	}
	return m, nil
}

// connFacts are the connection properties matching looks at.
type connFacts struct {
	dst, src   netip.AddrPort
	serverName string
	transport  string // "tls" or "raw_buffer"
	alpn       []string
}

// find returns the selected chain or nil.
func (m *matcher) find(f *connFacts) *chain {
	cand, ok := m.byPort[f.dst.Port()]
	if !ok {
		cand = m.anyPort
	}
	if len(cand) == 0 {
		return nil
	}
	var buf [32]int
	cur := append(buf[:0], cand...)
	cur = bestPrefix(m.chains, cur, f.dst.Addr(), func(c *chainMatch) []netip.Prefix { return c.destPrefixes })
	cur = m.byServerName(cur, f.serverName)
	cur = m.filterExactOrAny(cur, func(c *chainMatch) (bool, bool) {
		return c.transport == "", c.transport == f.transport
	})
	cur = m.byALPN(cur, f.alpn)
	cur = bestPrefix(m.chains, cur, f.src.Addr(), func(c *chainMatch) []netip.Prefix { return c.directSources })
	local := f.src.Addr().IsLoopback() || f.src.Addr() == f.dst.Addr()
	cur = m.filterExactOrAny(cur, func(c *chainMatch) (bool, bool) {
		switch c.sourceType {
		case listenerv3.FilterChainMatch_ANY:
			return true, false
		case listenerv3.FilterChainMatch_SAME_IP_OR_LOOPBACK:
			return false, local
		default:
			return false, !local
		}
	})
	cur = bestPrefix(m.chains, cur, f.src.Addr(), func(c *chainMatch) []netip.Prefix { return c.sources })
	cur = m.filterExactOrAny(cur, func(c *chainMatch) (bool, bool) {
		return len(c.sourcePorts) == 0, slices.Contains(c.sourcePorts, f.src.Port())
	})
	if len(cur) == 0 {
		return nil
	}
	return m.chains[cur[0]]
}

// filterExactOrAny keeps the candidates whose criterion matches exactly if there are any, else
// those that accept any value. test returns (isAny, matchesExactly).
func (m *matcher) filterExactOrAny(cur []int, test func(*chainMatch) (isAny, exact bool)) []int {
	exact, anyN := 0, 0
	for _, i := range cur {
		a, e := test(&m.chains[i].match)
		if e {
			exact++
		} else if a {
			anyN++
		}
	}
	out := cur[:0]
	for _, i := range cur {
		a, e := test(&m.chains[i].match)
		if (exact > 0 && e) || (exact == 0 && a) {
			out = append(out, i)
		}
	}
	return out
}

// bestPrefix keeps the candidates whose longest matching prefix is the longest; a candidate with
// no prefixes matches everything with length 0 (Envoy's implicit 0.0.0.0/0 and ::/0).
func bestPrefix(chains []*chain, cur []int, ip netip.Addr, get func(*chainMatch) []netip.Prefix) []int {
	ip = ip.Unmap()
	best := -1
	score := func(c *chainMatch) int {
		ps := get(c)
		if len(ps) == 0 {
			return 0
		}
		s := -1
		for _, p := range ps {
			if p.Bits() > s && p.Contains(ip) {
				s = p.Bits()
			}
		}
		return s
	}
	for _, i := range cur {
		best = max(best, score(&chains[i].match))
	}
	out := cur[:0]
	if best < 0 {
		return out
	}
	for _, i := range cur {
		if score(&chains[i].match) == best {
			out = append(out, i)
		}
	}
	return out
}

// byServerName keeps the exact-name candidates, else those of the longest matching wildcard
// ("*.b.c" before "*.c"), else those without server_names.
func (m *matcher) byServerName(cur []int, sni string) []int {
	if sni != "" {
		if out := m.keepName(cur, sni); len(out) > 0 {
			return out
		}
		// Wildcards from the longest suffix: "*.b.c" then "*.c" for "a.b.c".
		for pos := indexFrom(sni, '.', 1); pos >= 0 && pos < len(sni)-1; pos = indexFrom(sni, '.', pos+1) {
			if out := m.keepName(cur, "*"+sni[pos:]); len(out) > 0 {
				return out
			}
		}
	}
	out := cur[:0]
	for _, i := range cur {
		if len(m.chains[i].match.serverNames) == 0 {
			out = append(out, i)
		}
	}
	return out
}

// keepName filters cur in place only when something matches, so that cur stays intact for the
// next attempt otherwise.
func (m *matcher) keepName(cur []int, name string) []int {
	n := 0
	for _, i := range cur {
		if slices.Contains(m.chains[i].match.serverNames, name) {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	out := cur[:0]
	for _, i := range cur {
		if slices.Contains(m.chains[i].match.serverNames, name) {
			out = append(out, i)
		}
	}
	return out
}

// byALPN keeps the candidates listing the first of the connection's protocols that any
// candidate lists, else those without application_protocols.
func (m *matcher) byALPN(cur []int, alpn []string) []int {
	for _, p := range alpn {
		n := 0
		for _, i := range cur {
			if slices.Contains(m.chains[i].match.appProtocols, p) {
				n++
			}
		}
		if n == 0 {
			continue
		}
		out := cur[:0]
		for _, i := range cur {
			if slices.Contains(m.chains[i].match.appProtocols, p) {
				out = append(out, i)
			}
		}
		return out
	}
	out := cur[:0]
	for _, i := range cur {
		if len(m.chains[i].match.appProtocols) == 0 {
			out = append(out, i)
		}
	}
	return out
}

func indexFrom(s string, c byte, from int) int {
	if from >= len(s) {
		return -1
	}
	i := strings.IndexByte(s[from:], c)
	if i < 0 {
		return -1
	}
	return from + i
}
