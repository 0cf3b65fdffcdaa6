package xds

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/translate"
)

// generatedAt returns the mesh version the server last generated proxy id from (0: unknown).
func (e *testEnv) generatedAt(id string) uint64 {
	e.srv.connMu.Lock()
	p := e.srv.proxies[id]
	e.srv.connMu.Unlock()
	if p == nil {
		return 0
	}
	p.genMu.Lock()
	defer p.genMu.Unlock()
	return p.meshVersion
}

// pushes returns pilot_xds_pushes summed over the core types.
func (e *testEnv) pushes(t *testing.T) float64 {
	t.Helper()
	var n float64
	for _, typ := range allTypes {
		n += metricValue(t, e.srv.metrics.pushes.WithLabelValues(metricType(typ)))
	}
	return n
}

// subscribeAll sends a subscription to every core type on st, the node on the first.
func subscribeAll(t *testing.T, st adsStream, n *corev3.Node) {
	t.Helper()
	for i, typ := range allTypes {
		var first *corev3.Node
		if i == 0 {
			first = n
		}
		if err := st.send(typ, first, "", "", nil); err != nil {
			t.Fatal(err)
		}
	}
}

// TestUnackedTypeGetsOneResponse: a proxy that does not ACK gets one response per type, however
// many snapshots change meanwhile; each ACK then brings one response with the newest state.
func TestUnackedTypeGetsOneResponse(t *testing.T) {
	for _, m := range modes() {
		t.Run(m.name, func(t *testing.T) {
			e := newEnv(t, Options{})
			e.mesh.add("a", "default", nil).endpoint("a", "default", "127.0.0.2")
			e.srv.Update(e.mesh.snapshot())
			id := sidecarID("127.0.0.10", "productpage-1", "default")
			ads, ctx, _ := dialADS(t, e.addr, 30*time.Second)
			st := openStream(ctx, t, ads, m.delta)
			subscribeAll(t, st, testNode(id, nil))
			first := map[string]adsResponse{}
			for len(first) < len(allTypes) {
				r, err := st.recv()
				if err != nil {
					t.Fatal(err)
				}
				if _, dup := first[r.typ]; dup {
					t.Fatalf("a second %s response before the first was ACKed", shortType(r.typ))
				}
				first[r.typ] = r
			}

			// Five changes to clusters, endpoints and routes, none of the responses ACKed.
			var last *mesh.Snapshot
			want := []string{clusterName(host("a", "default"))}
			for i := range 5 {
				name := fmt.Sprintf("s%d", i)
				e.mesh.add(name, "default", nil).endpoint(name, "default", "127.0.0.3")
				want = append(want, clusterName(host(name, "default")))
				last = e.mesh.snapshot()
				e.srv.Update(last)
			}
			waitFor(t, "newest snapshot generated", func() bool { return e.generatedAt(id) == last.Version })
			if m.delta {
				// A Delta request that is not an ACK (here: an explicit wildcard subscription)
				// opens a watch, which flow control holds too.
				if err := st.(deltaClientStream).Send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType,
					ResourceNamesSubscribe: []string{"*"}}); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, "pending pushes reported", func() bool { return metricValue(t, e.srv.metrics.pendingPushes) >= 1 })

			// ACK the first responses: one response per changed type follows, with the newest state.
			for _, typ := range allTypes {
				r := first[typ]
				if err := st.send(typ, nil, r.version, r.nonce, nil); err != nil {
					t.Fatal(err)
				}
			}
			got := map[string]adsResponse{}
			for len(got) < 3 { // CDS, EDS, RDS; the listener did not change
				r, err := st.recv()
				if err != nil {
					t.Fatal(err)
				}
				if _, dup := got[r.typ]; dup || r.typ == resource.ListenerType {
					t.Fatalf("unexpected second %s response", shortType(r.typ))
				}
				got[r.typ] = r
				if err := st.send(r.typ, nil, r.version, r.nonce, nil); err != nil {
					t.Fatal(err)
				}
			}
			clusters := append(slices.Clone(got[resource.ClusterType].names), first[resource.ClusterType].names...)
			if !sameNames(dedup(clusters), want...) {
				t.Errorf("clusters after the ACK = %v, want %v", dedup(clusters), want)
			}
			waitFor(t, "SYNCED", func() bool { return e.allSynced(id) })
			if n := e.pushes(t); n != 7 {
				t.Errorf("pilot_xds_pushes = %v, want 7 (4 initial, then CDS, EDS, RDS once each)", n)
			}
			if got := metricValue(t, e.srv.metrics.pendingPushes); got != 0 {
				t.Errorf("strait_xds_pending_pushes = %v once synced, want 0", got)
			}
		})
	}
}

func dedup(names []string) []string {
	slices.Sort(names)
	return slices.Compact(names)
}

// bigGenerator serves one cluster of about size bytes whose content changes with every snapshot;
// all proxies share the object.
type bigGenerator struct {
	size int

	mu      sync.Mutex
	version uint64
	cluster *clusterv3.Cluster
}

func (g *bigGenerator) Generate(snap *mesh.Snapshot, _ *translate.Proxy) (translate.Resources, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cluster == nil || g.version != snap.Version {
		pad := fmt.Sprintf("v%d-", snap.Version) + strings.Repeat("x", g.size)
		g.version = snap.Version
		g.cluster = &clusterv3.Cluster{
			Name:                 "big",
			ConnectTimeout:       durationpb.New(time.Second),
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
			Metadata: &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
				"strait.test": {Fields: map[string]*structpb.Value{"pad": structpb.NewStringValue(pad)}},
			}},
		}
	}
	return translate.Resources{resource.ClusterType: []types.Resource{g.cluster}}, nil
}

// dialStuck connects a Delta proxy that subscribes to every core type and never reads its
// stream. It has its own connection with a fixed 64 KiB window, so that its client side (in
// this process) buffers little: what grows is the server's. The connection closes at the end
// of the test, or earlier by the caller.
func dialStuck(t *testing.T, addr, id string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(1<<16), grpc.WithInitialConnWindowSize(1<<16))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	st, err := discovery.NewAggregatedDiscoveryServiceClient(cc).DeltaAggregatedResources(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	subscribeAll(t, deltaClientStream{st}, testNode(id, nil)) // and never Recv
	return cc
}

// TestStuckProxiesDoNotGrowServerMemory: proxies that subscribe and then stop reading hold at
// most the byte cap of responses, however many snapshots change; the rest of them wait as
// pointers to the newest snapshot. Closing them returns every byte.
func TestStuckProxiesDoNotGrowServerMemory(t *testing.T) {
	const (
		size     = 3 << 19 // 1.5 MiB per response
		maxBytes = 4 << 20 // room for two of them
		stuck    = 24
		changes  = 10
	)
	e := newEnv(t, Options{Generator: &bigGenerator{size: size},
		Flow: FlowLimits{MaxQueuedBytes: maxBytes, MaxStreamQueuedBytes: 2 << 20, AckTimeout: -1}})
	last := e.mesh.snapshot()
	e.srv.Update(last)
	heap := func() uint64 {
		// The interner's memo of collected resources is swept as it grows; sweep it now, so that
		// what is measured is what the streams hold, not the memo of the 10 replaced clusters.
		runtime.GC()
		e.srv.in.sweep()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse
	}
	before := heap()

	var conns []*grpc.ClientConn
	var ids []string
	for i := range stuck {
		id := sidecarID(fmt.Sprintf("127.0.1.%d", i+1), fmt.Sprintf("stuck-%d", i), "default")
		ids = append(ids, id)
		conns = append(conns, dialStuck(t, e.addr, id))
	}
	allAt := func(v uint64) bool {
		for _, id := range ids {
			if e.generatedAt(id) != v {
				return false
			}
		}
		return true
	}
	waitFor(t, "all stuck proxies connected", func() bool { return allAt(last.Version) })
	for range changes {
		last = e.mesh.snapshot()
		e.srv.Update(last)
		waitFor(t, "change generated for every proxy", func() bool { return allAt(last.Version) })
	}
	queued := metricValue(t, e.srv.metrics.queuedBytes)
	after := heap()
	growth := int64(after) - int64(before)
	t.Logf("%d stuck proxies, %d changes of a %d KiB cluster: heap in use %+.1f MiB, strait_xds_queued_bytes %.1f MiB, pending pushes %v",
		stuck, changes, size>>10, float64(growth)/(1<<20), queued/(1<<20), metricValue(t, e.srv.metrics.pendingPushes))
	if queued > maxBytes {
		t.Errorf("strait_xds_queued_bytes = %v, over the cap %d", queued, maxBytes)
	}
	if queued == 0 {
		t.Errorf("strait_xds_queued_bytes = 0: nothing was sent to the stuck proxies")
	}
	// Without the cap every stuck proxy holds a 1.5 MiB response in gRPC (36 MiB). With it: the
	// cap, the newest and the first snapshot's cluster (shared by all proxies: ~6 MiB of
	// objects and their marshaled bytes), and the fixed cost of 24 connections and streams on
	// both sides (~2 MiB); about 11 MiB in all.
	if limit := int64(maxBytes + 16<<20); growth > limit {
		t.Errorf("heap in use grew by %.1f MiB with %d stuck proxies, want under %.1f MiB",
			float64(growth)/(1<<20), stuck, float64(limit)/(1<<20))
	}
	if got := metricValue(t, e.srv.metrics.pendingPushes); got < stuck-2 {
		t.Errorf("strait_xds_pending_pushes = %v, want at least %d (the proxies whose cluster waits)", got, stuck-2)
	}

	for _, cc := range conns {
		_ = cc.Close()
	}
	waitFor(t, "every byte returned", func() bool {
		return metricValue(t, e.srv.metrics.queuedBytes) == 0 && e.srv.fc.queuedBytes() == 0
	})
	waitFor(t, "no pending pushes", func() bool { return metricValue(t, e.srv.metrics.pendingPushes) == 0 })
}

// TestByteCapDelaysButDelivers: with a cap smaller than what one push sends to all proxies, every
// proxy still converges on the newest snapshot (the waiting ones are served as ACKs free room).
func TestByteCapDelaysButDelivers(t *testing.T) {
	for _, m := range modes() {
		t.Run(m.name, func(t *testing.T) {
			e := newEnv(t, Options{Generator: &bigGenerator{size: 64 << 10},
				Flow: FlowLimits{MaxQueuedBytes: 150 << 10, MaxStreamQueuedBytes: 100 << 10}})
			e.srv.Update(e.mesh.snapshot())
			var clients []*adsClient
			var ids []string
			for i := range 8 {
				id := sidecarID(fmt.Sprintf("127.0.2.%d", i+1), fmt.Sprintf("app-%d", i), "default")
				ids = append(ids, id)
				clients = append(clients, dial(t, e.addr, m.delta, testNode(id, nil), ""))
			}
			var last *mesh.Snapshot
			for range 3 {
				last = e.mesh.snapshot()
				e.srv.Update(last)
			}
			for i, c := range clients {
				waitFor(t, "newest cluster on "+ids[i], func() bool {
					return e.allSynced(ids[i]) && e.generatedAt(ids[i]) == last.Version && c.has(resource.ClusterType, "big")
				})
			}
			waitFor(t, "nothing queued", func() bool { return metricValue(t, e.srv.metrics.queuedBytes) == 0 })
		})
	}
}

// TestAckTimeoutDisconnects: a proxy that receives but never ACKs is disconnected after the ACK
// timeout, with DEADLINE_EXCEEDED, and its bytes are returned.
func TestAckTimeoutDisconnects(t *testing.T) {
	for _, m := range modes() {
		t.Run(m.name, func(t *testing.T) {
			e := newEnv(t, Options{Flow: FlowLimits{AckTimeout: 300 * time.Millisecond}})
			e.mesh.add("a", "default", nil)
			e.srv.Update(e.mesh.snapshot())
			id := sidecarID("127.0.0.10", "productpage-1", "default")
			ads, ctx, _ := dialADS(t, e.addr, 30*time.Second)
			st := openStream(ctx, t, ads, m.delta)
			subscribeAll(t, st, testNode(id, nil))
			var err error
			for err == nil { // read (never ACK) until the server ends the stream
				_, err = st.recv()
			}
			if status.Code(err) != codes.DeadlineExceeded || !strings.Contains(err.Error(), "no ACK or NACK") {
				t.Fatalf("stream ended with %v, want DeadlineExceeded naming the missing ACK", err)
			}
			if got := metricValue(t, e.srv.metrics.ackTimeouts); got < 1 {
				t.Errorf("strait_xds_ack_timeouts_total = %v, want >= 1", got)
			}
			waitFor(t, "proxy gone", func() bool { _, ok := e.status(id); return !ok })
			waitFor(t, "bytes returned", func() bool { return e.srv.fc.queuedBytes() == 0 })
		})
	}
}

// TestDeltaInitialResourceVersions: a Delta proxy that reconnects with initial_resource_versions
// is sent only the resources whose version it does not have, and the removal of those it has
// that are gone.
func TestDeltaInitialResourceVersions(t *testing.T) {
	e := newEnv(t, Options{})
	e.mesh.add("a", "default", nil).endpoint("a", "default", "127.0.0.2").
		add("b", "default", nil).endpoint("b", "default", "127.0.0.3")
	e.srv.Update(e.mesh.snapshot())
	id := sidecarID("127.0.0.10", "productpage-1", "default")
	ca, cb, cc := clusterName(host("a", "default")), clusterName(host("b", "default")), clusterName(host("c", "default"))

	// First connection: remember the versions of what it was sent.
	held := map[string]map[string]string{}
	{
		ads, ctx, closeConn := dialADS(t, e.addr, 30*time.Second)
		st, err := ads.DeltaAggregatedResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i, typ := range []string{resource.ClusterType, resource.EndpointType} {
			req := &discovery.DeltaDiscoveryRequest{TypeUrl: typ}
			if i == 0 {
				req.Node = testNode(id, nil)
			}
			if err := st.Send(req); err != nil {
				t.Fatal(err)
			}
		}
		for len(held) < 2 {
			resp, err := st.Recv()
			if err != nil {
				t.Fatal(err)
			}
			held[resp.GetTypeUrl()] = map[string]string{}
			for _, r := range resp.GetResources() {
				held[resp.GetTypeUrl()][r.GetName()] = r.GetVersion()
			}
			if err := st.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}); err != nil {
				t.Fatal(err)
			}
		}
		closeConn()
		waitFor(t, "disconnect", func() bool { _, ok := e.status(id); return !ok })
	}
	if len(held[resource.ClusterType]) != 2 || len(held[resource.EndpointType]) != 2 {
		t.Fatalf("first connection held %v, want a and b", held)
	}

	// Meanwhile: a is removed, b gets an endpoint (its cluster is unchanged), c is added.
	e.mesh.remove("a", "default").endpoint("b", "default", "127.0.0.4").add("c", "default", nil)
	e.srv.Update(e.mesh.snapshot())

	ads, ctx, _ := dialADS(t, e.addr, 30*time.Second)
	st, err := ads.DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, typ := range []string{resource.ClusterType, resource.EndpointType} {
		req := &discovery.DeltaDiscoveryRequest{TypeUrl: typ, InitialResourceVersions: held[typ]}
		if i == 0 {
			req.Node = testNode(id, nil)
		}
		if err := st.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]*discovery.DeltaDiscoveryResponse{}
	for len(got) < 2 {
		resp, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		got[resp.GetTypeUrl()] = resp
		if err := st.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}); err != nil {
			t.Fatal(err)
		}
	}
	names := func(resp *discovery.DeltaDiscoveryResponse) []string {
		var out []string
		for _, r := range resp.GetResources() {
			out = append(out, r.GetName())
		}
		return out
	}
	if cds := got[resource.ClusterType]; !sameNames(names(cds), cc) || !sameNames(cds.GetRemovedResources(), ca) {
		t.Errorf("CDS after reconnect = %v removed %v, want only %s (b unchanged), %s removed",
			names(cds), cds.GetRemovedResources(), cc, ca)
	}
	if eds := got[resource.EndpointType]; !sameNames(names(eds), cb, cc) || !sameNames(eds.GetRemovedResources(), ca) {
		t.Errorf("EDS after reconnect = %v removed %v, want %s and %s, %s removed",
			names(eds), eds.GetRemovedResources(), cb, cc, ca)
	}
}

// countingGenerator wraps a Generator and records how many Generate calls overlap at most.
type countingGenerator struct {
	inner    translate.Generator
	now, max atomic.Int64
}

func (g *countingGenerator) Generate(snap *mesh.Snapshot, p *translate.Proxy) (translate.Resources, error) {
	n := g.now.Add(1)
	defer g.now.Add(-1)
	for {
		if m := g.max.Load(); n <= m || g.max.CompareAndSwap(m, n) {
			break
		}
	}
	time.Sleep(5 * time.Millisecond) // long enough for generations to overlap if they may
	return g.inner.Generate(snap, p)
}

// dialSidecars connects n sidecars app-0 … app-(n-1) of namespace default at the addresses
// prefix+first onwards, Delta and SotW in turn, and returns their node IDs.
func dialSidecars(t *testing.T, addr, prefix string, first, n int) []string {
	t.Helper()
	var ids []string
	for i := range n {
		id := sidecarID(fmt.Sprintf("%s%d", prefix, first+i), fmt.Sprintf("app-%d", i), "default")
		ids = append(ids, id)
		dial(t, addr, i%2 == 0, testNode(id, nil), "")
	}
	return ids
}

// TestPushThrottleBoundsConcurrency: generations and sends together never use more push slots
// than PushThrottle, even with more generation workers.
func TestPushThrottleBoundsConcurrency(t *testing.T) {
	gen := &countingGenerator{inner: newNSGenerator()}
	e := newEnv(t, Options{Generator: gen, Workers: 8, Flow: FlowLimits{PushThrottle: 2}})
	e.mesh.add("a", "default", nil)
	e.srv.Update(e.mesh.snapshot())
	ids := dialSidecars(t, e.addr, "127.0.3.", 1, 8)
	for i := range 3 {
		e.mesh.add(fmt.Sprintf("s%d", i), "default", nil)
		e.srv.Update(e.mesh.snapshot())
	}
	last := e.mesh.snapshot()
	e.srv.Update(last)
	for _, id := range ids {
		waitFor(t, "synced "+id, func() bool { return e.generatedAt(id) == last.Version && e.allSynced(id) })
	}
	if got := gen.max.Load(); got > 2 {
		t.Errorf("%d generations ran at once, want at most 2", got)
	}
	if got := e.srv.pushPeak.Load(); got > 2 || got < 1 {
		t.Errorf("push slots in use peaked at %d, want 1..2", got)
	}
	if got := metricValue(t, e.srv.metrics.pushesInProgress); got != 0 {
		t.Errorf("strait_xds_pushes_in_progress = %v at rest, want 0", got)
	}
}

// TestAckTimeoutEndsBlockedSend: a proxy that stops reading while a large response is being sent
// (the server's send blocked on HTTP/2 flow control) is disconnected after the ACK timeout too,
// and the stream's bytes are returned.
func TestAckTimeoutEndsBlockedSend(t *testing.T) {
	e := newEnv(t, Options{Generator: &bigGenerator{size: 1 << 20}, Flow: FlowLimits{AckTimeout: 300 * time.Millisecond}})
	e.srv.Update(e.mesh.snapshot())
	id := sidecarID("127.0.0.10", "productpage-1", "default")
	dialStuck(t, e.addr, id)
	waitFor(t, "ACK timeout", func() bool { return metricValue(t, e.srv.metrics.ackTimeouts) >= 1 })
	waitFor(t, "proxy gone", func() bool { _, ok := e.status(id); return !ok })
	waitFor(t, "bytes returned", func() bool { return e.srv.fc.queuedBytes() == 0 })
}
