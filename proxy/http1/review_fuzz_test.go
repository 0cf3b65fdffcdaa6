package http1

import (
	"math/rand/v2"
	"testing"
)

// FuzzReviewLimits complements FuzzParseHead (default limits, request heads only): small
// limits of every kind, trailer sections, and parsers without keep, each fed whole, cut at
// random and byte by byte.
func FuzzReviewLimits(f *testing.F) {
	for i, s := range append(append([]string{}, fastHeads...), fuzzSeeds...) {
		f.Add([]byte(s), uint16(30+i), uint16(i%9), uint8(i%4), uint64(i))
	}
	f.Fuzz(func(t *testing.T, data []byte, headerBytes, lineBytes uint16, count uint8, seed uint64) {
		if len(data) > 4096 {
			return
		}
		in := string(data)
		lim := Limits{MaxHeaderBytes: int(headerBytes), MaxRequestLineBytes: int(lineBytes), MaxHeaderCount: int(count)}
		rng := rand.New(rand.NewPCG(seed, seed^0x5bd1e995))
		for _, trailers := range []bool{false, true} {
			checkReview(t, rng, in, lim, trailers, benchRequest)
		}
	})
}
