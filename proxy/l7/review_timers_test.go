package l7

import (
	"math/rand"
	"sync/atomic"
	"testing"
	"time"
)

// reviewTimer is the route or idle timer of a Stream as the router drives it.
type reviewTimer struct {
	start func(s *Stream, d time.Duration, fire func(), now int64)
	stop  func(s *Stream) bool
	drop  func(s *Stream)
}

var reviewTimers = map[string]reviewTimer{
	"route": {
		start: func(s *Stream, d time.Duration, fire func(), now int64) { s.routeTimer(d, fire).startAt(now) },
		stop:  func(s *Stream) bool { return s.rtimer.stop() },
		drop:  func(s *Stream) { s.rtimer = nil },
	},
	"idle": {
		start: func(s *Stream, d time.Duration, fire func(), now int64) { s.idleTimerAt(d, fire, now) },
		stop:  func(s *Stream) bool { return s.idleT.stop() },
		drop:  func(s *Stream) { s.idleT = nil },
	},
}

// TestReviewKeptTimersAcrossRequests drives a Stream's kept route and idle timers through a
// run of requests of varied timeouts that end before, around and long after their deadline,
// as forwardDone does (a timer whose stop reports that it fired is dropped). Each request's
// fire is called only for that request, never before its deadline, never once stop reported
// that it could not fire, and always for a request that outlives its deadline.
func TestReviewKeptTimersAcrossRequests(t *testing.T) {
	for name, tm := range reviewTimers {
		t.Run(name, func(t *testing.T) {
			var s Stream
			r := rand.New(rand.NewSource(3))
			for k := 0; k < 300; k++ {
				d := []time.Duration{time.Millisecond, 2 * time.Millisecond, 3 * time.Millisecond, 7 * time.Millisecond}[r.Intn(4)]
				var fired, after atomic.Bool
				var firedAt atomic.Int64
				now := sinceBase()
				by := now + int64(d)
				tm.start(&s, d, func() {
					firedAt.Store(sinceBase())
					if after.Load() {
						t.Errorf("request %d: fire called after stop reported it could not fire", k)
					}
					fired.Store(true)
				}, now)
				long := r.Intn(4) == 0
				if long {
					deadline := time.Now().Add(5 * time.Second)
					for !fired.Load() && time.Now().Before(deadline) {
						time.Sleep(200 * time.Microsecond)
					}
					if !fired.Load() {
						t.Fatalf("request %d: the %v timeout did not fire within 5 s", k, d)
					}
				} else {
					time.Sleep([]time.Duration{0, d / 2, d - 100*time.Microsecond, d, d + 100*time.Microsecond}[r.Intn(5)])
				}
				ok := tm.stop(&s)
				if ok {
					after.Store(true)
					if fired.Load() {
						t.Fatalf("request %d: stop reports the timer could not fire, but it fired", k)
					}
				} else {
					tm.drop(&s)
				}
				if fired.Load() && firedAt.Load() < by {
					t.Fatalf("request %d: fired %v before its deadline", k, time.Duration(by-firedAt.Load()))
				}
			}
			time.Sleep(20 * time.Millisecond) // pending runtime timers of stopped requests fire
		})
	}
}
