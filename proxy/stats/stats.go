// Package stats is strait-proxy's lean metrics store: named counters and gauges backed by atomics,
// rendered in Envoy's /stats text form and in Prometheus exposition format. Components look a
// metric up once, when config is compiled, and keep the pointer; the request path only does atomic
// adds. It deliberately does not use client_golang: the proxy must stay small.
package stats

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// Counter is a monotonically increasing value.
type Counter struct{ v atomic.Uint64 }

// Inc adds one.
func (c *Counter) Inc() { c.v.Add(1) }

// Add adds n.
func (c *Counter) Add(n uint64) { c.v.Add(n) }

// Value returns the current value.
func (c *Counter) Value() uint64 { return c.v.Load() }

// Gauge is a value that goes up and down.
type Gauge struct{ v atomic.Int64 }

// Inc adds one.
func (g *Gauge) Inc() { g.v.Add(1) }

// Dec subtracts one.
func (g *Gauge) Dec() { g.v.Add(-1) }

// Set sets the value.
func (g *Gauge) Set(n int64) { g.v.Store(n) }

// Value returns the current value.
func (g *Gauge) Value() int64 { return g.v.Load() }

// Tag is one Prometheus label on a metric.
type Tag struct{ Name, Value string }

type entry struct {
	name    string // Envoy-style dotted name, e.g. cluster.outbound|80||a.b.upstream_rq_total
	prom    string // Prometheus name, e.g. envoy_cluster_upstream_rq_total
	tags    []Tag
	counter *Counter
	gauge   *Gauge
	fn      func() (int64, bool) // a GaugeFunc: computed when rendered; false: no value (omitted)
	cfn     func() uint64        // a CounterFunc: computed when rendered
}

// Store holds all metrics of one proxy. It is safe for concurrent use. Metrics are never removed
// (a removed cluster's counters stay, as in Envoy until restart), so pointers stay valid.
type Store struct {
	mu         sync.Mutex
	entries    map[string]*entry
	collectors []Collector
	counts     map[string][]atomic.Uint64 // Counts
}

// Collector renders metrics kept outside the store (e.g. labelled histograms) in Prometheus
// text format; WritePrometheus appends its output after the store's own metrics. It must be
// safe for concurrent use and write whole families with their # TYPE lines.
type Collector interface {
	WritePrometheus(w io.Writer) error
}

// AddCollector adds c to the store's Prometheus output.
func (s *Store) AddCollector(c Collector) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.collectors = append(s.collectors, c)
}

// NewStore returns an empty store.
func NewStore() *Store { return &Store{entries: make(map[string]*entry)} }

// Counter returns the counter with the given Envoy-style name, creating it on first use. prom is
// the Prometheus metric name and tags its labels; both are fixed by the first call for a name.
func (s *Store) Counter(name, prom string, tags ...Tag) *Counter {
	return metric(s, name, prom, tags, func(e *entry) **Counter { return &e.counter })
}

// Gauge returns the gauge with the given Envoy-style name, creating it on first use.
func (s *Store) Gauge(name, prom string, tags ...Tag) *Gauge {
	return metric(s, name, prom, tags, func(e *entry) **Gauge { return &e.gauge })
}

// metric returns the metric of name that field selects in its entry, creating the entry (which
// replaces one of another kind) and the metric on first use.
func metric[M any](s *Store, name, prom string, tags []Tag, field func(*entry) **M) *M {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.entries[name]; ok && *field(e) != nil {
		return *field(e)
	}
	m := new(M)
	e := &entry{name: name, prom: PromName(prom), tags: promTags(tags)}
	*field(e) = m
	s.entries[name] = e
	return m
}

// Counts returns the n counts registered under key, made (zero) on first use: counts that all
// users of the store with the same key share, such as a histogram's per-bucket counts, which
// every connection manager with the same stat prefix adds to and which CounterFunc renders
// (the function registered first stays, so the counts it reads must be the ones later users
// add to). A later call with another n gets the first call's counts.
func (s *Store) Counts(key string, n int) []atomic.Uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.counts[key]; ok {
		return c
	}
	if s.counts == nil {
		s.counts = make(map[string][]atomic.Uint64)
	}
	c := make([]atomic.Uint64, n)
	s.counts[key] = c
	return c
}

// GaugeFunc registers a gauge whose value f computes each time the store is rendered; while f
// reports false the metric is omitted (no sample is better than a wrong one, e.g. a certificate
// expiry before the first certificate). f must be cheap and safe for concurrent use. A second
// call for the same name keeps the first function.
func (s *Store) GaugeFunc(name, prom string, f func() (int64, bool), tags ...Tag) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.entries[name]; ok && e.fn != nil {
		return
	}
	s.entries[name] = &entry{name: name, prom: PromName(prom), tags: promTags(tags), fn: f}
}

// CounterFunc registers a counter whose value f computes each time the store is rendered (e.g.
// a cumulative histogram bucket summed from per-bucket counts, so that an observation adds to
// one count instead of every bucket above it). f must be cheap, safe for concurrent use, and
// never decrease. A second call for the same name keeps the first function.
func (s *Store) CounterFunc(name, prom string, f func() uint64, tags ...Tag) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.entries[name]; ok && e.cfn != nil {
		return
	}
	s.entries[name] = &entry{name: name, prom: PromName(prom), tags: promTags(tags), cfn: f}
}

// PromName returns name as a valid Prometheus metric name, as Envoy's exposition sanitizes stat
// names: every character other than [a-zA-Z0-9_:] becomes '_', and a leading digit gets a '_'
// before it (e.g. "envoy_listener_ssl.connection_error" → "envoy_listener_ssl_connection_error").
func PromName(name string) string {
	ok := name != "" && !(name[0] >= '0' && name[0] <= '9')
	for i := 0; ok && i < len(name); i++ {
		ok = nameChar(name[i])
	}
	if ok {
		return name
	}
	var b strings.Builder
	if name == "" || (name[0] >= '0' && name[0] <= '9') {
		b.WriteByte('_')
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; nameChar(c) {
			b.WriteByte(c)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

func nameChar(c byte) bool {
	return c == '_' || c == ':' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}

// promTags returns tags with valid label names (no ':' either, as Prometheus requires).
func promTags(tags []Tag) []Tag {
	for i, t := range tags {
		if n := strings.ReplaceAll(PromName(t.Name), ":", "_"); n != t.Name {
			out := append([]Tag(nil), tags...)
			out[i].Name = n
			return promTags(out)
		}
	}
	return tags
}

// WriteLabelValue writes v escaped for a quoted Prometheus label value: backslash, double quote
// and newline are escaped as the text format defines, and bytes that are not valid UTF-8 become
// U+FFFD (Prometheus refuses the whole scrape over one invalid label value, and values can come
// from requests, e.g. a Host header).
func WriteLabelValue(b *strings.Builder, v string) {
	for i := 0; i < len(v); {
		c := v[i]
		if c < utf8.RuneSelf {
			switch c {
			case '\\':
				b.WriteString(`\\`)
			case '"':
				b.WriteString(`\"`)
			case '\n':
				b.WriteString(`\n`)
			default:
				b.WriteByte(c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(v[i:])
		if r == utf8.RuneError && n == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(v[i : i+n])
		}
		i += n
	}
}

func (s *Store) sorted() []*entry {
	s.mu.Lock()
	out := make([]*entry, 0, len(s.entries))
	for _, e := range s.entries {
		out = append(out, e)
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// value returns the rendered value, and false for a GaugeFunc without one.
func (e *entry) value() (string, bool) {
	switch {
	case e.counter != nil:
		return fmt.Sprint(e.counter.Value()), true
	case e.cfn != nil:
		return fmt.Sprint(e.cfn()), true
	case e.fn != nil:
		v, ok := e.fn()
		return fmt.Sprint(v), ok
	}
	return fmt.Sprint(e.gauge.Value()), true
}

// WriteText writes "name: value" lines as Envoy's /stats does, sorted by name. A non-empty filter
// keeps only names containing it.
func (s *Store) WriteText(w io.Writer, filter string) error {
	for _, e := range s.sorted() {
		if filter != "" && !strings.Contains(e.name, filter) {
			continue
		}
		v, ok := e.value()
		if !ok {
			continue
		}
		if _, err := fmt.Fprintf(w, "%s: %s\n", e.name, v); err != nil {
			return err
		}
	}
	return nil
}

// WritePrometheus writes the metrics in Prometheus text exposition format (version 0.0.4).
func (s *Store) WritePrometheus(w io.Writer) error {
	byProm := map[string][]*entry{}
	var names []string
	vals := map[*entry]string{}
	for _, e := range s.sorted() {
		v, ok := e.value()
		if !ok {
			continue
		}
		vals[e] = v
		if _, ok := byProm[e.prom]; !ok {
			names = append(names, e.prom)
		}
		byProm[e.prom] = append(byProm[e.prom], e)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		es := byProm[n]
		typ := "counter"
		if es[0].counter == nil && es[0].cfn == nil {
			typ = "gauge"
		}
		fmt.Fprintf(&b, "# TYPE %s %s\n", n, typ)
		for _, e := range es {
			b.WriteString(n)
			if len(e.tags) > 0 {
				b.WriteByte('{')
				for i, t := range e.tags {
					if i > 0 {
						b.WriteByte(',')
					}
					b.WriteString(t.Name)
					b.WriteString(`="`)
					WriteLabelValue(&b, t.Value)
					b.WriteByte('"')
				}
				b.WriteByte('}')
			}
			b.WriteByte(' ')
			b.WriteString(vals[e])
			b.WriteByte('\n')
		}
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}
	s.mu.Lock()
	cs := append([]Collector(nil), s.collectors...)
	s.mu.Unlock()
	for _, c := range cs {
		if err := c.WritePrometheus(w); err != nil {
			return err
		}
	}
	return nil
}
