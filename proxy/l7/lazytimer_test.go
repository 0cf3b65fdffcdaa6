package l7

import (
	"sync/atomic"
	"testing"
	"time"
)

// waitFired waits (bounded) until n reaches want.
func waitFired(t *testing.T, n *atomic.Int32, want int32) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for n.Load() < want && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := n.Load(); got != want {
		t.Fatalf("fired %d times, want %d", got, want)
	}
}

// rtState returns rt's runtime timer's fire time and the current deadline.
func rtState(rt *routeTimer) (when, by int64) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.when, rt.by
}

// TestRouteTimerLazyReuse checks the Stream's kept route timer across requests: a stopped
// request's pending runtime timer never calls that request's fire; the next request reuses
// it when it fires earlier than the new deadline (and fires no sooner than that deadline),
// and resets it when it would fire too late.
func TestRouteTimerLazyReuse(t *testing.T) {
	var s Stream
	var old, cur atomic.Int32
	var early atomic.Bool
	// Request 1 arms 20 ms and ends at once: its runtime timer stays pending.
	rt := s.routeTimer(20*time.Millisecond, func() { old.Add(1) })
	rt.start()
	if !rt.stop() {
		t.Fatal("stop of a pending route timer reports that it fired")
	}
	// Request 2 (60 ms) reuses the pending timer, which fires first and re-arms.
	var by atomic.Int64
	by.Store(sinceBase() + int64(60*time.Millisecond))
	rt = s.routeTimer(60*time.Millisecond, func() {
		if sinceBase() < by.Load() {
			early.Store(true)
		}
		cur.Add(1)
	})
	rt.start()
	if when, rby := rtState(rt); when >= rby {
		t.Fatalf("request 2 did not reuse the pending timer (when %d, by %d)", when, rby)
	}
	waitFired(t, &cur, 1)
	if early.Load() {
		t.Error("the route timer fired before the request's deadline")
	}
	if rt.stop() {
		t.Error("stop of a fired route timer reports that it could not fire")
	}
	if old.Load() != 0 {
		t.Error("a stopped request's route timer fired")
	}
	// A timer that fired is not reused by the Stream's owner (forwardDone drops it); a fresh
	// one left pending far out is reset for a shorter deadline.
	s.rtimer = nil
	rt = s.routeTimer(time.Hour, func() { old.Add(1) })
	rt.start()
	rt.stop()
	cur.Store(0)
	rt = s.routeTimer(5*time.Millisecond, func() { cur.Add(1) })
	rt.start()
	if when, rby := rtState(rt); when != rby {
		t.Fatalf("a pending timer firing after the new deadline was kept (when %d, by %d)", when, rby)
	}
	waitFired(t, &cur, 1)
	if old.Load() != 0 {
		t.Error("a stopped request's route timer fired")
	}
}

// TestIdleTimerLazyReuse checks the Stream's kept idle timer across requests, as
// TestRouteTimerLazyReuse the route timer's.
func TestIdleTimerLazyReuse(t *testing.T) {
	var s Stream
	var old, cur atomic.Int32
	it := s.idleTimer(20*time.Millisecond, func() { old.Add(1) })
	if !it.stop() {
		t.Fatal("stop of a pending idle timer reports that it fired")
	}
	start := sinceBase()
	var early atomic.Bool
	it2 := s.idleTimer(60*time.Millisecond, func() {
		if sinceBase()-start < int64(60*time.Millisecond) {
			early.Store(true)
		}
		cur.Add(1)
	})
	if it2 != it {
		t.Fatal("the Stream's idle timer was not kept")
	}
	it.mu.Lock()
	reused := it.when < start+int64(60*time.Millisecond)
	it.mu.Unlock()
	if !reused {
		t.Error("the pending idle timer was reset instead of reused")
	}
	waitFired(t, &cur, 1)
	if early.Load() {
		t.Error("the idle timer fired before the stream was idle for its period")
	}
	if it.stop() {
		t.Error("stop of a fired idle timer reports that it could not fire")
	}
	if old.Load() != 0 {
		t.Error("a stopped request's idle timer fired")
	}
	// Far out pending, shorter period: reset.
	s.idleT = nil
	it = s.idleTimer(time.Hour, func() { old.Add(1) })
	it.stop()
	cur.Store(0)
	s.idleTimer(5*time.Millisecond, func() { cur.Add(1) })
	waitFired(t, &cur, 1)
	if old.Load() != 0 {
		t.Error("a stopped request's idle timer fired")
	}
	it.stop()
	// A timer that is not the Stream's (tunnels) stops its runtime timer.
	st := newIdleTimer(time.Hour, func() {})
	st.stop()
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.when != 0 {
		t.Error("a tunnel's idle timer was left pending")
	}
}
