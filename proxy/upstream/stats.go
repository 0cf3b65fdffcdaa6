package upstream

import (
	"strings"
	"sync/atomic"

	"github.com/strait-mesh/strait/proxy/stats"
)

// clusterStats holds the cluster's metrics, looked up once at compile time. Names follow Envoy's
// cluster statistics (cluster.<name>.<stat>); Prometheus names are envoy_cluster_<stat> with the
// label envoy_cluster_name, as Envoy's /stats/prometheus renders them.
type clusterStats struct {
	// The statistics every request updates, first and together (one data cache line).
	// upstream_rq_active is rqTotal less rqDone (see newClusterStats): a request that started
	// counts as active until it ends, without an update of its own when it starts.
	rqTotal *stats.Counter
	rqDone  *atomic.Uint64 // requests that ended, or failed before they were sent
	// rqClass holds rq2xx to rq5xx by status class (code/100), nil for the others: countStatus
	// indexes it rather than switching between four inlined increments.
	rqClass [6]*stats.Counter

	cxTotal, cxConnectFail, cxConnectTimeout, cxDestroy, cxOverflow, cxNoneHealthy *stats.Counter
	cxHTTP1Total, cxHTTP2Total, cxMaxRequests, cxIdleTimeout, cxMaxDurationReached *stats.Counter
	cxRxBytes, cxTxBytes                                                           *stats.Counter
	rqPendingTotal, rqPendingOverflow, rqTimeout, rqRetryOverflow                  *stats.Counter
	rq2xx, rq3xx, rq4xx, rq5xx, rqReset                                            *stats.Counter
	lbHealthyPanic, membershipChange, updateSuccess                                *stats.Counter
	odEjectionsTotal, odEnforcedTotal, odOverflow                                  *stats.Counter
	odDetected5xx, odEnforced5xx, odDetectedGateway, odEnforcedGateway             *stats.Counter
	odDetectedSR, odEnforcedSR, odDetectedFP, odEnforcedFP                         *stats.Counter
	odDetectedSRLocal, odEnforcedSRLocal, odDetectedFPLocal, odEnforcedFPLocal     *stats.Counter
	odDetectedLocal, odEnforcedLocal, odDetectedMonitor, odEnforcedMonitor         *stats.Counter
	cxActive, rqPendingActive, membershipHealthy, membershipTotal, odActive        *stats.Gauge
	cbCxOpen, cbPendingOpen, cbRqOpen, cbRetryOpen                                 *stats.Gauge
	cbRemainingCx, cbRemainingPending, cbRemainingRq, cbRemainingRetries           *stats.Gauge
}

func newClusterStats(s *stats.Store, name string) *clusterStats {
	if s == nil {
		s = stats.NewStore()
	}
	tag := stats.Tag{Name: "envoy_cluster_name", Value: name}
	c := func(stat string) *stats.Counter {
		return s.Counter("cluster."+name+"."+stat, "envoy_cluster_"+promName(stat), tag)
	}
	g := func(stat string) *stats.Gauge {
		return s.Gauge("cluster."+name+"."+stat, "envoy_cluster_"+promName(stat), tag)
	}
	st := &clusterStats{
		cxTotal:              c("upstream_cx_total"),
		cxConnectFail:        c("upstream_cx_connect_fail"),
		cxConnectTimeout:     c("upstream_cx_connect_timeout"),
		cxDestroy:            c("upstream_cx_destroy"),
		cxOverflow:           c("upstream_cx_overflow"),
		cxNoneHealthy:        c("upstream_cx_none_healthy"),
		cxHTTP1Total:         c("upstream_cx_http1_total"),
		cxHTTP2Total:         c("upstream_cx_http2_total"),
		cxMaxRequests:        c("upstream_cx_max_requests"),
		cxIdleTimeout:        c("upstream_cx_idle_timeout"),
		cxMaxDurationReached: c("upstream_cx_max_duration_reached"),
		cxRxBytes:            c("upstream_cx_rx_bytes_total"),
		cxTxBytes:            c("upstream_cx_tx_bytes_total"),
		rqTotal:              c("upstream_rq_total"),
		rqPendingTotal:       c("upstream_rq_pending_total"),
		rqPendingOverflow:    c("upstream_rq_pending_overflow"),
		rqTimeout:            c("upstream_rq_timeout"),
		rqRetryOverflow:      c("upstream_rq_retry_overflow"),
		rq2xx:                c("upstream_rq_2xx"),
		rq3xx:                c("upstream_rq_3xx"),
		rq4xx:                c("upstream_rq_4xx"),
		rq5xx:                c("upstream_rq_5xx"),
		rqReset:              c("upstream_rq_rx_reset"),
		lbHealthyPanic:       c("lb_healthy_panic"),
		membershipChange:     c("membership_change"),
		updateSuccess:        c("update_success"),
		odEjectionsTotal:     c("outlier_detection.ejections_total"),
		odEnforcedTotal:      c("outlier_detection.ejections_enforced_total"),
		odOverflow:           c("outlier_detection.ejections_overflow"),
		odDetected5xx:        c("outlier_detection.ejections_detected_consecutive_5xx"),
		odEnforced5xx:        c("outlier_detection.ejections_enforced_consecutive_5xx"),
		odDetectedGateway:    c("outlier_detection.ejections_detected_consecutive_gateway_failure"),
		odEnforcedGateway:    c("outlier_detection.ejections_enforced_consecutive_gateway_failure"),
		odDetectedLocal:      c("outlier_detection.ejections_detected_consecutive_local_origin_failure"),
		odEnforcedLocal:      c("outlier_detection.ejections_enforced_consecutive_local_origin_failure"),
		odDetectedMonitor:    c("outlier_detection.ejections_detected_consecutive_errors"),
		odEnforcedMonitor:    c("outlier_detection.ejections_enforced_consecutive_errors"),
		odDetectedSR:         c("outlier_detection.ejections_detected_success_rate"),
		odEnforcedSR:         c("outlier_detection.ejections_enforced_success_rate"),
		odDetectedFP:         c("outlier_detection.ejections_detected_failure_percentage"),
		odEnforcedFP:         c("outlier_detection.ejections_enforced_failure_percentage"),
		odDetectedSRLocal:    c("outlier_detection.ejections_detected_local_origin_success_rate"),
		odEnforcedSRLocal:    c("outlier_detection.ejections_enforced_local_origin_success_rate"),
		odDetectedFPLocal:    c("outlier_detection.ejections_detected_local_origin_failure_percentage"),
		odEnforcedFPLocal:    c("outlier_detection.ejections_enforced_local_origin_failure_percentage"),
		cxActive:             g("upstream_cx_active"),
		rqPendingActive:      g("upstream_rq_pending_active"),
		membershipHealthy:    g("membership_healthy"),
		membershipTotal:      g("membership_total"),
		odActive:             g("outlier_detection.ejections_active"),
		cbCxOpen:             g("circuit_breakers.default.cx_open"),
		cbPendingOpen:        g("circuit_breakers.default.rq_pending_open"),
		cbRqOpen:             g("circuit_breakers.default.rq_open"),
		cbRetryOpen:          g("circuit_breakers.default.rq_retry_open"),
		cbRemainingCx:        g("circuit_breakers.default.remaining_cx"),
		cbRemainingPending:   g("circuit_breakers.default.remaining_pending"),
		cbRemainingRq:        g("circuit_breakers.default.remaining_rq"),
		cbRemainingRetries:   g("circuit_breakers.default.remaining_retries"),
	}
	st.rqClass = [6]*stats.Counter{2: st.rq2xx, 3: st.rq3xx, 4: st.rq4xx, 5: st.rq5xx}
	// upstream_rq_active: the started requests less the ended ones. Both counts are the
	// store's by the cluster's name, as a gauge of that name would be, so that the clusters
	// of one name (a cluster and its replacement while requests drain) add up, and the
	// function the first of them registers reads them all.
	total, done := st.rqTotal, &s.Counts("cluster."+name+".upstream_rq_done", 1)[0]
	st.rqDone = done
	s.GaugeFunc("cluster."+name+".upstream_rq_active", "envoy_cluster_upstream_rq_active", func() (int64, bool) {
		d := done.Load() // first: the total read after it is never below it
		return int64(total.Value() - d), true
	}, tag)
	return st
}

func promName(stat string) string { return strings.ReplaceAll(stat, ".", "_") }

// countStatus increments the response-class counter for code (2xx to 5xx; others count in
// none).
func (s *clusterStats) countStatus(code int) {
	if k := uint(code) / 100; k < uint(len(s.rqClass)) {
		if ctr := s.rqClass[k]; ctr != nil {
			ctr.Inc()
		}
	}
}
