package intercept

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/netns"
)

// rootNS creates a network namespace for the test, or skips when that is not possible.
func rootNS(t *testing.T) *netns.NS {
	t.Helper()
	if err := netns.Available(); err != nil {
		t.Skipf("skipping: %v", err)
	}
	for _, tool := range []string{"iptables-restore", "ip6tables-restore", "iptables-save", "ip6tables-save"} {
		if _, err := Exec(context.Background(), "", tool, "--version"); err != nil {
			t.Skipf("skipping: %v", err)
		}
	}
	ns, err := netns.Add(fmt.Sprintf("strait-ipt-%d", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ns.Delete(); err != nil {
			t.Error(err)
		}
	})
	return ns
}

// save returns both families' nat tables of the namespace, without comments and counters.
func save(t *testing.T, ns *netns.NS) string {
	t.Helper()
	var b strings.Builder
	err := ns.Do(func() error {
		for _, fam := range []Family{IPv4, IPv6} {
			out, err := Exec(context.Background(), "", tool(fam, "-save"), "-t", "nat")
			if err != nil {
				return err
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
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestInstallUninstallNetns installs twice and uninstalls twice in a fresh namespace holding a
// rule of someone else's: install is idempotent, uninstall leaves exactly the rules that were
// there before.
func TestInstallUninstallNetns(t *testing.T) {
	ns := rootNS(t)
	ctx := context.Background()
	// Someone else's rule must survive.
	if err := ns.Do(func() error {
		_, err := Exec(ctx, "", "iptables", "-t", "nat", "-A", "OUTPUT", "-p", "udp", "--dport", "53", "-j", "RETURN")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	before := save(t, ns)
	c := Config{ExcludeOutboundCIDRs: []string{"198.19.0.0/16"}, ExcludeInboundPorts: []uint16{22},
		RedirectDNS: true, DNSServers: []string{"127.0.0.53", "fd00::10"}}
	install := func() {
		t.Helper()
		if err := ns.Do(func() error { return Install(ctx, c, Options{}) }); err != nil {
			t.Fatal(err)
		}
	}
	uninstall := func() {
		t.Helper()
		if err := ns.Do(func() error { return Uninstall(ctx, Options{}) }); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _ = ns.Do(func() error { return Uninstall(ctx, Options{}) }) })
	install()
	once := save(t, ns)
	for _, ch := range Chains {
		if !strings.Contains(once, ":"+ch) || strings.Count(once, "-j "+ch) == 0 {
			t.Fatalf("chain %s missing after install:\n%s", ch, once)
		}
	}
	if !strings.Contains(once, "--uid-owner 1337") || !strings.Contains(once, "REDIRECT --to-ports 15001") {
		t.Fatalf("install did not apply the rules:\n%s", once)
	}
	install()
	if twice := save(t, ns); twice != once {
		t.Fatalf("second install changed the rules:\nfirst:\n%s\nsecond:\n%s", once, twice)
	}
	uninstall()
	if after := save(t, ns); after != before {
		t.Fatalf("uninstall left a difference:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	uninstall()
	if after := save(t, ns); after != before {
		t.Fatalf("second uninstall changed the rules:\n%s", after)
	}
}

// TestRedirectAndOwnerExclusion shows the rules at work in a namespace: a connection from an
// ordinary user to an outside address is redirected to 15001 (where a listener sees it, with the
// original destination recoverable), while the same connection from the proxy's uid is not
// redirected and reaches its destination.
func TestRedirectAndOwnerExclusion(t *testing.T) {
	ns := rootNS(t)
	ctx := context.Background()
	// A second namespace plays the outside world on a veth pair.
	peer, err := netns.Add(fmt.Sprintf("strait-iptp-%d", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = peer.Delete() })
	if _, err := ns.IP("link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", peer.Name); err != nil {
		t.Fatal(err)
	}
	for _, s := range []struct {
		n    *netns.NS
		addr string
	}{{ns, "198.18.250.1/30"}, {peer, "198.18.250.2/30"}} {
		if _, err := s.n.IP("addr", "add", s.addr, "dev", "eth0"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.n.IP("link", "set", "eth0", "up"); err != nil {
			t.Fatal(err)
		}
	}
	var server, capture net.Listener
	if err := peer.Do(func() (err error) { server, err = net.Listen("tcp", "198.18.250.2:9000"); return err }); err != nil {
		t.Fatal(err)
	}
	defer server.Close()
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
	atServer, atCapture := accepted(server), accepted(capture)
	var dnsServer, dnsProxy net.PacketConn
	if err := peer.Do(func() (err error) { dnsServer, err = net.ListenPacket("udp", "198.18.250.2:53"); return err }); err != nil {
		t.Fatal(err)
	}
	defer dnsServer.Close()
	if err := ns.Do(func() (err error) { dnsProxy, err = net.ListenPacket("udp", "127.0.0.1:15053"); return err }); err != nil {
		t.Fatal(err)
	}
	defer dnsProxy.Close()
	t.Cleanup(func() { _ = ns.Do(func() error { return Uninstall(ctx, Options{}) }) })
	if err := ns.Do(func() error { return Install(ctx, Config{RedirectDNS: true}, Options{}) }); err != nil {
		t.Fatal(err)
	}
	// dial runs a short-lived child (this test binary, see TestMain) in the namespace as uid,
	// which connects to addr and writes "hello".
	self := worldExecutable(t)
	dial := func(uid int, target ...string) {
		t.Helper()
		addr := "tcp 198.18.250.2:9000"
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
	if dst != netip.MustParseAddrPort("198.18.250.2:9000") {
		t.Errorf("original destination %s, want 198.18.250.2:9000", dst)
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
	dial(1000, "udp 198.18.250.2:53")
	if got := received(dnsProxy); got != "hello" {
		t.Errorf("DNS proxy got %q", got)
	}
	dial(1337, "udp 198.18.250.2:53")
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
