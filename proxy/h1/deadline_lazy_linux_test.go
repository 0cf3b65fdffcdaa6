package h1

import (
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// newTestDeadline returns a lazyDeadline whose socket is a fake that records what it was armed
// for.
func newTestDeadline(armedTo *time.Time) *lazyDeadline {
	l := &lazyDeadline{sets: new(atomic.Int64)}
	l.set = func(t time.Time) error { *armedTo = t; return nil }
	return l
}

// TestEncodeWant: deadlines with a monotonic reading come back from their number with the same
// instant; the others are not kept as numbers.
func TestEncodeWant(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name string
		t    time.Time
		ok   bool
	}{
		{"zero", time.Time{}, true},
		{"soon", now.Add(time.Millisecond), true},
		{"in a day", now.Add(24 * time.Hour), true},
		{"in ten years", now.Add(10 * 365 * 24 * time.Hour), true},
		{"wall only", now.Round(0).Add(time.Second), false},
		{"past", time.Unix(1, 0), false},
		{"before base", wantBase.Add(-time.Second), false},
		{"far", now.Add(100 * 365 * 24 * time.Hour), false},
	} {
		n, ok := encodeWant(tc.t)
		if ok != tc.ok {
			t.Errorf("%s: ok %v, want %v", tc.name, ok, tc.ok)
			continue
		}
		if !ok {
			continue
		}
		l := &lazyDeadline{}
		l.want.Store(n)
		got := l.wantTime()
		if got.IsZero() != tc.t.IsZero() || !got.Equal(tc.t) || got.Sub(tc.t) != 0 {
			t.Errorf("%s: %v back as %v", tc.name, tc.t, got)
		}
	}
}

// TestLazyDeadlineSlowWants: deadlines not kept as numbers (wall-clock times, an interruption
// in the past) are armed, re-armed and replaced as the others.
func TestLazyDeadlineSlowWants(t *testing.T) {
	var armed time.Time
	l := newTestDeadline(&armed)
	wall := time.Now().Round(0).Add(time.Hour)
	l.request(wall)
	if !armed.Equal(wall) || l.gate.Load() != gateLocked {
		t.Fatalf("armed %v (gate %d), want %v and the gate locked", armed, l.gate.Load(), wall)
	}
	// Later, on the fast path's terms but with the armed deadline not a number: the lock.
	later := time.Now().Add(2 * time.Hour)
	l.request(later)
	if !armed.Equal(wall) || !l.wantTime().Equal(later) {
		t.Fatalf("armed %v want %v, want %v and %v", armed, l.wantTime(), wall, later)
	}
	// An interruption, then none: the socket's deadline is cleared at once.
	l.request(time.Unix(1, 0))
	if !armed.Equal(time.Unix(1, 0)) || !l.past {
		t.Fatalf("armed %v past %v, want the interruption", armed, l.past)
	}
	l.request(time.Time{})
	if !armed.IsZero() || l.past || l.gate.Load() != 0 {
		t.Fatalf("armed %v past %v gate %d, want none", armed, l.past, l.gate.Load())
	}
	// A wall-clock deadline as want when the armed one passes: rearm arms it.
	soon := time.Now().Add(time.Millisecond)
	l.request(soon)
	l.request(wall)
	if !armed.Equal(soon) {
		t.Fatalf("armed %v, want %v", armed, soon)
	}
	time.Sleep(2 * time.Millisecond)
	if retry, _ := l.rearm(); !retry || !armed.Equal(wall) {
		t.Fatalf("rearm: retry %v, armed %v, want true and %v", retry, armed, wall)
	}
}

// TestLazyDeadlineFastPath: deadlines that move later, and none, are recorded without the lock
// or the socket; one earlier than the armed one arms it.
func TestLazyDeadlineFastPath(t *testing.T) {
	var armed time.Time
	l := newTestDeadline(&armed)
	base := time.Now()
	l.request(base.Add(time.Second))
	if l.sets.Load() != 1 {
		t.Fatalf("%d sets, want 1", l.sets.Load())
	}
	for i := 2; i < 10; i++ {
		l.request(base.Add(time.Duration(i) * time.Second))
		l.request(time.Time{})
	}
	if l.sets.Load() != 1 || !armed.Equal(base.Add(time.Second)) {
		t.Fatalf("%d sets, armed %v, want 1 and %v", l.sets.Load(), armed, base.Add(time.Second))
	}
	l.request(base.Add(time.Millisecond))
	if l.sets.Load() != 2 || !armed.Equal(base.Add(time.Millisecond)) {
		t.Fatalf("%d sets, armed %v, want 2 and %v", l.sets.Load(), armed, base.Add(time.Millisecond))
	}
}

// TestLazyDeadlineConcurrent: requests from several goroutines, some on the fast path, racing
// with rearm and setStall, leave the socket armed no later than the deadline in force (the
// race detector checks the rest).
func TestLazyDeadlineConcurrent(t *testing.T) {
	var mu sync.Mutex // the fake socket's
	var armed time.Time
	l := &lazyDeadline{sets: new(atomic.Int64)}
	l.set = func(t time.Time) error { mu.Lock(); armed = t; mu.Unlock(); return nil }
	base := time.Now()
	for round := 0; round < 3000; round++ {
		var wg sync.WaitGroup
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func(seed uint64) {
				defer wg.Done()
				r := rand.New(rand.NewPCG(seed, uint64(round)))
				for i := 0; i < 16; i++ {
					switch k := r.IntN(10); {
					case k < 5:
						l.request(base.Add(time.Duration(1+r.IntN(1000)) * time.Second))
					case k < 7:
						l.request(time.Time{})
					case k < 8:
						l.request(base.Round(0).Add(time.Duration(1+r.IntN(1000)) * time.Second))
					default:
						l.rearm()
					}
				}
			}(uint64(g))
		}
		wg.Wait()
		l.mu.Lock()
		due := l.due(l.wantTime())
		mu.Lock()
		a := armed
		mu.Unlock()
		l.mu.Unlock()
		if !due.IsZero() && (a.IsZero() || due.Before(a)) {
			t.Fatalf("round %d: armed %v, later than the deadline in force %v", round, a, due)
		}
	}
}

// TestDirectConnWallDeadline: a wall-clock read deadline (no monotonic reading), set after a
// later one was armed, fires on a DirectConn socket.
func TestDirectConnWallDeadline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			time.Sleep(2 * time.Second)
			c.Close()
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	d := DirectConn(c)
	defer d.Close()
	d.SetReadDeadline(time.Now().Add(time.Hour))
	d.SetReadDeadline(time.Now().Round(0).Add(20 * time.Millisecond))
	var buf [8]byte
	_, err = d.Read(buf[:])
	if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Fatalf("read: %v, want a timeout", err)
	}
}
