package xdsclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/mesh/meshtest"
	"github.com/strait-mesh/strait/controlplane/translate"
	"github.com/strait-mesh/strait/controlplane/xds"
	"github.com/strait-mesh/strait/internal/node"
	"github.com/strait-mesh/strait/internal/testenv"
	clusterv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/cluster/v3"
	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
)

// odMeshSnapshot is a mesh of services with an HTTP port 80 and a TCP port 5432, one endpoint
// each.
func odMeshSnapshot(t *testing.T, version uint64, services ...string) *mesh.Snapshot {
	var docs []string
	for i, name := range services {
		docs = append(docs, meshtest.Object("ServiceEntry", name, "default", fmt.Sprintf(
			"  hosts: [%s.default.svc.cluster.local]\n  addresses: [10.96.0.%d]\n  location: MESH_INTERNAL\n  ports: [{number: 80, name: http}, {number: 5432, name: tcp}]\n  resolution: STATIC\n  endpoints: [{address: 10.1.0.%d}]\n",
			name, i+1, i+1)))
	}
	return meshtest.Snapshot(t, "ondemand", version, nil, docs...)
}

// straitd is an in-process straitd xDS server (the real generator) that can be restarted on its
// address.
type straitd struct {
	mu   sync.Mutex
	srv  *xds.Server
	snap *mesh.Snapshot
	grpc *testenv.GRPCServer
}

func startStraitd(t *testing.T, snap *mesh.Snapshot) *straitd {
	s := &straitd{snap: snap}
	s.grpc = testenv.ServeGRPC(t, "127.0.0.1:0", func() *grpc.Server {
		srv, err := xds.New(xds.Options{Generator: translate.New(translate.Options{}), OnDemand: true, Debounce: -1,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		srv.Update(s.snap)
		s.mu.Lock()
		if s.srv != nil {
			s.srv.Close()
		}
		s.srv = srv
		s.mu.Unlock()
		g := grpc.NewServer()
		srv.Register(g)
		return g
	})
	t.Cleanup(func() { s.mu.Lock(); s.srv.Close(); s.mu.Unlock() })
	return s
}

// proxyHandler subscribes to what the accepted listeners and clusters name, as strait-proxy
// does, and keeps the virtual host names of each accepted route configuration.
type proxyHandler struct {
	c      *Client
	mu     sync.Mutex
	vhosts map[string][]string
	held   map[string]map[string]*Resource // accepted sets of the other types
	lost   map[string]bool                 // clusters removed after they were held
}

func (h *proxyHandler) holds(typeURL, name string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.held[typeURL][name] != nil
}

func (h *proxyHandler) Apply(typeURL string, set map[string]*Resource) error {
	h.mu.Lock()
	if h.held == nil {
		h.held = map[string]map[string]*Resource{}
	}
	if typeURL == ClusterType {
		for name := range h.held[typeURL] {
			if set[name] == nil {
				if h.lost == nil {
					h.lost = map[string]bool{}
				}
				h.lost[name] = true
			}
		}
	}
	h.held[typeURL] = set
	h.mu.Unlock()
	switch typeURL {
	case ListenerType:
		h.c.SetNames(RouteType, []string{"80"})
	case ClusterType:
		var eds []string
		for name, r := range set {
			if r.Message.(*clusterv3.Cluster).GetType() == clusterv3.Cluster_EDS {
				eds = append(eds, name)
			}
		}
		h.c.SetNames(EndpointType, eds)
	case RouteType:
		got := map[string][]string{}
		for name, r := range set {
			for _, vh := range r.Message.(*routev3.RouteConfiguration).GetVirtualHosts() {
				got[name] = append(got[name], vh.GetName())
			}
		}
		h.mu.Lock()
		h.vhosts = got
		h.mu.Unlock()
	}
	return nil
}

func (h *proxyHandler) routes(rc string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return strings.Join(h.vhosts[rc], ",")
}

// startOnDemandClient runs a client for an on-demand sidecar against addr.
func startOnDemandClient(t *testing.T, addr string) (*Client, *proxyHandler) {
	n, err := NodeInfo{Type: node.Sidecar, IP: "10.1.0.50", Name: "client", Namespace: "default"}.Node()
	if err != nil {
		t.Fatal(err)
	}
	h := &proxyHandler{}
	c, err := New(Options{Address: addr, Node: n, Handler: h, OnDemand: true,
		BackoffBase: 10 * time.Millisecond, BackoffMax: 100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	h.c = c
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return c, h
}

// TestDemand checks the Demand API against the real xDS server: a demanded host's virtual host
// reaches the route table with its cluster and endpoints; concurrent demands share one
// subscription; a host nothing serves is not found; a demand answered earlier returns at once.
func TestDemand(t *testing.T) {
	d := startStraitd(t, odMeshSnapshot(t, 1, "a", "b", "c"))
	c, h := startOnDemandClient(t, d.grpc.Addr())
	waitFor(t, "initial routes", func() bool { return h.routes("80") == "allow_any" })

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			found, err := c.Demand(ctx, "80", "a:80")
			if err == nil && !found {
				err = errors.New("not found")
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("demand: %v", err)
		}
	}
	if got := h.routes("80"); !strings.Contains(got, "a.default.svc.cluster.local:80") || strings.Contains(got, "b.default") {
		t.Errorf("route configuration 80 after the demand: %s", got)
	}
	c.mu.Lock()
	n := len(c.demands)
	c.mu.Unlock()
	if n != 1 {
		t.Errorf("%d demands for one host", n)
	}
	if !h.holds(ClusterType, "outbound|80||a.default.svc.cluster.local") || !h.holds(EndpointType, "outbound|80||a.default.svc.cluster.local") {
		t.Error("Demand returned before the cluster and its endpoints were applied")
	}
	if h.holds(ClusterType, "outbound|80||b.default.svc.cluster.local") {
		t.Error("an undemanded service's cluster was applied")
	}

	found, err := c.Demand(ctx, "80", "nowhere.example.com")
	if err != nil || found {
		t.Errorf("demand of an unknown host: found %v, err %v", found, err)
	}
	found, err = c.Demand(ctx, "80", "a.default.svc.cluster.local:80")
	if err != nil || !found {
		t.Errorf("demand of another form of the host: found %v, err %v", found, err)
	}
	if _, err := c.Demand(ctx, "80", "a/b"); err == nil {
		t.Error("an authority with '/' was accepted")
	}

	// TCP: the cluster a listener names, by name.
	tcpC := "outbound|5432||c.default.svc.cluster.local"
	if h.holds(ClusterType, tcpC) {
		t.Fatal("a TCP cluster was sent before it was demanded")
	}
	if found, err := c.DemandCluster(ctx, tcpC); err != nil || !found {
		t.Fatalf("cluster demand: found %v, err %v", found, err)
	}
	if !h.holds(ClusterType, tcpC) || !h.holds(EndpointType, tcpC) {
		t.Error("DemandCluster returned before the cluster and its endpoints were applied")
	}
	if found, err := c.DemandCluster(ctx, "outbound|1||nowhere"); err != nil || found {
		t.Errorf("demand of an unknown cluster: found %v, err %v", found, err)
	}
	// A cluster the proxy already holds (through the virtual host of a) is answered too.
	if found, err := c.DemandCluster(ctx, "outbound|80||a.default.svc.cluster.local"); err != nil || !found {
		t.Errorf("demand of a held cluster: found %v, err %v", found, err)
	}
}

// TestDemandTimeout checks that a demand nobody answers returns ctx's error.
func TestDemandTimeout(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close() // nothing listens: the client never connects
	c, _ := startOnDemandClient(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	found, err := c.Demand(ctx, "80", "a")
	if found || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("found %v, err %v; want the deadline", found, err)
	}
}

// TestDemandAcrossRestart restarts the xDS server under a client that demanded a host: the
// demand is re-subscribed (and listed as answered), the virtual host stays, and a host demanded
// while the server is down is answered once it is back.
func TestDemandAcrossRestart(t *testing.T) {
	d := startStraitd(t, odMeshSnapshot(t, 1, "a", "b"))
	c, h := startOnDemandClient(t, d.grpc.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if found, err := c.Demand(ctx, "80", "a"); err != nil || !found {
		t.Fatalf("demand: found %v, err %v", found, err)
	}
	tcpA := "outbound|5432||a.default.svc.cluster.local"
	if found, err := c.DemandCluster(ctx, tcpA); err != nil || !found {
		t.Fatalf("cluster demand: found %v, err %v", found, err)
	}
	connects := c.Stats().Connects.Load()
	d.grpc.Stop()
	got := make(chan error, 1)
	go func() {
		found, err := c.Demand(ctx, "80", "b")
		if err == nil && !found {
			err = errors.New("not found")
		}
		got <- err
	}()
	d.grpc.Start()
	if err := <-got; err != nil {
		t.Fatalf("demand across the restart: %v", err)
	}
	waitFor(t, "reconnected", func() bool { return c.Stats().Connects.Load() > connects })
	if r := h.routes("80"); !strings.Contains(r, "a.default.svc.cluster.local:80") || !strings.Contains(r, "b.default.svc.cluster.local:80") {
		t.Errorf("routes after the restart: %s", r)
	}
	h.mu.Lock()
	lost := h.lost
	h.mu.Unlock()
	if !h.holds(ClusterType, tcpA) || !h.holds(EndpointType, tcpA) || len(lost) > 0 {
		t.Errorf("demanded clusters lost across the restart: %v", lost)
	}
	if h.holds(ClusterType, "outbound|5432||b.default.svc.cluster.local") {
		t.Error("an undemanded TCP cluster was sent after the restart")
	}
}

// TestDemandSotW checks that a demand on a state-of-the-world stream fails at once, whether it
// was made before or after the client fell back to SotW.
func TestDemandSotW(t *testing.T) {
	ads := testenv.StartADS(t, testenv.ADSOptions{SotWOnly: true})
	c, _ := startOnDemandClient(t, ads.GRPCServer.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for range 2 {
		if _, err := c.Demand(ctx, "80", "a"); !errors.Is(err, ErrOnDemandUnavailable) {
			t.Fatalf("demand over SotW: %v", err)
		}
	}
	if c.Protocol() != "sotw" {
		t.Errorf("protocol %q", c.Protocol())
	}
}
