package l4

import (
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/stats"
	"github.com/strait-mesh/strait/proxy/upstream"
	"github.com/strait-mesh/strait/proxy/xdspb"
	clusterv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/cluster/v3"
	tcpv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/tcp_proxy/v3"
)

var _ Upstream = (*upstream.Cluster)(nil)

// clusterEnv serves real upstream.Clusters, as the proxy core does.
type clusterEnv = env[*upstream.Cluster]

// TestWithUpstreamClusters proxies through real upstream.Clusters: a STATIC cluster, and an
// ORIGINAL_DST cluster (Istio's PassthroughCluster) that connects to the connection's original
// destination.
func TestWithUpstreamClusters(t *testing.T) {
	st := stats.NewStore()
	static, err := upstream.Compile(xdspb.MustFrom[*clusterv3.Cluster](testenv.StaticCluster("outbound|9000||echo", 5*time.Second, backend(t, "S:"))), upstream.Deps{Stats: st})
	if err != nil {
		t.Fatal(err)
	}
	defer static.Close()
	passthrough, err := upstream.Compile(&clusterv3.Cluster{
		Name:                 "PassthroughCluster",
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
		LbPolicy:             clusterv3.Cluster_CLUSTER_PROVIDED,
		ConnectTimeout:       durationpb.New(5 * time.Second),
	}, upstream.Deps{Stats: st})
	if err != nil {
		t.Fatal(err)
	}
	defer passthrough.Close()
	env := &clusterEnv{clusters: map[string]*upstream.Cluster{"outbound|9000||echo": static, "PassthroughCluster": passthrough}, st: st}

	p, err := New(&tcpv3.TcpProxy{StatPrefix: "outbound|9000||echo", ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: "outbound|9000||echo"}}, env)
	if err != nil {
		t.Fatal(err)
	}
	if got := echoOnce(t, front(t, p), "hello"); got != "S:hello" {
		t.Fatalf("static cluster: %q", got)
	}

	// ORIGINAL_DST: the destination is whatever the listener recovered; serve one connection by
	// hand with the original destination set to a real backend.
	target := netip.MustParseAddrPort(backend(t, "O:"))
	pp, err := New(&tcpv3.TcpProxy{StatPrefix: "PassthroughCluster", ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: "PassthroughCluster"}}, env)
	if err != nil {
		t.Fatal(err)
	}
	addr := testenv.ServeTCP(t, "127.0.0.1:0", func(c net.Conn) {
		pp.ServeConn(c, ConnInfo{Source: netip.MustParseAddrPort(c.RemoteAddr().String()), OriginalDst: target})
	})
	if got := echoOnce(t, addr, "pass"); got != "O:pass" {
		t.Fatalf("original_dst cluster: %q", got)
	}
}

// observedEnv records the Observer calls.
type observedEnv struct {
	*clusterEnv
	mu     sync.Mutex
	opened []Record
	closed chan Record
}

func (e *observedEnv) TCPOpened(r *Record) {
	e.mu.Lock()
	e.opened = append(e.opened, *r)
	e.mu.Unlock()
}
func (e *observedEnv) TCPClosed(r *Record) { e.closed <- *r }

// TestObserverRecords: the Observer sees bytes, the upstream address and Envoy response flags
// (UF from a real cluster whose endpoint refuses connections, NR for an unknown cluster).
func TestObserverRecords(t *testing.T) {
	st := stats.NewStore()
	good, err := upstream.Compile(xdspb.MustFrom[*clusterv3.Cluster](testenv.StaticCluster("good", 5*time.Second, backend(t, "G:"))), upstream.Deps{Stats: st})
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	refused, _ := net.Listen("tcp", "127.0.0.1:0")
	refusedAddr := refused.Addr().String()
	refused.Close() // nothing listens there any more
	bad, err := upstream.Compile(xdspb.MustFrom[*clusterv3.Cluster](testenv.StaticCluster("bad", 5*time.Second, refusedAddr)), upstream.Deps{Stats: st})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	env := &observedEnv{clusterEnv: &clusterEnv{clusters: map[string]*upstream.Cluster{"good": good, "bad": bad}, st: st}, closed: make(chan Record, 4)}
	for _, c := range []struct{ cluster, send, want, flag string }{
		{"good", "12345", "G:12345", ""},
		{"bad", "x", "", "UF"},
		{"missing", "x", "", "NR"},
	} {
		p, err := New(&tcpv3.TcpProxy{StatPrefix: c.cluster, ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: c.cluster}}, env)
		if err != nil {
			t.Fatal(err)
		}
		if got := echoOnce(t, front(t, p), c.send); got != c.want {
			t.Errorf("%s: got %q", c.cluster, got)
		}
		var r Record
		select {
		case r = <-env.closed:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no TCPClosed", c.cluster)
		}
		if r.Flag != c.flag || r.Cluster != c.cluster {
			t.Errorf("%s: record %+v", c.cluster, r)
		}
		if c.flag == "" && (r.BytesReceived != 5 || r.BytesSent != 7 || r.Upstream == nil) {
			t.Errorf("%s: record %+v", c.cluster, r)
		}
	}
	env.mu.Lock()
	defer env.mu.Unlock()
	if len(env.opened) != 1 || env.opened[0].Cluster != "good" {
		t.Errorf("opened = %+v", env.opened)
	}
}
