package telemetry

import (
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
