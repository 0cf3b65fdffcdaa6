package telemetry

import (
	"net/netip"
	"testing"
	"time"
)

// BenchmarkRecordHTTP measures one request's recording with a known label combination (the
// steady state): key build, one lock-free map lookup, counter and three histogram updates.
func BenchmarkRecordHTTP(b *testing.B) {
	r := New(Options{Local: local})
	peer := spiffeCert(b, "spiffe://cluster.local/ns/shop/sa/productpage")
	q := &HTTPRequest{Reporter: Destination, Code: 200, Authority: "reviews.default.svc.cluster.local:9080", Peer: peer,
		Duration: 3 * time.Millisecond, RequestBytes: 100, ResponseBytes: 2000}
	r.RecordHTTP(q)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r.RecordHTTP(q)
		}
	})
}

// BenchmarkRecordHTTPMixed spreads requests over 50 label combinations (status codes and
// clusters), as a busy outbound sidecar sees them.
func BenchmarkRecordHTTPMixed(b *testing.B) {
	r := New(Options{Local: local})
	clusters := []string{"outbound|9080||reviews.default.svc.cluster.local", "outbound|9080||ratings.default.svc.cluster.local",
		"outbound|9080||details.default.svc.cluster.local", "outbound|80||web.shop.svc.cluster.local", "PassthroughCluster"}
	qs := make([]HTTPRequest, 0, 50)
	for _, c := range clusters {
		for code := 200; code < 210; code++ {
			qs = append(qs, HTTPRequest{Reporter: Source, Code: code, Cluster: c, Authority: "x:80", Duration: time.Millisecond})
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r.RecordHTTP(&qs[i%len(qs)])
	}
}

// BenchmarkRecordHTTPPeers is BenchmarkRecordHTTP with a workload table of 1,000 peers: the
// destination side looks the client up by its identity and address, the source side the
// server by the upstream host (both reporters alternate, known combinations).
func BenchmarkRecordHTTPPeers(b *testing.B) {
	table := peerTable(1000)
	r := New(Options{Local: local})
	r.SetPeers(CompilePeers(table, nil))
	in := &HTTPRequest{Reporter: Destination, Code: 200, Authority: "reviews.default.svc.cluster.local:9080",
		Peer: spiffeCert(b, "spiffe://cluster.local/ns/shop/sa/service-0500"), Source: netip.MustParseAddr(table.Workloads[500].Addresses[0]),
		Duration: 3 * time.Millisecond, RequestBytes: 100, ResponseBytes: 2000}
	out := &HTTPRequest{Reporter: Source, Code: 200, Cluster: "outbound|80||service-0700.shop.svc.cluster.local",
		Upstream: table.Workloads[700].Addresses[0] + ":80", Duration: 3 * time.Millisecond}
	for range 3 {
		r.RecordHTTP(in)
		r.RecordHTTP(out)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i&1 == 0 {
			r.RecordHTTP(in)
		} else {
			r.RecordHTTP(out)
		}
	}
}

// BenchmarkRecordHTTPOverrides is BenchmarkRecordHTTPMixed's source side with istio.stats
// overrides: a dimension from the request (two values alternating per combination) on
// istio_requests_total, a removed label and a dropped metric.
func BenchmarkRecordHTTPOverrides(b *testing.B) {
	r := New(Options{Local: local})
	o := overridesForBench(b)
	var qs []HTTPRequest
	for _, c := range []string{"outbound|9080||reviews.default.svc.cluster.local", "outbound|9080||ratings.default.svc.cluster.local"} {
		for code := 200; code < 205; code++ {
			for _, host := range []string{"reviews:9080", "reviews.default:9080"} {
				q := HTTPRequest{Reporter: Source, Code: code, Cluster: c, Authority: host, Duration: time.Millisecond, Overrides: o}
				q.Dimensions[0] = host
				qs = append(qs, q)
			}
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r.RecordHTTP(&qs[i%len(qs)])
	}
}

// BenchmarkRecordHTTPSource is the router's (or outbound sidecar's) request as the standalone
// proxy records it: the source reporter, an outbound cluster, the upstream host the cluster
// picked known to a workload table of 1,000 peers, plaintext.
func BenchmarkRecordHTTPSource(b *testing.B) {
	table := peerTable(1000)
	r := New(Options{Local: local})
	r.SetPeers(CompilePeers(table, nil))
	q := &HTTPRequest{Reporter: Source, Code: 200, Cluster: "outbound|8080||echo.shop.svc.cluster.local", Authority: "echo:8080",
		Upstream: table.Workloads[700].Addresses[0] + ":8080", Duration: 3 * time.Millisecond, RequestBytes: 1024, ResponseBytes: 1024}
	r.RecordHTTP(q)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r.RecordHTTP(q)
	}
}
