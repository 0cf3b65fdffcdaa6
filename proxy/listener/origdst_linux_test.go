package listener

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/wrapperspb"

	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	listenerv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/listener/v3"
)

// netns is a network namespace created by the test, with iptables REDIRECT rules as in a pod.
type netns struct{ name string }

func run(t *testing.T, args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

func newNetns(t *testing.T) *netns {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root to create a network namespace and iptables rules")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2 (ip)")
	}
	ns := &netns{name: fmt.Sprintf("strait-p4-%d", os.Getpid())}
	if err := run(t, "ip", "netns", "add", ns.name); err != nil {
		t.Skipf("cannot create a network namespace: %v", err)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns.name).Run() })
	if err := run(t, "ip", "-n", ns.name, "link", "set", "lo", "up"); err != nil {
		t.Fatal(err)
	}
	return ns
}

// do runs fn with the calling OS thread inside the namespace; sockets created by fn stay there.
func (ns *netns) do(t *testing.T, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(orig)
	target, err := unix.Open("/var/run/netns/"+ns.name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(target)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			panic(err) // the thread is locked; never hand it back in the wrong namespace
		}
	}()
	fn()
}

// TestSOOriginalDst redirects connections to 198.18.0.10:80 (IPv4) and [2001:2::10]:80 (IPv6)
// with iptables REDIRECT inside a namespace and checks that the listener recovers the original
// destination and selects the chain for it.
func TestSOOriginalDst(t *testing.T) {
	ns := newNetns(t)
	cases := []struct {
		name, iptables, bind, route, src, dst, prefix string
	}{
		{"ipv4", "iptables", "127.0.0.1", "198.18.0.0/15", "127.0.0.1", "198.18.0.10", "198.18.0.10/32"},
		{"ipv6", "ip6tables", "::1", "2001:2::/48", "::1", "2001:2::10", "2001:2::10/128"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := exec.LookPath(c.iptables); err != nil {
				t.Skipf("needs %s", c.iptables)
			}
			if err := run(t, "ip", "-n", ns.name, "route", "add", c.route, "dev", "lo", "src", c.src); err != nil {
				t.Skipf("cannot add route: %v", err)
			}
			env := newEnv()
			env.tcp["orig"] = tcpBackend(t, "ORIG")
			env.tcp["local"] = tcpBackend(t, "LOCAL")
			l, err := Compile(&listenerv3.Listener{Name: "capture", Address: sockAddr(c.bind, 0),
				ListenerFilters: []*listenerv3.ListenerFilter{origDst(t)}, UseOriginalDst: wrapperspb.Bool(true),
				FilterChains: []*listenerv3.FilterChain{
					tcpChain(t, "orig", "orig", &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(80), PrefixRanges: []*corev3.CidrRange{cidr(c.prefix)}}),
					tcpChain(t, "local", "local", nil),
				}}, env)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			var redirected, direct net.Conn
			ns.do(t, func() {
				ln, err := l.Listen(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				go l.Serve(ln)
				p := port(ln.Addr().String())
				if err := run(t, "ip", "netns", "exec", ns.name, c.iptables, "-t", "nat", "-A", "OUTPUT", "-p", "tcp",
					"-d", c.dst, "--dport", "80", "-j", "REDIRECT", "--to-ports", uitoa(p)); err != nil {
					t.Skipf("cannot install REDIRECT rule: %v", err)
				}
				if redirected, err = net.Dial("tcp", net.JoinHostPort(c.dst, "80")); err != nil {
					t.Fatal(err)
				}
				if direct, err = net.Dial("tcp", ln.Addr().String()); err != nil {
					t.Fatal(err)
				}
			})
			defer redirected.Close()
			defer direct.Close()
			if got := firstLine(t, redirected); got != "ORIG" {
				t.Errorf("redirected connection served by %q, want the chain of its original destination", got)
			}
			if got := firstLine(t, direct); got != "LOCAL" {
				t.Errorf("direct connection served by %q, want the local-address fallback", got)
			}
		})
	}
}
