package telemetry

import (
	"fmt"
	"sort"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	stats "istio.io/api/envoy/extensions/stats"
	tpb "istio.io/api/telemetry/v1alpha1"

	proxytelemetry "github.com/strait-mesh/strait/proxy/telemetry"
)

// StatsFilterName is the name of Istio's stats filter, HTTP and network.
const StatsFilterName = "istio.stats"

// prometheusMetric maps Istio's metric enum to the metric names the stats filter configures.
var prometheusMetric = map[string]string{
	"REQUEST_COUNT":          "requests_total",
	"REQUEST_DURATION":       "request_duration_milliseconds",
	"REQUEST_SIZE":           "request_bytes",
	"RESPONSE_SIZE":          "response_bytes",
	"TCP_OPENED_CONNECTIONS": "tcp_connections_opened_total",
	"TCP_CLOSED_CONNECTIONS": "tcp_connections_closed_total",
	"TCP_SENT_BYTES":         "tcp_sent_bytes_total",
	"TCP_RECEIVED_BYTES":     "tcp_received_bytes_total",
	"GRPC_REQUEST_MESSAGES":  "request_messages_total",
	"GRPC_RESPONSE_MESSAGES": "response_messages_total",
}

// allMetrics are Istio's metric enum names but ALL_METRICS, sorted.
var allMetrics = func() []string {
	out := make([]string, 0, len(prometheusMetric))
	for k := range prometheusMetric {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}()

// metricOverride is the merged override of one metric in one mode.
type metricOverride struct {
	disabled *bool
	tags     map[string]*tpb.MetricsOverrides_TagOverride
}

// modeMetrics is the merged metrics config of one provider and mode.
type modeMetrics struct {
	disabled  bool // every metric dropped (ALL_METRICS disabled)
	overrides map[string]*metricOverride
}

// providerMetrics is the merged metrics config of one provider.
type providerMetrics struct {
	modes    map[tpb.WorkloadMode]*modeMetrics
	interval *durationpb.Duration
}

// buildStats returns the istio.stats filters of mode, or nil when no Telemetry changes the
// standard metrics there. A Telemetry whose metrics select no prometheus provider turns the
// metrics off, as Istio does by leaving the stats filter out; since strait-proxy records the
// standard metrics without a filter, that is said with a filter that drops every metric.
func buildStats(in Inputs, ap applied, mode tpb.WorkloadMode, router bool, report func(error)) (*hcmv3.HttpFilter, *listenerv3.Filter) {
	var entries []*tpb.Metrics
	for _, s := range ap.specs {
		entries = append(entries, s.GetMetrics()...)
	}
	if len(entries) == 0 {
		return nil, nil
	}
	defaults := in.Mesh.GetDefaultProviders().GetMetrics()
	if len(defaults) == 0 {
		defaults = []string{"prometheus"} // strait-proxy records the standard metrics by default
	}
	merged := mergeMetrics(entries, defaults)
	names := make([]string, 0, len(merged))
	for n := range merged {
		names = append(names, n)
	}
	sort.Strings(names)
	var prom *providerMetrics
	for _, n := range names {
		p := lookupProvider(in.Mesh, n)
		switch {
		case p == nil:
			report(fmt.Errorf("%s: metrics: provider %q is not one of MeshConfig's extensionProviders; left out", ap.owner(), n))
		case p.GetPrometheus() == nil:
			report(fmt.Errorf("%s: metrics: provider %q (of type %s) is not a metrics provider (prometheus); left out", ap.owner(), n, providerType(p)))
		case prom == nil:
			prom = merged[n]
		}
	}
	cfg := &stats.PluginConfig{DisableHostHeaderFallback: mode == tpb.WorkloadMode_SERVER || router}
	mm := &modeMetrics{disabled: true}
	if prom != nil {
		mm = prom.modes[mode]
		cfg.TcpReportingDuration = prom.interval
	}
	switch {
	case mm == nil:
		if cfg.TcpReportingDuration == nil {
			return nil, nil
		}
	case mm.disabled:
		for _, m := range allMetrics {
			cfg.Metrics = append(cfg.Metrics, &stats.MetricConfig{Name: prometheusMetric[m], Drop: true})
		}
	default:
		keys := make([]string, 0, len(mm.overrides))
		for k := range mm.overrides {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool { return metricName(keys[i]) < metricName(keys[j]) })
		for _, k := range keys {
			o := mm.overrides[k]
			mc := &stats.MetricConfig{Name: metricName(k), Drop: o.disabled != nil && *o.disabled}
			tagNames := make([]string, 0, len(o.tags))
			for t := range o.tags {
				tagNames = append(tagNames, t)
			}
			sort.Strings(tagNames)
			for _, t := range tagNames {
				if o.tags[t].GetOperation() == tpb.MetricsOverrides_TagOverride_REMOVE {
					mc.TagsToRemove = append(mc.TagsToRemove, t)
					continue
				}
				if mc.Dimensions == nil {
					mc.Dimensions = map[string]string{}
				}
				mc.Dimensions[t] = o.tags[t].GetValue()
			}
			cfg.Metrics = append(cfg.Metrics, mc)
		}
		if len(cfg.Metrics) == 0 && cfg.TcpReportingDuration == nil {
			return nil, nil
		}
		if n := distinctDimensions(cfg); n > proxytelemetry.MaxDimensionExpressions {
			report(fmt.Errorf("%s: metrics: %d distinct tagOverrides values apply to mode %s, more than strait-proxy's limit of %d; the metric overrides of that mode are left out",
				ap.owner(), n, mode, proxytelemetry.MaxDimensionExpressions))
			return nil, nil
		}
	}
	a := mustAny(cfg)
	return &hcmv3.HttpFilter{Name: StatsFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: a}},
		&listenerv3.Filter{Name: StatsFilterName, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: a}}
}

// distinctDimensions counts the distinct dimension expressions of cfg, which strait-proxy
// evaluates on every request and bounds.
func distinctDimensions(cfg *stats.PluginConfig) int {
	seen := map[string]bool{}
	for _, m := range cfg.GetMetrics() {
		for _, e := range m.GetDimensions() {
			seen[e] = true
		}
	}
	return len(seen)
}

// metricName is the stats filter's name of an Istio metric enum name or custom metric.
func metricName(m string) string {
	if n, ok := prometheusMetric[m]; ok {
		return n
	}
	return m
}

// mergeMetrics merges the metrics entries (root namespace first) per provider and mode as
// istiod's mergeMetrics does: the providers of the most specific entry that names any (else
// the defaults) are in scope; an entry without providers applies to its parent's; overrides
// apply in order, each metric's disabled and tags on top of the earlier ones; disabling
// ALL_METRICS turns a mode off until a later override of that mode turns metrics back on.
func mergeMetrics(entries []*tpb.Metrics, defaults []string) map[string]*providerMetrics {
	inScope := defaults
	for _, m := range entries {
		if n := providerNames(m.GetProviders()); len(n) > 0 {
			inScope = n
		}
	}
	scope := map[string]bool{}
	for _, n := range inScope {
		scope[n] = true
	}
	out := map[string]*providerMetrics{}
	parent := defaults
	for _, m := range entries {
		names := providerNames(m.GetProviders())
		if len(names) == 0 {
			names = parent
		}
		parent = names
		for _, n := range names {
			if !scope[n] {
				continue
			}
			pm := out[n]
			if pm == nil {
				pm = &providerMetrics{modes: map[tpb.WorkloadMode]*modeMetrics{}}
				out[n] = pm
			}
			if m.GetReportingInterval() != nil {
				pm.interval = m.GetReportingInterval()
			}
			for _, o := range m.GetOverrides() {
				modes := []tpb.WorkloadMode{tpb.WorkloadMode_CLIENT, tpb.WorkloadMode_SERVER}
				if md := o.GetMatch().GetMode(); md != tpb.WorkloadMode_CLIENT_AND_SERVER {
					modes = []tpb.WorkloadMode{md}
				}
				for _, md := range modes {
					mm := pm.modes[md]
					if mm == nil {
						mm = &modeMetrics{overrides: map[string]*metricOverride{}}
						pm.modes[md] = mm
					}
					if isAllMetrics(o.GetMatch()) && o.GetDisabled().GetValue() {
						mm.disabled = true
						continue
					}
					mm.disabled = false
					for _, name := range matches(o.GetMatch()) {
						mo := mm.overrides[name]
						if mo == nil {
							mo = &metricOverride{}
							mm.overrides[name] = mo
						}
						if d := o.GetDisabled(); d != nil {
							v := d.GetValue()
							mo.disabled = &v
						}
						for k, v := range o.GetTagOverrides() {
							if mo.tags == nil {
								mo.tags = map[string]*tpb.MetricsOverrides_TagOverride{}
							}
							mo.tags[k] = v
						}
					}
				}
			}
		}
	}
	return out
}

// isAllMetrics reports whether a selector selects every metric (no match, or ALL_METRICS).
func isAllMetrics(m *tpb.MetricSelector) bool {
	switch mm := m.GetMetricMatch().(type) {
	case *tpb.MetricSelector_CustomMetric:
		return false
	case *tpb.MetricSelector_Metric:
		return mm.Metric == tpb.MetricSelector_ALL_METRICS
	}
	return true
}

// matches are the metric names a selector selects.
func matches(m *tpb.MetricSelector) []string {
	switch mm := m.GetMetricMatch().(type) {
	case *tpb.MetricSelector_CustomMetric:
		return []string{mm.CustomMetric}
	case *tpb.MetricSelector_Metric:
		if mm.Metric != tpb.MetricSelector_ALL_METRICS {
			return []string{mm.Metric.String()}
		}
	}
	return allMetrics
}
