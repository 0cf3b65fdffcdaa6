// Package topology computes the mesh's live service graph for straitd's dashboard. straitd
// scrapes every connected proxy's Prometheus statistics itself (at the address the proxy's
// node metadata reports, node.MetaStatsAddress), keeps each proxy's last two samples of Istio's
// standard metrics in memory, and computes from them, as Kiali does from Prometheus, the
// workloads and services and the traffic between them: requests per second, the 5xx share,
// p50/p99 latency, TCP bytes per second and whether the traffic is mutual TLS.
//
// Everything is bounded: the scrape's timeout, body size, line length, number of series per
// proxy and in all, number of proxies and concurrent scrapes.
package topology

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strait-mesh/strait/internal/boundedhttp"
)

// StatsPath is the path scraped on each proxy's stats address.
const StatsPath = "/stats/prometheus"

// Defaults of Options.
const (
	DefaultInterval    = 5 * time.Second
	DefaultTimeout     = 3 * time.Second
	DefaultMaxBody     = 8 << 20
	DefaultConcurrency = 4
	DefaultMaxSeries   = 20_000  // Istio's series kept per proxy
	DefaultTotalSeries = 200_000 // Istio's series kept per sample over all proxies
	DefaultMaxTargets  = 1_000
	DefaultIdle        = 2 * time.Minute
)

// Target is a connected proxy to scrape.
type Target struct {
	Proxy     string // node ID
	Workload  string // workload name (node ID name part)
	Namespace string
	Gateway   bool   // a router proxy
	Address   string // host:port of its /stats/prometheus, as its node reported it; "" for none
	// Problem, when set, says why the proxy is not scraped (Address is then ignored).
	Problem string
}

// Options configure a Scraper. Zero values select the defaults.
type Options struct {
	// Targets returns the proxies to scrape, called once per round. Required.
	Targets func() []Target
	// Interval between scrape rounds (DefaultInterval).
	Interval time.Duration
	// Timeout bounds one proxy's scrape (DefaultTimeout).
	Timeout time.Duration
	// MaxBody bounds the bytes read of one scrape (DefaultMaxBody); a larger body fails it.
	MaxBody int64
	// Concurrency bounds the scrapes in flight (DefaultConcurrency).
	Concurrency int
	// MaxSeries bounds the series of Istio's metrics kept of one proxy (DefaultMaxSeries); a
	// proxy with more fails its scrape.
	MaxSeries int
	// TotalSeries bounds the series kept per sample over all proxies (DefaultTotalSeries):
	// proxies past it, in node ID order, keep no sample and are listed in Graph.Truncated.
	TotalSeries int
	// MaxTargets bounds the proxies scraped per round (DefaultMaxTargets), in node ID order.
	MaxTargets int
	// Client makes the requests (default: no redirects, no proxy from the environment).
	Client *http.Client
	// Idle is how long rounds go on after the last call of Graph (default DefaultIdle):
	// nobody looking, nothing scraped. Negative: always scrape.
	Idle time.Duration
	// Now returns the time (default time.Now).
	Now    func() time.Time
	Logger *slog.Logger
}

// Scraper scrapes the proxies and keeps the latest graph. Run drives it; Graph is safe for
// concurrent use.
type Scraper struct {
	o     Options
	mu    sync.Mutex // serialises rounds and guards state
	state map[string]*proxyState
	graph atomic.Pointer[Graph]
	asked atomic.Int64  // Unix nanoseconds of the latest Graph call
	wake  chan struct{} // a Graph call after an idle time asks Run for a round now
}

// proxyState is the last two samples of one proxy.
type proxyState struct {
	target     Target
	prev, cur  sample
	prevAt, at time.Time
	err        string
}

// New returns a Scraper; it scrapes nothing until Run or ScrapeOnce.
func New(o Options) *Scraper {
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxBody <= 0 {
		o.MaxBody = DefaultMaxBody
	}
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.MaxSeries <= 0 {
		o.MaxSeries = DefaultMaxSeries
	}
	if o.TotalSeries <= 0 {
		o.TotalSeries = DefaultTotalSeries
	}
	if o.MaxTargets <= 0 {
		o.MaxTargets = DefaultMaxTargets
	}
	if o.Client == nil {
		o.Client = &http.Client{
			Transport: &http.Transport{
				Proxy:                 nil, // the proxies' addresses are reached directly
				DialContext:           (&net.Dialer{Timeout: o.Timeout}).DialContext,
				MaxIdleConnsPerHost:   1,
				IdleConnTimeout:       2 * o.Interval,
				ResponseHeaderTimeout: o.Timeout,
				DisableCompression:    true,
			},
			CheckRedirect: boundedhttp.NoRedirects,
		}
	}
	if o.Idle == 0 {
		o.Idle = DefaultIdle
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	s := &Scraper{o: o, state: map[string]*proxyState{}, wake: make(chan struct{}, 1)}
	s.graph.Store(compute(nil, o.Now()))
	return s
}

// Run scrapes every Interval until ctx ends; it returns nil then. While nobody called Graph
// for Idle it skips rounds and forgets the samples (a rate over the gap would mislead); the
// next Graph call starts a round at once.
func (s *Scraper) Run(ctx context.Context) error {
	t := time.NewTicker(s.o.Interval)
	defer t.Stop()
	for {
		if s.wanted() {
			s.ScrapeOnce(ctx)
		} else {
			s.forget()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-s.wake:
		}
	}
}

// Graph returns the graph computed after the latest round (never nil), and records that
// someone is looking (see Run). The caller must not modify it.
func (s *Scraper) Graph() *Graph {
	now := s.o.Now().UnixNano()
	if last := s.asked.Swap(now); time.Duration(now-last) > s.o.Idle {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	return s.graph.Load()
}

// wanted reports whether Graph was called within Idle.
func (s *Scraper) wanted() bool {
	return s.o.Idle < 0 || time.Duration(s.o.Now().UnixNano()-s.asked.Load()) <= s.o.Idle
}

// forget drops every sample and graph, once nobody is looking.
func (s *Scraper) forget() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.state) > 0 {
		s.state = map[string]*proxyState{}
		s.graph.Store(compute(nil, s.o.Now()))
	}
}

// ScrapeOnce scrapes every target once (at most Concurrency at a time), then computes the graph.
func (s *Scraper) ScrapeOnce(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	targets := slices.Clone(s.o.Targets())
	slices.SortFunc(targets, func(a, b Target) int { return cmp.Compare(a.Proxy, b.Proxy) })
	targets = slices.CompactFunc(targets, func(a, b Target) bool { return a.Proxy == b.Proxy })
	var truncated []string
	if len(targets) > s.o.MaxTargets {
		truncated = append(truncated, fmt.Sprintf("%d proxies not scraped (limit %d)", len(targets)-s.o.MaxTargets, s.o.MaxTargets))
		targets = targets[:s.o.MaxTargets]
	}

	type result struct {
		smp sample
		at  time.Time
		err error
	}
	results := make([]result, len(targets))
	sem := make(chan struct{}, s.o.Concurrency)
	var wg sync.WaitGroup
	for i, t := range targets {
		switch {
		case t.Problem != "":
			results[i].err = errors.New(t.Problem)
			continue
		case t.Address == "":
			results[i].err = errNoAddress
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			smp, err := s.scrape(ctx, t.Address)
			results[i] = result{smp, s.o.Now(), err}
		}()
	}
	wg.Wait()

	next := make(map[string]*proxyState, len(targets))
	in := make([]proxyData, 0, len(targets))
	total, over := 0, 0
	for i, t := range targets {
		st := s.state[t.Proxy]
		if st == nil || st.target != t { // new proxy, or it moved: start over
			st = &proxyState{target: t}
		}
		r := results[i]
		switch {
		case r.err != nil:
			if !errors.Is(r.err, errNoAddress) && t.Problem == "" {
				s.o.Logger.Debug("scraping proxy stats", "proxy", t.Proxy, "address", t.Address, "error", r.err)
			}
			// A failed scrape drops the samples: a rate over a gap would mislead.
			st = &proxyState{target: t, err: r.err.Error()}
		case total+len(r.smp) > s.o.TotalSeries:
			over++
			st = &proxyState{target: t, err: fmt.Sprintf("not kept: the scraper's limit of %d series in all is reached", s.o.TotalSeries)}
		default:
			total += len(r.smp)
			st.prev, st.prevAt = st.cur, st.at
			st.cur, st.at, st.err = r.smp, r.at, ""
		}
		next[t.Proxy] = st
		in = append(in, proxyData{target: t, prev: st.prev, cur: st.cur, prevAt: st.prevAt, at: st.at})
	}
	if over > 0 {
		truncated = append(truncated, fmt.Sprintf("%d proxies' samples not kept (limit %d series)", over, s.o.TotalSeries))
	}
	s.state = next
	g := compute(in, s.o.Now())
	for _, t := range targets {
		st := next[t.Proxy]
		g.Proxies = append(g.Proxies, ProxyScrape{Proxy: t.Proxy, Address: t.Address, LastScrape: st.at, Series: len(st.cur), Error: st.err})
	}
	g.Truncated = truncated
	s.graph.Store(g)
}

// errNoAddress is the scrape error of a proxy that reported no stats address.
var errNoAddress = errors.New("the proxy reports no stats address (node metadata STATS_ADDRESS)")

// scrape fetches and parses one proxy's statistics.
func (s *Scraper) scrape(ctx context.Context, addr string) (sample, error) {
	ctx, cancel := context.WithTimeout(ctx, s.o.Timeout)
	defer cancel()
	body, err := boundedhttp.Get(ctx, s.o.Client, "http://"+addr+StatsPath, "text/plain;version=0.0.4", s.o.MaxBody)
	if err != nil {
		var ne net.Error
		if ctx.Err() != nil || (errors.As(err, &ne) && ne.Timeout()) {
			return nil, fmt.Errorf("scraping %s: no answer within %v: %w", addr, s.o.Timeout, err)
		}
		return nil, fmt.Errorf("scraping %s: %w", addr, err)
	}
	smp, err := parseExposition(body, s.o.MaxSeries)
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w", addr, err)
	}
	return smp, nil
}
