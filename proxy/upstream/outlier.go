package upstream

import (
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
)

// outlierConfig is the cluster's passive health checking (Envoy's outlier_detection), limited
// to consecutive 5xx and consecutive gateway failures with locally originated failures folded
// in (split_external_local_origin_errors false: connect failures and resets count as 503,
// timeouts as 504).
type outlierConfig struct {
	consecutive5xx, enforcing5xx uint32
	consecutiveGW, enforcingGW   uint32
	interval, baseEjection       time.Duration
	maxEjection                  time.Duration
	maxEjectionPercent           uint32
}

// odState is an endpoint's outlier-detection state.
type odState struct {
	c5xx, cGW atomic.Uint32
	ejected   atomic.Bool
	// Guarded by Cluster.mu.
	ejectedAt  time.Time
	multiplier uint32
}

func compileOutlier(o *clusterv3.OutlierDetection) (*outlierConfig, error) {
	if o == nil {
		return nil, nil
	}
	// Success-rate and failure-percentage detection are not implemented: they are accepted only
	// when explicitly disabled (enforcing_success_rate: 0, as Istio sends).
	if err := checkFields(o, "outlier_detection", "consecutive_5xx", "interval", "base_ejection_time",
		"max_ejection_percent", "enforcing_consecutive_5xx", "enforcing_success_rate",
		"consecutive_gateway_failure", "enforcing_consecutive_gateway_failure", "max_ejection_time",
		"enforcing_failure_percentage", "enforcing_failure_percentage_local_origin",
		"enforcing_consecutive_local_origin_failure", "enforcing_local_origin_success_rate"); err != nil {
		return nil, err
	}
	if v := o.GetEnforcingSuccessRate(); v != nil && v.GetValue() != 0 {
		return nil, fmt.Errorf("outlier_detection.enforcing_success_rate %d is not supported (success-rate ejection is not implemented; set 0)", v.GetValue())
	}
	oc := &outlierConfig{
		consecutive5xx:     5,
		enforcing5xx:       100,
		consecutiveGW:      5,
		enforcingGW:        0,
		interval:           10 * time.Second,
		baseEjection:       30 * time.Second,
		maxEjection:        300 * time.Second,
		maxEjectionPercent: 10,
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
	if d := o.GetInterval(); d != nil {
		if oc.interval = d.AsDuration(); oc.interval <= 0 {
			return nil, fmt.Errorf("outlier_detection.interval must be positive")
		}
	}
	if d := o.GetBaseEjectionTime(); d != nil {
		if oc.baseEjection = d.AsDuration(); oc.baseEjection <= 0 {
			return nil, fmt.Errorf("outlier_detection.base_ejection_time must be positive")
		}
	}
	if d := o.GetMaxEjectionTime(); d != nil {
		oc.maxEjection = d.AsDuration()
	}
	oc.maxEjection = max(oc.maxEjection, oc.baseEjection)
	if v := o.GetMaxEjectionPercent(); v != nil {
		oc.maxEjectionPercent = min(100, v.GetValue())
	}
	return oc, nil
}

// report feeds one request outcome (an HTTP status; locally originated failures are mapped to
// 503/504 by the caller) into outlier detection. It runs on the request path: atomics only,
// unless the host crosses a threshold.
func (c *Cluster) report(ep *endpoint, status int) {
	oc := c.outlier
	if oc == nil || ep == nil {
		return
	}
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

func roll(pct uint32) bool { return pct >= 100 || (pct > 0 && rand.Uint32N(100) < pct) }

type incrementer interface{ Inc() }

func (c *Cluster) eject(ep *endpoint, enforced incrementer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ep.od.ejected.Load() || c.closed.Load() || c.byKey[ep.key] != ep {
		return
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
		return
	}
	ep.od.ejected.Store(true)
	ep.od.ejectedAt = time.Now()
	ep.od.multiplier++
	ep.od.c5xx.Store(0)
	ep.od.cGW.Store(0)
	enforced.Inc()
	c.st.odEnforcedTotal.Inc()
	c.st.odEjectionsTotal.Inc()
	c.st.odActive.Inc()
	c.log.Info("outlier ejected", "host", ep.key, "for", c.ejectionTime(ep))
	c.rebuildLocked()
}

func (c *Cluster) ejectionTime(ep *endpoint) time.Duration {
	return min(c.outlier.baseEjection*time.Duration(ep.od.multiplier), c.outlier.maxEjection)
}

// outlierLoop runs Envoy's interval sweep: hosts whose ejection time has passed return, and the
// ejection multiplier of hosts that stayed healthy for an interval decays.
func (c *Cluster) outlierLoop() {
	defer c.wg.Done()
	t := time.NewTicker(c.outlier.interval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case now := <-t.C:
			c.sweep(now)
		}
	}
}

func (c *Cluster) sweep(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	changed := false
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
