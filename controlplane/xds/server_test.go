package xds

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/registry"
	"github.com/strait-mesh/strait/controlplane/translate"
	"github.com/strait-mesh/strait/internal/node"
)

var protoUnmarshalOptions = proto.UnmarshalOptions{}

// nsGenerator is a test Generator whose output depends on the proxy's namespace: a cluster, an
// endpoint set and a virtual host for every service in that namespace, plus one listener object
// shared by all proxies. A service labelled invalid=true yields a cluster that fails Validate().
type nsGenerator struct {
	listener *listenerv3.Listener
}

func newNSGenerator() *nsGenerator {
	return &nsGenerator{listener: &listenerv3.Listener{
		Name: "virtualOutbound",
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: "0.0.0.0", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 15001}}}},
	}}
}

func clusterName(host string) string { return "outbound|80||" + host }

func (g *nsGenerator) Generate(snap *mesh.Snapshot, p *translate.Proxy) (translate.Resources, error) {
	var clusters, eps []types.Resource
	rc := &routev3.RouteConfiguration{Name: "80"}
	for _, svc := range snap.Services {
		if svc.Namespace != p.Namespace {
			continue
		}
		name := clusterName(svc.Hostname)
		c := &clusterv3.Cluster{
			Name:                 name,
			ConnectTimeout:       durationpb.New(time.Second),
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
			EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{EdsConfig: &corev3.ConfigSource{
				ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}},
		}
		if svc.Labels["invalid"] == "true" {
			c.ConnectTimeout = durationpb.New(-time.Second)
		}
		clusters = append(clusters, c)
		cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
		for _, ep := range snap.Endpoints[mesh.ServiceKey{Hostname: svc.Hostname, Namespace: svc.Namespace}] {
			cla.Endpoints = append(cla.Endpoints, &endpointv3.LocalityLbEndpoints{LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: &corev3.Address{
					Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
						Address: ep.Address, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: ep.Port}}}}}},
			}}})
		}
		eps = append(eps, cla)
		rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{
			Name: svc.Hostname + ":80", Domains: []string{svc.Hostname},
			Routes: []*routev3.Route{{
				Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: name}}},
			}},
		})
	}
	res := translate.Resources{
		resource.ClusterType:  clusters,
		resource.EndpointType: eps,
		resource.RouteType:    {rc},
		resource.ListenerType: {g.listener},
	}
	if p.VHDS { // the virtual hosts as VHDS resources, as translate does for such proxies
		var vhosts []types.Resource
		for _, vh := range rc.VirtualHosts {
			vh.Name = translate.VHDSName(rc.Name, vh.Name)
			vhosts = append(vhosts, vh)
		}
		res[resource.RouteType] = []types.Resource{&routev3.RouteConfiguration{Name: rc.Name, Vhds: &routev3.Vhds{
			ConfigSource: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}}}}
		res[resource.VirtualHostType] = vhosts
	}
	return res, nil
}

// meshBuilder builds successive snapshots from a set of services.
type meshBuilder struct {
	mu       sync.Mutex
	version  uint64
	services map[string]*registry.Service // hostname → service
	eps      map[string][]*registry.Endpoint
}

func newMesh() *meshBuilder {
	return &meshBuilder{services: map[string]*registry.Service{}, eps: map[string][]*registry.Endpoint{}}
}

func host(name, ns string) string { return name + "." + ns + ".svc.cluster.local" }

func (m *meshBuilder) add(name, ns string, labels map[string]string) *meshBuilder {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := host(name, ns)
	m.services[h] = &registry.Service{Hostname: h, Namespace: ns, Labels: labels,
		Ports: []registry.Port{{Name: "http", Number: 80, Protocol: registry.HTTP}}}
	return m
}

func (m *meshBuilder) remove(name, ns string) *meshBuilder {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.services, host(name, ns))
	delete(m.eps, host(name, ns))
	return m
}

func (m *meshBuilder) endpoint(name, ns, ip string) *meshBuilder {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := host(name, ns)
	m.eps[h] = append(m.eps[h], &registry.Endpoint{Address: ip, Port: 8080, ServicePortName: "http"})
	return m
}

func (m *meshBuilder) snapshot() *mesh.Snapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.version++
	s := &mesh.Snapshot{Version: m.version, Endpoints: map[mesh.ServiceKey][]*registry.Endpoint{}}
	for _, svc := range m.services {
		s.Services = append(s.Services, svc)
		s.Endpoints[mesh.ServiceKey{Hostname: svc.Hostname, Namespace: svc.Namespace}] = m.eps[svc.Hostname]
	}
	return s
}

type testEnv struct {
	srv  *Server
	addr string
	reg  *prometheus.Registry
	mesh *meshBuilder
}

func newEnv(t *testing.T, opts Options) *testEnv {
	t.Helper()
	reg := prometheus.NewRegistry()
	if opts.Generator == nil {
		opts.Generator = newNSGenerator()
	}
	if opts.Debounce == 0 {
		opts.Debounce = 10 * time.Millisecond
	}
	opts.Registerer = reg
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	e := &testEnv{srv: srv, reg: reg, mesh: newMesh()}
	e.addr = startServer(t, srv)
	return e
}

// status returns the syncz entry of one proxy.
func (e *testEnv) status(id string) (ProxyStatus, bool) {
	for _, ps := range e.srv.Status() {
		if ps.Proxy == id {
			return ps, true
		}
	}
	return ProxyStatus{}, false
}

func (e *testEnv) allSynced(id string) bool {
	ps, ok := e.status(id)
	if !ok {
		return false
	}
	for _, t := range []string{"CDS", "LDS", "EDS", "RDS"} {
		if ps.Types[t].Status != Synced || ps.Types[t].AckedVersion != ps.Types[t].Version {
			return false
		}
	}
	return true
}

func modes() []struct {
	name  string
	delta bool
} {
	return []struct {
		name  string
		delta bool
	}{{"sotw", false}, {"delta", true}}
}

func TestADSDeliversAndTracksACKs(t *testing.T) {
	for _, m := range modes() {
		t.Run(m.name, func(t *testing.T) {
			e := newEnv(t, Options{})
			e.mesh.add("reviews", "default", nil).endpoint("reviews", "default", "127.0.0.2").add("other", "prod", nil)
			e.srv.Update(e.mesh.snapshot())
			id := sidecarID("127.0.0.10", "productpage-1", "default")
			c := dial(t, e.addr, m.delta, testNode(id, nil), "")
			waitFor(t, "clusters", func() bool { return c.has(resource.ClusterType, clusterName(host("reviews", "default"))) })
			waitFor(t, "all types", func() bool {
				return c.has(resource.EndpointType, clusterName(host("reviews", "default"))) &&
					c.has(resource.ListenerType, "virtualOutbound") && c.has(resource.RouteType, "80")
			})
			waitFor(t, "SYNCED status", func() bool { return e.allSynced(id) })

			// A change in the proxy's namespace reaches it; the old cluster is removed.
			e.mesh.remove("reviews", "default").add("ratings", "default", nil)
			e.srv.Update(e.mesh.snapshot())
			waitFor(t, "new cluster", func() bool { return c.has(resource.ClusterType, clusterName(host("ratings", "default"))) })
			waitFor(t, "SYNCED after change", func() bool { return e.allSynced(id) })
			if got := metricValue(t, e.srv.metrics.connected); got != 1 {
				t.Errorf("pilot_xds = %v, want 1", got)
			}
			if got := metricValue(t, e.srv.metrics.pushes.WithLabelValues("cds")); got < 2 {
				t.Errorf("pilot_xds_pushes{type=cds} = %v, want >= 2", got)
			}
			waitFor(t, "convergence observed", func() bool {
				return histogramCount(t, e.reg, "pilot_proxy_convergence_time") >= 1
			})
		})
	}
}

// metricValue returns the value of a single-series counter or gauge.
func metricValue(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var m dto.Metric
	if err := (<-ch).Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Counter != nil {
		return m.GetCounter().GetValue()
	}
	return m.GetGauge().GetValue()
}

func histogramCount(t *testing.T, reg *prometheus.Registry, name string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			var n uint64
			for _, m := range mf.GetMetric() {
				n += m.GetHistogram().GetSampleCount()
			}
			return n
		}
	}
	return 0
}

func TestNACKKeepsLastGoodAndIsNotRepushed(t *testing.T) {
	for _, m := range modes() {
		t.Run(m.name, func(t *testing.T) {
			e := newEnv(t, Options{})
			e.mesh.add("reviews", "default", nil)
			e.srv.Update(e.mesh.snapshot())
			id := sidecarID("127.0.0.10", "productpage-1", "default")
			c := dial(t, e.addr, m.delta, testNode(id, nil), "nack-me")
			waitFor(t, "SYNCED", func() bool { return e.allSynced(id) })
			good := c.state(resource.ClusterType)

			// The proxy rejects the next CDS: status goes STALE, the NACK is counted and reported.
			e.mesh.add("nack-me", "default", nil)
			e.srv.Update(e.mesh.snapshot())
			waitFor(t, "NACK", func() bool { return c.state(resource.ClusterType).nacks == 1 })
			waitFor(t, "STALE with last NACK", func() bool {
				ps, _ := e.status(id)
				return ps.Types["CDS"].Status == Stale && ps.LastNack != nil && ps.LastNack.Type == "CDS" &&
					strings.Contains(ps.LastNack.Message, "nack-me")
			})
			if got := metricValue(t, e.srv.metrics.rejects.WithLabelValues("cds")); got != 1 {
				t.Errorf("pilot_total_xds_rejects{type=cds} = %v, want 1", got)
			}
			if st := c.state(resource.ClusterType); st.version != good.version {
				t.Errorf("client version changed after NACK: %q, want %q", st.version, good.version)
			}

			// Barrier: an EDS-only change is sent after anything the NACK could have triggered, so
			// once it arrives a re-push of the rejected CDS would have been seen.
			nackResponses := c.state(resource.ClusterType).responses
			e.mesh.endpoint("reviews", "default", "127.0.0.3")
			e.srv.Update(e.mesh.snapshot())
			eds := c.state(resource.EndpointType).responses
			waitFor(t, "EDS update", func() bool { return c.state(resource.EndpointType).responses > eds })
			if got := c.state(resource.ClusterType).responses; got != nackResponses {
				t.Fatalf("rejected CDS was re-pushed: %d responses, want %d", got, nackResponses)
			}
			if got := metricValue(t, e.srv.metrics.rejects.WithLabelValues("cds")); got != 1 {
				t.Errorf("pilot_total_xds_rejects{type=cds} = %v after barrier, want 1", got)
			}

			// Fixing the config produces a new version, which is accepted.
			e.mesh.remove("nack-me", "default")
			e.srv.Update(e.mesh.snapshot())
			waitFor(t, "SYNCED after fix", func() bool { return e.allSynced(id) })
		})
	}
}

func TestReconnectGetsFullResync(t *testing.T) {
	for _, m := range modes() {
		t.Run(m.name, func(t *testing.T) {
			e := newEnv(t, Options{})
			e.mesh.add("a", "default", nil).add("b", "default", nil)
			e.srv.Update(e.mesh.snapshot())
			id := sidecarID("127.0.0.10", "productpage-1", "default")
			want := []string{clusterName(host("a", "default")), clusterName(host("b", "default"))}
			c := dial(t, e.addr, m.delta, testNode(id, nil), "")
			waitFor(t, "first sync", func() bool { return c.has(resource.ClusterType, want...) && e.allSynced(id) })
			c.close()
			waitFor(t, "disconnect", func() bool { _, ok := e.status(id); return !ok })

			c2 := dial(t, e.addr, m.delta, testNode(id, nil), "")
			waitFor(t, "resync", func() bool {
				return c2.has(resource.ClusterType, want...) && c2.has(resource.EndpointType, want...) &&
					c2.has(resource.ListenerType, "virtualOutbound") && c2.has(resource.RouteType, "80")
			})
			waitFor(t, "SYNCED after reconnect", func() bool { return e.allSynced(id) })
		})
	}
}

func TestChangeReachesOnlyAffectedProxies(t *testing.T) {
	e := newEnv(t, Options{})
	e.mesh.add("a1", "ns-a", nil).add("b1", "ns-b", nil)
	e.srv.Update(e.mesh.snapshot())
	ids := []string{sidecarID("127.0.0.11", "x-1", "ns-a"), sidecarID("127.0.0.12", "y-1", "ns-a"), sidecarID("127.0.0.13", "z-1", "ns-b")}
	clients := []*adsClient{
		dial(t, e.addr, true, testNode(ids[0], nil), ""),
		dial(t, e.addr, false, testNode(ids[1], nil), ""),
		dial(t, e.addr, true, testNode(ids[2], nil), ""),
	}
	for _, id := range ids {
		waitFor(t, "sync of "+id, func() bool { return e.allSynced(id) || dumpStatus(t, e, id) })
	}
	before := make([]int, len(clients))
	for i, c := range clients {
		before[i] = c.state(resource.ClusterType).responses
	}

	// A change in ns-b reaches only the ns-b proxy.
	e.mesh.add("b2", "ns-b", nil)
	e.srv.Update(e.mesh.snapshot())
	waitFor(t, "ns-b update", func() bool {
		return clients[2].has(resource.ClusterType, clusterName(host("b1", "ns-b")), clusterName(host("b2", "ns-b")))
	})
	// Barrier: a later ns-a change must be the very next CDS response of the ns-a proxies.
	e.mesh.add("a2", "ns-a", nil)
	e.srv.Update(e.mesh.snapshot())
	for i := range 2 {
		waitFor(t, "ns-a update", func() bool {
			return clients[i].has(resource.ClusterType, clusterName(host("a1", "ns-a")), clusterName(host("a2", "ns-a")))
		})
		if got := clients[i].state(resource.ClusterType).responses; got != before[i]+1 {
			t.Errorf("proxy %s got %d CDS responses, want %d (an unrelated change was pushed)", ids[i], got, before[i]+1)
		}
		if got := clients[i].state(resource.ListenerType).responses; got != 1 {
			t.Errorf("proxy %s got %d LDS responses for an unchanged listener, want 1", ids[i], got)
		}
	}
	if got := clients[2].state(resource.ClusterType).responses; got != before[2]+1 {
		t.Errorf("ns-b proxy got %d CDS responses, want %d", got, before[2]+1)
	}
}

func TestDebounceCoalescesBursts(t *testing.T) {
	e := newEnv(t, Options{Debounce: 2 * time.Second, MaxDelay: time.Minute})
	e.srv.Update(e.mesh.snapshot())
	waitFor(t, "first round", func() bool { return e.srv.rounds.Load() == 1 })
	id := sidecarID("127.0.0.10", "p-1", "default")
	c := dial(t, e.addr, true, testNode(id, nil), "")
	waitFor(t, "initial sync", func() bool { return e.allSynced(id) })
	cds := c.state(resource.ClusterType).responses

	const burst = 20
	var names []string
	for i := range burst {
		name := "svc" + string(rune('a'+i))
		e.mesh.add(name, "default", nil)
		names = append(names, clusterName(host(name, "default")))
		e.srv.Update(e.mesh.snapshot())
	}
	waitFor(t, "burst applied", func() bool { return c.has(resource.ClusterType, names...) })
	// The round is counted after its last proxy, which may be after this one received it.
	waitFor(t, "second round counted", func() bool { return e.srv.rounds.Load() >= 2 })
	if got := e.srv.rounds.Load(); got != 2 {
		t.Errorf("push rounds = %d, want 2 (the burst of %d updates coalesced into one)", got, burst)
	}
	if got := c.state(resource.ClusterType).responses; got != cds+1 {
		t.Errorf("CDS responses for the burst = %d, want 1", got-cds)
	}
}

func TestInvalidResourceKeepsPreviousResources(t *testing.T) {
	e := newEnv(t, Options{})
	e.mesh.add("good", "default", nil)
	e.srv.Update(e.mesh.snapshot())
	id := sidecarID("127.0.0.10", "p-1", "default")
	c := dial(t, e.addr, false, testNode(id, nil), "")
	waitFor(t, "sync", func() bool { return e.allSynced(id) })
	before, _ := e.status(id)

	e.mesh.add("broken", "default", map[string]string{"invalid": "true"})
	snap := e.mesh.snapshot()
	e.srv.Update(snap)
	waitFor(t, "generation error", func() bool { return metricValue(t, e.srv.metrics.internalErrs) == 1 })
	after, _ := e.status(id)
	if after.Types["CDS"].Version != before.Types["CDS"].Version || !e.allSynced(id) {
		t.Errorf("CDS changed after an invalid resource: %+v, before %+v", after.Types["CDS"], before.Types["CDS"])
	}
	if !c.has(resource.ClusterType, clusterName(host("good", "default"))) {
		t.Errorf("client lost its resources")
	}
}

func TestBadNodeIDIsRejected(t *testing.T) {
	e := newEnv(t, Options{})
	for _, m := range modes() {
		c := dial(t, e.addr, m.delta, testNode("not-a-node-id", nil), "")
		err := c.streamErr(15 * time.Second)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "node id") {
			t.Errorf("%s: stream error = %v, want InvalidArgument naming the node id", m.name, err)
		}
	}
	if got := len(e.srv.Status()); got != 0 {
		t.Errorf("%d proxies registered, want 0", got)
	}
}

func TestConnectHooksAndSyncz(t *testing.T) {
	var mu sync.Mutex
	var events []string
	hook := func(kind string) func(p *translate.Proxy) {
		return func(p *translate.Proxy) {
			mu.Lock()
			defer mu.Unlock()
			events = append(events, kind+" "+p.ID.Name+" "+p.WorkloadGroup+" "+strings.Join(p.IPs, ","))
		}
	}
	e := newEnv(t, Options{OnConnect: hook("connect"), OnDisconnect: hook("disconnect"), ControlPlane: "straitd-test"})
	e.mesh.add("a", "default", nil)
	e.srv.Update(e.mesh.snapshot())
	id := sidecarID("127.0.0.10", "vm-1", "default")
	c := dial(t, e.addr, true, testNode(id, map[string]string{
		node.MetaWorkloadGroup: "vms", node.MetaInstanceIPs: "127.0.0.20", node.MetaNamespace: "default",
	}), "")
	waitFor(t, "sync", func() bool { return e.allSynced(id) })

	rec := httptest.NewRecorder()
	e.srv.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/debug/syncz", nil))
	var got []ProxyStatus
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("syncz is not JSON: %v\n%s", err, rec.Body.String())
	}
	if len(got) != 1 || got[0].Proxy != id || got[0].Protocol != "delta" || got[0].ControlPlane != "straitd-test" ||
		got[0].Namespace != "default" || got[0].MeshVersion != 1 {
		t.Fatalf("syncz = %s", rec.Body.String())
	}
	for _, typ := range []string{"CDS", "LDS", "EDS", "RDS"} {
		if ts := got[0].Types[typ]; ts.Status != Synced || ts.SentVersion == "" || ts.SentVersion != ts.AckedVersion {
			t.Errorf("syncz %s = %+v", typ, ts)
		}
	}
	for _, raw := range []string{`"CDS"`, `"status": "SYNCED"`, `"proxy": "` + id} {
		if !strings.Contains(rec.Body.String(), raw) {
			t.Errorf("syncz JSON lacks %s:\n%s", raw, rec.Body.String())
		}
	}

	c.close()
	waitFor(t, "disconnect hook", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(events) == 2
	})
	mu.Lock()
	defer mu.Unlock()
	want := []string{"connect vm-1 vms 127.0.0.20", "disconnect vm-1 vms 127.0.0.20"}
	if events[0] != want[0] || events[1] != want[1] {
		t.Errorf("hook events = %q, want %q", events, want)
	}
}

func dumpStatus(t *testing.T, e *testEnv, id string) bool {
	ps, _ := e.status(id)
	b, _ := json.Marshal(ps)
	t.Logf("%s", b)
	return false
}
