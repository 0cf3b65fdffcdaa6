package xds

import (
	"errors"
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the server's Prometheus metrics, named as Istio's pilot names them.
type metrics struct {
	pushes        *prometheus.CounterVec   // pilot_xds_pushes{type}
	pushTime      *prometheus.HistogramVec // pilot_xds_push_time{type}
	rejects       *prometheus.CounterVec   // pilot_total_xds_rejects{type}
	writeTimeouts prometheus.Counter       // pilot_xds_write_timeout
	internalErrs  prometheus.Counter       // pilot_total_xds_internal_errors
	connected     prometheus.Gauge         // pilot_xds
	convergence   prometheus.Histogram     // pilot_proxy_convergence_time
	refused       prometheus.Counter       // strait_xds_streams_refused_total
}

var convergenceBuckets = []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 20, 30}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pilot_xds_pushes",
			Help: "xDS responses sent, by type (cds, lds, rds, eds, sds).",
		}, []string{"type"}),
		pushTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pilot_xds_push_time",
			Help:    "Seconds from the start of a proxy's push (generation) to the response being sent, by type.",
			Buckets: convergenceBuckets,
		}, []string{"type"}),
		rejects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pilot_total_xds_rejects",
			Help: "xDS responses rejected (NACKed) by proxies, by type.",
		}, []string{"type"}),
		writeTimeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pilot_xds_write_timeout",
			Help: "xDS responses whose send to the proxy took longer than the write timeout.",
		}),
		internalErrs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pilot_total_xds_internal_errors",
			Help: "Proxy generations that failed (generator error or a resource that fails Validate); the proxy keeps its previous resources.",
		}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pilot_xds",
			Help: "Proxies connected to this control plane over xDS.",
		}),
		convergence: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pilot_proxy_convergence_time",
			Help:    "Seconds from a mesh snapshot update to its ACK by a proxy.",
			Buckets: convergenceBuckets,
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strait_xds_streams_refused_total",
			Help: "xDS streams refused: no or a foreign client certificate on the mesh port, a node claiming another identity, or a node ID held by another connection.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.pushes, m.pushTime, m.rejects, m.writeTimeouts, m.internalErrs, m.connected, m.convergence, m.refused} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("registering xds metrics: %w", err)
	}
	return m, nil
}

// metricType is the lowercase short type used as the "type" label: cds, lds, rds, eds, sds.
func metricType(typeURL string) string {
	return strings.ToLower(shortType(typeURL))
}
