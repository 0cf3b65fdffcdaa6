package upstream

import (
	"math"

	clusterv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/cluster/v3"
)

// rateConfig holds Envoy's statistical outlier detectors, evaluated at every interval over the
// outcomes each host saw during it: success rate (eject hosts whose success rate is below
// mean − stdev_factor × stdev of the hosts with enough requests) and failure percentage (eject
// hosts whose failure percentage reaches a fixed threshold). With
// split_external_local_origin_errors, local-origin outcomes are judged separately.
type rateConfig struct {
	srMinHosts, srVolume       uint32
	srStdevFactor              float64
	enforcingSR, enforcingSRLo uint32
	fpThreshold                uint32
	fpMinHosts, fpVolume       uint32
	enforcingFP, enforcingFPLo uint32
}

func compileRates(o *clusterv3.OutlierDetection) rateConfig {
	r := rateConfig{
		srMinHosts: 5, srVolume: 100, srStdevFactor: 1.9,
		enforcingSR: 100, enforcingSRLo: 100,
		fpThreshold: 85, fpMinHosts: 5, fpVolume: 50,
	}
	u := func(dst *uint32, v interface{ GetValue() uint32 }, ok bool) {
		if ok {
			*dst = v.GetValue()
		}
	}
	u(&r.srMinHosts, o.GetSuccessRateMinimumHosts(), o.GetSuccessRateMinimumHosts() != nil)
	u(&r.srVolume, o.GetSuccessRateRequestVolume(), o.GetSuccessRateRequestVolume() != nil)
	u(&r.enforcingSR, o.GetEnforcingSuccessRate(), o.GetEnforcingSuccessRate() != nil)
	u(&r.enforcingSRLo, o.GetEnforcingLocalOriginSuccessRate(), o.GetEnforcingLocalOriginSuccessRate() != nil)
	u(&r.fpThreshold, o.GetFailurePercentageThreshold(), o.GetFailurePercentageThreshold() != nil)
	u(&r.fpMinHosts, o.GetFailurePercentageMinimumHosts(), o.GetFailurePercentageMinimumHosts() != nil)
	u(&r.fpVolume, o.GetFailurePercentageRequestVolume(), o.GetFailurePercentageRequestVolume() != nil)
	u(&r.enforcingFP, o.GetEnforcingFailurePercentage(), o.GetEnforcingFailurePercentage() != nil)
	u(&r.enforcingFPLo, o.GetEnforcingFailurePercentageLocalOrigin(), o.GetEnforcingFailurePercentageLocalOrigin() != nil)
	if v := o.GetSuccessRateStdevFactor(); v != nil {
		r.srStdevFactor = float64(v.GetValue()) / 1000
	}
	return r
}

// outcome is one host's counts for an interval.
type outcome struct {
	ep       *endpoint
	ok, fail uint32
}

// rateSweepLocked collects and resets every host's interval outcomes and ejects statistical
// outliers. It reports whether a host was ejected. c.mu is held.
func (c *Cluster) rateSweepLocked() bool {
	ext := make([]outcome, 0, len(c.members))
	loc := make([]outcome, 0, len(c.members))
	for _, ep := range c.members {
		e := outcome{ep: ep, ok: ep.od.ok.Swap(0), fail: ep.od.fail.Swap(0)}
		l := outcome{ep: ep, ok: ep.od.okLocal.Swap(0), fail: ep.od.failLocal.Swap(0)}
		if ep.od.ejected.Load() {
			continue
		}
		ext = append(ext, e)
		loc = append(loc, l)
	}
	r := &c.outlier.rates
	changed := c.successRateLocked(ext, r.enforcingSR, c.st.odDetectedSR, c.st.odEnforcedSR)
	changed = c.failurePercentLocked(ext, r.enforcingFP, c.st.odDetectedFP, c.st.odEnforcedFP) || changed
	if c.outlier.split {
		changed = c.successRateLocked(loc, r.enforcingSRLo, c.st.odDetectedSRLocal, c.st.odEnforcedSRLocal) || changed
		changed = c.failurePercentLocked(loc, r.enforcingFPLo, c.st.odDetectedFPLocal, c.st.odEnforcedFPLocal) || changed
	}
	return changed
}

func (c *Cluster) successRateLocked(hosts []outcome, enforcing uint32, detected, enforced incrementer) bool {
	r := &c.outlier.rates
	var rates []float64
	var eligible []outcome
	for _, h := range hosts {
		if n := h.ok + h.fail; n > 0 && n >= r.srVolume {
			rates = append(rates, 100*float64(h.ok)/float64(n))
			eligible = append(eligible, h)
		}
	}
	if len(eligible) == 0 || uint32(len(eligible)) < r.srMinHosts {
		return false
	}
	var mean float64
	for _, x := range rates {
		mean += x
	}
	mean /= float64(len(rates))
	var variance float64
	for _, x := range rates {
		variance += (x - mean) * (x - mean)
	}
	stdev := math.Sqrt(variance / float64(len(rates)))
	threshold := mean - r.srStdevFactor*stdev
	changed := false
	for i, h := range eligible {
		if rates[i] < threshold {
			detected.Inc()
			if roll(enforcing) && c.ejectLocked(h.ep, enforced) {
				changed = true
			}
		}
	}
	return changed
}

func (c *Cluster) failurePercentLocked(hosts []outcome, enforcing uint32, detected, enforced incrementer) bool {
	r := &c.outlier.rates
	var eligible []outcome
	for _, h := range hosts {
		if n := h.ok + h.fail; n > 0 && n >= r.fpVolume {
			eligible = append(eligible, h)
		}
	}
	if len(eligible) == 0 || uint32(len(eligible)) < r.fpMinHosts {
		return false
	}
	changed := false
	for _, h := range eligible {
		if 100*h.fail >= r.fpThreshold*(h.ok+h.fail) {
			detected.Inc()
			if roll(enforcing) && c.ejectLocked(h.ep, enforced) {
				changed = true
			}
		}
	}
	return changed
}
