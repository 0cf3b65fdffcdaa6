package l7

import (
	"context"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strait-mesh/strait/proxy/httpmsg"
	"github.com/strait-mesh/strait/proxy/stats"
)

// review5Down is a downstream that records its read deadlines.
type review5Down struct {
	hdr, trl  httpmsg.Header
	pastReads atomic.Int32 // SetReadDeadline calls with a time in the past
}

func (d *review5Down) Header() *httpmsg.Header           { return &d.hdr }
func (d *review5Down) Trailer() *httpmsg.Header          { return &d.trl }
func (d *review5Down) WriteHeader(int)                   {}
func (d *review5Down) Write(p []byte) (int, error)       { return len(p), nil }
func (d *review5Down) Flush() error                      { return nil }
func (d *review5Down) Hijack() (net.Conn, []byte, error) { return nil, nil, io.EOF }
func (d *review5Down) EnableFullDuplex() error           { return nil }
func (d *review5Down) SetWriteDeadline(time.Time) error  { return nil }
func (d *review5Down) SetReadDeadline(t time.Time) error {
	if !t.IsZero() && t.Before(time.Now()) {
		d.pastReads.Add(1)
	}
	return nil
}

// review5Stream is a Stream with a request body of 5 bytes, as the stream stage sees it.
func review5Stream(d downstream) *Stream {
	req := &httpmsg.Request{ContentLength: 5}
	req.Proto = httpmsg.HTTP11
	s := &Stream{}
	s.req, s.body, s.w, s.downW, s.ctx = req, io.NopCloser(strings.NewReader("hello")), d, d, context.Background()
	return s
}

// review5Handler is a Handler with the stream stage's stats and request_timeout d.
func review5Handler(d time.Duration) *Handler {
	st := stats.NewStore()
	return &Handler{requestTimeout: d, st: newHCMStats(st, "r5"), tst: newTimeoutStats(st, "r5")}
}

// TestReview5StaleRequestTimerSparesNextRequest: the request_timeout timer of a request that
// ended (its deadline passed, its callback delayed: the runtime runs AfterFunc callbacks on a
// goroutine of their own) must not act on the stream's next request, whose own request_timeout
// (an hour here) is far away. requestTimedOut checks the deadline (rtBy) before it takes se.mu
// and the generation only after: a callback that passed the check with the old deadline and
// then waited for se.mu while the next request's begin held it finds that request armed under
// the new generation, and fires it at once (408 / reset, its body reads fail).
//
// The interleaving is forced with se.mu: the test holds it while the next request's begin
// queues on it first and the stale callback second. A callback slower than the test's short
// waits only makes the run miss the interleaving (pass), never fail wrongly.
func TestReview5StaleRequestTimerSparesNextRequest(t *testing.T) {
	hits := 0
	for round := 0; round < 20; round++ {
		down := &review5Down{}
		se := new(streamEnd)
		// Request N: timed with a short request_timeout, which ends (its body read to EOF)
		// before the timeout (25 ms: a loaded machine may pause the reader for milliseconds).
		hN := review5Handler(25 * time.Millisecond)
		s1 := review5Stream(down)
		se.begin(hN, s1, nil, true, 0, true, true)
		if _, err := io.ReadAll(s1.body); err != nil {
			t.Fatal(err)
		}
		se.end(s1)
		time.Sleep(30 * time.Millisecond) // N's deadline (rtBy) has passed

		// Request N+1, request_timeout an hour: its begin queues on se.mu first...
		hN1 := review5Handler(time.Hour)
		s2 := review5Stream(down)
		se.mu.Lock()
		began := make(chan struct{})
		go func() {
			se.begin(hN1, s2, nil, true, 0, true, true)
			close(began)
		}()
		// begin waits for se.mu: it moves the generation on under it (it used to move it
		// first, and the loop here waited for that; bounded, so that neither order hangs).
		for i := 0; i < 20 && atomic.LoadUint64(&se.gen) != 2; i++ {
			time.Sleep(50 * time.Microsecond)
		}
		time.Sleep(time.Millisecond)
		// ...then N's timer callback, late: it checks N's deadline, passed, and waits for se.mu.
		stale := make(chan struct{})
		go func() {
			se.requestTimedOut()
			close(stale)
		}()
		time.Sleep(time.Millisecond)
		se.mu.Unlock()
		<-began
		<-stale
		if st := se.rt.Load(); st == 2<<2|rtFired {
			hits++
			t.Errorf("round %d: request N's late request_timeout callback fired request N+1 (request_timeout 1h) at once: cause %v, past read deadlines %d",
				round, context.Cause(s2.ctx), down.pastReads.Load())
		}
		s2.wroteHeader = true // end records a fired timeout without a local reply
		se.end(s2)
		if se.rtT != nil {
			se.rtT.Stop()
		}
		if hits >= 3 {
			break
		}
	}
}
