package l4

import (
	"context"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/strait-mesh/strait/proxy/stats"
	tcpv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/tcp_proxy/v3"
)

// demandEnv is an Env whose clusters appear when demanded: each demand is recorded, then
// answered by answer (which may block, and adds the cluster before it returns true, as the xDS
// client applies an answer before DemandCluster returns).
type demandEnv struct {
	mu       sync.Mutex
	clusters map[string]Upstream
	calls    []string
	answer   func(ctx context.Context, name string) (bool, error)
	st       *stats.Store
}

func (e *demandEnv) Cluster(name string) Upstream {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.clusters[name]
}
func (e *demandEnv) Stats() *stats.Store { return e.st }
func (e *demandEnv) WithOriginalDst(ctx context.Context, _ netip.AddrPort) context.Context {
	return ctx
}
func (e *demandEnv) ClusterDemander() ClusterDemander { return e }

func (e *demandEnv) DemandCluster(ctx context.Context, name string) (bool, error) {
	e.mu.Lock()
	e.calls = append(e.calls, name)
	e.mu.Unlock()
	return e.answer(ctx, name)
}

func (e *demandEnv) add(name string, u Upstream) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.clusters[name] = u
}

func (e *demandEnv) demanded() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.calls)
}

func newDemandProxy(t *testing.T, e *demandEnv) *TCPProxy {
	t.Helper()
	e.clusters, e.st = map[string]Upstream{}, stats.NewStore()
	p, err := New(&tcpv3.TcpProxy{StatPrefix: "od", ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: "outbound|9000||tcp.ns"}}, e)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// tryEcho is echoOnce for goroutines other than the test's.
func tryEcho(addr, msg string) (string, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(c)
	return string(b), err
}

// TestOnDemandClusterHoldThenServe: connections to a cluster the proxy does not have are held
// while it is demanded, then connected to it.
func TestOnDemandClusterHoldThenServe(t *testing.T) {
	e := &demandEnv{}
	release := make(chan struct{})
	held := make(chan string, 8)
	be := &dialer{addr: backend(t, "T:")}
	e.answer = func(ctx context.Context, name string) (bool, error) {
		held <- name
		select {
		case <-release:
		case <-ctx.Done():
			return false, ctx.Err()
		}
		e.add(name, be)
		return true, nil
	}
	p := newDemandProxy(t, e)
	addr := front(t, p)
	const n = 3
	out := make(chan string, n)
	for range n {
		go func() {
			got, err := tryEcho(addr, "hello")
			if err != nil {
				t.Error(err)
			}
			out <- got
		}()
	}
	for range n {
		select {
		case name := <-held:
			if name != "outbound|9000||tcp.ns" {
				t.Errorf("demanded %q", name)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("connections were not held for a demand")
		}
	}
	close(release)
	for range n {
		if got := <-out; got != "T:hello" {
			t.Errorf("held connection got %q", got)
		}
	}
	if got := echoOnce(t, addr, "again"); got != "T:again" {
		t.Errorf("after the answer: %q", got)
	}
	if d := e.demanded(); d != n {
		t.Errorf("%d demands, want %d (the cluster is held now)", d, n)
	}
	if v := e.st.Counter("tcp.od.on_demand.found", "").Value(); v != n {
		t.Errorf("on_demand.found = %d, want %d", v, n)
	}
}

// TestOnDemandClusterMiss: a cluster the control plane does not have, or a demand that times
// out, closes the connection with flag NR as without on-demand clusters.
func TestOnDemandClusterMiss(t *testing.T) {
	for name, answer := range map[string]func(context.Context, string) (bool, error){
		"not found": func(context.Context, string) (bool, error) { return false, nil },
		"timeout": func(ctx context.Context, _ string) (bool, error) {
			<-ctx.Done()
			return false, ctx.Err()
		},
	} {
		t.Run(name, func(t *testing.T) {
			e := &demandEnv{answer: answer}
			p := newDemandProxy(t, e)
			p.demandTimeout = 20 * time.Millisecond
			if got := echoOnce(t, front(t, p), "x"); got != "" {
				t.Errorf("got %q, want the connection closed", got)
			}
			waitFor(t, "no_route counted", func() bool { return e.st.Counter("tcp.od.downstream_cx_no_route", "").Value() == 1 })
			if d := e.demanded(); d != 1 {
				t.Errorf("%d demands, want 1", d)
			}
		})
	}
}
