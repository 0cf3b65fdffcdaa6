package telemetry

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	udpatypev1 "github.com/cncf/xds/go/udpa/type/v1"
	xdstypev3 "github.com/cncf/xds/go/xds/type/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	statspb "istio.io/api/envoy/extensions/stats"

	"github.com/strait-mesh/strait/proxy/attributes"
	"github.com/strait-mesh/strait/proxy/xdsfield"
)

// Type URLs of Istio's stats filter (istio.stats) configuration: the PluginConfig itself, or a
// TypedStruct carrying it (as EnvoyFilters and older control planes write it).
const (
	TypeStatsPluginConfig = "type.googleapis.com/stats.PluginConfig"
	TypeUDPATypedStruct   = "type.googleapis.com/udpa.type.v1.TypedStruct"
	TypeXDSTypedStruct    = "type.googleapis.com/xds.type.v3.TypedStruct"
)

// MaxDimensionExpressions bounds the distinct dimension expressions of one istio.stats filter;
// each is evaluated on every request the filter sees.
const MaxDimensionExpressions = 8

// The standard metrics an override may name (without the istio_ prefix), by family.
var (
	httpMetricNames = [...]string{"requests_total", "request_duration_milliseconds", "request_bytes", "response_bytes"}
	// Istio's gRPC streaming message counters: strait-proxy does not produce them, so an
	// override naming them has nothing to change.
	notProducedMetricNames = []string{"request_messages_total", "response_messages_total"}
	tcpMetricNames         = []string{"tcp_sent_bytes_total", "tcp_received_bytes_total", "tcp_connections_opened_total", "tcp_connections_closed_total"}
)

var labelName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// StatsConfig is a compiled istio.stats filter configuration (Istio's stats.PluginConfig). It is
// immutable and safe for concurrent use.
type StatsConfig struct {
	// DisableHostHeaderFallback: at the source reporter, a request to a cluster that does not
	// name its service (PassthroughCluster) reports destination_service "unknown" instead of
	// the request's host.
	DisableHostHeaderFallback bool
	// Overrides are the HTTP metric overrides; nil when there are none.
	Overrides *Overrides
}

// Overrides are the compiled metric overrides of an istio.stats filter for the HTTP metrics:
// per metric, whether it is dropped, which labels are removed and which are set from CEL
// expressions. Recorder.RecordHTTP applies them to a request whose HTTPRequest carries them.
type Overrides struct {
	// key identifies the overrides across configuration versions: series recorded with equal
	// keys are the same series.
	key     string
	metrics [len(httpMetricNames)]metricOverride
	exprs   []*attributes.Program // distinct dimension expressions, evaluated per request
	allDrop bool
}

type metricOverride struct {
	drop   bool
	remove []string
	dims   []dimension // in label name order
}

type dimension struct {
	label string
	expr  int // index in Overrides.exprs
}

// Dimensions holds one request's dimension values, by expression index; "" is not a value
// (the label is then "unknown", as Istio reports an expression that fails).
type Dimensions [MaxDimensionExpressions]string

// DropsAll reports whether every HTTP metric is dropped: the request need not be recorded.
func (o *Overrides) DropsAll() bool { return o != nil && o.allDrop }

// Evaluate computes the request's dimension values into d. An expression that fails (an absent
// attribute) leaves its value unset.
func (o *Overrides) Evaluate(r *attributes.Record, d *Dimensions) {
	for i, p := range o.exprs {
		if v, ok := p.Text(r); ok {
			d[i] = v
		} else {
			d[i] = ""
		}
	}
}

// HasDimensions reports whether any expression must be evaluated per request.
func (o *Overrides) HasDimensions() bool { return o != nil && len(o.exprs) > 0 }

// CompileStatsConfig decodes and compiles an istio.stats filter's typed_config (path names it
// in errors). Accepted: metrics (name, drop, tags_to_remove, dimensions) and
// disable_host_header_fallback. Refused by name as not supported yet: definitions (custom
// metrics), a metric's match, reporter, tcp_reporting_duration, rotation_interval,
// graceful_deletion_interval and the deprecated fields, and an override that changes a TCP
// metric (an unnamed override applies to them too). An override of a metric strait-proxy does
// not produce (request_messages_total, response_messages_total) changes nothing.
func CompileStatsConfig(path string, a *anypb.Any) (*StatsConfig, error) {
	pc, err := decodePluginConfig(path, a)
	if err != nil {
		return nil, err
	}
	if err := xdsfield.Check(pc, path, "metrics", "disable_host_header_fallback"); err != nil {
		return nil, err
	}
	c := &StatsConfig{DisableHostHeaderFallback: pc.GetDisableHostHeaderFallback()}
	if len(pc.GetMetrics()) == 0 {
		return c, nil
	}
	o := &Overrides{}
	exprIndex := map[string]int{}
	type state struct {
		remove map[string]bool
		dims   map[string]string
	}
	var st [len(httpMetricNames)]state
	for i := range st {
		st[i] = state{remove: map[string]bool{}, dims: map[string]string{}}
	}
	for i, m := range pc.GetMetrics() {
		p := fmt.Sprintf("%s.metrics[%d]", path, i)
		if err := xdsfield.Check(m, p, "name", "drop", "tags_to_remove", "dimensions"); err != nil {
			return nil, err
		}
		var targets []int
		switch name := m.GetName(); {
		case name == "":
			targets = []int{0, 1, 2, 3}
			if changes(m) {
				return nil, xdsfield.Unsupported(p, "overrides of the TCP metrics (an override without a name applies to them too); name an HTTP metric")
			}
		case slices.Contains(httpMetricNames[:], name):
			targets = []int{slices.Index(httpMetricNames[:], name)}
		case slices.Contains(notProducedMetricNames, name):
			continue
		case slices.Contains(tcpMetricNames, name):
			if changes(m) {
				return nil, xdsfield.Unsupported(p+".name", "overrides of %s (TCP metric overrides are not implemented yet)", name)
			}
			continue
		default:
			return nil, fmt.Errorf("%s.name: unknown metric %q (custom metrics are not supported)", p, name)
		}
		for j, t := range m.GetTagsToRemove() {
			if !labelName.MatchString(t) {
				return nil, fmt.Errorf("%s.tags_to_remove[%d]: %q is not a label name", p, j, t)
			}
		}
		for k, e := range m.GetDimensions() {
			if !labelName.MatchString(k) {
				return nil, fmt.Errorf("%s.dimensions: %q is not a label name", p, k)
			}
			if _, ok := exprIndex[e]; ok {
				continue
			}
			prg, err := attributes.Compile(e)
			if err != nil {
				return nil, fmt.Errorf("%s.dimensions[%q]: %w", p, k, err)
			}
			if len(o.exprs) == MaxDimensionExpressions {
				return nil, fmt.Errorf("%s.dimensions: more than %d distinct expressions", path, MaxDimensionExpressions)
			}
			exprIndex[e] = len(o.exprs)
			o.exprs = append(o.exprs, prg)
		}
		for _, t := range targets {
			mo := &o.metrics[t]
			mo.drop = mo.drop || m.GetDrop()
			for _, tag := range m.GetTagsToRemove() {
				st[t].remove[tag] = true
				delete(st[t].dims, tag)
			}
			for k, e := range m.GetDimensions() {
				st[t].dims[k] = e
				delete(st[t].remove, k)
			}
		}
	}
	var key strings.Builder
	o.allDrop = true
	for t := range o.metrics {
		mo := &o.metrics[t]
		o.allDrop = o.allDrop && mo.drop
		for tag := range st[t].remove {
			mo.remove = append(mo.remove, tag)
		}
		sort.Strings(mo.remove)
		for k, e := range st[t].dims {
			mo.dims = append(mo.dims, dimension{label: k, expr: exprIndex[e]})
		}
		sort.Slice(mo.dims, func(i, j int) bool { return mo.dims[i].label < mo.dims[j].label })
		fmt.Fprintf(&key, "%d:%v:%q:", t, mo.drop, mo.remove)
		for _, d := range mo.dims {
			fmt.Fprintf(&key, "%q=%q,", d.label, o.exprs[d.expr].String())
		}
		key.WriteByte(';')
	}
	o.key = key.String()
	if !o.allDrop && len(o.exprs) == 0 && !slices.ContainsFunc(o.metrics[:], func(m metricOverride) bool {
		return m.drop || len(m.remove) > 0
	}) {
		return c, nil // nothing changes
	}
	c.Overrides = o
	return c, nil
}

// changes reports whether a metric override changes anything.
func changes(m *statspb.MetricConfig) bool {
	return m.GetDrop() || len(m.GetTagsToRemove()) > 0 || len(m.GetDimensions()) > 0
}

// IsStatsConfig reports whether a is an istio.stats configuration: a stats.PluginConfig, or a
// TypedStruct carrying one.
func IsStatsConfig(a *anypb.Any) bool {
	switch a.GetTypeUrl() {
	case TypeStatsPluginConfig:
		return true
	case TypeUDPATypedStruct:
		var ts udpatypev1.TypedStruct
		return a.UnmarshalTo(&ts) == nil && ts.GetTypeUrl() == TypeStatsPluginConfig
	case TypeXDSTypedStruct:
		var ts xdstypev3.TypedStruct
		return a.UnmarshalTo(&ts) == nil && ts.GetTypeUrl() == TypeStatsPluginConfig
	}
	return false
}

// decodePluginConfig decodes stats.PluginConfig from its own Any or from a TypedStruct that
// carries it.
func decodePluginConfig(path string, a *anypb.Any) (*statspb.PluginConfig, error) {
	var pc statspb.PluginConfig
	var (
		inner string
		value *structpb.Struct
	)
	switch a.GetTypeUrl() {
	case TypeStatsPluginConfig:
		if err := a.UnmarshalTo(&pc); err != nil {
			return nil, fmt.Errorf("decoding %s: %w", path, err)
		}
		return &pc, nil
	case TypeUDPATypedStruct:
		var ts udpatypev1.TypedStruct
		if err := a.UnmarshalTo(&ts); err != nil {
			return nil, fmt.Errorf("decoding %s: %w", path, err)
		}
		inner, value = ts.GetTypeUrl(), ts.GetValue()
	case TypeXDSTypedStruct:
		var ts xdstypev3.TypedStruct
		if err := a.UnmarshalTo(&ts); err != nil {
			return nil, fmt.Errorf("decoding %s: %w", path, err)
		}
		inner, value = ts.GetTypeUrl(), ts.GetValue()
	default:
		return nil, xdsfield.Unsupported(path, "type %q", a.GetTypeUrl())
	}
	if inner != TypeStatsPluginConfig {
		return nil, xdsfield.Unsupported(path+".type_url", "TypedStruct of %q (only %s)", inner, TypeStatsPluginConfig)
	}
	js, err := protojson.Marshal(value)
	if err != nil {
		return nil, fmt.Errorf("decoding %s.value: %w", path, err)
	}
	if err := protojson.Unmarshal(js, &pc); err != nil {
		return nil, fmt.Errorf("decoding %s.value as stats.PluginConfig: %w", path, err)
	}
	return &pc, nil
}

// overKey is an overridden series: the series the request's standard labels give, the
// overrides, and the request's dimension values.
type overKey struct {
	base *httpSeries
	key  string
	dims Dimensions
}

// overSeries is an overridden HTTP series: its counters, and per metric its labels (or
// dropped).
type overSeries struct {
	httpSeries
	labels [len(httpMetricNames)]string
	drop   [len(httpMetricNames)]bool
}

// overridden returns the series that records a request whose standard series is base and which
// carries overrides; nil beyond the cap.
func (r *Recorder) overridden(base *httpSeries, q *HTTPRequest) *httpSeries {
	o := q.Overrides
	k := overKey{base: base, key: o.key}
	for _, m := range o.metrics {
		for _, d := range m.dims {
			k.dims[d.expr] = q.Dimensions[d.expr]
		}
	}
	s := r.over.get(k, func(k overKey) *overSeries {
		s := &overSeries{}
		pairs := parseLabels(r.httpLabels(k.base.key, k.base.flagText))
		for i, m := range o.metrics {
			s.drop[i] = m.drop
			s.labels[i] = m.apply(pairs, &k.dims)
		}
		return s
	})
	if s == nil {
		return nil
	}
	return &s.httpSeries
}

// apply renders the labels of one metric: the standard pairs without the removed ones, with
// the dimensions set in place or appended.
func (m *metricOverride) apply(pairs [][2]string, dims *Dimensions) string {
	var b labelWriter
	done := make([]bool, len(m.dims))
	for _, p := range pairs {
		if slices.Contains(m.remove, p[0]) {
			continue
		}
		v := p[1]
		for i, d := range m.dims {
			if d.label == p[0] {
				v, done[i] = dimValue(dims[d.expr]), true
			}
		}
		b.pair(p[0], v)
	}
	for i, d := range m.dims {
		if !done[i] {
			b.pair(d.label, dimValue(dims[d.expr]))
		}
	}
	return b.String()
}

func dimValue(v string) string {
	if v == "" {
		return Unknown
	}
	return v
}

// parseLabels splits label text written by labelWriter into unescaped name/value pairs.
func parseLabels(s string) [][2]string {
	var out [][2]string
	for len(s) > 0 {
		eq := strings.IndexByte(s, '=')
		if eq < 0 || eq+1 >= len(s) || s[eq+1] != '"' {
			break
		}
		name := s[:eq]
		var v strings.Builder
		i := eq + 2
		for ; i < len(s) && s[i] != '"'; i++ {
			if s[i] == '\\' && i+1 < len(s) {
				i++
				switch s[i] {
				case 'n':
					v.WriteByte('\n')
				default:
					v.WriteByte(s[i])
				}
				continue
			}
			v.WriteByte(s[i])
		}
		out = append(out, [2]string{name, v.String()})
		s = strings.TrimPrefix(s[min(i+1, len(s)):], ",")
	}
	return out
}

// httpRow is one rendered series of an HTTP family: its labels and the series whose values
// add up to it (several when overrides make label sets coincide).
type httpRow struct {
	labels string
	series []*httpSeries
}

// httpRows returns the rows of HTTP metric family m (an index of httpMetricNames), sorted by
// labels: the standard series that recorded something, and the overridden series that do not
// drop m.
func (r *Recorder) httpRows(m int) []httpRow {
	idx := map[string]int{}
	var rows []httpRow
	add := func(labels string, s *httpSeries) {
		if i, ok := idx[labels]; ok {
			rows[i].series = append(rows[i].series, s)
			return
		}
		idx[labels] = len(rows)
		rows = append(rows, httpRow{labels: labels, series: []*httpSeries{s}})
	}
	for _, s := range r.http.series() {
		if s.requests.Load() > 0 {
			add(r.httpLabels(s.key, s.flagText), s)
		}
	}
	for _, s := range r.over.series() {
		if !s.drop[m] && s.requests.Load() > 0 {
			add(s.labels[m], &s.httpSeries)
		}
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].labels < rows[j].labels })
	return rows
}
