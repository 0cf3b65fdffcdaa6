package l4

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gtcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/balance"
	"github.com/strait-mesh/strait/proxy/sniff"
	"github.com/strait-mesh/strait/proxy/stats"
	"github.com/strait-mesh/strait/proxy/upstream"
	"github.com/strait-mesh/strait/proxy/xdspb"
	tcpv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/tcp_proxy/v3"
)

// backend is a real TCP server on loopback that prefixes what it echoes with its tag.
func backend(t *testing.T, tag string) string {
	t.Helper()
	return testenv.TCPEcho(t, tag)
}

// dialer is a cluster stand-in that dials a fixed loopback address over real TCP.
type dialer struct {
	addr  string
	fail  atomic.Int32 // fail this many dials first
	dials atomic.Int32
	dst   atomic.Value
}

func (d *dialer) Dial(ctx context.Context, _ balance.Context) (net.Conn, error) {
	d.dials.Add(1)
	if v, ok := ctx.Value(dstKey{}).(netip.AddrPort); ok {
		d.dst.Store(v)
	}
	if d.fail.Add(-1) >= 0 {
		return nil, errors.New("connect refused (test)")
	}
	var nd net.Dialer
	return nd.DialContext(ctx, "tcp", d.addr)
}

type dstKey struct{}

// env is an Env of test upstreams: dialers, or real upstream.Clusters as the proxy core serves.
type env[U Upstream] struct {
	clusters map[string]U
	st       *stats.Store
}

func (e *env[U]) Cluster(name string) Upstream {
	if u, ok := e.clusters[name]; ok {
		return u
	}
	return nil
}
func (e *env[U]) Stats() *stats.Store { return e.st }

// WithOriginalDst records dst where both the test dialer and upstream.Cluster read it.
func (e *env[U]) WithOriginalDst(ctx context.Context, dst netip.AddrPort) context.Context {
	return upstream.WithOriginalDst(context.WithValue(ctx, dstKey{}, dst), dst)
}

// front accepts real TCP connections and serves each through p, wrapping with sniff.Conn as the
// listener does.
func front(t *testing.T, p *TCPProxy) string {
	t.Helper()
	return testenv.ServeTCP(t, "127.0.0.1:0", func(c net.Conn) {
		sc, _, _ := sniff.Inspect(c, sniff.Options{HTTP: true, Timeout: 20 * time.Millisecond, ContinueOnTimeout: true})
		p.ServeConn(sc, ConnInfo{Source: netip.MustParseAddrPort(c.RemoteAddr().String()), OriginalDst: netip.MustParseAddrPort("10.0.0.1:9000")})
	})
}

func echoOnce(t *testing.T, addr, msg string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite() // half-close: the reply must still arrive
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// waitFor polls cond until it holds or 10s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, what, 10*time.Second, cond)
}

func TestEchoWithHalfClose(t *testing.T) {
	for _, idle := range []*durationpb.Duration{nil, durationpb.New(0)} { // tracked copy and splice
		e := &env[*dialer]{clusters: map[string]*dialer{"echo": {addr: backend(t, "A:")}}, st: stats.NewStore()}
		p, err := New(&tcpv3.TcpProxy{StatPrefix: "echo", IdleTimeout: idle, ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: "echo"}}, e)
		if err != nil {
			t.Fatal(err)
		}
		addr := front(t, p)
		big := strings.Repeat("0123456789", 50_000)
		if got := echoOnce(t, addr, big); got != "A:"+big {
			t.Fatalf("idle=%v: echo returned %d bytes, want %d", idle, len(got), len(big)+2)
		}
		if dst, _ := e.clusters["echo"].dst.Load().(netip.AddrPort); dst.String() != "10.0.0.1:9000" {
			t.Errorf("original dst passed to dial = %v", dst)
		}
		waitFor(t, "byte stats", func() bool {
			return e.st.Counter("tcp.echo.downstream_cx_rx_bytes_total", "").Value() == uint64(len(big)) &&
				e.st.Counter("tcp.echo.downstream_cx_tx_bytes_total", "").Value() == uint64(len(big)+2)
		})
		if e.st.Counter("tcp.echo.downstream_cx_total", "").Value() != 1 {
			t.Error("downstream_cx_total != 1")
		}
	}
}

func TestWeightedClusters(t *testing.T) {
	e := &env[*dialer]{clusters: map[string]*dialer{"a": {addr: backend(t, "a")}, "b": {addr: backend(t, "b")}, "zero": {addr: backend(t, "z")}}, st: stats.NewStore()}
	p, err := New(&tcpv3.TcpProxy{StatPrefix: "w", ClusterSpecifier: &tcpv3.TcpProxy_WeightedClusters{WeightedClusters: &tcpv3.TcpProxy_WeightedCluster{
		Clusters: []*tcpv3.TcpProxy_WeightedCluster_ClusterWeight{{Name: "a", Weight: 50}, {Name: "b", Weight: 50}, {Name: "zero", Weight: 0}}}}}, e)
	if err != nil {
		t.Fatal(err)
	}
	addr := front(t, p)
	seen := map[string]int{}
	for i := 0; i < 60 && (seen["a"] == 0 || seen["b"] == 0); i++ {
		seen[echoOnce(t, addr, "")]++
	}
	if seen["a"] == 0 || seen["b"] == 0 || seen["z"] != 0 {
		t.Fatalf("distribution %v", seen)
	}
}

func TestConnectAttemptsAndNoRoute(t *testing.T) {
	d := &dialer{addr: backend(t, "ok")}
	d.fail.Store(2)
	e := &env[*dialer]{clusters: map[string]*dialer{"c": d}, st: stats.NewStore()}
	p, err := New(&tcpv3.TcpProxy{StatPrefix: "r", MaxConnectAttempts: wrapperspb.UInt32(3), ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: "c"}}, e)
	if err != nil {
		t.Fatal(err)
	}
	if got := echoOnce(t, front(t, p), "x"); got != "okx" {
		t.Fatalf("got %q after retries", got)
	}
	if d.dials.Load() != 3 {
		t.Errorf("dials = %d, want 3", d.dials.Load())
	}
	// Attempts exhausted: the downstream connection is closed.
	d.fail.Store(5)
	if got := echoOnce(t, front(t, p), "x"); got != "" {
		t.Fatalf("got %q, want closed", got)
	}
	waitFor(t, "attempts exceeded stat", func() bool { return e.st.Counter("tcp.r.upstream_connect_attempts_exceeded", "").Value() == 1 })
	// Unknown cluster.
	p2, _ := New(&tcpv3.TcpProxy{StatPrefix: "nr", ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: "missing"}}, e)
	if got := echoOnce(t, front(t, p2), "x"); got != "" {
		t.Fatalf("got %q from a missing cluster", got)
	}
	waitFor(t, "no route stat", func() bool { return e.st.Counter("tcp.nr.downstream_cx_no_route", "").Value() == 1 })
}

func TestIdleTimeout(t *testing.T) {
	e := &env[*dialer]{clusters: map[string]*dialer{"c": {addr: backend(t, "")}}, st: stats.NewStore()}
	p, err := New(&tcpv3.TcpProxy{StatPrefix: "idle", IdleTimeout: durationpb.New(100 * time.Millisecond), ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: "c"}}, e)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", front(t, p))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte("hi"))
	b, err := io.ReadAll(c) // returns when the proxy closes the idle connection
	if err != nil || string(b) != "hi" {
		t.Fatalf("read %q, %v", b, err)
	}
	waitFor(t, "idle_timeout stat", func() bool { return e.st.Counter("tcp.idle.idle_timeout", "").Value() == 1 })
}

func TestContextCancelCloses(t *testing.T) {
	e := &env[*dialer]{clusters: map[string]*dialer{"c": {addr: backend(t, "")}}, st: stats.NewStore()}
	p, _ := New(&tcpv3.TcpProxy{StatPrefix: "cc", ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: "c"}}, e)
	a, b := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); p.Serve(ctx, b, ConnInfo{}) }()
	a.Write([]byte("x"))
	buf := make([]byte, 1)
	io.ReadFull(a, buf)
	cancel()
	wg.Wait()
	if _, err := a.Write([]byte("y")); err == nil {
		t.Fatal("pipe still open after cancel")
	}
}

func TestUnsupportedFields(t *testing.T) {
	e := &env[*dialer]{st: stats.NewStore()}
	cases := []struct {
		tp   *tcpv3.TcpProxy
		want string
	}{
		// Fields strait-proxy does not read are set through go-control-plane's type.
		{xdspb.MustFrom[*tcpv3.TcpProxy](&gtcpv3.TcpProxy{StatPrefix: "x", ClusterSpecifier: &gtcpv3.TcpProxy_Cluster{Cluster: "c"}, TunnelingConfig: &gtcpv3.TcpProxy_TunnelingConfig{Hostname: "h"}}), "tcp_proxy.tunneling_config"},
		{xdspb.MustFrom[*tcpv3.TcpProxy](&gtcpv3.TcpProxy{StatPrefix: "x", ClusterSpecifier: &gtcpv3.TcpProxy_Cluster{Cluster: "c"}, ProxyProtocolTlvs: nil, UpstreamIdleTimeout: durationpb.New(1)}), "tcp_proxy.upstream_idle_timeout"},
		{&tcpv3.TcpProxy{ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: "c"}}, "stat_prefix"},
		{&tcpv3.TcpProxy{StatPrefix: "x"}, "cluster or weighted_clusters"},
	}
	for _, c := range cases {
		if _, err := New(c.tp, e); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("err = %v, want %q", err, c.want)
		}
	}
}

func TestHashAddrStable(t *testing.T) {
	a := netip.MustParseAddr("10.1.2.3")
	if hashAddr(a) != hashAddr(a) || hashAddr(a) == hashAddr(netip.MustParseAddr("10.1.2.4")) {
		t.Fatal("hash not stable or collides trivially")
	}
	_ = bytes.MinRead
}
