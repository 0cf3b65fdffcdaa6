package upstream

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/strait-mesh/strait/proxy/xdsfield"
	clusterv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/cluster/v3"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	consecutivev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/outlier_detection_monitors/consecutive_errors/v3"
)

// outlierConfig is the cluster's passive health checking (Envoy's outlier_detection): consecutive
// 5xx, consecutive gateway failures, consecutive local-origin failures (with
// split_external_local_origin_errors), consecutive-errors monitors over HTTP status ranges and
// local-origin errors, and the success-rate and failure-percentage detectors (rateConfig).
// Without the split, locally originated failures count as 503 (connect failure, reset) or 504
// (timeout).
type outlierConfig struct {
	consecutive5xx, enforcing5xx     uint32
	consecutiveGW, enforcingGW       uint32
	split                            bool
	consecutiveLocal, enforcingLocal uint32
	interval, baseEjection           time.Duration
	maxEjection                      time.Duration
	maxEjectionPercent               uint32
	monitors                         []monitor
	rates                            rateConfig
}

// monitor is a consecutive_errors outlier-detection monitor.
type monitor struct {
	name       string
	threshold  uint32
	enforcing  uint32
	httpRanges [][2]int // [start, end)
	local      bool     // counts locally originated errors
}

func (m *monitor) matchesStatus(code int) bool {
	for _, r := range m.httpRanges {
		if code >= r[0] && code < r[1] {
			return true
		}
	}
	return false
}

// odState is an endpoint's outlier-detection state.
type odState struct {
	c5xx, cGW, cLocal atomic.Uint32
	// Outcomes in the current interval (success rate, failure percentage); the local-origin
	// pair is used only with split_external_local_origin_errors.
	ok, fail, okLocal, failLocal atomic.Uint32
	monitors                     []atomic.Uint32 // one per outlierConfig.monitors
	ejected                      atomic.Bool
	// Guarded by Cluster.mu.
	ejectedAt  time.Time
	multiplier uint32
}

func compileOutlier(o *clusterv3.OutlierDetection) (*outlierConfig, error) {
	if o == nil {
		return nil, nil
	}
	const p = "outlier_detection"
	if err := xdsfield.Check(o, p, "consecutive_5xx", "interval", "base_ejection_time",
		"max_ejection_percent", "enforcing_consecutive_5xx", "enforcing_success_rate",
		"consecutive_gateway_failure", "enforcing_consecutive_gateway_failure", "max_ejection_time",
		"split_external_local_origin_errors", "consecutive_local_origin_failure",
		"enforcing_consecutive_local_origin_failure", "enforcing_local_origin_success_rate",
		"enforcing_failure_percentage", "enforcing_failure_percentage_local_origin", "monitors",
		"success_rate_minimum_hosts", "success_rate_request_volume", "success_rate_stdev_factor",
		"failure_percentage_threshold", "failure_percentage_minimum_hosts", "failure_percentage_request_volume"); err != nil {
		return nil, err
	}
	oc := &outlierConfig{
		consecutive5xx:     5,
		enforcing5xx:       100,
		consecutiveGW:      5,
		enforcingGW:        0,
		consecutiveLocal:   5,
		enforcingLocal:     100,
		interval:           10 * time.Second,
		baseEjection:       30 * time.Second,
		maxEjection:        300 * time.Second,
		maxEjectionPercent: 10,
		split:              o.GetSplitExternalLocalOriginErrors(),
	}
	if v := o.GetConsecutive_5Xx(); v != nil {
		oc.consecutive5xx = v.GetValue()
	}
	if v := o.GetEnforcingConsecutive_5Xx(); v != nil {
		oc.enforcing5xx = min(100, v.GetValue())
	}
	if v := o.GetConsecutiveGatewayFailure(); v != nil {
		oc.consecutiveGW = v.GetValue()
	}
	if v := o.GetEnforcingConsecutiveGatewayFailure(); v != nil {
		oc.enforcingGW = min(100, v.GetValue())
	}
	if v := o.GetConsecutiveLocalOriginFailure(); v != nil {
		oc.consecutiveLocal = v.GetValue()
	}
	if v := o.GetEnforcingConsecutiveLocalOriginFailure(); v != nil {
		oc.enforcingLocal = min(100, v.GetValue())
	}
	if d := o.GetInterval(); d != nil {
		if oc.interval = d.AsDuration(); oc.interval <= 0 {
			return nil, fmt.Errorf("%s.interval must be positive", p)
		}
	}
	if d := o.GetBaseEjectionTime(); d != nil {
		if oc.baseEjection = d.AsDuration(); oc.baseEjection <= 0 {
			return nil, fmt.Errorf("%s.base_ejection_time must be positive", p)
		}
	}
	if d := o.GetMaxEjectionTime(); d != nil {
		oc.maxEjection = d.AsDuration()
	}
	oc.maxEjection = max(oc.maxEjection, oc.baseEjection)
	if v := o.GetMaxEjectionPercent(); v != nil {
		oc.maxEjectionPercent = min(100, v.GetValue())
	}
	oc.rates = compileRates(o)
	for i, m := range o.GetMonitors() {
		mp := fmt.Sprintf("%s.monitors[%d]", p, i)
		mon, err := compileMonitor(mp, m)
		if err != nil {
			return nil, err
		}
		oc.monitors = append(oc.monitors, mon)
	}
	return oc, nil
}

func compileMonitor(path string, m *corev3.TypedExtensionConfig) (monitor, error) {
	var mon monitor
	if m.GetTypedConfig().MessageName() != "envoy.extensions.outlier_detection_monitors.consecutive_errors.v3.ConsecutiveErrors" {
		return mon, fmt.Errorf("%s: monitor %q (%s) is not supported", path, m.GetName(), m.GetTypedConfig().MessageName())
	}
	var ce consecutivev3.ConsecutiveErrors
	if err := m.GetTypedConfig().UnmarshalTo(&ce); err != nil {
		return mon, fmt.Errorf("decoding %s: %w", path, err)
	}
	if err := xdsfield.Check(&ce, path, "name", "threshold", "enforcing", "error_buckets"); err != nil {
		return mon, err
	}
	mon = monitor{name: ce.GetName(), threshold: 5, enforcing: 100}
	if v := ce.GetThreshold(); v != nil {
		mon.threshold = v.GetValue()
	}
	if v := ce.GetEnforcing(); v != nil {
		mon.enforcing = min(100, v.GetValue())
	}
	b := ce.GetErrorBuckets()
	if b != nil {
		if err := xdsfield.Check(b, path+".error_buckets", "http_errors", "local_origin_errors"); err != nil {
			return mon, err
		}
	}
	for j, h := range b.GetHttpErrors() {
		r := h.GetRange()
		if r == nil || r.GetStart() >= r.GetEnd() {
			return mon, fmt.Errorf("%s.error_buckets.http_errors[%d]: invalid range", path, j)
		}
		mon.httpRanges = append(mon.httpRanges, [2]int{int(r.GetStart()), int(r.GetEnd())})
	}
	mon.local = len(b.GetLocalOriginErrors()) > 0
	return mon, nil
}

// report feeds an upstream HTTP response status into outlier detection. It runs on the request
// path: atomics only, unless the host crosses a threshold.
func (c *Cluster) report(ep *endpoint, status int) {
	oc := c.outlier
	if oc == nil || ep == nil {
		return
	}
	if status >= 500 {
		ep.od.fail.Add(1)
	} else {
		ep.od.ok.Add(1)
	}
	c.consecutive(ep, status)
	if oc.split && ep.od.cLocal.Load() != 0 {
		ep.od.cLocal.Store(0) // a response means the connection worked
	}
	for i := range oc.monitors {
		c.monitorObserve(ep, i, oc.monitors[i].matchesStatus(status))
	}
}

// reportLocal feeds a locally originated event (connect failure, reset, timeout, or a successful
// connection) into outlier detection.
func (c *Cluster) reportLocal(ep *endpoint, failed, timeout bool) {
	oc := c.outlier
	if oc == nil || ep == nil {
		return
	}
	for i := range oc.monitors {
		if oc.monitors[i].local {
			c.monitorObserve(ep, i, failed)
		}
	}
	switch {
	case oc.split && failed:
		ep.od.failLocal.Add(1)
	case oc.split:
		ep.od.okLocal.Add(1)
	case failed:
		ep.od.fail.Add(1)
	}
	if !failed {
		if oc.split && ep.od.cLocal.Load() != 0 {
			ep.od.cLocal.Store(0)
		}
		return
	}
	if !oc.split {
		code := http.StatusServiceUnavailable
		if timeout {
			code = http.StatusGatewayTimeout
		}
		c.consecutive(ep, code)
		return
	}
	if n := ep.od.cLocal.Add(1); oc.consecutiveLocal > 0 && n == oc.consecutiveLocal {
		c.st.odDetectedLocal.Inc()
		if roll(oc.enforcingLocal) {
			c.eject(ep, c.st.odEnforcedLocal)
		}
	}
}

func (c *Cluster) consecutive(ep *endpoint, status int) {
	oc := c.outlier
	if status < 500 {
		if ep.od.c5xx.Load() != 0 {
			ep.od.c5xx.Store(0)
		}
		if ep.od.cGW.Load() != 0 {
			ep.od.cGW.Store(0)
		}
		return
	}
	n := ep.od.c5xx.Add(1)
	var g uint32
	if status == 502 || status == 503 || status == 504 {
		g = ep.od.cGW.Add(1)
	} else {
		ep.od.cGW.Store(0)
	}
	if oc.consecutive5xx > 0 && n == oc.consecutive5xx {
		c.st.odDetected5xx.Inc()
		if roll(oc.enforcing5xx) {
			c.eject(ep, c.st.odEnforced5xx)
		}
	}
	if oc.consecutiveGW > 0 && g == oc.consecutiveGW {
		c.st.odDetectedGateway.Inc()
		if roll(oc.enforcingGW) {
			c.eject(ep, c.st.odEnforcedGateway)
		}
	}
}

func (c *Cluster) monitorObserve(ep *endpoint, i int, isError bool) {
	m := &c.outlier.monitors[i]
	cnt := &ep.od.monitors[i]
	if !isError {
		if cnt.Load() != 0 {
			cnt.Store(0)
		}
		return
	}
	if n := cnt.Add(1); m.threshold > 0 && n == m.threshold {
		c.st.odDetectedMonitor.Inc()
		if roll(m.enforcing) {
			c.eject(ep, c.st.odEnforcedMonitor)
		}
	}
}

func roll(pct uint32) bool { return pct >= 100 || (pct > 0 && rand.Uint32N(100) < pct) }

type incrementer interface{ Inc() }

func (c *Cluster) eject(ep *endpoint, enforced incrementer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ejectLocked(ep, enforced) {
		c.rebuildLocked()
	}
}

// ejectLocked ejects ep unless max_ejection_percent forbids it and reports whether it did; the
// caller republishes the host set. c.mu is held.
func (c *Cluster) ejectLocked(ep *endpoint, enforced incrementer) bool {
	if ep.od.ejected.Load() || c.closed.Load() || c.byKey[ep.key] != ep {
		return false
	}
	total := len(c.members)
	ejected := 0
	for _, m := range c.members {
		if m.od.ejected.Load() {
			ejected++
		}
	}
	// Envoy checks the share already ejected before ejecting another host.
	if total == 0 || uint32(100*ejected/total) >= c.outlier.maxEjectionPercent {
		c.st.odOverflow.Inc()
		return false
	}
	ep.od.ejected.Store(true)
	ep.od.ejectedAt = time.Now()
	ep.od.multiplier++
	ep.od.c5xx.Store(0)
	ep.od.cGW.Store(0)
	ep.od.cLocal.Store(0)
	for i := range ep.od.monitors {
		ep.od.monitors[i].Store(0)
	}
	enforced.Inc()
	c.st.odEnforcedTotal.Inc()
	c.st.odEjectionsTotal.Inc()
	c.st.odActive.Inc()
	c.log.Info("outlier ejected", "host", ep.key, "for", c.ejectionTime(ep))
	return true
}

func (c *Cluster) ejectionTime(ep *endpoint) time.Duration {
	return min(c.outlier.baseEjection*time.Duration(ep.od.multiplier), c.outlier.maxEjection)
}

// outlierLoop runs Envoy's interval sweep: hosts whose ejection time has passed return, and the
// ejection multiplier of hosts that stayed healthy for an interval decays.
func (c *Cluster) outlierLoop() {
	c.tickUntilStop(c.outlier.interval, c.sweep)
}

func (c *Cluster) sweep(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	changed := c.rateSweepLocked()
	for _, ep := range c.members {
		switch {
		case ep.od.ejected.Load():
			if now.Sub(ep.od.ejectedAt) >= c.ejectionTime(ep) {
				ep.od.ejected.Store(false)
				c.st.odActive.Dec()
				c.log.Info("outlier returned", "host", ep.key)
				changed = true
			}
		case ep.od.multiplier > 0 && now.Sub(ep.od.ejectedAt) >= c.ejectionTime(ep)+c.outlier.interval:
			ep.od.multiplier--
		}
	}
	if changed {
		c.rebuildLocked()
	}
}
