package topology

import (
	"math"
	"testing"
)

func TestHistogramQuantile(t *testing.T) {
	inf := math.Inf(1)
	// Envoy's first bounds; 100 observations: 10 ≤ 1 ms, 50 ≤ 5, 90 ≤ 10, 100 ≤ 25.
	b := []bucket{{25, 100}, {1, 10}, {5, 50}, {10, 90}, {inf, 100}, {0.5, 0}}
	for _, c := range []struct {
		q, want float64
	}{
		{0.5, 5},                         // rank 50 is the 5 ms bucket's top
		{0.3, 1 + 4*(20.0/40)},           // rank 30: 20 of the 40 in (1, 5]
		{0.99, 10 + 15*(9.0/10)},         // rank 99: 9 of the 10 in (10, 25]
		{0.05, 0.5 + 0.5*(5.0/10)},       // rank 5 in (0.5, 1]
		{0, 0},                           // rank 0: the first bucket, from 0
		{1, 25},                          // rank 100 reaches the 25 ms bucket
		{-0.1, math.Inf(-1)}, {1.5, inf}, // out of range, as Prometheus
	} {
		if got := histogramQuantile(c.q, b); math.Abs(got-c.want) > 1e-9 && got != c.want {
			t.Errorf("q=%v: %v, want %v", c.q, got, c.want)
		}
	}
	// A rank in the +Inf bucket gives the highest finite bound.
	if got := histogramQuantile(0.99, []bucket{{10, 50}, {25, 60}, {inf, 100}}); got != 25 {
		t.Errorf("+Inf bucket: %v, want 25", got)
	}
	// Non-monotonic counts (series that reset at different times) are made monotonic.
	if got := histogramQuantile(0.5, []bucket{{10, 60}, {25, 40}, {inf, 100}}); got != 10*50.0/60 {
		t.Errorf("non-monotonic: %v", got)
	}
	for name, bs := range map[string][]bucket{
		"no +Inf":         {{10, 5}, {25, 10}},
		"one bucket":      {{inf, 10}},
		"no observations": {{10, 0}, {inf, 0}},
	} {
		if got := histogramQuantile(0.5, bs); !math.IsNaN(got) {
			t.Errorf("%s: %v, want NaN", name, got)
		}
	}
}
