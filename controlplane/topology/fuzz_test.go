package topology

import (
	"encoding/json"
	"testing"
	"time"
)

// FuzzParseExposition: any scraped body parses or fails, within the series limit, and the
// graph computed from it is valid JSON.
func FuzzParseExposition(f *testing.F) {
	f.Add(productpage(true))
	f.Add(reviewsV2(true))
	f.Add("istio_requests_total{reporter=\"source\"} NaN\n")
	f.Add("# TYPE istio_request_duration_milliseconds histogram\nistio_request_duration_milliseconds_bucket{le=\"x\"} 1\n")
	f.Fuzz(func(t *testing.T, body string) {
		s, err := parseExposition([]byte(body), 50)
		if err != nil {
			return
		}
		if len(s) > 50 {
			t.Fatalf("%d series kept, limit 50", len(s))
		}
		t0 := time.Unix(0, 0)
		g := compute([]proxyData{{target: Target{Proxy: "p", Workload: "w", Namespace: "ns"}, prev: sample{}, cur: s,
			prevAt: t0, at: t0.Add(time.Second)}}, t0)
		if _, err := json.Marshal(g); err != nil {
			t.Fatalf("graph not encodable: %v", err)
		}
	})
}
