package xds

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/mesh/meshtest"
	"github.com/strait-mesh/strait/controlplane/translate"
	"github.com/strait-mesh/strait/internal/node"
)

// odTypes are the types the on-demand test client subscribes to, in Envoy's order, all wildcard.
var odTypes = []string{resource.ClusterType, resource.EndpointType, resource.ListenerType, resource.RouteType, resource.VirtualHostType}

// odMesh is a mesh of services with an HTTP port 80 and a TCP port 5432, each with its endpoint
// IPs.
type odMesh map[string][]string

func (m odMesh) snapshot(t *testing.T, version uint64) *mesh.Snapshot {
	var docs []string
	for i, name := range sortedKeys(m) {
		var eps []string
		for _, ip := range m[name] {
			eps = append(eps, "{address: "+ip+"}")
		}
		docs = append(docs, meshtest.Object("ServiceEntry", name, "default", fmt.Sprintf(
			"  hosts: [%s.default.svc.cluster.local]\n  addresses: [10.96.%d.%d]\n  location: MESH_INTERNAL\n  ports: [{number: 80, name: http}, {number: 5432, name: tcp}]\n  resolution: STATIC\n  endpoints: [%s]\n",
			name, i/200, i%200+1, strings.Join(eps, ", "))))
	}
	return meshtest.Snapshot(t, "ondemand", version, nil, docs...)
}

func svcVhost(name string) string   { return "80/" + name + ".default.svc.cluster.local:80" }
func svcCluster(name string) string { return "outbound|80||" + name + ".default.svc.cluster.local" }

// odClient is a Delta ADS client that ACKs everything and records what it holds, the aliases and
// removals it was sent, and the order of the resources it received.
type odClient struct {
	t      *testing.T
	stream discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	close  func()

	mu        sync.Mutex
	held      map[string]map[string]string // type → name → version
	aliases   map[string]string            // demanded name → virtual host that answered it
	removed   map[string]bool              // names seen in removed_resources
	received  []string                     // "type name" in arrival order
	resources int                          // resources received
	err       error
}

// onDemandNode is a sidecar node that asks for on-demand configuration; demanded, if any, go in
// its metadata as answered on an earlier stream.
func onDemandNode(name string, demanded ...string) *corev3.Node {
	n := testNode(sidecarID("10.1.0.50", name, "default"), map[string]string{node.MetaOnDemand: "true"})
	n.ClientFeatures = []string{node.FeatureVHDS, node.FeatureOnDemand}
	if len(demanded) > 0 {
		var vals []*structpb.Value
		for _, d := range demanded {
			vals = append(vals, structpb.NewStringValue(d))
		}
		n.Metadata.Fields[node.MetaDemanded] = structpb.NewListValue(&structpb.ListValue{Values: vals})
	}
	return n
}

// dialOnDemand opens a stream for n with the initial versions of held (from an earlier client)
// and the demands subscribed on the VirtualHost type.
func dialOnDemand(t *testing.T, addr string, n *corev3.Node, held map[string]map[string]string, demands ...string) *odClient {
	t.Helper()
	ads, ctx, closeConn := dialADS(t, addr, 0)
	s, err := ads.DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := &odClient{t: t, stream: s, close: closeConn, held: map[string]map[string]string{},
		aliases: map[string]string{}, removed: map[string]bool{}}
	for i, typ := range odTypes {
		c.held[typ] = map[string]string{}
		for k, v := range held[typ] {
			c.held[typ][k] = v
		}
		req := &discovery.DeltaDiscoveryRequest{TypeUrl: typ, ResourceNamesSubscribe: []string{"*"}, InitialResourceVersions: held[typ]}
		if i == 0 {
			req.Node = n
		}
		if typ == resource.VirtualHostType {
			req.ResourceNamesSubscribe = append(req.ResourceNamesSubscribe, demands...)
		}
		if err := s.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	go c.loop()
	return c
}

func (c *odClient) loop() {
	for {
		resp, err := c.stream.Recv()
		if err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			return
		}
		typ := resp.GetTypeUrl()
		c.mu.Lock()
		for _, r := range resp.GetResources() {
			c.held[typ][r.GetName()] = r.GetVersion()
			c.received = append(c.received, typ+" "+r.GetName())
			c.resources++
			for _, a := range r.GetAliases() {
				c.aliases[a] = r.GetName()
			}
		}
		for _, name := range resp.GetRemovedResources() {
			delete(c.held[typ], name)
			c.removed[name] = true
		}
		c.mu.Unlock()
		if err := c.stream.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: typ, ResponseNonce: resp.GetNonce()}); err != nil {
			return
		}
	}
}

// demand subscribes to on-demand virtual host names.
func (c *odClient) demand(names ...string) { c.demandOf(resource.VirtualHostType, names...) }

// demandOf subscribes to names of a type.
func (c *odClient) demandOf(typ string, names ...string) {
	c.t.Helper()
	if err := c.stream.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: typ, ResourceNamesSubscribe: names}); err != nil {
		c.t.Fatal(err)
	}
}

func (c *odClient) has(typ, name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.held[typ][name]
	return ok
}

func (c *odClient) snapshot() (held map[string]map[string]string, resources int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	held = map[string]map[string]string{}
	for typ, m := range c.held {
		held[typ] = map[string]string{}
		for k, v := range m {
			held[typ][k] = v
		}
	}
	return held, c.resources
}

func newOnDemandEnv(t *testing.T) *testEnv {
	return newEnv(t, Options{Generator: translate.New(translate.Options{})})
}

// startTwoServices starts a server with the real generator and services a and b (snapshot 1).
func startTwoServices(t *testing.T) (*testEnv, odMesh) {
	e := newOnDemandEnv(t)
	m := odMesh{"a": {"10.1.1.1"}, "b": {"10.1.1.2"}}
	e.srv.Update(m.snapshot(t, 1))
	return e, m
}

// generatedVersions returns what the server generated for a proxy: type → name → version.
func generatedVersions(e *testEnv, id string) map[string]map[string]string {
	e.srv.connMu.Lock()
	p := e.srv.proxies[id]
	e.srv.connMu.Unlock()
	if p == nil {
		return nil
	}
	p.genMu.Lock()
	defer p.genMu.Unlock()
	return versionsOf(p.generated)
}

// versionsOf returns the resource versions of a proxy snapshot: type → name → version.
func versionsOf(ps *proxySnapshot) map[string]map[string]string {
	out := map[string]map[string]string{}
	for _, typ := range odTypes {
		out[typ] = map[string]string{}
		if set := ps.set(typ); set != nil {
			for name, r := range set.wire {
				out[typ][name] = r.GetVersion()
			}
		}
	}
	return out
}

// TestOnDemandDemand checks a demand's answer: the virtual host with the demanded name in its
// aliases, after the clusters and endpoints it routes to; a host no service has, answered in
// removed_resources; and an on-demand proxy's initial configuration without any service's.
func TestOnDemandDemand(t *testing.T) {
	e := newOnDemandEnv(t)
	m := odMesh{"a": {"10.1.1.1"}, "b": {"10.1.1.2"}, "c": {"10.1.1.3"}}
	e.srv.Update(m.snapshot(t, 1))
	c := dialOnDemand(t, e.addr, onDemandNode("client"), nil)
	waitFor(t, "initial configuration", func() bool { return c.has(resource.VirtualHostType, "80/allow_any") })
	for _, s := range []string{"a", "b", "c"} {
		if c.has(resource.ClusterType, svcCluster(s)) || c.has(resource.VirtualHostType, svcVhost(s)) {
			t.Fatalf("service %s sent before it was demanded", s)
		}
	}
	if !c.has(resource.ListenerType, "virtualOutbound") || !c.has(resource.RouteType, "80") {
		held, _ := c.snapshot()
		t.Fatalf("listeners or route configurations missing: %v %v", sortedKeys(held[resource.ListenerType]), sortedKeys(held[resource.RouteType]))
	}

	c.demand("80/a:80", "80/nowhere.example.com")
	waitFor(t, "the demanded virtual host", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.aliases["80/a:80"] == svcVhost("a") && c.removed["80/nowhere.example.com"]
	})
	c.mu.Lock()
	order := slices.Clone(c.received)
	c.mu.Unlock()
	at := func(s string) int { return slices.Index(order, s) }
	vh, cl, eds := at(resource.VirtualHostType+" "+svcVhost("a")), at(resource.ClusterType+" "+svcCluster("a")), at(resource.EndpointType+" "+svcCluster("a"))
	if vh < 0 || cl < 0 || eds < 0 || cl > vh || eds > vh {
		t.Errorf("arrival order: cluster %d, endpoints %d, virtual host %d; want the cluster and its endpoints first", cl, eds, vh)
	}
	if c.has(resource.ClusterType, svcCluster("b")) {
		t.Error("an undemanded service's cluster was sent")
	}

	// A second form of the same host is answered with the virtual host the proxy holds.
	c.demand("80/a.default.svc.cluster.local")
	waitFor(t, "the second alias", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.aliases["80/a.default.svc.cluster.local"] == svcVhost("a")
	})

	// A demand answered not-found is kept: the service's later creation reaches the proxy.
	c.demand("80/d")
	waitFor(t, "not found", func() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.removed["80/d"] })
	m["d"] = []string{"10.1.1.4"}
	e.srv.Update(m.snapshot(t, 2))
	waitFor(t, "the created service", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.aliases["80/d"] == svcVhost("d")
	})
	if !c.has(resource.ClusterType, svcCluster("d")) || !c.has(resource.EndpointType, svcCluster("d")) {
		t.Error("the created service's cluster or endpoints missing")
	}
}

// TestOnDemandClusterDemand checks on-demand CDS: a TCP service's cluster, named by its
// listener, is sent with its endpoints once demanded by name; an unknown name is answered in
// removed_resources; a cluster the proxy holds is re-sent when demanded.
func TestOnDemandClusterDemand(t *testing.T) {
	e, _ := startTwoServices(t)
	c := dialOnDemand(t, e.addr, onDemandNode("client"), nil, "80/b")
	tcpA, tcpB := "outbound|5432||a.default.svc.cluster.local", "outbound|5432||b.default.svc.cluster.local"
	waitFor(t, "initial configuration", func() bool { return c.has(resource.VirtualHostType, svcVhost("b")) })
	if c.has(resource.ClusterType, tcpA) || c.has(resource.ClusterType, tcpB) {
		t.Fatal("a TCP service's cluster was sent before it was demanded")
	}
	_, before := c.snapshot()
	c.demandOf(resource.ClusterType, tcpA, "outbound|1|nowhere|x", svcCluster("b"))
	waitFor(t, "the demanded cluster", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.held[resource.ClusterType][tcpA] != "" && c.held[resource.EndpointType][tcpA] != "" && c.removed["outbound|1|nowhere|x"]
	})
	c.mu.Lock()
	var resent bool
	for _, r := range c.received[before:] {
		resent = resent || r == resource.ClusterType+" "+svcCluster("b")
	}
	c.mu.Unlock()
	if !resent {
		t.Error("a demanded cluster the proxy holds was not sent again (its demand would wait)")
	}
	if c.has(resource.ClusterType, tcpB) {
		t.Error("an undemanded TCP cluster was sent")
	}
}

// TestOnDemandChangesReachOnlyDemanders checks that an endpoint change of a service reaches the
// proxies that demanded it and leaves the others' generated configuration as it was.
func TestOnDemandChangesReachOnlyDemanders(t *testing.T) {
	e, m := startTwoServices(t)
	ca := dialOnDemand(t, e.addr, onDemandNode("ca"), nil, "80/a")
	cb := dialOnDemand(t, e.addr, onDemandNode("cb"), nil, "80/b")
	waitFor(t, "demands answered", func() bool {
		return ca.has(resource.VirtualHostType, svcVhost("a")) && cb.has(resource.VirtualHostType, svcVhost("b"))
	})
	idB := sidecarID("10.1.0.50", "cb", "default")
	waitFor(t, "cb settled", func() bool {
		held, _ := cb.snapshot()
		return equalVersions(held, generatedVersions(e, idB))
	})
	beforeB := generatedVersions(e, idB)
	_, sentB := cb.snapshot()

	rounds := e.srv.rounds.Load()
	m["a"] = append(m["a"], "10.1.1.9")
	e.srv.Update(m.snapshot(t, 2))
	waitFor(t, "the push round", func() bool { return e.srv.rounds.Load() > rounds })
	waitFor(t, "ca gets a's new endpoints", func() bool {
		held, _ := ca.snapshot()
		return equalVersions(held, generatedVersions(e, sidecarID("10.1.0.50", "ca", "default")))
	})
	if after := generatedVersions(e, idB); !equalVersions(after, beforeB) {
		t.Error("a change of a service cb never demanded changed cb's configuration")
	}
	if _, n := cb.snapshot(); n != sentB {
		t.Errorf("cb was sent %d resources for a change of a service it never demanded", n-sentB)
	}
}

func equalVersions(a, b map[string]map[string]string) bool {
	for _, typ := range odTypes {
		if len(a[typ]) != len(b[typ]) {
			return false
		}
		for k, v := range a[typ] {
			if b[typ][k] != v {
				return false
			}
		}
	}
	return true
}

// TestOnDemandReconnect checks that a proxy reconnecting with its demands (answered ones in its
// metadata) and its initial resource versions is sent nothing again and loses nothing.
func TestOnDemandReconnect(t *testing.T) {
	e, _ := startTwoServices(t)
	n := onDemandNode("client")
	c := dialOnDemand(t, e.addr, n, nil, "80/a")
	id := n.GetId()
	waitFor(t, "settled", func() bool {
		held, _ := c.snapshot()
		return held[resource.VirtualHostType][svcVhost("a")] != "" && equalVersions(held, generatedVersions(e, id))
	})
	held, _ := c.snapshot()
	c.close()
	waitFor(t, "disconnected", func() bool { _, ok := e.status(id); return !ok })

	c2 := dialOnDemand(t, e.addr, onDemandNode("client", "80/a"), held, "80/a")
	waitFor(t, "resynced", func() bool {
		h, _ := c2.snapshot()
		return equalVersions(h, generatedVersions(e, id)) && e.allSynced(id)
	})
	h, sent := c2.snapshot()
	if sent != 0 {
		t.Errorf("%d resources re-sent after the reconnect", sent)
	}
	if !equalVersions(h, held) {
		t.Error("the proxy's configuration changed across the reconnect")
	}
	c2.mu.Lock()
	defer c2.mu.Unlock()
	if len(c2.removed) != 0 {
		t.Errorf("removed after the reconnect: %v", sortedKeys(c2.removed))
	}
}

// TestOnDemandRaceConverges demands services while they are created, changed and removed, in a
// seeded random order, and checks that the proxy ends up holding exactly what the server
// generated for the final mesh and demands, with each existing demanded service's virtual host.
func TestOnDemandRaceConverges(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, seed))
			e := newOnDemandEnv(t)
			m := odMesh{}
			for i := range 6 {
				m[fmt.Sprintf("s%d", i)] = []string{fmt.Sprintf("10.1.2.%d", i+1)}
			}
			version := uint64(1)
			e.srv.Update(m.snapshot(t, version))
			n := onDemandNode("client")
			c := dialOnDemand(t, e.addr, n, nil)
			demanded := map[string]bool{}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			for step := 0; step < 30 && ctx.Err() == nil; step++ {
				svc := fmt.Sprintf("s%d", rng.IntN(8)) // s6 and s7 exist only once created
				switch rng.IntN(3) {
				case 0:
					c.demand("80/" + svc)
					demanded[svc] = true
				case 1:
					m[svc] = append(m[svc], fmt.Sprintf("10.1.3.%d", step+1))
					version++
					e.srv.Update(m.snapshot(t, version))
				case 2:
					delete(m, svc)
					version++
					e.srv.Update(m.snapshot(t, version))
				}
			}
			waitFor(t, "convergence", func() bool {
				held, _ := c.snapshot()
				e.srv.connMu.Lock()
				p := e.srv.proxies[n.GetId()]
				e.srv.connMu.Unlock()
				if p == nil {
					return false
				}
				// What the server generated, from which inputs, read at one instant.
				p.genMu.Lock()
				defer p.genMu.Unlock()
				for svc := range demanded { // the server has read every demand
					if !p.demanded[resource.VirtualHostType]["80/"+svc] {
						return false
					}
				}
				if p.meshVersion != version || p.genDemands != p.demands {
					return false
				}
				return equalVersions(held, versionsOf(p.generated))
			})
			held, _ := c.snapshot()
			for svc := range demanded {
				_, exists := m[svc]
				if _, ok := held[resource.VirtualHostType][svcVhost(svc)]; ok != exists {
					t.Errorf("%s: virtual host held %v, service exists %v", svc, ok, exists)
				}
			}
		})
	}
}
