package intercept

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/strait-mesh/strait/internal/vocab"
)

// The built-in nat hooks our chains are reached from (iptables' chain names).
const (
	HookPrerouting = "PREROUTING"
	HookOutput     = "OUTPUT"
)

// Action is what a matching rule does.
type Action int

// The actions.
const (
	// Jump continues in the chain named by Rule.Target.
	Jump Action = iota
	// Return leaves our chain: the packet is not redirected.
	Return
	// Redirect sends the connection to Rule.ToPort on the local host.
	Redirect
)

// Owner matches the socket owner of a locally generated packet.
type Owner struct {
	// GID selects --gid-owner (skgid) rather than --uid-owner (skuid).
	GID bool
	// ID is the uid or gid.
	ID int
	// Not inverts the match.
	Not bool
}

// Rule is one capture rule, independent of the backend that installs it. A zero field is no
// condition; every condition must hold for the rule to match.
type Rule struct {
	// Chain is the chain the rule is appended to: HookPrerouting, HookOutput or one of Chains.
	Chain string
	// Src and Dst match the source and destination address (zero: any). NotDst inverts Dst.
	Src, Dst netip.Prefix
	NotDst   bool
	// OutLoopback matches packets leaving through the loopback interface ("lo").
	OutLoopback bool
	// Proto is "tcp", "udp" or "" (any).
	Proto string
	// DPort matches the destination port (needs Proto); NotDPort inverts it.
	DPort    uint16
	NotDPort bool
	// Owner, when non-nil, matches the sending socket's owner.
	Owner *Owner
	// Action, with Target (Jump: one of Chains) or ToPort (Redirect: needs Proto).
	Action Action
	Target string
	ToPort uint16
}

// Plan is the whole capture of one family: the rules of our chains and the jumps into them from
// the built-in hooks, in order. Both backends (iptables and nftables) install exactly this.
type Plan struct {
	Family Family
	Rules  []Rule
}

// BuildPlan describes the capture c asks for, for one family. It is the single statement of the
// capture semantics; the backends only render it.
func BuildPlan(c Config, fam Family) (Plan, error) {
	c = c.Defaults()
	if err := c.Validate(); err != nil {
		return Plan{}, err
	}
	loop, local6 := netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("127.0.0.6/32")
	if fam == IPv6 {
		loop, local6 = netip.MustParsePrefix("::1/128"), netip.MustParsePrefix("::6/128")
	}
	p := Plan{Family: fam}
	add := func(r Rule) { p.Rules = append(p.Rules, r) }
	jump := func(chain, proto string, port uint16, target string) {
		add(Rule{Chain: chain, Proto: proto, DPort: port, Action: Jump, Target: target})
	}
	ret := func(r Rule) { r.Action = Return; add(r) }

	// Inbound: everything arriving for a local TCP port goes to the inbound capture port, except
	// the proxy's own ports and the excluded ones.
	jump(HookPrerouting, "tcp", 0, ChainInbound)
	include, all, _ := inboundPorts(c.InboundPorts)
	exclude := sortedPorts(append(append([]uint16(nil), ProxyPorts...), c.ExcludeInboundPorts...))
	if all {
		for _, port := range exclude {
			ret(Rule{Chain: ChainInbound, Proto: "tcp", DPort: port})
		}
		jump(ChainInbound, "tcp", 0, ChainInRedirect)
	} else {
		skip := map[uint16]bool{}
		for _, port := range exclude {
			skip[port] = true
		}
		for _, port := range sortedPorts(include) {
			if !skip[port] {
				jump(ChainInbound, "tcp", port, ChainInRedirect)
			}
		}
	}
	add(Rule{Chain: ChainInRedirect, Proto: "tcp", Action: Redirect, ToPort: c.InboundPort})

	// Outbound.
	jump(HookOutput, "tcp", 0, ChainOutput)
	if c.RedirectDNS {
		jump(HookOutput, "udp", 53, ChainOutput)
	}
	add(Rule{Chain: ChainRedirect, Proto: "tcp", Action: Redirect, ToPort: c.OutboundPort})
	// Inbound passthrough connections the proxy makes from 127.0.0.6 to the workload's own
	// address are never captured.
	ret(Rule{Chain: ChainOutput, Src: local6, OutLoopback: true})
	owners := []Owner{{ID: c.ProxyUID}, {GID: true, ID: c.ProxyGID}}
	if c.RedirectDNS {
		// Before the loopback rules: a resolver on 127.0.0.53 is captured too.
		for _, proto := range []string{"udp", "tcp"} {
			for _, o := range owners {
				ret(Rule{Chain: ChainOutput, Proto: proto, DPort: 53, Owner: &o})
			}
		}
		servers, _, _ := cidrs(c.DNSServers, fam)
		if len(servers) == 0 && len(c.DNSServers) == 0 {
			servers = []string{""}
		}
		for _, srv := range servers {
			var dst netip.Prefix
			if srv != "" {
				dst = netip.MustParsePrefix(srv)
			}
			for _, proto := range []string{"udp", "tcp"} {
				add(Rule{Chain: ChainOutput, Dst: dst, Proto: proto, DPort: 53, Action: Redirect, ToPort: c.DNSPort})
			}
		}
	}
	// The proxy calling its own workload's non-loopback address (an outbound request whose
	// endpoint is this workload) takes the inbound path, as it would arriving from outside; the
	// rest of the proxy's traffic leaves unchanged. The application's loopback traffic stays
	// local.
	for _, o := range owners {
		notO := o
		notO.Not = true
		add(Rule{Chain: ChainOutput, Dst: loop, NotDst: true, OutLoopback: true, Proto: "tcp",
			DPort: vocab.HBONEPort, NotDPort: true, Owner: &o, Action: Jump, Target: ChainInRedirect})
		ret(Rule{Chain: ChainOutput, OutLoopback: true, Owner: &notO})
		ret(Rule{Chain: ChainOutput, Owner: &o})
	}
	ret(Rule{Chain: ChainOutput, Dst: loop})
	excl, _, _ := cidrs(c.ExcludeOutboundCIDRs, fam)
	for _, cidr := range excl {
		ret(Rule{Chain: ChainOutput, Dst: netip.MustParsePrefix(cidr)})
	}
	for _, port := range sortedPorts(c.ExcludeOutboundPorts) {
		ret(Rule{Chain: ChainOutput, Proto: "tcp", DPort: port})
	}
	incl, allOut, _ := cidrs(c.IncludeOutboundCIDRs, fam)
	if allOut || len(c.IncludeOutboundCIDRs) == 0 {
		jump(ChainOutput, "", 0, ChainRedirect)
	} else {
		for _, cidr := range incl {
			add(Rule{Chain: ChainOutput, Dst: netip.MustParsePrefix(cidr), Action: Jump, Target: ChainRedirect})
		}
	}
	for i, r := range p.Rules {
		if err := r.check(); err != nil {
			return Plan{}, fmt.Errorf("%s rule %d (%s): %w", fam, i+1, r.iptables(), err)
		}
	}
	return p, nil
}

// check reports a rule no backend can express.
func (r Rule) check() error {
	switch {
	case r.DPort != 0 && r.Proto == "":
		return fmt.Errorf("a destination port needs a protocol")
	case r.Action == Redirect && (r.Proto == "" || r.ToPort == 0):
		return fmt.Errorf("a redirect needs a protocol and a port")
	case r.Action == Jump && !ours(r.Target):
		return fmt.Errorf("jump to %q, not a chain of ours", r.Target)
	case r.Chain != HookPrerouting && r.Chain != HookOutput && !ours(r.Chain):
		return fmt.Errorf("unknown chain %q", r.Chain)
	}
	return nil
}

// iptables renders the rule as an iptables-restore line (without the leading "-A").
func (r Rule) iptables() string {
	var b strings.Builder
	b.WriteString(r.Chain)
	if r.Src.IsValid() {
		fmt.Fprintf(&b, " -s %s", r.Src)
	}
	if r.Dst.IsValid() {
		b.WriteString(negation(r.NotDst, " !") + " -d " + r.Dst.String())
	}
	if r.OutLoopback {
		b.WriteString(" -o lo")
	}
	if r.Proto != "" {
		b.WriteString(" -p " + r.Proto)
	}
	if r.DPort != 0 {
		fmt.Fprintf(&b, "%s --dport %d", negation(r.NotDPort, " !"), r.DPort)
	}
	if o := r.Owner; o != nil {
		kind := "--uid-owner"
		if o.GID {
			kind = "--gid-owner"
		}
		fmt.Fprintf(&b, " -m owner%s %s %d", negation(o.Not, " !"), kind, o.ID)
	}
	switch r.Action {
	case Jump:
		b.WriteString(" -j " + r.Target)
	case Return:
		b.WriteString(" -j RETURN")
	case Redirect:
		fmt.Fprintf(&b, " -j REDIRECT --to-ports %d", r.ToPort)
	}
	return b.String()
}

// negation returns op (the backend's spelling of "not") when inverted, else "".
func negation(inverted bool, op string) string {
	if inverted {
		return op
	}
	return ""
}

// Rules returns the nat table rules of one family in iptables-restore format (to be applied
// with --noflush: the built-in chains keep their other rules). The text is deterministic, so it
// is also what --dry-run prints for the iptables backend.
func Rules(c Config, fam Family) (string, error) {
	p, err := BuildPlan(c, fam)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("*nat\n")
	for _, ch := range Chains {
		fmt.Fprintf(&b, ":%s - [0:0]\n", ch)
	}
	for _, r := range p.Rules {
		b.WriteString("-A " + r.iptables() + "\n")
	}
	b.WriteString("COMMIT\n")
	return b.String(), nil
}
