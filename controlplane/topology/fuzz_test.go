package topology

import "testing"

// FuzzParseExposition: any scraped body parses or fails, within the series limit.
func FuzzParseExposition(f *testing.F) {
	f.Add(productpage(true))
	f.Add(reviewsV2(true))
	f.Add("istio_requests_total{reporter=\"source\"} NaN\n")
	f.Add("# TYPE istio_request_duration_milliseconds histogram\nistio_request_duration_milliseconds_bucket{le=\"x\"} 1\n")
	f.Fuzz(func(t *testing.T, body string) {
		s, err := parseExposition([]byte(body), 50)
		if err == nil && len(s) > 50 {
			t.Fatalf("%d series kept, limit 50", len(s))
		}
	})
}
