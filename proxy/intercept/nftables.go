package intercept

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// NFTable is the table the nftables backend creates in each family (ip and ip6), named as in
// Istio's native nftables mode. Install replaces it whole; nothing outside it is touched.
const NFTable = "istio-proxy-nat"

// nftChains names each chain of a Plan in the nftables backend: the base chains hooked at
// prerouting and output (nat, priority dstnat, as iptables' nat table) and Istio's names for its
// own chains.
var nftChains = map[string]string{
	HookPrerouting:  "prerouting",
	HookOutput:      "output",
	ChainInbound:    "istio-inbound",
	ChainInRedirect: "istio-in-redirect",
	ChainOutput:     "istio-output",
	ChainRedirect:   "istio-redirect",
}

// nftHooks are the base chains, in creation order, with their netfilter hooks and their
// priority (-100, iptables' nat) as nft prints it: its name "dstnat" exists only for prerouting.
var nftHooks = []struct {
	chain    string
	hook     *nftables.ChainHook
	priority string
}{{HookPrerouting, nftables.ChainHookPrerouting, "dstnat"}, {HookOutput, nftables.ChainHookOutput, "-100"}}

// nftFamily is fam's nftables table family.
func nftFamily(fam Family) nftables.TableFamily {
	if fam == IPv6 {
		return nftables.TableFamilyIPv6
	}
	return nftables.TableFamilyIPv4
}

// NFTFamily returns the family's keyword in nft syntax: "ip" or "ip6".
func (f Family) NFTFamily() string {
	if f == IPv6 {
		return "ip6"
	}
	return "ip"
}

// ipProto returns the IP protocol number of "tcp" or "udp".
func ipProto(name string) byte {
	if name == "udp" {
		return unix.IPPROTO_UDP
	}
	return unix.IPPROTO_TCP
}

// ifname pads an interface name as the kernel compares it (IFNAMSIZ bytes).
func ifname(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

// cmpOp is the comparison: equal, or not equal when inverted.
func cmpOp(inverted bool) expr.CmpOp {
	if inverted {
		return expr.CmpOpNeq
	}
	return expr.CmpOpEq
}

// addrOffset returns the network header offset of the source or destination address and its
// length.
func addrOffset(fam Family, dst bool) (offset, length uint32) {
	switch {
	case fam == IPv6 && dst:
		return 24, 16
	case fam == IPv6:
		return 8, 16
	case dst:
		return 16, 4
	default:
		return 12, 4
	}
}

// nftExprs renders r as nftables expressions, matches in the same order as the iptables text.
// One difference of the engines: a packet without a socket matches iptables' "! --uid-owner"
// but not nftables' "meta skuid !=", which only concerns packets the kernel sends itself; nat
// chains see the first packet of a connection, which always has a socket.
func (r Rule) nftExprs(fam Family) ([]expr.Any, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	var e []expr.Any
	addr := func(p netip.Prefix, dst, inverted bool) error {
		if p.Addr().Is4() != (fam == IPv4) {
			return fmt.Errorf("address %s is not %s", p, fam)
		}
		off, n := addrOffset(fam, dst)
		e = append(e, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n})
		if p.Bits() < p.Addr().BitLen() {
			mask := make([]byte, n)
			for i := range p.Bits() {
				mask[i/8] |= 0x80 >> (i % 8)
			}
			e = append(e, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: n, Mask: mask, Xor: make([]byte, n)})
		}
		e = append(e, &expr.Cmp{Op: cmpOp(inverted), Register: 1, Data: p.Masked().Addr().AsSlice()})
		return nil
	}
	if r.Src.IsValid() {
		if err := addr(r.Src, false, false); err != nil {
			return nil, err
		}
	}
	if r.Dst.IsValid() {
		if err := addr(r.Dst, true, r.NotDst); err != nil {
			return nil, err
		}
	}
	if r.OutLoopback {
		e = append(e, &expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname("lo")})
	}
	if r.Proto != "" {
		e = append(e, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{ipProto(r.Proto)}})
	}
	if r.DPort != 0 {
		e = append(e, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: cmpOp(r.NotDPort), Register: 1, Data: binary.BigEndian.AppendUint16(nil, r.DPort)})
	}
	if o := r.Owner; o != nil {
		key := expr.MetaKeySKUID
		if o.GID {
			key = expr.MetaKeySKGID
		}
		e = append(e, &expr.Meta{Key: key, Register: 1},
			&expr.Cmp{Op: cmpOp(o.Not), Register: 1, Data: binary.NativeEndian.AppendUint32(nil, uint32(o.ID))})
	}
	switch r.Action {
	case Jump:
		e = append(e, &expr.Verdict{Kind: expr.VerdictJump, Chain: nftChains[r.Target]})
	case Return:
		e = append(e, &expr.Verdict{Kind: expr.VerdictReturn})
	case Redirect:
		e = append(e, &expr.Immediate{Register: 1, Data: binary.BigEndian.AppendUint16(nil, r.ToPort)},
			&expr.Redir{RegisterProtoMin: 1, Flags: unix.NF_NAT_RANGE_PROTO_SPECIFIED})
	}
	return e, nil
}

// nft renders r as a rule in nft syntax (what --dry-run prints, and how errors name a rule).
func (r Rule) nft(fam Family) string {
	var parts []string
	add := func(format string, args ...any) { parts = append(parts, fmt.Sprintf(format, args...)) }
	ip := fam.NFTFamily()
	if r.Src.IsValid() {
		add("%s saddr %s", ip, r.Src)
	}
	if r.Dst.IsValid() {
		add("%s daddr %s%s", ip, negation(r.NotDst, "!= "), r.Dst)
	}
	if r.OutLoopback {
		add(`oifname "lo"`)
	}
	if r.Proto != "" {
		add("meta l4proto %s", r.Proto)
	}
	if r.DPort != 0 {
		add("%s dport %s%d", r.Proto, negation(r.NotDPort, "!= "), r.DPort)
	}
	if o := r.Owner; o != nil {
		key := "skuid"
		if o.GID {
			key = "skgid"
		}
		add("meta %s %s%d", key, negation(o.Not, "!= "), o.ID)
	}
	switch r.Action {
	case Jump:
		add("jump %s", nftChains[r.Target])
	case Return:
		add("return")
	case Redirect:
		add("redirect to :%d", r.ToPort)
	}
	return strings.Join(parts, " ")
}

// NFTRules returns the nftables table of one family in nft syntax: what the nftables backend
// installs (through netlink, not this text), and what --dry-run prints for it. `nft -f` accepts
// it.
func NFTRules(c Config, fam Family) (string, error) {
	p, err := BuildPlan(c, fam)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "table %s %s {\n", fam.NFTFamily(), NFTable)
	chain := func(name, hook, priority string) {
		fmt.Fprintf(&b, "\tchain %s {\n", nftChains[name])
		if hook != "" {
			fmt.Fprintf(&b, "\t\ttype nat hook %s priority %s; policy accept;\n", hook, priority)
		}
		for _, r := range p.Rules {
			if r.Chain == name {
				fmt.Fprintf(&b, "\t\t%s\n", r.nft(fam))
			}
		}
		b.WriteString("\t}\n")
	}
	for _, h := range nftHooks {
		chain(h.chain, nftChains[h.chain], h.priority)
	}
	for _, ch := range Chains {
		chain(ch, "", "")
	}
	b.WriteString("}\n")
	return b.String(), nil
}

// nftInstall replaces our table of each plan's family with the plan's, all families in one
// netlink transaction: either every table is replaced or nothing changes.
func nftInstall(plans []Plan) error {
	conn, err := nftables.New()
	if err != nil {
		return fmt.Errorf("opening nftables netlink socket: %w", err)
	}
	var names []string
	for _, p := range plans {
		t := nftReset(conn, p.Family)
		names = append(names, p.Family.NFTFamily()+" "+NFTable)
		chains := map[string]*nftables.Chain{}
		for _, h := range nftHooks {
			chains[h.chain] = conn.AddChain(&nftables.Chain{Name: nftChains[h.chain], Table: t, Type: nftables.ChainTypeNAT,
				Hooknum: h.hook, Priority: nftables.ChainPriorityNATDest, Policy: ptr(nftables.ChainPolicyAccept)})
		}
		for _, ch := range Chains {
			chains[ch] = conn.AddChain(&nftables.Chain{Name: nftChains[ch], Table: t})
		}
		for _, r := range p.Rules {
			exprs, err := r.nftExprs(p.Family)
			if err != nil {
				return fmt.Errorf("%s rule %q: %w", p.Family, r.nft(p.Family), err)
			}
			conn.AddRule(&nftables.Rule{Table: t, Chain: chains[r.Chain], Exprs: exprs})
		}
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("installing nftables table(s) %s in one transaction (needs the kernel's nf_tables with nat, redir and meta): %w", strings.Join(names, ", "), err)
	}
	return nil
}

// nftReset queues the deletion of our table of fam, whether or not it exists (it is added
// first, which does nothing when it is there), and its re-creation, empty.
func nftReset(conn *nftables.Conn, fam Family) *nftables.Table {
	t := &nftables.Table{Name: NFTable, Family: nftFamily(fam)}
	conn.AddTable(t)
	conn.DelTable(t)
	return conn.AddTable(t)
}

// nftUninstall deletes our table of each family in one transaction; it succeeds when there is
// none.
func nftUninstall(fams []Family) error {
	conn, err := nftables.New()
	if err != nil {
		return fmt.Errorf("opening nftables netlink socket: %w", err)
	}
	for _, fam := range fams {
		t := &nftables.Table{Name: NFTable, Family: nftFamily(fam)}
		conn.AddTable(t)
		conn.DelTable(t)
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("deleting nftables table %s: %w", NFTable, err)
	}
	return nil
}

// NFTAvailable reports why nftables cannot be programmed from this process (in the current
// network namespace), or nil when it can: it lists the IPv4 tables through netlink, which needs
// CAP_NET_ADMIN and a kernel with nf_tables.
func NFTAvailable() error {
	conn, err := nftables.New()
	if err != nil {
		return fmt.Errorf("opening nftables netlink socket: %w", err)
	}
	if _, err := conn.ListTablesOfFamily(nftables.TableFamilyIPv4); err != nil {
		return fmt.Errorf("listing nftables tables (needs CAP_NET_ADMIN and kernel nf_tables): %w", err)
	}
	return nil
}

func ptr[T any](v T) *T { return &v }
