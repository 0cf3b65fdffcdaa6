package xds

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/internal/node"
)

// metrics are the server's Prometheus metrics, named, typed, labeled and bucketed as istiod's
// pilot names them (pilot/pkg/xds monitoring; istio.io "Istio Control Plane Metrics").
type metrics struct {
	pushes        *prometheus.CounterVec   // pilot_xds_pushes{type}
	pushTime      *prometheus.HistogramVec // pilot_xds_push_time{type}
	configSize    *prometheus.HistogramVec // pilot_xds_config_size_bytes{type}
	rejects       *prometheus.CounterVec   // pilot_total_xds_rejects{type}
	writeTimeouts prometheus.Counter       // pilot_xds_write_timeout
	internalErrs  prometheus.Counter       // pilot_total_xds_internal_errors
	connected     *prometheus.GaugeVec     // pilot_xds{version}
	convergence   prometheus.Histogram     // pilot_proxy_convergence_time
	services      prometheus.Gauge         // pilot_services
	virtServices  prometheus.Gauge         // pilot_virt_services
	refused       prometheus.Counter       // strait_xds_streams_refused_total

	// Flow control (flow.go), Strait's own.
	queuedBytes      prometheus.Gauge       // strait_xds_queued_bytes
	pendingPushes    prometheus.Gauge       // strait_xds_pending_pushes
	ackTimeouts      prometheus.Counter     // strait_xds_ack_timeouts_total
	pushesInProgress prometheus.Gauge       // strait_xds_pushes_in_progress
	admissions       *prometheus.CounterVec // strait_xds_stream_admissions_total{result}

	// clients counts the connected proxies per version, so that pilot_xds{version} is set to
	// the count (Istio keeps a version's series at 0 once its last proxy left).
	clientsMu sync.Mutex
	clients   map[string]float64
}

// istiod's histogram buckets.
var (
	pushTimeBuckets    = []float64{.01, .1, 1, 3, 5, 10, 20, 30}
	convergenceBuckets = []float64{.1, .5, 1, 3, 5, 10, 20, 30}
	// 10 KB, 1 MB, 4 MB (gRPC's default message limit), 10 MB, 40 MB.
	configSizeBuckets = []float64{1, 10000, 1000000, 4000000, 10000000, 40000000}
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pilot_xds_pushes",
			Help: "xDS responses sent, by type (cds, lds, rds, eds, sds).",
		}, []string{"type"}),
		pushTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pilot_xds_push_time",
			Help:    "Seconds from the start of a proxy's push (generation) to the response being sent, by type.",
			Buckets: pushTimeBuckets,
		}, []string{"type"}),
		configSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pilot_xds_config_size_bytes",
			Help:    "Size in bytes of the resources of each xDS response sent, by type.",
			Buckets: configSizeBuckets,
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
		connected: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pilot_xds",
			Help: "Proxies connected to this control plane over xDS, by the version they report (ISTIO_VERSION).",
		}, []string{"version"}),
		convergence: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pilot_proxy_convergence_time",
			Help:    "Seconds from a mesh snapshot update to its ACK by a proxy.",
			Buckets: convergenceBuckets,
		}),
		services: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pilot_services",
			Help: "Services in the latest mesh snapshot.",
		}),
		virtServices: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pilot_virt_services",
			Help: "VirtualServices in the latest mesh snapshot.",
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strait_xds_streams_refused_total",
			Help: "xDS streams refused: no or a foreign client certificate on the mesh port, a node claiming another identity, or a node ID held by another connection.",
		}),
		queuedBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "strait_xds_queued_bytes",
			Help: "Resource bytes of xDS responses built and not yet acknowledged by their proxy (waiting to be sent, buffered by gRPC, or unread), across all streams; capped by --xds-max-queued-mib.",
		}),
		pendingPushes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "strait_xds_pending_pushes",
			Help: "Resource types of connected proxies with a newer configuration not yet sent: held until the proxy ACKs its previous response of the type, or until the bytes fit under the caps.",
		}),
		ackTimeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strait_xds_ack_timeouts_total",
			Help: "xDS streams ended because a response stayed unacknowledged (no ACK or NACK) for longer than the ACK timeout.",
		}),
		pushesInProgress: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "strait_xds_pushes_in_progress",
			Help: "Push slots in use: proxy generations and response sends running now (at most --push-throttle).",
		}),
		admissions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_xds_stream_admissions_total",
			Help: "New xDS streams by admission result: admitted at once, deferred (waited for their turn under --xds-stream-rate), or refused (UNAVAILABLE with a retry delay: the wait would exceed --xds-stream-wait).",
		}, []string{"result"}),
		clients: map[string]float64{},
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.pushes, m.pushTime, m.configSize, m.rejects, m.writeTimeouts, m.internalErrs,
		m.connected, m.convergence, m.services, m.virtServices, m.refused,
		m.queuedBytes, m.pendingPushes, m.ackTimeouts, m.pushesInProgress, m.admissions} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("registering xds metrics: %w", err)
	}
	return m, nil
}

// maxVersions bounds the version label values of pilot_xds: the version is what proxies say,
// so proxies of more distinct versions than this are counted under "other".
const maxVersions = 64

// proxyConnected adds 1 to pilot_xds{version} for a proxy reporting version and returns the
// label value it was counted under, to be passed to proxyDisconnected.
func (m *metrics) proxyConnected(version string) string {
	m.clientsMu.Lock()
	defer m.clientsMu.Unlock()
	if _, ok := m.clients[version]; !ok && len(m.clients) >= maxVersions {
		version = "other"
	}
	m.clients[version]++
	m.connected.WithLabelValues(version).Set(m.clients[version])
	return version
}

// proxyDisconnected subtracts 1 from pilot_xds{version}; the series stays, at 0 when the
// version's last proxy left, as in Istio.
func (m *metrics) proxyDisconnected(version string) {
	m.clientsMu.Lock()
	defer m.clientsMu.Unlock()
	m.clients[version]--
	m.connected.WithLabelValues(version).Set(m.clients[version])
}

// snapshot sets the gauges that describe a mesh snapshot.
func (m *metrics) snapshot(snap *mesh.Snapshot) {
	m.services.Set(float64(len(snap.Services)))
	m.virtServices.Set(float64(len(snap.Configs[config.VirtualService])))
}

// proxyVersion is the version label of a proxy: the ISTIO_VERSION it reports in its node
// metadata, else its user agent version, else "unknown". It is bounded in length so that a
// proxy cannot make long label values.
func proxyVersion(n *corev3.Node) string {
	v := n.GetMetadata().GetFields()[node.MetaProxyVersion].GetStringValue()
	if v == "" {
		v = n.GetUserAgentVersion()
	}
	if v == "" {
		return "unknown"
	}
	const maxLen = 64
	if len(v) > maxLen {
		v = v[:maxLen]
	}
	return v
}

// metricType is the lowercase short type used as the "type" label: cds, lds, rds, eds, sds.
func metricType(typeURL string) string {
	return strings.ToLower(shortType(typeURL))
}
