package http1

import (
	"math/rand/v2"
	"testing"
)

// refMask marks the top bit of each byte of x for which bad is true.
func refMask(x uint64, bad func(byte) bool) uint64 {
	var m uint64
	for i := 0; i < 8; i++ {
		if bad(byte(x >> (8 * i))) {
			m |= 0x80 << (8 * i)
		}
	}
	return m
}

func notNameByte(c byte) bool { return !('a' <= c|0x20 && c|0x20 <= 'z' || c == '-') || c >= 0x80 }
func ctlByte(c byte) bool     { return c < 0x20 || c == 0x7f }

// TestReview4WordMasks: nameMask and ctlMask against a byte-by-byte reference: every byte value
// in every lane with neighbours from a set of edge values, and random words.
func TestReview4WordMasks(t *testing.T) {
	edges := []byte{0, 1, 0x1f, 0x20, 0x2c, '-', 0x2e, 0x40, 'A', 'Z', 0x5b, 0x60, 'a', 'z', 0x7b, 0x7e, 0x7f, 0x80, 0x9f, 0xa0, 0xc1, 0xdf, 0xe0, 0xfa, 0xff}
	check := func(x uint64) {
		if got, want := nameMask(x), refMask(x, notNameByte); got != want {
			t.Fatalf("nameMask(%#016x) = %#016x, want %#016x", x, got, want)
		}
		if got, want := ctlMask(x), refMask(x, ctlByte); got != want {
			t.Fatalf("ctlMask(%#016x) = %#016x, want %#016x", x, got, want)
		}
	}
	for lane := 0; lane < 8; lane++ {
		for c := 0; c < 256; c++ {
			for _, n := range edges {
				var x uint64
				for i := 0; i < 8; i++ {
					x |= uint64(n) << (8 * i)
				}
				x = x&^(0xff<<(8*lane)) | uint64(c)<<(8*lane)
				check(x)
			}
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 2_000_000; i++ {
		x := r.Uint64()
		check(x)
		// Bytes from the edge set only.
		var y uint64
		for j := 0; j < 8; j++ {
			y |= uint64(edges[r.IntN(len(edges))]) << (8 * j)
		}
		check(y)
	}
}
