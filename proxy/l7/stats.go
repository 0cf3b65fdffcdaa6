package l7

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strait-mesh/strait/proxy/route"
	"github.com/strait-mesh/strait/proxy/stats"
)

// hcmStats are the http.<stat_prefix>.* statistics, looked up once at compile time.
type hcmStats struct {
	store             *stats.Store
	prefix            string
	cxTotal           *stats.Counter
	cxActive          *stats.Gauge
	cxHTTP1, cxHTTP2  *stats.Counter
	rqHTTP1, rqHTTP2  *stats.Counter    // downstream_rq_total is their sum
	rqXX              [6]*stats.Counter // index 1..5
	rqTimeout         *stats.Counter
	rqHeadersTooLarge *stats.Counter
	rqTime            latency
	noRoute           *stats.Counter
	noCluster         *stats.Counter
	rqRedirect        *stats.Counter
	rqDirect          *stats.Counter
	faultDelays       *stats.Counter
	faultAborts       *stats.Counter
	corsPreflight     *stats.Counter
	corsOriginInvalid *stats.Counter
	flagCounters      [flagCount]*stats.Counter
}

func newHCMStats(s *stats.Store, prefix string) *hcmStats {
	tag := stats.Tag{Name: "envoy_http_conn_manager_prefix", Value: prefix}
	c := func(name string) *stats.Counter {
		return s.Counter("http."+prefix+"."+name, "envoy_http_"+name, tag)
	}
	st := &hcmStats{
		store:             s,
		prefix:            prefix,
		cxTotal:           c("downstream_cx_total"),
		cxActive:          s.Gauge("http."+prefix+".downstream_cx_active", "envoy_http_downstream_cx_active", tag),
		cxHTTP1:           c("downstream_cx_http1_total"),
		cxHTTP2:           c("downstream_cx_http2_total"),
		rqHTTP1:           c("downstream_rq_http1_total"),
		rqHTTP2:           c("downstream_rq_http2_total"),
		rqTimeout:         c("downstream_rq_timeout"),
		rqHeadersTooLarge: c("downstream_rq_header_too_large"),
		rqTime:            newLatency(s, "http."+prefix+".downstream_rq_time", "envoy_http_downstream_rq_time", tag),
		noRoute:           c("no_route"),
		noCluster:         c("no_cluster"),
		rqRedirect:        c("rq_redirect"),
		rqDirect:          c("rq_direct_response"),
		faultDelays:       c("fault.delays_injected"),
		faultAborts:       c("fault.aborts_injected"),
		corsPreflight:     c("cors.origin_valid"),
		corsOriginInvalid: c("cors.origin_invalid"),
	}
	// Counted once per request, not each on its own: downstream_rq_total (every request
	// counts as HTTP/1 or HTTP/2 when it starts), downstream_rq_completed (every request that
	// ends is observed in downstream_rq_time) and downstream_rq_active (their difference).
	s.CounterFunc("http."+prefix+".downstream_rq_total", "envoy_http_downstream_rq_total", st.rqTotal, tag)
	s.CounterFunc("http."+prefix+".downstream_rq_completed", "envoy_http_downstream_rq_completed", st.rqTime.total, tag)
	s.GaugeFunc("http."+prefix+".downstream_rq_active", "envoy_http_downstream_rq_active",
		func() (int64, bool) { return st.rqActive(), true }, tag)
	for i := 1; i <= 5; i++ {
		st.rqXX[i] = s.Counter("http."+prefix+".downstream_rq_"+strconv.Itoa(i)+"xx", "envoy_http_downstream_rq_xx",
			tag, stats.Tag{Name: "envoy_response_code_class", Value: strconv.Itoa(i)})
	}
	for i := 0; i < flagCount; i++ {
		st.flagCounters[i] = s.Counter("http."+prefix+".downstream_rq_response_flags."+flagNames[i],
			"envoy_http_downstream_rq_response_flags", tag, stats.Tag{Name: "response_flags", Value: flagNames[i]})
	}
	return st
}

// rqTotal is downstream_rq_total: the requests started.
func (st *hcmStats) rqTotal() uint64 { return st.rqHTTP1.Value() + st.rqHTTP2.Value() }

// rqActive is downstream_rq_active: the requests started and not ended. The ended ones are
// read first, so that a request ending meanwhile is not counted as ended but not started.
func (st *hcmStats) rqActive() int64 {
	done := st.rqTime.total()
	return int64(st.rqTotal() - done)
}

func (st *hcmStats) status(code int) {
	if c := code / 100; c >= 1 && c <= 5 {
		st.rqXX[c].Inc()
	}
}

func (st *hcmStats) flags(f ResponseFlags) {
	for i := 0; i < flagCount; i++ {
		if f&(1<<i) != 0 {
			st.flagCounters[i].Inc()
		}
	}
}

// clusterStats are the per-cluster counters the router records (cluster.<name>.upstream_rq_*).
type clusterStats struct {
	store   *stats.Store
	name    string
	retry   *stats.Counter
	retryOK *stats.Counter
	perTry  *stats.Counter
	codes   sync.Map // int -> *codeCounter
	// last is the code counted last: most responses repeat it, and a hit spares the map.
	last atomic.Pointer[codeCounter]
}

// codeCounter is a cluster's upstream_rq_<code> counter.
type codeCounter struct {
	code int
	c    *stats.Counter
}

func (h *Handler) clusterStats(name string) *clusterStats {
	if v, ok := h.clusters.Load(name); ok {
		return v.(*clusterStats)
	}
	s := h.opts.Stats
	tag := stats.Tag{Name: "envoy_cluster_name", Value: name}
	c := func(n string) *stats.Counter {
		return s.Counter("cluster."+name+"."+n, "envoy_cluster_"+n, tag)
	}
	// The response classes (upstream_rq_2xx...) and upstream_rq_timeout are counted by the
	// upstream package; the router adds exact codes and retry statistics.
	cs := &clusterStats{store: s, name: name, retry: c("upstream_rq_retry"), retryOK: c("upstream_rq_retry_success"),
		perTry: c("upstream_rq_per_try_timeout")}
	v, _ := h.clusters.LoadOrStore(name, cs)
	return v.(*clusterStats)
}

func (cs *clusterStats) code(code int) {
	cc := cs.last.Load()
	if cc == nil || cc.code != code {
		cc = cs.codeCounter(code)
		cs.last.Store(cc)
	}
	cc.c.Inc()
}

func (cs *clusterStats) codeCounter(code int) *codeCounter {
	if v, ok := cs.codes.Load(code); ok {
		return v.(*codeCounter)
	}
	ctr := cs.store.Counter("cluster."+cs.name+".upstream_rq_"+strconv.Itoa(code), "envoy_cluster_upstream_rq",
		stats.Tag{Name: "envoy_cluster_name", Value: cs.name}, stats.Tag{Name: "envoy_response_code", Value: strconv.Itoa(code)})
	v, _ := cs.codes.LoadOrStore(code, &codeCounter{code: code, c: ctr})
	return v.(*codeCounter)
}

// streamClusterStats returns the stats of the stream's cluster: the connection's last ones
// when the cluster (and stats store) is the same, which spares the lookup by name.
func (h *Handler) streamClusterStats(s *Stream) *clusterStats {
	if c := s.cs.lastCluster.Load(); c != nil && c.name == s.Cluster && c.store == h.opts.Stats {
		return c
	}
	c := h.clusterStats(s.Cluster)
	s.cs.lastCluster.Store(c)
	return c
}

// latencyBounds are Envoy's default histogram bucket bounds, in milliseconds.
var latencyBounds = [...]float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
	300000, 600000, 1800000, 3600000}

// latency is a Prometheus-style cumulative histogram (in milliseconds) built from counters,
// since the stats store has no histogram type: <prom>_bucket{le=...}, <prom>_sum, <prom>_count.
// An observation adds to its own bucket's count only; the cumulative buckets are summed when
// the store is rendered (stats.CounterFunc).
type latency struct {
	counts []atomic.Uint64 // per bucket, not cumulative; the last is +Inf (shared: stats.Store.Counts)
	sumUs  *stats.Counter  // microseconds, so that sub-millisecond requests add up
	sum    *stats.Counter
}

// latencyBoundsUs are latencyBounds in microseconds (each is a whole number of them).
var latencyBoundsUs = func() (b [len(latencyBounds)]uint64) {
	for i, ms := range latencyBounds {
		b[i] = uint64(ms * 1000)
	}
	return b
}()

func newLatency(s *stats.Store, name, prom string, tag stats.Tag) latency {
	l := latency{
		counts: s.Counts(name, len(latencyBounds)+1),
		sum:    s.Counter(name+"_sum", prom+"_sum", tag),
		sumUs:  s.Counter(name+"_sum_us", prom+"_sum_us", tag),
	}
	s.CounterFunc(name+"_count", prom+"_count", l.total, tag)
	counts := l.counts
	upTo := func(i int) func() uint64 {
		return func() uint64 {
			var n uint64
			for j := 0; j <= i; j++ {
				n += counts[j].Load()
			}
			return n
		}
	}
	for i, b := range latencyBounds {
		le := strconv.FormatFloat(b, 'f', -1, 64)
		s.CounterFunc(name+"_bucket.le_"+le, prom+"_bucket", upTo(i), tag, stats.Tag{Name: "le", Value: le})
	}
	s.CounterFunc(name+"_bucket.le_inf", prom+"_bucket", upTo(len(latencyBounds)), tag, stats.Tag{Name: "le", Value: "+Inf"})
	return l
}

// observe records one request duration.
func (l *latency) observe(d time.Duration) {
	us := uint64(d.Microseconds())
	l.sumUs.Add(us)
	l.sum.Add(us / 1000)
	// The bucket: the first bound not below the value (Prometheus' le), found from the
	// smallest, where most requests are.
	i := 0
	for i < len(latencyBoundsUs) && us > latencyBoundsUs[i] {
		i++
	}
	l.counts[i].Add(1)
}

// total is the observation count (<prom>_count): the sum of the bucket counts.
func (l latency) total() uint64 {
	var n uint64
	for i := range l.counts {
		n += l.counts[i].Load()
	}
	return n
}

// routeStats are the per-route statistics Envoy keeps for routes with a stat_prefix
// (vhost.<virtual host>.route.<stat_prefix>.*).
type routeStats struct {
	store     *stats.Store
	prefix    string
	tags      []stats.Tag
	total     *stats.Counter
	completed *stats.Counter
	timeout   *stats.Counter
	retry     *stats.Counter
	xx        [6]*stats.Counter
	codes     sync.Map // int -> *stats.Counter
}

func (h *Handler) routeStats(rt *route.Route) *routeStats {
	key := rt.VirtualHost.Name + "\x00" + rt.StatPrefix
	if v, ok := h.routes.Load(key); ok {
		return v.(*routeStats)
	}
	s := h.opts.Stats
	prefix := "vhost." + rt.VirtualHost.Name + ".route." + rt.StatPrefix + "."
	tags := []stats.Tag{{Name: "envoy_virtual_host", Value: rt.VirtualHost.Name}, {Name: "envoy_route", Value: rt.StatPrefix}}
	c := func(n string) *stats.Counter { return s.Counter(prefix+n, "envoy_vhost_route_"+n, tags...) }
	rs := &routeStats{store: s, prefix: prefix, tags: tags, total: c("upstream_rq_total"), completed: c("upstream_rq_completed"),
		timeout: c("upstream_rq_timeout"), retry: c("upstream_rq_retry")}
	for i := 1; i <= 5; i++ {
		rs.xx[i] = s.Counter(prefix+"upstream_rq_"+strconv.Itoa(i)+"xx", "envoy_vhost_route_upstream_rq_xx",
			append(tags[:2:2], stats.Tag{Name: "envoy_response_code_class", Value: strconv.Itoa(i)})...)
	}
	v, _ := h.routes.LoadOrStore(key, rs)
	return v.(*routeStats)
}

func (rs *routeStats) code(code int) {
	rs.completed.Inc()
	if c := code / 100; c >= 1 && c <= 5 {
		rs.xx[c].Inc()
	}
	if v, ok := rs.codes.Load(code); ok {
		v.(*stats.Counter).Inc()
		return
	}
	ctr := rs.store.Counter(rs.prefix+"upstream_rq_"+strconv.Itoa(code), "envoy_vhost_route_upstream_rq",
		append(rs.tags[:2:2], stats.Tag{Name: "envoy_response_code", Value: strconv.Itoa(code)})...)
	v, _ := rs.codes.LoadOrStore(code, ctr)
	v.(*stats.Counter).Inc()
}
