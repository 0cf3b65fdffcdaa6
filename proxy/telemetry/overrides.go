package telemetry

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	statspb "istio.io/api/envoy/extensions/stats"

	"github.com/strait-mesh/strait/proxy/attributes"
	"github.com/strait-mesh/strait/proxy/xdsfield"
	udpatypev1 "github.com/strait-mesh/strait/proxy/xdspb/udpa/type/v1"
	xdstypev3 "github.com/strait-mesh/strait/proxy/xdspb/xds/type/v3"
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

// The standard metrics an override may name (without the istio_ prefix), by family, each in
// the order the family is rendered.
var (
	httpMetricNames = [...]string{"requests_total", "request_duration_milliseconds", "request_bytes", "response_bytes",
		"request_messages_total", "response_messages_total"}
	tcpMetricNames = [...]string{"tcp_connections_closed_total", "tcp_connections_opened_total", "tcp_received_bytes_total", "tcp_sent_bytes_total"}
)

// Indexes in httpMetricNames of the metrics rendered specially: the gRPC message counters are
// produced for gRPC requests only.
const (
	metricRequests         = 0
	metricRequestMessages  = 4
	metricResponseMessages = 5
)

// httpFamilySize and tcpFamilySize are the number of metrics of each family.
const (
	httpFamilySize = len(httpMetricNames)
	tcpFamilySize  = len(tcpMetricNames)
)

var labelName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// DefaultTCPReportingDuration is Istio's default tcp_reporting_duration: how often the byte
// counters of an open TCP connection are reported.
const DefaultTCPReportingDuration = 15 * time.Second

// StatsConfig is a compiled istio.stats filter configuration (Istio's stats.PluginConfig). It is
// immutable and safe for concurrent use.
type StatsConfig struct {
	// DisableHostHeaderFallback: at the source reporter, a request to a cluster that does not
	// name its service (PassthroughCluster) reports destination_service "unknown" instead of
	// the request's host.
	DisableHostHeaderFallback bool
	// Overrides are the HTTP metric overrides, TCPOverrides the TCP metric overrides; nil when
	// there are none. An HTTP connection manager uses the first, a tcp_proxy the second.
	Overrides, TCPOverrides *Overrides
	// TCPReportingDuration is how often an open TCP connection's bytes are reported
	// (tcp_reporting_duration, DefaultTCPReportingDuration when unset).
	TCPReportingDuration time.Duration
}

// Overrides are the compiled metric overrides of an istio.stats filter for one family of
// metrics (HTTP or TCP): per metric, whether it is dropped, which labels are removed and which
// are set from CEL expressions. Recorder.RecordHTTP applies HTTP overrides to a request whose
// HTTPRequest carries them, Recorder.OpenTCP TCP overrides to a connection whose TCPConn does.
type Overrides struct {
	// key identifies the overrides across configuration versions: series recorded with equal
	// keys are the same series.
	key     string
	metrics []metricOverride      // by index in httpMetricNames or tcpMetricNames
	exprs   []*attributes.Program // distinct dimension expressions of the family, evaluated per request or connection
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

// Dimensions holds one request's (or connection's) dimension values, by expression index; ""
// is not a value (the label is then "unknown", as Istio reports an expression that fails).
type Dimensions [MaxDimensionExpressions]string

// DropsAll reports whether every metric of the family is dropped: the request or connection
// need not be recorded.
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

// HasDimensions reports whether any expression must be evaluated per request or connection.
func (o *Overrides) HasDimensions() bool { return o != nil && len(o.exprs) > 0 }

// overrideState is what the metric entries of a filter say about one metric, before it is
// compiled into a metricOverride.
type overrideState struct {
	drop   bool
	remove map[string]bool
	dims   map[string]string // label: expression
}

// CompileStatsConfig decodes and compiles an istio.stats filter's typed_config (path names it
// in errors). Accepted: metrics (name, drop, tags_to_remove, dimensions) of the HTTP and TCP
// metrics (an unnamed entry applies to every metric), tcp_reporting_duration and
// disable_host_header_fallback. Refused by name as not supported yet: definitions (custom
// metrics), a metric's match, reporter, rotation_interval, graceful_deletion_interval and the
// deprecated fields. An override of a metric strait-proxy does not produce (a custom metric)
// changes nothing.
func CompileStatsConfig(path string, a *anypb.Any) (*StatsConfig, error) {
	pc, err := decodePluginConfig(path, a)
	if err != nil {
		return nil, err
	}
	if err := xdsfield.Check(pc, path, "metrics", "disable_host_header_fallback", "tcp_reporting_duration"); err != nil {
		return nil, err
	}
	c := &StatsConfig{DisableHostHeaderFallback: pc.GetDisableHostHeaderFallback(), TCPReportingDuration: DefaultTCPReportingDuration}
	if d := pc.GetTcpReportingDuration(); d != nil {
		if err := d.CheckValid(); err != nil {
			return nil, fmt.Errorf("%s.tcp_reporting_duration: %w", path, err)
		}
		if d.AsDuration() <= 0 {
			return nil, fmt.Errorf("%s.tcp_reporting_duration: must be positive, got %v", path, d.AsDuration())
		}
		c.TCPReportingDuration = d.AsDuration()
	}
	if len(pc.GetMetrics()) == 0 {
		return c, nil
	}
	// st[0:httpFamilySize] are the HTTP metrics, st[httpFamilySize:] the TCP metrics.
	var st [httpFamilySize + tcpFamilySize]overrideState
	for i := range st {
		st[i] = overrideState{remove: map[string]bool{}, dims: map[string]string{}}
	}
	programs := map[string]*attributes.Program{}
	for i, m := range pc.GetMetrics() {
		p := fmt.Sprintf("%s.metrics[%d]", path, i)
		if err := xdsfield.Check(m, p, "name", "drop", "tags_to_remove", "dimensions"); err != nil {
			return nil, err
		}
		var targets []int
		switch name := m.GetName(); {
		case name == "":
			for t := range st {
				targets = append(targets, t)
			}
		case slices.Contains(httpMetricNames[:], name):
			targets = []int{slices.Index(httpMetricNames[:], name)}
		case slices.Contains(tcpMetricNames[:], name):
			targets = []int{httpFamilySize + slices.Index(tcpMetricNames[:], name)}
		case labelName.MatchString(name):
			// A custom metric: strait-proxy refuses definitions, so it is not produced and
			// the override has nothing to change (as in Istio, where an override of a metric
			// that is not defined applies to nothing).
			continue
		default:
			return nil, fmt.Errorf("%s.name: %q is not a metric name", p, name)
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
			if _, ok := programs[e]; ok {
				continue
			}
			prg, err := attributes.Compile(e)
			if err != nil {
				return nil, fmt.Errorf("%s.dimensions[%q]: %w", p, k, err)
			}
			if len(programs) == MaxDimensionExpressions {
				return nil, fmt.Errorf("%s.dimensions: more than %d distinct expressions", path, MaxDimensionExpressions)
			}
			programs[e] = prg
		}
		for _, t := range targets {
			s := &st[t]
			s.drop = s.drop || m.GetDrop()
			for _, tag := range m.GetTagsToRemove() {
				s.remove[tag] = true
				delete(s.dims, tag)
			}
			for k, e := range m.GetDimensions() {
				s.dims[k] = e
				delete(s.remove, k)
			}
		}
	}
	c.Overrides = compileOverrides(st[:httpFamilySize], programs)
	c.TCPOverrides = compileOverrides(st[httpFamilySize:], programs)
	return c, nil
}

// compileOverrides builds one family's overrides from the state of its metrics; nil when they
// change nothing. Its expressions are those its metrics use, each once.
func compileOverrides(st []overrideState, programs map[string]*attributes.Program) *Overrides {
	o := &Overrides{allDrop: true, metrics: make([]metricOverride, len(st))}
	exprIndex := map[string]int{}
	changed := false
	var key strings.Builder
	for t := range o.metrics {
		s, mo := &st[t], &o.metrics[t]
		mo.drop = s.drop
		o.allDrop = o.allDrop && mo.drop
		for tag := range s.remove {
			mo.remove = append(mo.remove, tag)
		}
		sort.Strings(mo.remove)
		labels := make([]string, 0, len(s.dims))
		for k := range s.dims {
			labels = append(labels, k)
		}
		sort.Strings(labels)
		for _, k := range labels {
			e := s.dims[k]
			i, ok := exprIndex[e]
			if !ok {
				i = len(o.exprs)
				exprIndex[e] = i
				o.exprs = append(o.exprs, programs[e])
			}
			mo.dims = append(mo.dims, dimension{label: k, expr: i})
		}
		changed = changed || mo.drop || len(mo.remove) > 0 || len(mo.dims) > 0
		fmt.Fprintf(&key, "%d:%v:%q:", t, mo.drop, mo.remove)
		for _, d := range mo.dims {
			fmt.Fprintf(&key, "%q=%q,", d.label, o.exprs[d.expr].String())
		}
		key.WriteByte(';')
	}
	if !changed {
		return nil
	}
	o.key = key.String()
	return o
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

// overKey is an overridden series: the series the request's (or connection's) standard labels
// give (an *httpSeries or *TCPSeries), the overrides, and the dimension values.
type overKey[S comparable] struct {
	base S
	key  string
	dims Dimensions
}

// overSeries is an overridden HTTP series: its counters, and per metric its labels (or
// dropped).
type overSeries struct {
	httpSeries
	okey   overKey[*httpSeries] // what identifies it
	labels [httpFamilySize]string
	drop   [httpFamilySize]bool
}

// overridden returns the series that records a request whose standard series is base (in
// slot baseSlot of the Recorder's hotSeries) and which carries overrides; nil beyond the cap.
func (r *Recorder) overridden(base *httpSeries, baseSlot uint, q *HTTPRequest) *httpSeries {
	o := q.Overrides
	k := overKey[*httpSeries]{base: base, key: o.key, dims: o.used(&q.Dimensions)}
	s := r.hotOver.get(r.over, &k, baseSlot, func(k overKey[*httpSeries]) *overSeries {
		s := &overSeries{httpSeries: httpSeries{key: k.base.key}, okey: k} // the key tells a gRPC series
		o.label(r.httpLabels(k.base.key, k.base.flagText), &k.dims, s.labels[:], s.drop[:])
		return s
	})
	if s == nil {
		return nil
	}
	return &s.httpSeries
}

// used returns the values of d that o's metrics use, the others empty: with the standard
// series and o.key, they identify an overridden series (of either family).
func (o *Overrides) used(d *Dimensions) Dimensions {
	var out Dimensions
	for _, m := range o.metrics {
		for _, dm := range m.dims {
			out[dm.expr] = d[dm.expr]
		}
	}
	return out
}

// label fills, per metric of an overridden series whose standard labels are std and whose
// dimension values are dims, its labels and whether it is dropped; labels and drop are indexed
// as o.metrics (httpMetricNames or tcpMetricNames).
func (o *Overrides) label(std string, dims *Dimensions, labels []string, drop []bool) {
	pairs := parseLabels(std)
	for i, m := range o.metrics {
		drop[i] = m.drop
		labels[i] = m.apply(pairs, dims)
	}
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
	// The gRPC message counters exist for gRPC requests only, as in Istio.
	grpcOnly := m == metricRequestMessages || m == metricResponseMessages
	for _, s := range r.http.series() {
		if s.requests() > 0 && (!grpcOnly || s.key.grpc) {
			add(r.httpLabels(s.key, s.flagText), s)
		}
	}
	for _, s := range r.over.series() {
		if !s.drop[m] && s.requests() > 0 && (!grpcOnly || s.key.grpc) {
			add(s.labels[m], &s.httpSeries)
		}
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].labels < rows[j].labels })
	return rows
}
