package l7

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// TestReqCancelDeadlineReused: a request's reqCancel answers its parent's deadline, or none,
// for each request the Stream reuses it for (the answer without a deadline takes no lock),
// and none once the request ended; an attempt's answers its request's.
func TestReqCancelDeadlineReused(t *testing.T) {
	s := cancelStream(context.Background(), nil)
	for i, withDL := range []bool{false, true, true, false, true} {
		var parent context.Context = context.Background()
		var want time.Time
		if withDL {
			want = time.Now().Add(time.Hour)
			ctx, cancel := context.WithDeadline(context.Background(), want)
			defer cancel()
			parent = ctx
		}
		s.ctx = context.WithValue(parent, infoKey{}, s)
		s.baseCtx = s.ctx
		rc := s.cancelScope()
		if d, ok := rc.Deadline(); ok != withDL || !d.Equal(want) {
			t.Fatalf("request %d: Deadline() = %v, %v; want %v, %v", i, d, ok, want, withDL)
		}
		arc := s.attemptScope()
		if d, ok := arc.Deadline(); ok != withDL || !d.Equal(want) {
			t.Fatalf("request %d: the attempt's Deadline() = %v, %v; want %v, %v", i, d, ok, want, withDL)
		}
		arc.cancelFunc()(errStaleAttempt)
		rc.cancel(nil)
		s.endRequest(rc, false)
		if _, ok := rc.Deadline(); ok {
			t.Fatalf("request %d: a deadline after the request ended", i)
		}
	}
}

// TestRouteTimerSetupWithoutLock: the Stream's kept route timer takes a request's period on
// at its start or stop (routeTimer takes no lock): a runtime timer left pending by the last
// request that fires between the setup and the start fires nothing; a period set up and
// stopped without a start reports that it did not fire; a started one fires its own fire
// after its own d. Run with -race.
func TestRouteTimerSetupWithoutLock(t *testing.T) {
	s := &Stream{}
	var fired atomic.Int32
	count := func() { fired.Add(1) }
	// Request 1: a short period, started and stopped at once: its runtime timer stays pending.
	rt := s.routeTimer(5*time.Millisecond, count)
	rt.startAt(sinceBase())
	if !rt.stop() {
		t.Fatal("request 1: stop reports a fire")
	}
	// Request 2: set up, not started while the pending timer fires, then stopped.
	if s.routeTimer(time.Hour, count) != rt {
		t.Fatal("route timer not reused")
	}
	time.Sleep(30 * time.Millisecond)
	if !rt.stop() || fired.Load() != 0 {
		t.Fatalf("request 2 (never started): fires %d", fired.Load())
	}
	// Request 3: started from another goroutine (an attempt's body reader), fires once.
	s.routeTimer(10*time.Millisecond, count)
	done := make(chan struct{})
	go func() { rt.start(); close(done) }()
	<-done
	deadline := time.Now().Add(10 * time.Second)
	for fired.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if fired.Load() != 1 || rt.stop() {
		t.Fatalf("request 3: fires %d, or stop does not report the fire", fired.Load())
	}
}
