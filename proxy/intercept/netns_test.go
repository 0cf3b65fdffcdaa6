package intercept

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/strait-mesh/strait/internal/netns"
)

// rootNS creates a network namespace for the test, or skips when that is not possible or the
// backend cannot run here.
func rootNS(t *testing.T, b Backend) *netns.NS {
	t.Helper()
	if err := netns.Available(); err != nil {
		t.Skipf("skipping: %v", err)
	}
	if b == BackendIPTables {
		for _, tool := range []string{"iptables-restore", "ip6tables-restore", "iptables-save", "ip6tables-save"} {
			if _, err := Exec(context.Background(), "", tool, "--version"); err != nil {
				t.Skipf("skipping: %v", err)
			}
		}
	}
	ns, err := netns.Add(fmt.Sprintf("strait-%.3s-%d", b, os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ns.Delete(); err != nil {
			t.Error(err)
		}
	})
	if b == BackendNFTables {
		if err := ns.Do(NFTAvailable); err != nil {
			t.Skipf("skipping: no nf_tables here: %v", err)
		}
	}
	return ns
}

// eachBackend runs f as a subtest for each backend.
func eachBackend(t *testing.T, f func(t *testing.T, b Backend)) {
	for _, b := range []Backend{BackendIPTables, BackendNFTables} {
		t.Run(string(b), func(t *testing.T) { f(t, b) })
	}
}

// save returns what the backend installs in the namespace: both families' nat tables without
// comments and counters (iptables), or every nftables table with its chains and rules.
func save(t *testing.T, ns *netns.NS, b Backend) string {
	t.Helper()
	var out string
	var err error
	if b == BackendNFTables {
		err = ns.Do(func() (err error) { out, err = nftDump(); return err })
	} else {
		err = ns.Do(func() (err error) { out, err = iptablesSave(); return err })
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// iptablesSave returns both families' nat tables without comments and counters.
func iptablesSave() (string, error) {
	var b strings.Builder
	for _, fam := range []Family{IPv4, IPv6} {
		out, err := Exec(context.Background(), "", tool(fam, "-save"), "-t", "nat")
		if err != nil {
			return "", err
		}
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "#") {
				continue
			}
			if strings.HasPrefix(l, ":") { // drop counters
				l, _, _ = strings.Cut(l, " [")
			}
			b.WriteString(l + "\n")
		}
	}
	return b.String(), nil
}

// nftDump lists every nftables table of the namespace with its chains and their rules'
// expressions.
func nftDump() (string, error) {
	conn, err := nftables.New()
	if err != nil {
		return "", err
	}
	tables, err := conn.ListTables()
	if err != nil {
		return "", err
	}
	chains, err := conn.ListChains()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, t := range tables {
		fmt.Fprintf(&b, "table %d %s\n", t.Family, t.Name)
		for _, c := range chains {
			if c.Table.Name != t.Name || c.Table.Family != t.Family {
				continue
			}
			fmt.Fprintf(&b, "  chain %s %s\n", c.Name, c.Type)
			rules, err := conn.GetRules(t, c)
			if err != nil {
				return "", err
			}
			for _, r := range rules {
				b.WriteString("   ")
				for _, e := range r.Exprs {
					fmt.Fprintf(&b, " %T%+v", e, e)
				}
				b.WriteString("\n")
			}
		}
	}
	return b.String(), nil
}

// addForeign adds someone else's rules the backend must leave alone: a nat OUTPUT rule
// (iptables), or a table of its own with a nat output chain and a rule (nftables).
func addForeign(t *testing.T, ns *netns.NS, b Backend) {
	t.Helper()
	err := ns.Do(func() error {
		if b == BackendIPTables {
			_, err := Exec(context.Background(), "", "iptables", "-t", "nat", "-A", "OUTPUT", "-p", "udp", "--dport", "53", "-j", "RETURN")
			return err
		}
		conn, err := nftables.New()
		if err != nil {
			return err
		}
		for _, fam := range []nftables.TableFamily{nftables.TableFamilyIPv4, nftables.TableFamilyINet} {
			tb := conn.AddTable(&nftables.Table{Name: "foreign", Family: fam})
			ch := conn.AddChain(&nftables.Chain{Name: "output", Table: tb, Type: nftables.ChainTypeNAT,
				Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest})
			conn.AddRule(&nftables.Rule{Table: tb, Chain: ch, Exprs: []expr.Any{
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{17}},
				&expr.Verdict{Kind: expr.VerdictReturn}}})
		}
		return conn.Flush()
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestInstallUninstallNetns installs twice and uninstalls twice in a fresh namespace holding
// rules of someone else's, with each backend: install is idempotent, uninstall leaves exactly
// the rules that were there before.
func TestInstallUninstallNetns(t *testing.T) {
	eachBackend(t, func(t *testing.T, b Backend) {
		ns := rootNS(t, b)
		ctx := context.Background()
		addForeign(t, ns, b)
		before := save(t, ns, b)
		c := Config{ExcludeOutboundCIDRs: []string{"198.19.0.0/16"}, ExcludeInboundPorts: []uint16{22},
			RedirectDNS: true, DNSServers: []string{"127.0.0.53", "fd00::10"}}
		o := Options{Backend: b}
		install := func() {
			t.Helper()
			if err := ns.Do(func() error { return Install(ctx, c, o) }); err != nil {
				t.Fatal(err)
			}
		}
		uninstall := func() {
			t.Helper()
			if err := ns.Do(func() error { return Uninstall(ctx, o) }); err != nil {
				t.Fatal(err)
			}
		}
		t.Cleanup(func() { _ = ns.Do(func() error { return Uninstall(ctx, o) }) })
		install()
		once := save(t, ns, b)
		if b == BackendIPTables {
			for _, ch := range Chains {
				if !strings.Contains(once, ":"+ch) || strings.Count(once, "-j "+ch) == 0 {
					t.Fatalf("chain %s missing after install:\n%s", ch, once)
				}
			}
			if !strings.Contains(once, "--uid-owner 1337") || !strings.Contains(once, "REDIRECT --to-ports 15001") {
				t.Fatalf("install did not apply the rules:\n%s", once)
			}
		} else {
			for _, fam := range []Family{IPv4, IPv6} {
				if got := installedPlan(t, ns, fam); !reflect.DeepEqual(got, planByChain(t, c, fam)) {
					t.Fatalf("%s: installed %v, want the plan", fam, got)
				}
			}
		}
		install()
		if twice := save(t, ns, b); twice != once {
			t.Fatalf("second install changed the rules:\nfirst:\n%s\nsecond:\n%s", once, twice)
		}
		uninstall()
		if after := save(t, ns, b); after != before {
			t.Fatalf("uninstall left a difference:\nbefore:\n%s\nafter:\n%s", before, after)
		}
		uninstall()
		if after := save(t, ns, b); after != before {
			t.Fatalf("second uninstall changed the rules:\n%s", after)
		}
	})
}

// TestNFTablesIPv4Only checks that with one family only that family's table is installed and
// removed.
func TestNFTablesIPv4Only(t *testing.T) {
	ns := rootNS(t, BackendNFTables)
	ctx := context.Background()
	o := Options{Backend: BackendNFTables, Families: []Family{IPv4}}
	if err := ns.Do(func() error { return Install(ctx, Config{}, o) }); err != nil {
		t.Fatal(err)
	}
	dump := save(t, ns, BackendNFTables)
	if !strings.Contains(dump, fmt.Sprintf("table %d %s\n", nftables.TableFamilyIPv4, NFTable)) ||
		strings.Contains(dump, fmt.Sprintf("table %d ", nftables.TableFamilyIPv6)) {
		t.Fatalf("want only the ip table:\n%s", dump)
	}
	if err := ns.Do(func() error { return Uninstall(ctx, o) }); err != nil {
		t.Fatal(err)
	}
	if dump := save(t, ns, BackendNFTables); dump != "" {
		t.Fatalf("uninstall left:\n%s", dump)
	}
}

// TestBackendsInstallThePlan installs each golden case with each backend in a namespace and
// reads the rules back from the kernel: both install exactly BuildPlan's rules, chain by chain.
// When the nft binary is there, the text --dry-run prints for nftables is loaded with `nft -f`
// and read back too.
func TestBackendsInstallThePlan(t *testing.T) {
	for name, c := range goldenCases {
		t.Run(name, func(t *testing.T) {
			eachBackend(t, func(t *testing.T, b Backend) {
				ns := rootNS(t, b)
				ctx := context.Background()
				o := Options{Backend: b}
				if err := ns.Do(func() error { return Install(ctx, c, o) }); err != nil {
					t.Fatal(err)
				}
				for _, fam := range []Family{IPv4, IPv6} {
					want := planByChain(t, c, fam)
					var got map[string][]string
					if b == BackendIPTables {
						got = iptablesByChain(t, ns, fam)
					} else {
						got = installedPlan(t, ns, fam)
					}
					if !reflect.DeepEqual(got, want) {
						t.Errorf("%s: installed\n%v\nwant\n%v", fam, got, want)
					}
				}
				if err := ns.Do(func() error { return Uninstall(ctx, o) }); err != nil {
					t.Fatal(err)
				}
				if b != BackendNFTables {
					return
				}
				nft, err := lookPath("nft")
				if err != nil {
					return // the nft binary is optional: the backend does not use it
				}
				for _, fam := range []Family{IPv4, IPv6} {
					text, err := NFTRules(c, fam)
					if err != nil {
						t.Fatal(err)
					}
					cmd := exec.Command(nft, "-f", "-")
					cmd.Stdin = strings.NewReader(text)
					var out strings.Builder
					cmd.Stdout, cmd.Stderr = &out, &out
					if err := ns.Do(cmd.Run); err != nil {
						t.Fatalf("nft -f rejected the dry-run text: %v\n%s\n%s", err, out.String(), text)
					}
					if got, want := installedPlan(t, ns, fam), planByChain(t, c, fam); !reflect.DeepEqual(got, want) {
						t.Errorf("%s: nft -f of the dry-run text installed\n%v\nwant\n%v", fam, got, want)
					}
				}
			})
		})
	}
}

// planByChain returns the plan's rules as iptables lines, by chain.
func planByChain(t *testing.T, c Config, fam Family) map[string][]string {
	t.Helper()
	p, err := BuildPlan(c, fam)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, r := range p.Rules {
		out[r.Chain] = append(out[r.Chain], r.iptables())
	}
	return out
}

// iptablesByChain reads our rules of one family back with iptables-save, by chain, as the
// plan's lines: the jumps into our chains and our chains' rules.
func iptablesByChain(t *testing.T, ns *netns.NS, fam Family) map[string][]string {
	t.Helper()
	var saved string
	if err := ns.Do(func() (err error) {
		saved, err = Exec(context.Background(), "", tool(fam, "-save"), "-t", "nat")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, l := range strings.Split(saved, "\n") {
		rest, ok := strings.CutPrefix(l, "-A ")
		if !ok {
			continue
		}
		rest = strings.NewReplacer(" -m tcp", "", " -m udp", "").Replace(rest)
		chain, _, _ := strings.Cut(rest, " ")
		target := rest[strings.LastIndex(rest, " -j ")+4:]
		if ours(chain) || ours(target) {
			out[chain] = append(out[chain], rest)
		}
	}
	return out
}

// installedPlan reads our nftables table of one family back from the kernel and decodes each
// rule into the plan's terms, by chain, as iptables lines.
func installedPlan(t *testing.T, ns *netns.NS, fam Family) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	err := ns.Do(func() error {
		conn, err := nftables.New()
		if err != nil {
			return err
		}
		table := &nftables.Table{Name: NFTable, Family: nftFamily(fam)}
		chains, err := conn.ListChainsOfTableFamily(nftFamily(fam))
		if err != nil {
			return err
		}
		for _, ch := range chains {
			if ch.Table.Name != NFTable {
				continue
			}
			name := ""
			for k, v := range nftChains {
				if v == ch.Name {
					name = k
				}
			}
			if name == "" {
				return fmt.Errorf("unexpected chain %s", ch.Name)
			}
			rules, err := conn.GetRules(table, ch)
			if err != nil {
				return err
			}
			for _, r := range rules {
				dec, err := decodeNFT(fam, name, r.Exprs)
				if err != nil {
					return fmt.Errorf("chain %s: %w", ch.Name, err)
				}
				out[name] = append(out[name], dec.iptables())
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// decodeNFT turns the expressions of one of our rules back into a Rule.
func decodeNFT(fam Family, chain string, exprs []expr.Any) (Rule, error) {
	r := Rule{Chain: chain}
	cmpAt := func(i int) (*expr.Cmp, error) {
		if i < len(exprs) {
			if c, ok := exprs[i].(*expr.Cmp); ok {
				return c, nil
			}
		}
		return nil, fmt.Errorf("expression %d: want a comparison in %v", i, exprs)
	}
	for i := 0; i < len(exprs); i++ {
		switch e := exprs[i].(type) {
		case *expr.Payload:
			bits := -1
			if i+1 < len(exprs) {
				if bw, ok := exprs[i+1].(*expr.Bitwise); ok {
					bits = 0
					for _, m := range bw.Mask {
						bits += popcount(m)
					}
					i++
				}
			}
			c, err := cmpAt(i + 1)
			if err != nil {
				return r, err
			}
			i++
			if e.Base == expr.PayloadBaseTransportHeader && e.Offset == 2 {
				r.DPort, r.NotDPort = binary.BigEndian.Uint16(c.Data), c.Op == expr.CmpOpNeq
				continue
			}
			// nft loads only the leading bytes of a byte-aligned prefix (ip6 daddr fd00::/8:
			// one byte).
			_, full := addrOffset(fam, false)
			data := append(append([]byte(nil), c.Data...), make([]byte, int(full)-len(c.Data))...)
			addr, ok := netip.AddrFromSlice(data)
			if !ok || len(c.Data) > int(full) {
				return r, fmt.Errorf("address %x", c.Data)
			}
			if bits < 0 {
				bits = 8 * len(c.Data)
			}
			p := netip.PrefixFrom(addr, bits)
			if srcOff, _ := addrOffset(fam, false); e.Offset == srcOff {
				r.Src = p
			} else {
				r.Dst, r.NotDst = p, c.Op == expr.CmpOpNeq
			}
		case *expr.Meta:
			c, err := cmpAt(i + 1)
			if err != nil {
				return r, err
			}
			i++
			switch e.Key {
			case expr.MetaKeyOIFNAME:
				if name := strings.TrimRight(string(c.Data), "\x00"); name != "lo" {
					return r, fmt.Errorf("oifname %q", name)
				}
				r.OutLoopback = true
			case expr.MetaKeyL4PROTO:
				r.Proto = map[byte]string{6: "tcp", 17: "udp"}[c.Data[0]]
			case expr.MetaKeySKUID, expr.MetaKeySKGID:
				r.Owner = &Owner{GID: e.Key == expr.MetaKeySKGID, ID: int(binary.NativeEndian.Uint32(c.Data)), Not: c.Op == expr.CmpOpNeq}
			default:
				return r, fmt.Errorf("meta key %v", e.Key)
			}
		case *expr.Verdict:
			switch e.Kind {
			case expr.VerdictReturn:
				r.Action = Return
			case expr.VerdictJump:
				r.Action = Jump
				for k, v := range nftChains {
					if v == e.Chain {
						r.Target = k
					}
				}
			default:
				return r, fmt.Errorf("verdict %v", e.Kind)
			}
		case *expr.Immediate:
			r.ToPort = binary.BigEndian.Uint16(e.Data)
		case *expr.Redir:
			r.Action = Redirect
		default:
			return r, fmt.Errorf("unexpected expression %T%+v", e, e)
		}
	}
	return r, nil
}

func popcount(b byte) int {
	n := 0
	for ; b != 0; b &= b - 1 {
		n++
	}
	return n
}

// TestRedirectAndOwnerExclusion shows the rules at work in a namespace, with each backend: a
// connection from an ordinary user to an outside address is redirected to 15001 (where a
// listener sees it, with the original destination recoverable), while the same connection from
// the proxy's uid is not redirected and reaches its destination.
func TestRedirectAndOwnerExclusion(t *testing.T) {
	eachBackend(t, func(t *testing.T, b Backend) {
		subnet := map[Backend]string{BackendIPTables: "198.18.250.", BackendNFTables: "198.18.200."}[b]
		redirectAndOwnerExclusion(t, b, subnet)
	})
}

// redirectAndOwnerExclusion is TestRedirectAndOwnerExclusion with one backend, the two
// namespaces on subnet+"0/30".
func redirectAndOwnerExclusion(t *testing.T, b Backend, subnet string) {
	ns := rootNS(t, b)
	ctx := context.Background()
	// A second namespace plays the outside world on a veth pair.
	peer, err := netns.Add(fmt.Sprintf("strait-%.3sp-%d", b, os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = peer.Delete() })
	if _, err := ns.IP("link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", peer.Name); err != nil {
		t.Fatal(err)
	}
	server := subnet + "2"
	for _, s := range []struct {
		n    *netns.NS
		addr string
	}{{ns, subnet + "1/30"}, {peer, server + "/30"}} {
		if _, err := s.n.IP("addr", "add", s.addr, "dev", "eth0"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.n.IP("link", "set", "eth0", "up"); err != nil {
			t.Fatal(err)
		}
	}
	var srv, capture net.Listener
	if err := peer.Do(func() (err error) { srv, err = net.Listen("tcp", server+":9000"); return err }); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := ns.Do(func() (err error) { capture, err = net.Listen("tcp", "0.0.0.0:15001"); return err }); err != nil {
		t.Fatal(err)
	}
	defer capture.Close()
	accepted := func(ln net.Listener) chan net.Conn {
		ch := make(chan net.Conn, 4)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					close(ch)
					return
				}
				ch <- c
			}
		}()
		return ch
	}
	atServer, atCapture := accepted(srv), accepted(capture)
	var dnsServer, dnsProxy net.PacketConn
	if err := peer.Do(func() (err error) { dnsServer, err = net.ListenPacket("udp", server+":53"); return err }); err != nil {
		t.Fatal(err)
	}
	defer dnsServer.Close()
	if err := ns.Do(func() (err error) { dnsProxy, err = net.ListenPacket("udp", "127.0.0.1:15053"); return err }); err != nil {
		t.Fatal(err)
	}
	defer dnsProxy.Close()
	o := Options{Backend: b}
	t.Cleanup(func() { _ = ns.Do(func() error { return Uninstall(ctx, o) }) })
	if err := ns.Do(func() error { return Install(ctx, Config{RedirectDNS: true}, o) }); err != nil {
		t.Fatal(err)
	}
	// dial runs a short-lived child (this test binary, see TestMain) in the namespace as uid,
	// which connects to addr and writes "hello".
	self := worldExecutable(t)
	dial := func(uid int, target ...string) {
		t.Helper()
		addr := "tcp " + server + ":9000"
		if len(target) > 0 {
			addr = target[0]
		}
		cmd := exec.Command(self, "-test.run=^$")
		cmd.Env = append(os.Environ(), dialEnv+"="+addr)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := ns.Do(cmd.Run); err != nil {
			t.Fatalf("dialing as uid %d: %v\n%s", uid, err, out.String())
		}
	}
	wait := func(ch chan net.Conn, where string) net.Conn {
		t.Helper()
		select {
		case c := <-ch:
			return c
		case <-time.After(10 * time.Second):
			t.Fatalf("no connection arrived at %s", where)
			return nil
		}
	}
	none := func(ch chan net.Conn, where string) {
		t.Helper()
		select {
		case c := <-ch:
			t.Fatalf("unexpected connection at %s from %s", where, c.RemoteAddr())
		default:
		}
	}

	dial(1000) // an application user: captured
	c := wait(atCapture, "15001")
	dst, err := originalDst(c)
	if err != nil {
		t.Fatal(err)
	}
	if want := netip.MustParseAddrPort(server + ":9000"); dst != want {
		t.Errorf("original destination %s, want %s", dst, want)
	}
	c.Close()
	none(atServer, "the server")

	dial(1337) // the proxy: not captured
	wait(atServer, "the server").Close()
	none(atCapture, "15001")

	// DNS: the application's query goes to the proxy's DNS port, the proxy's own to the server.
	received := func(pc net.PacketConn) string {
		t.Helper()
		_ = pc.SetReadDeadline(time.Now().Add(10 * time.Second))
		b := make([]byte, 64)
		n, _, err := pc.ReadFrom(b)
		if err != nil {
			t.Fatalf("no datagram at %s: %v", pc.LocalAddr(), err)
		}
		return string(b[:n])
	}
	dial(1000, "udp "+server+":53")
	if got := received(dnsProxy); got != "hello" {
		t.Errorf("DNS proxy got %q", got)
	}
	dial(1337, "udp "+server+":53")
	if got := received(dnsServer); got != "hello" {
		t.Errorf("DNS server got %q", got)
	}
}

// worldExecutable copies this test binary where any uid can run it.
func worldExecutable(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "strait-intercept-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	path := dir + "/intercept.test"
	if err := os.WriteFile(path, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

const dialEnv = "STRAIT_INTERCEPT_TEST_DIAL"

// TestMain doubles as the dialing child of TestRedirectAndOwnerExclusion.
func TestMain(m *testing.M) {
	if target := os.Getenv(dialEnv); target != "" {
		network, addr, _ := strings.Cut(target, " ")
		c, err := net.DialTimeout(network, addr, 5*time.Second)
		if err == nil {
			_, err = c.Write([]byte("hello"))
			c.Close()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// originalDst reads SO_ORIGINAL_DST of a redirected IPv4 connection.
func originalDst(c net.Conn) (netip.AddrPort, error) {
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	var addr netip.AddrPort
	var serr error
	err = raw.Control(func(fd uintptr) {
		const soOriginalDst = 80
		var sa [16]byte
		l := uint32(len(sa))
		_, _, e := syscall.Syscall6(syscall.SYS_GETSOCKOPT, fd, syscall.SOL_IP, soOriginalDst,
			uintptr(unsafePointer(&sa[0])), uintptr(unsafePointer(&l)), 0)
		if e != 0 {
			serr = e
			return
		}
		addr = netip.AddrPortFrom(netip.AddrFrom4([4]byte{sa[4], sa[5], sa[6], sa[7]}), uint16(sa[2])<<8|uint16(sa[3]))
	})
	return addr, errors.Join(err, serr)
}
