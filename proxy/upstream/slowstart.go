package upstream

import (
	"fmt"
	"math"
	"time"

	"github.com/strait-mesh/strait/proxy/xdsfield"
	clusterv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/cluster/v3"
)

// slowStartScale multiplies all weights while slow start is configured, so that a ramping host's
// fraction of its weight keeps a resolution of 1%.
const slowStartScale = 100

// slowStart is Envoy's slow start mode for ROUND_ROBIN and LEAST_REQUEST: a host that joined the
// cluster less than window ago has its weight scaled by
// max(minPercent, (max(secondsSinceJoin, 1)/windowSeconds)^(1/aggression)).
// The balancer is rebuilt periodically while any host is ramping up.
type slowStart struct {
	window     time.Duration
	aggression float64
	minPercent float64
}

func compileSlowStart(path string, s *clusterv3.Cluster_SlowStartConfig) (*slowStart, error) {
	if s == nil {
		return nil, nil
	}
	if err := xdsfield.Check(s, path, "slow_start_window", "aggression", "min_weight_percent"); err != nil {
		return nil, err
	}
	ss := &slowStart{window: s.GetSlowStartWindow().AsDuration(), aggression: 1, minPercent: 10}
	if ss.window <= 0 {
		return nil, fmt.Errorf("%s.slow_start_window must be positive", path)
	}
	if a := s.GetAggression(); a != nil {
		if err := xdsfield.Check(a, path+".aggression", "default_value", "runtime_key"); err != nil {
			return nil, err
		}
		if ss.aggression = a.GetDefaultValue(); ss.aggression <= 0 {
			return nil, fmt.Errorf("%s.aggression must be positive", path)
		}
	}
	if p := s.GetMinWeightPercent(); p != nil {
		ss.minPercent = min(100, max(0, p.GetValue()))
	}
	return ss, nil
}

// weight returns the effective weight of a host with the given configured weight that joined at
// created, and whether it is still ramping up.
func (s *slowStart) weight(w uint32, created, now time.Time) (uint32, bool) {
	scaled := float64(w) * slowStartScale
	age := now.Sub(created)
	if age >= s.window {
		return uint32(min(scaled, math.MaxUint32)), false
	}
	tf := max(age.Seconds(), 1) / s.window.Seconds()
	f := max(s.minPercent/100, math.Pow(tf, 1/s.aggression))
	return uint32(max(1, min(scaled*f, math.MaxUint32))), true
}

// slowStartLoop rebuilds the balancer while hosts ramp up, a twentieth of the window apart.
func (c *Cluster) slowStartLoop() {
	c.tickUntilStop(max(c.slowStart.window/20, 100*time.Millisecond), func(time.Time) {
		c.mu.Lock()
		if c.ramping && !c.closed.Load() {
			c.rebuildLocked()
		}
		c.mu.Unlock()
	})
}
