package telemetry

import (
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/workloadtable"
	"github.com/strait-mesh/strait/proxy/stats"
)

// peersTable: reviews v1 has two replicas (one identity, one label set), v2 shares the identity;
// a plaintext-only client has no sidecar; two workloads share 10.0.0.30.
var peersTable = workloadtable.Table{TrustDomains: []string{"cluster.local", "old.local"}, Workloads: []workloadtable.Workload{
	{Name: "reviews-v1", Namespace: "default", ServiceAccount: "reviews", Addresses: []string{"10.0.0.7"}, App: "reviews", Version: "v1",
		CanonicalService: "reviews", CanonicalRevision: "v1", Cluster: "east", Sidecar: true},
	{Name: "reviews-v1", Namespace: "default", ServiceAccount: "reviews", Addresses: []string{"10.0.0.8"}, App: "reviews", Version: "v1",
		CanonicalService: "reviews", CanonicalRevision: "v1", Cluster: "east", Sidecar: true},
	{Name: "reviews-v2", Namespace: "default", ServiceAccount: "reviews", Addresses: []string{"10.0.0.9", "2001:db8::9"}, App: "reviews",
		Version: "v2", CanonicalService: "reviews", CanonicalRevision: "v2", Cluster: "east", Sidecar: true},
	{Name: "productpage-v1", Namespace: "shop", ServiceAccount: "productpage", Addresses: []string{"10.0.1.5"}, App: "productpage",
		Version: "v1", CanonicalService: "productpage", CanonicalRevision: "v1", Sidecar: true},
	{Name: "legacy", Namespace: "shop", Addresses: []string{"10.0.0.20"}, CanonicalService: "legacy", CanonicalRevision: "latest"},
	{Name: "a", Namespace: "shop", Addresses: []string{"10.0.0.30"}, App: "a", CanonicalService: "a", CanonicalRevision: "latest", Sidecar: true},
	{Name: "b", Namespace: "shop", Addresses: []string{"10.0.0.30"}, App: "b", CanonicalService: "b", CanonicalRevision: "latest", Sidecar: true},
}}

func ref(id string) spiffeRef {
	td, path, _ := strings.Cut(strings.TrimPrefix(id, "spiffe://"), "/")
	return spiffeRef{td, "/" + path}
}

func name(p *Peer) string {
	if p == nil {
		return "<nil>"
	}
	return p.Name + "/" + p.Version
}

func TestPeersLookup(t *testing.T) {
	p := CompilePeers(peersTable, nil)
	addr := netip.MustParseAddr
	reviews := ref("spiffe://cluster.local/ns/default/sa/reviews")
	for _, tc := range []struct {
		what string
		got  *Peer
		want string
	}{
		{"identity, address of v2", p.downstream(reviews, addr("10.0.0.9")), "reviews-v2/v2"},
		{"identity, IPv6 address of v2", p.downstream(reviews, addr("2001:db8::9")), "reviews-v2/v2"},
		{"identity, v4-mapped address of v1", p.downstream(reviews, addr("::ffff:10.0.0.8")), "reviews-v1/v1"},
		// An address outside the identity's workloads: what they agree on.
		{"identity, other address", p.downstream(reviews, addr("10.9.9.9")), "unknown/unknown"},
		{"identity, no address", p.downstream(reviews, netip.Addr{}), "unknown/unknown"},
		{"alias trust domain", p.downstream(ref("spiffe://old.local/ns/shop/sa/productpage"), addr("10.0.0.7")), "productpage-v1/v1"},
		// The identity wins over an address of another workload.
		{"one workload of the identity", p.downstream(ref("spiffe://cluster.local/ns/shop/sa/productpage"), addr("10.0.0.7")), "productpage-v1/v1"},
		{"other trust domain", p.downstream(ref("spiffe://evil.example/ns/default/sa/reviews"), addr("10.0.0.7")), "<nil>"},
		{"unknown identity", p.downstream(ref("spiffe://cluster.local/ns/default/sa/nobody"), addr("10.0.0.7")), "<nil>"},
		{"not an Istio identity", p.downstream(ref("spiffe://cluster.local/ns/default/sa/reviews/x"), addr("10.0.0.7")), "<nil>"},
		{"plaintext from a sidecar", p.downstream(spiffeRef{}, addr("10.0.0.7")), "reviews-v1/v1"},
		{"plaintext from a workload without sidecar", p.downstream(spiffeRef{}, addr("10.0.0.20")), "<nil>"},
		{"plaintext from an unknown address", p.downstream(spiffeRef{}, addr("10.0.0.99")), "<nil>"},
		{"upstream host", p.byUpstream("10.0.0.9:9080"), "reviews-v2/v2"},
		{"upstream IPv6 host", p.byUpstream("[2001:db8::9]:9080"), "reviews-v2/v2"},
		{"upstream without sidecar", p.byUpstream("10.0.0.20:5432"), "legacy/unknown"},
		{"upstream socket", p.byUpstream("/var/run/app.sock"), "<nil>"},
		{"no upstream", p.byUpstream(""), "<nil>"},
		{"nil table", (*Peers)(nil).byUpstream("10.0.0.9:9080"), "<nil>"},
	} {
		if got := name(tc.got); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.what, got, tc.want)
		}
	}
	merged := p.downstream(reviews, addr("10.9.9.9"))
	if want := (Workload{Unknown, "default", "reviews", Unknown, "reviews", latest, "east"}); merged.Workload != want {
		t.Errorf("merged identity: %+v, want %+v", merged.Workload, want)
	}
	shared := p.byUpstream("10.0.0.30:80")
	if want := (Workload{Unknown, "shop", Unknown, Unknown, Unknown, latest, Unknown}); shared.Workload != want {
		t.Errorf("shared address: %+v, want %+v", shared.Workload, want)
	}
	if p.Len() != len(peersTable.Workloads) {
		t.Errorf("Len %d", p.Len())
	}

	// A new table keeps the Peers of unchanged workloads, so their series stay the same.
	next := CompilePeers(peersTable, p)
	if next.byUpstream("10.0.0.9:80") != p.byUpstream("10.0.0.9:80") || next.downstream(reviews, addr("1.1.1.1")) != merged {
		t.Error("an unchanged workload got a new Peer")
	}
}

func TestPeersLookupDoesNotAllocate(t *testing.T) {
	p := CompilePeers(peersTable, nil)
	id := ref("spiffe://cluster.local/ns/default/sa/reviews")
	src := netip.MustParseAddr("10.0.0.9")
	if n := testing.AllocsPerRun(100, func() {
		_ = p.downstream(id, src)
		_ = p.byUpstream("[2001:db8::9]:9080")
	}); n != 0 {
		t.Errorf("%v allocations per lookup", n)
	}
}

func TestRecordWithPeers(t *testing.T) {
	st := stats.NewStore()
	r := New(Options{Local: local, Stats: st})
	r.SetPeers(CompilePeers(peersTable, nil))
	client := spiffeCert(t, "spiffe://cluster.local/ns/shop/sa/productpage")
	r.RecordHTTP(&HTTPRequest{Reporter: Destination, Code: 200, Authority: "reviews.default.svc.cluster.local:9080", Peer: client,
		Source: netip.MustParseAddr("10.0.1.5"), Duration: time.Millisecond})
	r.RecordHTTP(&HTTPRequest{Reporter: Source, Code: 200, Cluster: "outbound|9080||reviews.default.svc.cluster.local",
		Upstream: "10.0.0.9:9080", Duration: time.Millisecond})
	r.TCP(&TCPConn{Reporter: Source, Cluster: "outbound|5432||db", Upstream: netip.MustParseAddr("10.0.0.20")}).Opened()
	r.TCP(&TCPConn{Reporter: Destination, Source: netip.MustParseAddr("10.0.0.7")}).Opened() // plaintext from a sidecar
	out := render(t, st)
	for _, want := range []string{
		`istio_requests_total{reporter="destination",source_workload="productpage-v1",source_canonical_service="productpage",source_canonical_revision="v1",` +
			`source_workload_namespace="shop",source_principal="spiffe://cluster.local/ns/shop/sa/productpage",source_app="productpage",` +
			`source_version="v1",source_cluster="unknown",destination_workload="reviews-v1"`,
		`istio_requests_total{reporter="source",source_workload="reviews-v1",` +
			`source_canonical_service="reviews",source_canonical_revision="v1",source_workload_namespace="default",source_principal="unknown",` +
			`source_app="reviews",source_version="v1",source_cluster="Kubernetes",destination_workload="reviews-v2",destination_workload_namespace="default",` +
			`destination_principal="unknown",destination_app="reviews",destination_version="v2",destination_service="reviews.default.svc.cluster.local",` +
			`destination_canonical_service="reviews",destination_canonical_revision="v2",destination_service_name="reviews",` +
			`destination_service_namespace="default",destination_cluster="east",`,
		`istio_tcp_connections_opened_total{reporter="source",source_workload="reviews-v1",`,
		`destination_workload="legacy",destination_workload_namespace="shop",destination_principal="unknown",destination_app="unknown",`,
		`istio_tcp_connections_opened_total{reporter="destination",source_workload="reviews-v1",source_canonical_service="reviews",` +
			`source_canonical_revision="v1",source_workload_namespace="default",source_principal="unknown",`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %s", want)
		}
	}
	if t.Failed() {
		t.Log(out)
	}
}

// A workload that leaves the table and comes back is a new Peer, and so a new key: its series
// render as one, with the values added.
func TestPeerReturnsRendersOneSeries(t *testing.T) {
	st := stats.NewStore()
	r := New(Options{Local: local, Stats: st})
	q := &HTTPRequest{Reporter: Source, Code: 200, Cluster: "outbound|9080||reviews.default.svc.cluster.local", Upstream: "10.0.0.9:9080"}
	tcp := &TCPConn{Reporter: Source, Cluster: "outbound|9080||reviews.default.svc.cluster.local", Upstream: netip.MustParseAddr("10.0.0.9")}
	r.SetPeers(CompilePeers(peersTable, nil))
	r.RecordHTTP(q)
	r.TCP(tcp).Opened()
	r.SetPeers(CompilePeers(workloadtable.Table{TrustDomains: peersTable.TrustDomains}, r.Peers()))
	r.SetPeers(CompilePeers(peersTable, r.Peers()))
	r.RecordHTTP(q)
	r.TCP(tcp).Opened()
	if h, c := r.Series(); h != 2 || c != 2 {
		t.Fatalf("%d HTTP and %d TCP series, want 2 keys each", h, c)
	}
	out := render(t, st)
	if n := strings.Count(out, `istio_requests_total{reporter="source",`); n != 1 {
		t.Errorf("%d istio_requests_total lines, want 1:\n%s", n, out)
	}
	for _, want := range []string{`destination_workload="reviews-v2",`, `connection_security_policy="unknown"} 2` + "\n",
		`istio_request_duration_milliseconds_count{reporter="source"`, `istio_tcp_connections_opened_total{reporter="source"`} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %s:\n%s", want, out)
		}
	}
	if strings.Count(out, "istio_tcp_connections_opened_total{") != 1 || strings.Count(out, "istio_request_duration_milliseconds_count{") != 1 {
		t.Errorf("duplicate series:\n%s", out)
	}
}

// peerTable returns a table of n workloads with one sidecar each, as a Kubernetes namespace
// of Deployments would have.
func peerTable(n int) workloadtable.Table {
	t := workloadtable.Table{TrustDomains: []string{"cluster.local"}}
	for i := range n {
		name := fmt.Sprintf("service-%04d-v1", i)
		t.Workloads = append(t.Workloads, workloadtable.Workload{Name: name, Namespace: "shop", ServiceAccount: fmt.Sprintf("service-%04d", i),
			Addresses: []string{fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)}, App: fmt.Sprintf("service-%04d", i), Version: "v1",
			CanonicalService: fmt.Sprintf("service-%04d", i), CanonicalRevision: "v1", Cluster: "Kubernetes", Sidecar: true})
	}
	return t
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestMemoryWithPeers measures (and logs; no assertion on the figure) the heap of a proxy's
// metrics with 1,000 peer workloads: the compiled table (its strings included), then one HTTP
// series per peer (a server called by every peer, or a client calling every one), then the
// busiest case: one more HTTP series and one TCP series per peer (calling and called by every
// peer). Run with -v to see it.
func TestMemoryWithPeers(t *testing.T) {
	const n = 1000
	before := heapInUse()
	table := peerTable(n)
	r := New(Options{Local: local, Stats: stats.NewStore()})
	r.SetPeers(CompilePeers(table, nil))
	addrs := make([]netip.Addr, n)
	for i, w := range table.Workloads {
		addrs[i] = netip.MustParseAddr(w.Addresses[0])
	}
	table = workloadtable.Table{} // as the proxy, keep only the compiled form
	withTable := heapInUse()
	certs := make([]*HTTPRequest, n)
	for i := range n {
		certs[i] = &HTTPRequest{Reporter: Destination, Code: 200, Authority: "reviews.default.svc.cluster.local:9080",
			Peer: spiffeCert(t, fmt.Sprintf("spiffe://cluster.local/ns/shop/sa/service-%04d", i)), Source: addrs[i]}
	}
	between := heapInUse()
	for i := range n {
		r.RecordHTTP(certs[i])
	}
	oneEach := heapInUse()
	for i := range n {
		r.RecordHTTP(&HTTPRequest{Reporter: Source, Code: 200, Cluster: fmt.Sprintf("outbound|80||service-%04d.shop.svc.cluster.local", i),
			Upstream: addrs[i].String() + ":80"})
		r.TCP(&TCPConn{Reporter: Source, Cluster: "outbound|5432||db.shop.svc.cluster.local", Upstream: addrs[i]}).Opened()
	}
	after := heapInUse()
	if h, c := r.Series(); h != 2*n || c != n {
		t.Fatalf("%d HTTP and %d TCP series", h, c)
	}
	mib := func(b uint64) float64 { return float64(b) / (1 << 20) }
	tableBytes, one, busiest := withTable-before, oneEach-between, after-between
	t.Logf("%d peers: workload table %.2f MiB; + %d HTTP series %.2f MiB (total %.2f MiB); busiest, + %d HTTP and %d TCP series more: total %.2f MiB",
		n, mib(tableBytes), n, mib(one), mib(tableBytes+one), n, n, mib(tableBytes+busiest))
	runtime.KeepAlive(r)
	runtime.KeepAlive(certs)
}

func TestRecordWithPeersDoesNotAllocate(t *testing.T) {
	r := New(Options{Local: local})
	r.SetPeers(CompilePeers(peersTable, nil))
	in := &HTTPRequest{Reporter: Destination, Code: 200, Authority: "reviews:9080", Peer: spiffeCert(t, "spiffe://cluster.local/ns/default/sa/reviews"),
		Source: netip.MustParseAddr("10.0.0.9")}
	out := &HTTPRequest{Reporter: Source, Code: 200, Cluster: "outbound|9080||reviews.default.svc.cluster.local", Upstream: "10.0.0.9:9080"}
	tcp := &TCPConn{Reporter: Source, Cluster: "outbound|9080||reviews.default.svc.cluster.local", Upstream: netip.MustParseAddr("10.0.0.9")}
	for range 3 {
		r.RecordHTTP(in)
		r.RecordHTTP(out)
		r.TCP(tcp)
	}
	if n := testing.AllocsPerRun(100, func() { r.RecordHTTP(in); r.RecordHTTP(out); r.TCP(tcp).Opened() }); n != 0 {
		t.Errorf("%v allocations per request", n)
	}
}

// TestPickService checks how the destination reporter picks destination_service from the
// inbound cluster's services: the only one, or the one the authority names among several.
func TestPickService(t *testing.T) {
	web := Service{Host: "web.default.svc.cluster.local", Name: "web", Namespace: "default"}
	api := Service{Host: "api.default.svc.cluster.local", Name: "api", Namespace: "default"}
	ext := Service{Host: "db.example.com", Name: "db.example.com", Namespace: "data"}
	for _, tc := range []struct {
		services  []Service
		authority string
		want      string
	}{
		{nil, "web", ""},
		{[]Service{web}, "127.0.0.1:8080", web.Host},
		{[]Service{web}, "", web.Host},
		{[]Service{api, web}, "web:9080", web.Host},
		{[]Service{api, web}, "web.default", web.Host},
		{[]Service{api, web}, "web.default.svc.cluster.local:9080", web.Host},
		{[]Service{api, web}, "api.default.svc", ""},
		{[]Service{api, web}, "web.other", ""},
		{[]Service{api, ext}, "db.example.com", ext.Host},
		{[]Service{api, web}, "unknown-host", ""},
	} {
		got := ""
		if s := PickService(tc.services, tc.authority); s != nil {
			got = s.Host
		}
		if got != tc.want {
			t.Errorf("PickService(%v, %q) = %q, want %q", tc.services, tc.authority, got, tc.want)
		}
	}
}
