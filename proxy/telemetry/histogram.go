package telemetry

import (
	"math/bits"
	"strconv"
	"sync/atomic"
)

// Buckets are the upper bounds of Istio's histograms, which are Envoy's default buckets:
// istio_request_duration_milliseconds (in milliseconds) and istio_request_bytes /
// istio_response_bytes (in bytes) use the same bounds.
var Buckets = [...]float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
	300000, 600000, 1800000, 3600000}

// bucketLabels are the rendered le values, as Envoy prints them (%g: 1.8e+06).
var bucketLabels = func() (out [len(Buckets)]string) {
	for i, b := range Buckets {
		out[i] = strconv.FormatFloat(b, 'g', -1, 64)
	}
	return out
}()

// histogram counts integer observations (milliseconds or bytes, as Envoy records them) into
// Buckets with atomics: counts[i] is the number of values in (Buckets[i-1], Buckets[i]], the
// last entry those above every bound. Rendering makes them cumulative.
type histogram struct {
	counts [len(Buckets) + 1]atomic.Uint64
	sum    atomic.Uint64
}

// intBounds are Buckets for integer observations: v <= Buckets[i] exactly when v <=
// intBounds[i] (each bound rounded down).
var intBounds = func() (out [len(Buckets)]uint64) {
	for i, b := range Buckets {
		out[i] = uint64(b)
	}
	return out
}()

// firstBucket[n] is the first bucket that can hold a value of n significant bits (bits.Len64):
// the first bound not below 2^(n-1), the smallest such value. bucketIndex scans from there,
// past at most a couple of bounds, instead of from the first.
var firstBucket = func() (out [65]uint8) {
	for n := range out {
		var least uint64
		if n > 0 {
			least = 1 << (n - 1)
		}
		i := 0
		for i < len(intBounds) && least > intBounds[i] {
			i++
		}
		out[n] = uint8(i)
	}
	return out
}()

// bucketIndex returns the bucket of v: the first bound not below it (len(Buckets): above
// every bound).
func bucketIndex(v uint64) int {
	i := int(firstBucket[bits.Len64(v)])
	for i < len(intBounds) && v > intBounds[i] {
		i++
	}
	return i
}

// observe counts v. Not inlined: a request records three histograms, which share this copy
// rather than each carrying its own (instruction-cache lines per request).
//
//go:noinline
func (h *histogram) observe(v uint64) {
	h.counts[bucketIndex(v)].Add(1)
	h.sum.Add(v)
}

// count returns the number of observations: the sum of the bucket counts.
func (h *histogram) count() uint64 {
	var n uint64
	for i := range h.counts {
		n += h.counts[i].Load()
	}
	return n
}
