package upstream

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/balance"
	"github.com/strait-mesh/strait/proxy/stats"
	clusterv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/cluster/v3"
)

// fakeDNS is a real UDP DNS server on loopback answering A queries for "svc.test." from a table
// the test changes.
type fakeDNS struct {
	pc    net.PacketConn
	mu    sync.Mutex
	addrs []netip.Addr
}

func newFakeDNS(t *testing.T) *fakeDNS {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &fakeDNS{pc: pc}
	go d.serve()
	t.Cleanup(func() { _ = pc.Close() })
	return d
}

func (d *fakeDNS) set(addrs ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.addrs = nil
	for _, a := range addrs {
		d.addrs = append(d.addrs, netip.MustParseAddr(a))
	}
}

func (d *fakeDNS) serve() {
	buf := make([]byte, 1500)
	for {
		n, from, err := d.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		var p dnsmessage.Parser
		h, err := p.Start(buf[:n])
		if err != nil {
			continue
		}
		q, err := p.Question()
		if err != nil {
			continue
		}
		b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true})
		b.EnableCompression()
		_ = b.StartQuestions()
		_ = b.Question(q)
		_ = b.StartAnswers()
		if q.Type == dnsmessage.TypeA && strings.EqualFold(q.Name.String(), "svc.test.") {
			d.mu.Lock()
			for _, a := range d.addrs {
				_ = b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 1},
					dnsmessage.AResource{A: a.As4()})
			}
			d.mu.Unlock()
		}
		msg, err := b.Finish()
		if err == nil {
			_, _ = d.pc.WriteTo(msg, from)
		}
	}
}

func (d *fakeDNS) resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var dl net.Dialer
		return dl.DialContext(ctx, "udp", d.pc.LocalAddr().String())
	}}
}

// twoBackends starts backends on 127.0.0.1 and 127.0.0.2 with the same port.
func twoBackends(t *testing.T) (*backend, *backend) {
	t.Helper()
	for range 20 {
		b1 := newBackend(t, "one")
		ln, err := net.Listen("tcp", "127.0.0.2:"+itoa(b1.port()))
		if err != nil {
			continue
		}
		_ = ln.Close()
		b2 := newBackendAt(t, "two", "127.0.0.2:"+itoa(b1.port()))
		return b1, b2
	}
	t.Skip("no common free port on 127.0.0.1 and 127.0.0.2")
	return nil, nil
}

// startDNSCluster compiles a DNS cluster of typ for the host svc.test, which a fake DNS server
// first resolves to 127.0.0.1, where backend "one" of twoBackends serves ("two" is on 127.0.0.2),
// and checks that a request goes to one.
func startDNSCluster(t *testing.T, name string, typ clusterv3.Cluster_DiscoveryType) (*Cluster, *stats.Store, *fakeDNS, *backend) {
	t.Helper()
	b1, b2 := twoBackends(t)
	dns := newFakeDNS(t)
	dns.set("127.0.0.1")
	c := dnsCluster(name, typ, b1.port())
	c.LoadAssignment.Endpoints[0].LbEndpoints[0].GetEndpoint().GetAddress().GetSocketAddress().Address = "svc.test"
	cl, st := compileT(t, c, Deps{Resolver: dns.resolver()})
	if name, _ := get(t, cl, balance.Context{}); name != "one" {
		t.Fatalf("went to %q", name)
	}
	return cl, st, dns, b2
}

func TestStrictDNSFollowsRecords(t *testing.T) {
	cl, st, dns, _ := startDNSCluster(t, "sdns", clusterv3.Cluster_STRICT_DNS)
	dns.set("127.0.0.1", "127.0.0.2")
	testenv.WaitFor(t, "two hosts after re-resolution", 10*time.Second, func() bool { return gauge(st, "cluster.sdns.membership_total") == 2 })
	seen := tally(t, cl, 10)
	if seen["one"] != 5 || seen["two"] != 5 {
		t.Fatalf("split %v", seen)
	}
	dns.set("127.0.0.2")
	testenv.WaitFor(t, "one host after re-resolution", 10*time.Second, func() bool { return gauge(st, "cluster.sdns.membership_total") == 1 })
	for range 5 {
		if name, _ := get(t, cl, balance.Context{}); name != "two" {
			t.Fatalf("went to removed host %q", name)
		}
	}
	// A failing lookup keeps the last hosts.
	dns.set()
	time.Sleep(300 * time.Millisecond) // several refreshes (100ms) with empty answers
	if name, _ := get(t, cl, balance.Context{}); name != "two" {
		t.Fatalf("after an empty answer went to %q", name)
	}
}

func TestLogicalDNSNewConnectionsFollowAddress(t *testing.T) {
	cl, _, dns, b2 := startDNSCluster(t, "ldns", clusterv3.Cluster_LOGICAL_DNS)
	dns.set("127.0.0.2")
	testenv.WaitFor(t, "the logical host to move", 10*time.Second, func() bool {
		hs := cl.HostStatuses()
		return len(hs) == 1 && hs[0].GetAddress().GetSocketAddress().GetAddress() == "127.0.0.2"
	})
	// Still one logical host; new connections go to the new address.
	conn, err := cl.Dial(context.Background(), balance.Context{})
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.Close()
	testenv.WaitFor(t, "a connection to the new address", 5*time.Second, func() bool { return b2.accepted.Load() == 1 })
}
