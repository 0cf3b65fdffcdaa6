package topology

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock advances 10 s per call after the first of each round.
type fakeClock struct{ t atomic.Int64 }

func (c *fakeClock) now() time.Time { return time.Unix(c.t.Load(), 0) }

// page serves body on /stats/prometheus (loopback only, as every test server).
func page(t *testing.T, body func() string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != StatsPath {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(body()))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func addr(srv *httptest.Server) string { return strings.TrimPrefix(srv.URL, "http://") }

func TestScraperRates(t *testing.T) {
	var second atomic.Bool
	client := page(t, func() string { return productpage(second.Load()) })
	v1 := page(t, func() string { return reviewsV1(second.Load()) })
	clock := &fakeClock{}
	clock.t.Store(1_000)
	s := New(Options{Now: clock.now, Targets: func() []Target {
		return []Target{
			{Proxy: "sidecar~127.0.0.1~productpage-v1.shop~shop.svc.cluster.local", Workload: "productpage-v1", Namespace: "shop", Address: addr(client)},
			{Proxy: "sidecar~127.0.0.1~reviews-v1.shop~shop.svc.cluster.local", Workload: "reviews-v1", Namespace: "shop", Address: addr(v1)},
			{Proxy: "router~127.0.0.1~gw.istio-system~istio-system.svc.cluster.local", Workload: "gw", Namespace: "istio-system", Gateway: true},
		}
	}})
	if g := s.Graph(); g == nil || len(g.Nodes) != 0 {
		t.Fatalf("graph before the first scrape: %+v", g)
	}
	s.ScrapeOnce(context.Background())
	g := s.Graph()
	if e := findEdge(t, g, "workload:shop/productpage-v1", "service:"+reviews); e.RequestsPerSecond != 0 || e.Total != 100 {
		t.Errorf("after one scrape: %+v", e)
	}
	clock.t.Add(10)
	second.Store(true)
	s.ScrapeOnce(context.Background())
	g = s.Graph()
	if e := findEdge(t, g, "workload:shop/productpage-v1", "service:"+reviews); !near(e.RequestsPerSecond, 22) || !e.MTLS {
		t.Errorf("after two scrapes: %+v", e)
	}
	if e := findEdge(t, g, "service:"+reviews, "workload:shop/reviews-v1"); !near(e.RequestsPerSecond, 15) {
		t.Errorf("reviews → v1: %+v", e)
	}
	// The gateway without a stats address is a node, with its scrape error.
	var gw ProxyScrape
	for _, p := range g.Proxies {
		if strings.HasPrefix(p.Proxy, "router~") {
			gw = p
		}
	}
	if !strings.Contains(gw.Error, "STATS_ADDRESS") {
		t.Errorf("gateway scrape: %+v", gw)
	}
	found := false
	for _, n := range g.Nodes {
		found = found || (n.ID == "workload:istio-system/gw" && n.Kind == KindGateway)
	}
	if !found {
		t.Errorf("no gateway node in %+v", g.Nodes)
	}
}

// TestScraperLimits: every limit fails the scrape with an error saying which, and keeps
// nothing of that proxy.
func TestScraperLimits(t *testing.T) {
	big := page(t, func() string { return strings.Repeat("# padding\n", 20_000) })
	many := page(t, func() string { return productpage(true) }) // 15 series of Istio's metrics
	long := page(t, func() string {
		return "istio_requests_total{reporter=\"" + strings.Repeat("x", maxLineLength) + "\"} 1\n"
	})
	bad := page(t, func() string { return "istio_requests_total{reporter=\"source\" 1\n" })
	wrongType := page(t, func() string {
		return "# TYPE istio_request_duration_milliseconds counter\nistio_request_duration_milliseconds 1\n"
	})
	redirect := httptest.NewServer(http.RedirectHandler("/elsewhere", http.StatusFound))
	t.Cleanup(redirect.Close)
	block := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-block:
		}
	}))
	t.Cleanup(func() { close(block); slow.Close() })

	targets := []Target{
		{Proxy: "a-big", Address: addr(big)},
		{Proxy: "b-many", Address: addr(many)},
		{Proxy: "c-long", Address: addr(long)},
		{Proxy: "d-bad", Address: addr(bad)},
		{Proxy: "e-type", Address: addr(wrongType)},
		{Proxy: "f-redirect", Address: addr(redirect)},
		{Proxy: "g-slow", Address: addr(slow)},
		{Proxy: "h-problem", Address: addr(many), Problem: "not reachable from here"},
	}
	s := New(Options{MaxBody: 100_000, MaxSeries: 10, Timeout: 200 * time.Millisecond, Concurrency: 2,
		Targets: func() []Target { return targets }})
	s.ScrapeOnce(context.Background())
	want := map[string]string{
		"a-big":      "body larger than 100000 bytes",
		"b-many":     "more than 10 series",
		"c-long":     "token too long",
		"d-bad":      "parsing metrics",
		"e-type":     "want a histogram",
		"f-redirect": "302",
		"g-slow":     "no answer within 200ms",
		"h-problem":  "not reachable from here",
	}
	g := s.Graph()
	if len(g.Proxies) != len(want) {
		t.Fatalf("proxies: %+v", g.Proxies)
	}
	for _, p := range g.Proxies {
		if !strings.Contains(p.Error, want[p.Proxy]) || p.Series != 0 {
			t.Errorf("%s: error %q (series %d), want it to contain %q", p.Proxy, p.Error, p.Series, want[p.Proxy])
		}
	}
	if len(g.Edges) != 0 {
		t.Errorf("edges from failed scrapes: %+v", g.Edges)
	}
}

// TestScraperTotalLimits: proxies past MaxTargets are not scraped, and samples past
// TotalSeries are not kept; the graph says so.
func TestScraperTotalLimits(t *testing.T) {
	srv := page(t, func() string { return reviewsV1(true) }) // one series
	var targets []Target
	for _, name := range []string{"p1", "p2", "p3", "p4"} {
		targets = append(targets, Target{Proxy: name, Workload: name, Namespace: "shop", Address: addr(srv)})
	}
	s := New(Options{MaxTargets: 3, TotalSeries: 2, Targets: func() []Target { return targets }})
	s.ScrapeOnce(context.Background())
	g := s.Graph()
	if len(g.Proxies) != 3 || g.Proxies[0].Series != 1 || g.Proxies[1].Series != 1 || g.Proxies[2].Series != 0 ||
		!strings.Contains(g.Proxies[2].Error, "limit of 2 series") {
		t.Errorf("proxies: %+v", g.Proxies)
	}
	if len(g.Truncated) != 2 || !strings.Contains(g.Truncated[0], "1 proxies not scraped") {
		t.Errorf("truncated: %q", g.Truncated)
	}
}

// TestScraperForgetsOnError: a failed scrape drops the proxy's samples, so the next rate is
// not computed over the gap.
func TestScraperForgetsOnError(t *testing.T) {
	var n atomic.Int32
	srv := page(t, func() string {
		switch n.Add(1) {
		case 2:
			return "istio_requests_total{ 1\n" // malformed
		case 1:
			return reviewsV1(false)
		}
		return reviewsV1(true)
	})
	clock := &fakeClock{}
	s := New(Options{Now: clock.now, Targets: func() []Target {
		return []Target{{Proxy: "p", Workload: "reviews-v1", Namespace: "shop", Address: addr(srv)}}
	}})
	for i := 0; i < 3; i++ {
		clock.t.Add(10)
		s.ScrapeOnce(context.Background())
	}
	e := findEdge(t, s.Graph(), "service:"+reviews, "workload:shop/reviews-v1")
	if e.RequestsPerSecond != 0 || e.Total != 225 {
		t.Errorf("after an error: %+v", e)
	}
}

// TestScraperIdle: Run scrapes nothing until someone asks for the graph, and stops once
// nobody has for Idle.
func TestScraperIdle(t *testing.T) {
	hits := make(chan struct{}, 10)
	srv := page(t, func() string { hits <- struct{}{}; return reviewsV1(true) })
	clock := &fakeClock{}
	clock.t.Store(1_000)
	s := New(Options{Interval: time.Hour, Idle: time.Minute, Now: clock.now, Targets: func() []Target {
		return []Target{{Proxy: "p", Workload: "reviews-v1", Namespace: "shop", Address: addr(srv)}}
	}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if s.wanted() {
		t.Fatal("wanted before anyone asked")
	}
	s.Graph() // wakes Run
	select {
	case <-hits:
	case <-time.After(30 * time.Second):
		t.Fatal("no scrape after the graph was asked for")
	}
	clock.t.Add(61)
	if s.wanted() {
		t.Error("still wanted after the idle time")
	}
}
