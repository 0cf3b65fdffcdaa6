package buildcache

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Owner owns the Tables of one control plane process and their generations. It is a
// prometheus.Collector of the metrics of its Tables and of every Slot. Safe for concurrent use.
type Owner struct {
	mu     sync.Mutex
	gen    uint64
	tables []table
}

// table is what the Owner needs of a Table of any types.
type table interface {
	rotate(gen uint64)
	stats() (name string, c *counters, size int)
}

// New returns an Owner without tables.
func New() *Owner { return &Owner{} }

func (o *Owner) register(t table) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.tables = append(o.tables, t)
}

// Advance starts generation gen (the version of a snapshot newer than any translated before)
// in every table: entries that neither gen nor the generation before it used are evicted, also
// in tables this generation does not touch. An older gen is ignored.
func (o *Owner) Advance(gen uint64) {
	o.mu.Lock()
	if gen <= o.gen {
		o.mu.Unlock()
		return
	}
	o.gen = gen
	tables := o.tables
	o.mu.Unlock()
	for _, t := range tables {
		t.rotate(gen)
	}
}

// Size returns the number of entries held by all tables (both generations).
func (o *Owner) Size() int {
	n := 0
	for _, t := range o.snapshotTables() {
		_, _, size := t.stats()
		n += size
	}
	return n
}

func (o *Owner) snapshotTables() []table {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.tables
}

var (
	readsDesc = prometheus.NewDesc("strait_build_cache_reads_total",
		"Reads of a cache of built control-plane output, by cache and type (hit or miss).", []string{"cache", "type"}, nil)
	sizeDesc = prometheus.NewDesc("strait_build_cache_size",
		"Entries held by a cache of built control-plane output (carried-over tables: both generations; per-snapshot slots: every live snapshot).", []string{"cache"}, nil)
	evictionsDesc = prometheus.NewDesc("strait_build_cache_evictions_total",
		"Entries of a carried-over cache dropped because no proxy used them for a whole generation.", []string{"cache"}, nil)
)

// Describe implements prometheus.Collector.
func (o *Owner) Describe(ch chan<- *prometheus.Desc) {
	ch <- readsDesc
	ch <- sizeDesc
	ch <- evictionsDesc
}

// Collect implements prometheus.Collector: one series per Table of o and per Slot (tables of one
// name are summed).
func (o *Owner) Collect(ch chan<- prometheus.Metric) {
	type sums struct{ hits, misses, evictions, size int64 }
	byName := map[string]*sums{}
	var order []string
	add := func(name string, c *counters, size int64, evictable bool) {
		s := byName[name]
		if s == nil {
			s = &sums{evictions: -1}
			byName[name] = s
			order = append(order, name)
		}
		s.hits += c.hits.Load()
		s.misses += c.misses.Load()
		s.size += size
		if evictable {
			s.evictions = max(s.evictions, 0) + c.evictions.Load()
		}
	}
	for _, t := range o.snapshotTables() {
		name, c, size := t.stats()
		add(name, c, int64(size), true)
	}
	for _, s := range allSlots() {
		add(s.name, &s.counters, s.live.Load(), false)
	}
	for _, name := range order {
		s := byName[name]
		ch <- prometheus.MustNewConstMetric(readsDesc, prometheus.CounterValue, float64(s.hits), name, "hit")
		ch <- prometheus.MustNewConstMetric(readsDesc, prometheus.CounterValue, float64(s.misses), name, "miss")
		ch <- prometheus.MustNewConstMetric(sizeDesc, prometheus.GaugeValue, float64(s.size), name)
		if s.evictions >= 0 {
			ch <- prometheus.MustNewConstMetric(evictionsDesc, prometheus.CounterValue, float64(s.evictions), name)
		}
	}
}
