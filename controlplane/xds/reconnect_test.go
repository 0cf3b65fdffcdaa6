package xds

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	meshconfig "istio.io/api/mesh/v1alpha1"

	"github.com/strait-mesh/strait/controlplane/buildcache"
	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/translate"
	"github.com/strait-mesh/strait/internal/testenv"
)

// Reconnect storms, slow proxies and change storms (issue 13, items 2 and 5).

// stormMesh is a small mesh of real Istio objects, translated by Strait's real generator:
// services svc-N in namespaces ns-0 and ns-1 (one HTTP port, one endpoint each) and a
// VirtualService splitting svc-0's traffic between svc-1 and svc-2.
type stormMesh struct {
	version  uint64
	services int
	removed  map[int]bool
	endpoint map[int]int // service → generation of its endpoint address
	weight   int         // svc-1's share of svc-0's traffic
	changes  int
}

func newStormMesh(services int) *stormMesh {
	return &stormMesh{services: services, removed: map[int]bool{}, endpoint: map[int]int{}, weight: 50}
}

func stormHost(i int) string { return fmt.Sprintf("svc-%d.ns-%d.svc.cluster.local", i, i%2) }

// objects decodes the mesh's YAML into new config objects.
func (m *stormMesh) objects(t *testing.T) []*config.Object {
	t.Helper()
	var docs []string
	for i := range m.services {
		if m.removed[i] {
			continue
		}
		gen := m.endpoint[i]
		docs = append(docs, testenv.StaticServiceYAML(stormHost(i), 80, "http", "HTTP",
			fmt.Sprintf("{address: 127.%d.%d.%d}", 1+gen/250%250, i%250, gen%250+1)))
	}
	docs = append(docs, testenv.VirtualServiceYAML("split", "ns-0", fmt.Sprintf(`  hosts: [%s]
  http:
  - route:
    - destination: {host: %s}
      weight: %d
    - destination: {host: %s}
      weight: %d
`, stormHost(0), stormHost(1), m.weight, stormHost(2), 100-m.weight)))
	objs, errs := config.Decode("storm", []byte(strings.Join(docs, "---\n")))
	if len(errs) > 0 {
		t.Fatalf("decoding the storm mesh: %v", errs)
	}
	return objs
}

// snapshot builds the next snapshot, from new objects, as straitd does after a change.
func (m *stormMesh) snapshot(t *testing.T) *mesh.Snapshot {
	t.Helper()
	m.version++
	return mesh.New(m.version, &meshconfig.MeshConfig{TrustDomain: "cluster.local"}, m.objects(t))
}

// change applies the next change of a cycle: move an endpoint, edit the VirtualService's
// weights, add a service, remove (or bring back) a service the VirtualService does not name.
func (m *stormMesh) change() {
	m.changes++
	k := m.changes
	switch k % 4 {
	case 0:
		m.endpoint[k%m.services]++
	case 1:
		m.weight = 1 + k%99
	case 2:
		m.services++
	case 3:
		i := 3 + k%(m.services-3)
		m.removed[i] = !m.removed[i]
	}
}

// expected is what a fresh generator and a fresh interner serve proxy id for snap: the state a
// proxy must end in, whatever it was sent on the way.
func expected(t *testing.T, snap *mesh.Snapshot, id string) *proxySnapshot {
	t.Helper()
	p, err := ParseProxy(testNode(id, nil))
	if err != nil {
		t.Fatal(err)
	}
	res, err := translate.New(translate.Options{}).Generate(snap, p)
	if err != nil {
		t.Fatal(err)
	}
	want, err := newInterner(buildcache.New()).snapshot(res)
	if err != nil {
		t.Fatal(err)
	}
	return want
}

// holds reports whether the client holds exactly want: every resource at its content version
// (Delta), or every type at its version with the same names (SotW).
func (c *adsClient) holds(want *proxySnapshot) error {
	for _, typ := range allTypes {
		set := want.set(typ)
		if set == nil {
			set = &typeSet{typeURL: typ}
		}
		ts := c.state(typ)
		if !c.delta && ts.version != set.version {
			return fmt.Errorf("%s version %q, want %q", shortType(typ), ts.version, set.version)
		}
		if len(ts.resources) != len(set.wire) {
			return fmt.Errorf("%s: %d resources, want %d", shortType(typ), len(ts.resources), len(set.wire))
		}
		for name, r := range set.wire {
			v, ok := ts.resources[name]
			if !ok || c.delta && v != r.GetVersion() {
				return fmt.Errorf("%s %q: version %q (held: %v), want %q", shortType(typ), name, v, ok, r.GetVersion())
			}
		}
	}
	return nil
}

// TestChangeStormConverges: 100 changes of services, endpoints and a VirtualService, one every
// 10 ms, while SotW and Delta proxies in two namespaces ACK as they go; every proxy ends with
// exactly what a fresh generator produces from the final inputs.
func TestChangeStormConverges(t *testing.T) {
	m := newStormMesh(8)
	e := newEnv(t, Options{Generator: translate.New(translate.Options{})})
	e.srv.Update(m.snapshot(t))
	type client struct {
		id string
		c  *adsClient
	}
	var clients []client
	for i, mode := range []struct {
		delta bool
		ns    string
	}{{true, "ns-0"}, {true, "ns-1"}, {false, "ns-0"}, {false, "ns-1"}} {
		id := sidecarID(fmt.Sprintf("127.0.4.%d", i+1), fmt.Sprintf("app-%d", i), mode.ns)
		clients = append(clients, client{id, dial(t, e.addr, mode.delta, testNode(id, nil), "")})
	}
	for _, c := range clients {
		waitFor(t, "initial sync of "+c.id, func() bool { return e.allSynced(c.id) })
	}

	var last *mesh.Snapshot
	for range 100 {
		m.change()
		last = m.snapshot(t)
		e.srv.Update(last)
		time.Sleep(10 * time.Millisecond)
	}
	fresh := m.snapshot(t) // the same inputs, decoded again, for a fresh generator
	for _, c := range clients {
		want := expected(t, fresh, c.id)
		err := errors.New("not checked")
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if err = c.c.holds(want); err == nil && (e.generatedAt(c.id) != last.Version || !e.allSynced(c.id)) {
				err = errors.New("not generated from the last snapshot, or not ACKed yet")
			}
			if err == nil {
				break
			}
		}
		if err != nil {
			t.Errorf("%s after 30 s: %v", c.id, err)
		}
	}
}

// TestSlowProxyDoesNotDelayOthers: one proxy that stopped reading its stream and one that reads
// but never ACKs do not hold back the others, change after change; the slow ones keep one
// response outstanding each.
func TestSlowProxyDoesNotDelayOthers(t *testing.T) {
	e := newEnv(t, Options{Generator: &bigGenerator{size: 256 << 10}, Flow: FlowLimits{AckTimeout: -1}})
	e.srv.Update(e.mesh.snapshot())

	stuck := sidecarID("127.0.5.1", "stuck", "default")
	dialStuck(t, e.addr, stuck)

	// Unacked: reads every response, ACKs none.
	ads, ctx, _ := dialADS(t, e.addr, 0)
	mute := openStream(ctx, t, ads, true)
	unacked := sidecarID("127.0.5.2", "unacked", "default")
	subscribeAll(t, mute, testNode(unacked, nil))
	go func() {
		for {
			if _, err := mute.recv(); err != nil {
				return
			}
		}
	}()

	var ids []string
	var clients []*adsClient
	for i := range 6 {
		id := sidecarID(fmt.Sprintf("127.0.5.%d", i+10), fmt.Sprintf("app-%d", i), "default")
		ids = append(ids, id)
		clients = append(clients, dial(t, e.addr, i%2 == 0, testNode(id, nil), ""))
	}
	for range 5 {
		last := e.mesh.snapshot()
		e.srv.Update(last)
		for i, id := range ids {
			waitFor(t, "change on "+id, func() bool {
				return e.generatedAt(id) == last.Version && e.allSynced(id) && clients[i].has(resource.ClusterType, "big")
			})
		}
	}
	for _, id := range []string{stuck, unacked} {
		if ps, ok := e.status(id); !ok || ps.Types["CDS"].Status == Synced && ps.Types["CDS"].AckedVersion == ps.Types["CDS"].Version {
			t.Errorf("%s is synced (%v): it never ACKed, so the others did not wait for it by construction only", id, ok)
		}
	}
	// What stays queued is one cluster response per slow proxy (and small change).
	if q, limit := e.srv.fc.queuedBytes(), int64(2*(256<<10)+64<<10); q > limit {
		t.Errorf("queued bytes %d, want at most %d: one cluster response outstanding per slow proxy", q, limit)
	}
}

// TestStreamAdmission: new streams beyond the burst wait for their token when it is due within
// the admission wait, and are refused with UNAVAILABLE and a RetryInfo when it is not; every
// stream is counted.
func TestStreamAdmission(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		// One token per 1,000 s: the third stream's token is far beyond a wait of 0.
		e := newEnv(t, Options{Flow: FlowLimits{StreamRate: 0.001, StreamBurst: 2, StreamWait: -1}})
		e.mesh.add("a", "default", nil)
		e.srv.Update(e.mesh.snapshot())
		for i := range 2 {
			id := sidecarID(fmt.Sprintf("127.0.6.%d", i+1), fmt.Sprintf("app-%d", i), "default")
			dial(t, e.addr, true, testNode(id, nil), "")
			waitFor(t, "admitted "+id, func() bool { return e.allSynced(id) })
		}
		c := dial(t, e.addr, true, testNode(sidecarID("127.0.6.3", "app-3", "default"), nil), "")
		err := c.streamErr(15 * time.Second)
		st := status.Convert(err)
		if st.Code() != codes.Unavailable {
			t.Fatalf("third stream ended with %v, want UNAVAILABLE", err)
		}
		var hint time.Duration
		for _, d := range st.Details() {
			if ri, ok := d.(*errdetails.RetryInfo); ok {
				hint = ri.GetRetryDelay().AsDuration()
			}
		}
		if hint < 100*time.Second {
			t.Errorf("retry delay %s, want the time to the next token (~1000 s)", hint)
		}
		if got := metricValue(t, e.srv.metrics.admissions.WithLabelValues(admitted)); got != 2 {
			t.Errorf("admitted = %v, want 2", got)
		}
		if got := metricValue(t, e.srv.metrics.admissions.WithLabelValues(refused)); got != 1 {
			t.Errorf("refused = %v, want 1", got)
		}
	})
	t.Run("deferred", func(t *testing.T) {
		// One token per second and a burst of one: of three streams opened together, at least
		// one waits for its turn, and all are served.
		e := newEnv(t, Options{Flow: FlowLimits{StreamRate: 1, StreamBurst: 1, StreamWait: 10 * time.Second}})
		e.mesh.add("a", "default", nil)
		e.srv.Update(e.mesh.snapshot())
		for _, id := range dialSidecars(t, e.addr, "127.0.6.", 10, 3) {
			waitFor(t, "served "+id, func() bool { return e.allSynced(id) })
		}
		a := metricValue(t, e.srv.metrics.admissions.WithLabelValues(admitted))
		d := metricValue(t, e.srv.metrics.admissions.WithLabelValues(deferred))
		if a+d != 3 || d < 1 {
			t.Errorf("admitted %v, deferred %v: want 3 in all, at least one deferred", a, d)
		}
		if got := metricValue(t, e.srv.metrics.admissions.WithLabelValues(refused)); got != 0 {
			t.Errorf("refused = %v, want 0", got)
		}
	})
	t.Run("a stream that leaves while it waits", func(t *testing.T) {
		e := newEnv(t, Options{Flow: FlowLimits{StreamRate: 0.001, StreamBurst: 1, StreamWait: time.Hour}})
		e.mesh.add("a", "default", nil)
		e.srv.Update(e.mesh.snapshot())
		ads, _, _ := dialADS(t, e.addr, 0)
		first, err := ads.DeltaAggregatedResources(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if err := first.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType,
			Node: testNode(sidecarID("127.0.6.20", "first", "default"), nil)}); err != nil {
			t.Fatal(err)
		}
		if _, err := first.Recv(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		waiting, err := ads.DeltaAggregatedResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_ = waiting.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType,
			Node: testNode(sidecarID("127.0.6.21", "second", "default"), nil)})
		cancel()
		if _, err := waiting.Recv(); status.Code(err) != codes.Canceled {
			t.Errorf("waiting stream ended with %v, want Canceled", err)
		}
		waitFor(t, "the waiting stream's reservation returned", func() bool { return e.srv.adm.lim.Tokens() > -0.5 })
	})
}

// TestDeltaVersionsSurviveRestart: resource versions are content hashes, so a Delta proxy that
// reconnects to a restarted server (a new generator and interner, the same inputs, another
// snapshot version) with its initial_resource_versions is sent nothing it already has.
func TestDeltaVersionsSurviveRestart(t *testing.T) {
	m := newStormMesh(6)
	id := sidecarID("127.0.7.1", "app", "ns-0")
	held := map[string]map[string]string{}
	{
		e := newEnv(t, Options{Generator: translate.New(translate.Options{})})
		e.srv.Update(m.snapshot(t))
		c := dial(t, e.addr, true, testNode(id, nil), "")
		waitFor(t, "first sync", func() bool { return e.allSynced(id) })
		for _, typ := range allTypes {
			held[typ] = c.state(typ).resources
		}
		c.close()
	}
	if len(held[resource.ClusterType]) == 0 || len(held[resource.RouteType]) == 0 {
		t.Fatalf("first server sent %v", held)
	}

	m.version += 41 // the restarted server numbers its snapshots its own way
	e := newEnv(t, Options{Generator: translate.New(translate.Options{})})
	e.srv.Update(m.snapshot(t))
	ads, ctx, _ := dialADS(t, e.addr, 30*time.Second)
	st, err := ads.DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, typ := range allTypes {
		req := &discovery.DeltaDiscoveryRequest{TypeUrl: typ, ResourceNamesSubscribe: []string{"*"}, InitialResourceVersions: held[typ]}
		if i == 0 {
			req.Node = testNode(id, nil)
		}
		if err := st.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	for range allTypes {
		resp, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if n, r := len(resp.GetResources()), len(resp.GetRemovedResources()); n != 0 || r != 0 {
			var names []string
			for _, res := range resp.GetResources() {
				names = append(names, res.GetName())
			}
			t.Errorf("%s after the restart: %d resources %v and %d removals, want none (all versions held)",
				shortType(resp.GetTypeUrl()), n, names, r)
		}
		if err := st.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}); err != nil {
			t.Fatal(err)
		}
	}
}
