package clock

import (
	"sync"
	"testing"
	"time"
)

// TestNowTracksTimeNow checks Now against time.Now: never before a time.Now read before it,
// never after one read after it (the monotonic readings, exact), and its wall reading moved
// from its base's exactly as its monotonic one did.
func TestNowTracksTimeNow(t *testing.T) {
	deadline := time.Now().Add(3 * Resync) // spans several resyncs
	resyncs := 0
	last := base.Load()
	for n := 0; time.Now().Before(deadline) && n < 5_000_000; n++ {
		before := time.Now()
		got := Now()
		after := time.Now()
		if got.Before(before) || got.After(after) {
			t.Fatalf("Now %v outside [%v, %v]", got, before, after)
		}
		b := base.Load()
		if b != last {
			resyncs++
			last = b
		}
		if got.Round(0).Sub(b.Round(0)) != got.Sub(*b) {
			t.Fatalf("wall and monotonic readings moved apart: %v vs %v", got.Round(0).Sub(b.Round(0)), got.Sub(*b))
		}
	}
	if resyncs == 0 {
		t.Error("the base was never read again")
	}
}

// TestNowConcurrent reads Now from several goroutines across resyncs (run with -race).
func TestNowConcurrent(t *testing.T) {
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := Now()
			for i := 0; i < 20000; i++ {
				n := Now()
				if n.Before(last) {
					t.Errorf("went back: %v after %v", n, last)
					return
				}
				last = n
			}
		}()
	}
	wg.Wait()
}

func BenchmarkNow(b *testing.B) {
	for i := 0; i < b.N; i++ {
		_ = Now()
	}
}

func BenchmarkTimeNow(b *testing.B) {
	for i := 0; i < b.N; i++ {
		_ = time.Now()
	}
}

// TestMonoTracksTimeSince checks Mono against time.Since on one base: the same clock, so a
// Mono interval lies within the time.Since interval read around it.
func TestMonoTracksTimeSince(t *testing.T) {
	t0, m0 := time.Now(), Mono()
	for i := 0; i < 1000; i++ {
		before := time.Since(t0)
		got := Mono() - m0
		after := time.Since(t0)
		// m0 was read after t0: got may trail before by the time between the two readings.
		if got > after || got < before-time.Millisecond {
			t.Fatalf("Mono advanced %v, time.Since between %v and %v", got, before, after)
		}
		if i%100 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	if d := Mono() - m0; d < 10*time.Millisecond {
		t.Errorf("Mono advanced %v over ten 1 ms sleeps", d)
	}
}
