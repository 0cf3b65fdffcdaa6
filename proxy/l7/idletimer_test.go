package l7

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestIdleTimerTouchDefers checks that activity keeps the lazily re-armed idle timer from
// firing, that it fires once activity stops, and that a stopped timer never fires.
func TestIdleTimerTouchDefers(t *testing.T) {
	var fired atomic.Int32
	var it *idleTimer
	// 1 s of activity, three periods. On a loaded machine the touching goroutine may not run
	// for a whole period: such a run proves nothing and is tried again.
	for try := 0; ; try++ {
		fired.Store(0)
		it = newIdleTimer(300*time.Millisecond, func() { fired.Add(1) })
		last, maxGap := time.Now(), time.Duration(0)
		for i := 0; i < 50; i++ {
			time.Sleep(20 * time.Millisecond)
			it.touch()
			now := time.Now()
			maxGap = max(maxGap, now.Sub(last))
			last = now
		}
		if maxGap < 200*time.Millisecond {
			break
		}
		it.stop()
		if try == 4 {
			t.Skipf("the touching goroutine was starved for %v (machine too busy)", maxGap)
		}
	}
	if n := fired.Load(); n != 0 {
		t.Fatalf("fired %d times during activity", n)
	}
	deadline := time.Now().Add(10 * time.Second)
	for fired.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := fired.Load(); n != 1 {
		t.Fatalf("fired %d times after activity stopped, want 1", n)
	}

	var late atomic.Int32
	st := newIdleTimer(20*time.Millisecond, func() { late.Add(1) })
	st.stop()
	time.Sleep(100 * time.Millisecond)
	if late.Load() != 0 {
		t.Fatal("a stopped idle timer fired")
	}
	var nilTimer *idleTimer
	nilTimer.touch()
	nilTimer.stop()
}
