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
	it := newIdleTimer(300*time.Millisecond, func() { fired.Add(1) })
	for i := 0; i < 50; i++ { // 1 s of activity, three periods
		time.Sleep(20 * time.Millisecond)
		it.touch()
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
