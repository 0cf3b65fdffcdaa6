package file

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/strait-mesh/strait/controlplane/config"
)

// Metric descriptors. Every metric carries source="file" so that other config sources can export
// the same names.
var (
	constLabels  = prometheus.Labels{"source": "file"}
	descErrors   = prometheus.NewDesc("strait_config_errors", "Config documents currently rejected, by kind (\"unknown\" when the document's kind could not be read).", []string{"kind"}, constLabels)
	descObjects  = prometheus.NewDesc("strait_config_objects", "Config objects currently served, by kind.", []string{"kind"}, constLabels)
	descWarnings = prometheus.NewDesc("strait_config_warnings", "Cross-object config warnings currently reported.", nil, constLabels)
	descReloads  = prometheus.NewDesc("strait_config_reloads_total", "Config reloads, by result: \"ok\" when all config was accepted, \"error\" when some was rejected.", []string{"result"}, constLabels)
	descLast     = prometheus.NewDesc("strait_config_last_reload_timestamp_seconds", "Unix time of the last config reload.", nil, constLabels)
)

// stats is the state behind the metrics; guarded by Source.mu.
type stats struct {
	errorsByKind  map[string]int
	objectsByKind map[string]int
	warnings      int
	reloadsOK     uint64
	reloadsErr    uint64
	last          time.Time
}

// record updates the stats after a reload.
func (st *stats) record(errs []error, warnings int, objs []*config.Object) {
	st.errorsByKind = map[string]int{}
	for _, e := range errs {
		kind := "unknown"
		var ce *config.Error
		if errors.As(e, &ce) && ce.Kind != "" {
			kind = string(ce.Kind)
		}
		st.errorsByKind[kind]++
	}
	st.objectsByKind = map[string]int{}
	for _, o := range objs {
		st.objectsByKind[string(o.Kind)]++
	}
	st.warnings = warnings
	if len(errs) > 0 {
		st.reloadsErr++
	} else {
		st.reloadsOK++
	}
	st.last = time.Now()
}

var _ prometheus.Collector = (*Source)(nil)

// Collector returns the source's metrics collector (the Source itself), for registration with a
// prometheus.Registerer: strait_config_errors{kind}, strait_config_objects{kind},
// strait_config_warnings, strait_config_reloads_total{result} and
// strait_config_last_reload_timestamp_seconds, all with source="file".
func (s *Source) Collector() prometheus.Collector { return s }

// Describe implements prometheus.Collector.
func (s *Source) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descErrors, descObjects, descWarnings, descReloads, descLast} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. Every kind is reported, with 0 when it has no objects
// or errors, so that alerts on strait_config_errors > 0 have a series to watch.
func (s *Source) Collect(ch chan<- prometheus.Metric) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	kinds := []string{"unknown"}
	for _, k := range config.Kinds {
		kinds = append(kinds, string(k))
	}
	for _, k := range kinds {
		ch <- prometheus.MustNewConstMetric(descErrors, prometheus.GaugeValue, float64(s.stats.errorsByKind[k]), k)
		if k != "unknown" {
			ch <- prometheus.MustNewConstMetric(descObjects, prometheus.GaugeValue, float64(s.stats.objectsByKind[k]), k)
		}
	}
	ch <- prometheus.MustNewConstMetric(descWarnings, prometheus.GaugeValue, float64(s.stats.warnings))
	ch <- prometheus.MustNewConstMetric(descReloads, prometheus.CounterValue, float64(s.stats.reloadsOK), "ok")
	ch <- prometheus.MustNewConstMetric(descReloads, prometheus.CounterValue, float64(s.stats.reloadsErr), "error")
	if !s.stats.last.IsZero() {
		ch <- prometheus.MustNewConstMetric(descLast, prometheus.GaugeValue, float64(s.stats.last.UnixNano())/1e9)
	}
}
