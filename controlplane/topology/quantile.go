package topology

import (
	"math"
	"slices"
)

// bucket is one cumulative histogram bucket: the count of observations ≤ le.
type bucket struct {
	le, count float64
}

// histogramQuantile estimates the q-quantile (0 ≤ q ≤ 1) of the observations in cumulative
// buckets as Prometheus' histogram_quantile does: buckets are sorted by upper bound and made
// monotonic, the rank q×total falls in one bucket, and the value is interpolated linearly
// inside it (from 0 for the first bucket). A rank in the +Inf bucket gives the highest finite
// bound. It returns NaN without a +Inf bucket, with fewer than two buckets, or without
// observations; -Inf/+Inf for q below 0 or above 1.
func histogramQuantile(q float64, buckets []bucket) float64 {
	switch {
	case math.IsNaN(q):
		return math.NaN()
	case q < 0:
		return math.Inf(-1)
	case q > 1:
		return math.Inf(1)
	}
	bs := slices.Clone(buckets)
	slices.SortFunc(bs, func(a, b bucket) int {
		switch {
		case a.le < b.le:
			return -1
		case a.le > b.le:
			return 1
		}
		return 0
	})
	if len(bs) < 2 || !math.IsInf(bs[len(bs)-1].le, 1) {
		return math.NaN()
	}
	// Counts of a window may dip where series reset at different times: keep them monotonic,
	// as Prometheus does.
	for i := 1; i < len(bs); i++ {
		if bs[i].count < bs[i-1].count {
			bs[i].count = bs[i-1].count
		}
	}
	total := bs[len(bs)-1].count
	if total == 0 || math.IsNaN(total) {
		return math.NaN()
	}
	rank := q * total
	b := 0
	for b < len(bs)-1 && bs[b].count < rank {
		b++
	}
	switch {
	case b == len(bs)-1:
		return bs[len(bs)-2].le
	case b == 0 && bs[0].le <= 0:
		return bs[0].le
	}
	start, end, count := 0.0, bs[b].le, bs[b].count
	if b > 0 {
		start = bs[b-1].le
		count -= bs[b-1].count
		rank -= bs[b-1].count
	}
	return start + (end-start)*(rank/count)
}
