package h1

import (
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestReview5LazyDeadlineGateInvariant: requests on the fast path race with slow ones that
// interrupt (a deadline in the past, as an abort sets), with stalls set and cleared, and with
// rearm. Once they are all done, the state must be one a request may rely on: the gate open
// only for an armed deadline kept as a number with no interruption and no stall, and the
// socket armed no later than the deadline in force; then a last request from one goroutine
// must leave the socket as that request says (an interruption armed in the past, none, or a
// deadline no later than the one asked for).
func TestReview5LazyDeadlineGateInvariant(t *testing.T) {
	var mu sync.Mutex // the fake socket's
	var armed time.Time
	l := &lazyDeadline{sets: new(atomic.Int64)}
	l.set = func(t time.Time) error { mu.Lock(); armed = t; mu.Unlock(); return nil }
	socket := func() time.Time { mu.Lock(); defer mu.Unlock(); return armed }
	base := time.Now()
	past := time.Unix(1, 0)
	for round := 0; round < 2000; round++ {
		var wg sync.WaitGroup
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func(seed uint64) {
				defer wg.Done()
				r := rand.New(rand.NewPCG(seed, uint64(round)))
				for i := 0; i < 12; i++ {
					switch k := r.IntN(12); {
					case k < 5:
						l.request(base.Add(time.Duration(1+r.IntN(1000)) * time.Second))
					case k < 7:
						l.request(time.Time{})
					case k < 8:
						l.request(past)
					case k < 9:
						l.setStall(base.Add(time.Duration(1+r.IntN(1000)) * time.Second))
						l.setStall(time.Time{})
					default:
						l.rearm()
					}
				}
			}(uint64(g))
		}
		wg.Wait()
		l.mu.Lock()
		due := l.due(l.wantTime())
		g := l.gate.Load()
		a := socket()
		if !due.IsZero() && (a.IsZero() || due.Before(a)) {
			t.Fatalf("round %d: armed %v, later than the deadline in force %v", round, a, due)
		}
		if g != gateLocked {
			n, ok := encodeWant(l.armed)
			if l.past || !l.stall.IsZero() || !ok || n != g {
				t.Fatalf("round %d: gate open (%d) with past %v, stall %v, armed %v (%d, %v)", round, g, l.past, l.stall, l.armed, n, ok)
			}
		}
		l.mu.Unlock()
		// The last word, from one goroutine.
		switch round % 3 {
		case 0:
			l.request(past)
			if a := socket(); a.IsZero() || !a.Before(time.Now()) {
				t.Fatalf("round %d: after an interruption the socket is armed for %v", round, a)
			}
		case 1:
			l.request(time.Time{})
			// None asked: whatever is armed must be ended by a rearm, which then clears it.
			if a := socket(); !a.IsZero() && a.Before(time.Now()) {
				if retry, _ := l.rearm(); !retry {
					t.Fatalf("round %d: no deadline asked, yet rearm ends the operation (armed %v)", round, a)
				}
			}
		case 2:
			want := base.Add(time.Duration(1+round) * time.Millisecond)
			l.request(want)
			if a := socket(); a.IsZero() || want.Before(a) {
				t.Fatalf("round %d: asked %v, socket armed for %v", round, want, a)
			}
		}
	}
}

// TestReview5DirectConnDeadlineAfterRace: on a real socket, concurrent SetReadDeadline calls
// (far deadlines on the fast path, interruptions, none) followed by one near deadline from
// the reader's goroutine: the blocked Read must end with a timeout (the peer writes only
// after 3 s, so a lost deadline shows as data read).
func TestReview5DirectConnDeadlineAfterRace(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			peer <- c
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	d := DirectConn(c)
	defer d.Close()
	pc := <-peer
	defer pc.Close()
	for round := 0; round < 30; round++ {
		var wg sync.WaitGroup
		for g := 0; g < 3; g++ {
			wg.Add(1)
			go func(seed uint64) {
				defer wg.Done()
				r := rand.New(rand.NewPCG(seed, uint64(round)))
				for i := 0; i < 20; i++ {
					switch r.IntN(4) {
					case 0:
						d.SetReadDeadline(time.Unix(1, 0))
					case 1:
						d.SetReadDeadline(time.Time{})
					default:
						d.SetReadDeadline(time.Now().Add(time.Duration(1+r.IntN(100)) * time.Hour))
					}
				}
			}(uint64(g))
		}
		wg.Wait()
		d.SetReadDeadline(time.Now().Add(5 * time.Millisecond))
		done := make(chan struct{})
		go func() {
			select {
			case <-done:
			case <-time.After(3 * time.Second):
				pc.Write([]byte("x"))
			}
		}()
		var buf [8]byte
		n, err := d.Read(buf[:])
		close(done)
		if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
			t.Fatalf("round %d: read %d bytes, %v; want a timeout", round, n, err)
		}
	}
}
