package topology

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

const (
	reviews  = "reviews.shop.svc.cluster.local"
	ratings  = "ratings.shop.svc.cluster.local"
	mysql    = "mysql.shop.svc.cluster.local"
	ppPrinc  = "spiffe://cluster.local/ns/shop/sa/productpage"
	revPrinc = "spiffe://cluster.local/ns/shop/sa/reviews"
)

// series renders one exposition line of metric with labels given as name=value pairs.
func series(metric string, value float64, kv ...string) string {
	var b strings.Builder
	b.WriteString(metric + "{")
	for i := 0; i+1 < len(kv); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", kv[i], kv[i+1])
	}
	fmt.Fprintf(&b, "} %g\n", value)
	return b.String()
}

// source returns the labels of a source-reported series of productpage to svc.
func source(svc, code string) []string {
	name, _, _ := strings.Cut(svc, ".")
	return []string{"reporter", "source", "source_workload", "productpage-v1", "source_workload_namespace", "shop",
		"source_principal", ppPrinc, "destination_workload", "unknown", "destination_workload_namespace", "unknown",
		"destination_service", svc, "destination_service_name", name, "destination_service_namespace", "shop",
		"destination_canonical_revision", "latest", "request_protocol", "http", "response_code", code,
		"connection_security_policy", "unknown"}
}

// destination returns the labels of a series reported by workload (version) of svc.
func destination(svc, workload, version, principal, code, policy string) []string {
	name, _, _ := strings.Cut(svc, ".")
	return []string{"reporter", "destination", "source_workload", "unknown", "source_workload_namespace", "shop",
		"source_principal", principal, "destination_workload", workload, "destination_workload_namespace", "shop",
		"destination_service", svc, "destination_service_name", name, "destination_service_namespace", "shop",
		"destination_canonical_revision", version, "request_protocol", "http", "response_code", code,
		"connection_security_policy", policy}
}

// histogram renders the duration histogram's buckets (le → count) and count.
func histogram(l []string, buckets map[string]float64) string {
	var b strings.Builder
	for _, le := range []string{"0.5", "1", "5", "10", "25", "+Inf"} {
		b.WriteString(series(metricDuration+"_bucket", buckets[le], append(append([]string{}, l...), "le", le)...))
	}
	b.WriteString(series(metricDuration+"_count", buckets["+Inf"], l...))
	return b.String()
}

// productpage's page at the first and second scrape (10 s apart).
func productpage(second bool) string {
	pick := func(a, b float64) float64 {
		if second {
			return b
		}
		return a
	}
	s := "# HELP istio_requests_total Total requests.\n# TYPE istio_requests_total counter\n" +
		series(metricRequests, pick(100, 300), source(reviews, "200")...) +
		series(metricRequests, pick(10, 20), source(ratings, "200")...)
	if second { // a new series: its first value is all new
		s += series(metricRequests, 20, source(reviews, "503")...)
	}
	s += "# TYPE istio_request_duration_milliseconds histogram\n" +
		histogram(source(reviews, "200"), map[string]float64{"5": pick(50, 150), "10": pick(90, 290), "25": pick(100, 300), "+Inf": pick(100, 300)})
	if second {
		s += histogram(source(reviews, "503"), map[string]float64{"10": 20, "25": 20, "+Inf": 20})
	}
	tcp := []string{"reporter", "source", "source_workload", "productpage-v1", "source_workload_namespace", "shop",
		"source_principal", ppPrinc, "destination_service", mysql, "destination_service_name", "mysql",
		"destination_service_namespace", "shop", "connection_security_policy", "unknown"}
	s += "# TYPE istio_tcp_sent_bytes_total counter\n" + series(metricTCPSent, pick(1000, 3000), tcp...) +
		"# TYPE istio_tcp_received_bytes_total counter\n" + series(metricTCPRecv, pick(500, 1500), tcp...)
	// Envoy's own statistics are skipped, even malformed-looking ones.
	s += "# TYPE envoy_cluster_upstream_rq counter\nenvoy_cluster_upstream_rq{envoy_cluster_name=\"x\"} 7\n"
	return s
}

func reviewsV1(second bool) string {
	v := 75.0
	if second {
		v = 225
	}
	return "# TYPE istio_requests_total counter\n" +
		series(metricRequests, v, destination(reviews, "reviews-v1", "v1", ppPrinc, "200", "mutual_tls")...)
}

func reviewsV2(second bool) string {
	s := "# TYPE istio_requests_total counter\n"
	if second {
		return s + series(metricRequests, 75, destination(reviews, "reviews-v2", "v2", ppPrinc, "200", "mutual_tls")...) +
			series(metricRequests, 20, destination(reviews, "reviews-v2", "v2", ppPrinc, "503", "mutual_tls")...)
	}
	return s + series(metricRequests, 25, destination(reviews, "reviews-v2", "v2", ppPrinc, "200", "mutual_tls")...)
}

func ratingsV1(second bool) string {
	v := 10.0
	if second {
		v = 20
	}
	// Plaintext, so the caller's principal is unknown.
	return "# TYPE istio_requests_total counter\n" + series(metricRequests, v, destination(ratings, "ratings-v1", "v1", "unknown", "200", "none")...)
}

// twoScrapes builds compute's input from each proxy's pages at t0 and t0+10s.
func twoScrapes(t *testing.T, pages map[string]func(bool) string) []proxyData {
	t.Helper()
	t0 := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	var in []proxyData
	for name, page := range pages {
		prev, err := parseExposition([]byte(page(false)), 1000)
		if err != nil {
			t.Fatalf("%s first page: %v", name, err)
		}
		cur, err := parseExposition([]byte(page(true)), 1000)
		if err != nil {
			t.Fatalf("%s second page: %v", name, err)
		}
		in = append(in, proxyData{target: Target{Proxy: "sidecar~10.0.0.1~" + name + ".shop~shop.svc.cluster.local", Workload: name, Namespace: "shop"},
			prev: prev, cur: cur, prevAt: t0, at: t0.Add(10 * time.Second)})
	}
	return in
}

func findEdge(t *testing.T, g *Graph, from, to string) Edge {
	t.Helper()
	for _, e := range g.Edges {
		if e.Source == from && e.Target == to {
			return e
		}
	}
	t.Fatalf("no edge %s → %s in %+v", from, to, g.Edges)
	return Edge{}
}

func near(got, want float64) bool { return math.Abs(got-want) < 1e-9 }

func TestGraphFromTwoScrapes(t *testing.T) {
	in := twoScrapes(t, map[string]func(bool) string{
		"productpage-v1": productpage, "reviews-v1": reviewsV1, "reviews-v2": reviewsV2, "ratings-v1": ratingsV1,
	})
	g := compute(in, time.Now())
	if g.WindowSeconds != 10 {
		t.Errorf("window %v, want 10", g.WindowSeconds)
	}
	pp, rev := "workload:shop/productpage-v1", "service:"+reviews

	// Source edge: requests per second from two scrapes, the 503 series new in the second.
	e := findEdge(t, g, pp, rev)
	if !near(e.RequestsPerSecond, 22) || !near(e.ErrorRate, 2.0/22) || e.Reporter != "source" || e.Protocol != "http" || e.Total != 320 {
		t.Errorf("productpage → reviews: %+v", e)
	}
	// Quantiles from the window's buckets: le 5: 100, le 10: 220, +Inf: 220.
	if e.P50 == nil || !near(*e.P50, 5+5*(10.0/120)) || e.P99 == nil || !near(*e.P99, 5+5*(117.8/120)) {
		t.Errorf("productpage → reviews quantiles: p50 %v p99 %v", deref(e.P50), deref(e.P99))
	}
	// mTLS: reviews' proxies saw productpage's principal over mutual TLS.
	if !e.MTLS {
		t.Error("productpage → reviews: not mutual TLS")
	}
	// ratings' proxy saw plaintext from an unknown principal: no lock.
	if e := findEdge(t, g, pp, "service:"+ratings); e.MTLS || !near(e.RequestsPerSecond, 1) {
		t.Errorf("productpage → ratings: %+v", e)
	}
	if e := findEdge(t, g, "service:"+ratings, "workload:shop/ratings-v1"); e.MTLS || e.Reporter != "destination" {
		t.Errorf("ratings → ratings-v1: %+v", e)
	}

	// Destination edges: the traffic split over versions.
	v1 := findEdge(t, g, rev, "workload:shop/reviews-v1")
	v2 := findEdge(t, g, rev, "workload:shop/reviews-v2")
	if !near(v1.RequestsPerSecond, 15) || !near(v2.RequestsPerSecond, 7) || !near(v1.Share, 15.0/22) || !near(v2.Share, 7.0/22) {
		t.Errorf("split: v1 %+v v2 %+v", v1, v2)
	}
	if !v1.MTLS || !v2.MTLS || v1.ErrorRate != 0 || !near(v2.ErrorRate, 2.0/7) || v1.P50 != nil {
		t.Errorf("reviews edges: v1 %+v v2 %+v", v1, v2)
	}
	// Source shares over the HTTP class: reviews 22 of 23 requests per second.
	if e := findEdge(t, g, pp, rev); !near(e.Share, 22.0/23) {
		t.Errorf("productpage → reviews share %v", e.Share)
	}

	// TCP: sent plus received bytes per second.
	tcp := findEdge(t, g, pp, "service:"+mysql)
	if tcp.Protocol != "tcp" || !near(tcp.BytesPerSecond, 300) || tcp.RequestsPerSecond != 0 || tcp.Share != 1 || tcp.Total != 4500 {
		t.Errorf("productpage → mysql: %+v", tcp)
	}
	if len(g.Edges) != 6 {
		t.Errorf("%d edges, want 6: %+v", len(g.Edges), g.Edges)
	}

	// Nodes: workloads (with the version their metrics report), services.
	byID := map[string]Node{}
	for _, n := range g.Nodes {
		byID[n.ID] = n
	}
	if n := byID["workload:shop/reviews-v2"]; n.Kind != KindWorkload || n.Version != "v2" || n.Proxy == "" {
		t.Errorf("reviews-v2 node: %+v", n)
	}
	if n := byID[rev]; n.Kind != KindService || n.Name != "reviews" || n.Namespace != "shop" || n.Service != reviews {
		t.Errorf("reviews node: %+v", n)
	}
	if n := byID[pp]; n.Kind != KindWorkload || n.Version != "" {
		t.Errorf("productpage node: %+v", n)
	}
	if len(g.Nodes) != 7 {
		t.Errorf("%d nodes, want 7: %+v", len(g.Nodes), g.Nodes)
	}
}

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

// TestGraphOneScrape: with one sample there are nodes, edges and totals, but no rates.
func TestGraphOneScrape(t *testing.T) {
	in := twoScrapes(t, map[string]func(bool) string{"productpage-v1": productpage, "reviews-v1": reviewsV1})
	for i := range in {
		in[i].prev, in[i].prevAt = nil, time.Time{}
	}
	g := compute(in, time.Now())
	e := findEdge(t, g, "workload:shop/productpage-v1", "service:"+reviews)
	if e.RequestsPerSecond != 0 || e.Total != 320 || e.P50 != nil || g.WindowSeconds != 0 {
		t.Errorf("one scrape: %+v (window %v)", e, g.WindowSeconds)
	}
	// The mTLS verdict then weighs what was counted so far.
	if !e.MTLS {
		t.Error("one scrape: productpage → reviews not mutual TLS")
	}
}

// TestGraphCounterReset: a counter lower than before restarted; its whole value is new.
func TestGraphCounterReset(t *testing.T) {
	in := twoScrapes(t, map[string]func(bool) string{"reviews-v1": func(second bool) string { return reviewsV1(!second) }})
	g := compute(in, time.Now())
	if e := findEdge(t, g, "service:"+reviews, "workload:shop/reviews-v1"); !near(e.RequestsPerSecond, 7.5) {
		t.Errorf("after a reset: %v requests/s, want 7.5", e.RequestsPerSecond)
	}
}

// TestGraphPeerLabels: once destination proxies know their callers' workloads, a caller no
// proxy reports for gets its edge from the destination's series, and the source's edge
// verdict uses the workload name.
func TestGraphPeerLabels(t *testing.T) {
	dst := func(second bool) string {
		l := destination(reviews, "reviews-v1", "v1", "spiffe://cluster.local/ns/shop/sa/batch", "200", "mutual_tls")
		l[3] = "batch" // source_workload
		v := 10.0
		if second {
			v = 30
		}
		return series(metricRequests, v, l...)
	}
	g := compute(twoScrapes(t, map[string]func(bool) string{"reviews-v1": dst}), time.Now())
	e := findEdge(t, g, "workload:shop/batch", "service:"+reviews)
	if e.Reporter != "destination" || !near(e.RequestsPerSecond, 2) || !e.MTLS {
		t.Errorf("batch → reviews from the destination: %+v", e)
	}
}

// TestGraphJSONSafe: hostile values (huge counters, infinite bounds) never make the graph
// unencodable as JSON.
func TestGraphJSONSafe(t *testing.T) {
	page := func(second bool) string {
		v := "1e308"
		if second {
			v = "+Inf"
		}
		l := destination(reviews, "reviews-v1", "v1", ppPrinc, "200", "mutual_tls")
		return series(metricRequests, 1.7e308, l...) + strings.Replace(series(metricRequests, 1.7e308, l...), "200", "201", 1) +
			"# TYPE istio_request_duration_milliseconds histogram\n" +
			"istio_request_duration_milliseconds_bucket{le=\"-Inf\"} 1\nistio_request_duration_milliseconds_bucket{le=\"" + v + "\"} 5\n" +
			"istio_request_duration_milliseconds_bucket{le=\"+Inf\"} 5\nistio_request_duration_milliseconds_count 5\n"
	}
	g := compute(twoScrapes(t, map[string]func(bool) string{"reviews-v1": page}), time.Now())
	if _, err := json.Marshal(g); err != nil {
		t.Fatalf("graph not encodable: %v\n%+v", err, g)
	}
}
