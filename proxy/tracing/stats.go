package tracing

import (
	"strings"

	"github.com/strait-mesh/strait/proxy/stats"
)

// tracerStats are the connection manager's tracing statistics, Envoy's
// http.<stat_prefix>.tracing.{random_sampling,service_forced,client_enabled,not_traceable}.
type tracerStats struct {
	random, service, client, notTraceable *stats.Counter
}

func newTracerStats(s *stats.Store, prefix string) *tracerStats {
	c := func(name string) *stats.Counter {
		return s.Counter("http."+prefix+".tracing."+name, "envoy_http_tracing_"+name,
			stats.Tag{Name: "envoy_http_conn_manager_prefix", Value: prefix})
	}
	return &tracerStats{random: c("random_sampling"), service: c("service_forced"), client: c("client_enabled"),
		notTraceable: c("not_traceable")}
}

func (s *tracerStats) reason(r Reason) {
	switch r {
	case Sampled:
		s.random.Inc()
	case ServiceForced:
		s.service.Inc()
	case ClientForced:
		s.client.Inc()
	default:
		s.notTraceable.Inc()
	}
}

// exporterStats are a tracer's export statistics, under tracing.opentelemetry. or
// tracing.zipkin. as in Envoy (spans_sent, timer_flushed, reports_sent, reports_dropped,
// reports_failed, reports_skipped_no_cluster), plus strait-proxy's spans_dropped: spans not
// queued because the queue was full.
type exporterStats struct {
	spansSent, spansDropped, timerFlushed                 *stats.Counter
	reportsSent, reportsDropped, reportsFailed, noCluster *stats.Counter
}

func newExporterStats(s *stats.Store, prefix string) *exporterStats {
	c := func(name string) *stats.Counter {
		return s.Counter(prefix+name, "envoy_"+strings.ReplaceAll(prefix, ".", "_")+name)
	}
	return &exporterStats{spansSent: c("spans_sent"), spansDropped: c("spans_dropped"), timerFlushed: c("timer_flushed"),
		reportsSent: c("reports_sent"), reportsDropped: c("reports_dropped"), reportsFailed: c("reports_failed"),
		noCluster: c("reports_skipped_no_cluster")}
}
