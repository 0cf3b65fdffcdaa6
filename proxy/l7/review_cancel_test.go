package l7

import (
	"context"
	"net/netip"
	"testing"

	"github.com/strait-mesh/strait/proxy/upstream"
)

// blockingValues is a values context whose Value, for one key, signals and waits: a stand-in
// for the goroutine that asks a kept attempt context for a value being preempted inside
// reqCancel.Value, after parentNow checked that the request's reqCancel still serves the
// attempt's request and before it asks that reqCancel.
type blockingValues struct {
	context.Context
	key              any
	entered, release chan struct{}
}

func (b *blockingValues) Value(k any) any {
	if k == b.key {
		close(b.entered)
		<-b.release
		return nil
	}
	return b.Context.Value(k)
}

// TestReviewKeptAttemptValueCheckThenUse: an attempt's reqCancel that code outside kept (a
// dial's context, handed out: endRequest now drops it from the Stream) must not answer, through
// the request's reqCancel the Stream reuses, the next request's values. parentNow checks the
// request's number and returns the reqCancel; Value then asks it after the check, unguarded:
// if the Stream moved on in between, the old attempt answers the next request's original
// destination (check-then-use on rc.gen).
func TestReviewKeptAttemptValueCheckThenUse(t *testing.T) {
	s := cancelStream(context.Background(), nil)
	rc := s.cancelScope()
	rc.setValues(upstream.WithOriginalDst(context.Background(), netip.MustParseAddrPort("127.0.0.1:1")))
	arc := s.attemptScope()
	_ = arc.Done() // handed out: code outside keeps it
	probe := upstream.WithOriginalDst(context.Background(), netip.MustParseAddrPort("127.0.0.1:9"))
	key := findOriginalDstKey(t, probe)
	bv := &blockingValues{Context: context.Background(), key: key, entered: make(chan struct{}), release: make(chan struct{})}
	arc.setValues(bv)

	type answer struct {
		a  netip.AddrPort
		ok bool
	}
	got := make(chan answer, 1)
	go func() { // code outside asks its kept attempt context
		a, ok := upstream.OriginalDst(arc)
		got <- answer{a, ok}
	}()
	<-bv.entered // parentNow has returned rc, still serving request 1

	// Request 1 ends; the Stream serves request 2 with the same reqCancel.
	arc.cancelFunc()(errStaleAttempt)
	rc.cancelFunc()(nil)
	s.endRequest(rc, false)
	rc2 := s.cancelScope()
	if rc2 != rc {
		t.Skip("the request's reqCancel was not reused")
	}
	rc2.setValues(upstream.WithOriginalDst(context.Background(), netip.MustParseAddrPort("127.0.0.1:2")))
	close(bv.release)
	if r := <-got; r.ok && r.a.Port() == 2 {
		t.Errorf("the kept attempt context of request 1 answered request 2's original destination %v", r.a)
	}
}

// findOriginalDstKey returns the key upstream.WithOriginalDst stores its value under, by
// asking a recording context.
func findOriginalDstKey(t *testing.T, ctx context.Context) any {
	t.Helper()
	var rec keyRecorder
	rec.Context = ctx
	upstream.OriginalDst(&rec)
	if rec.key == nil {
		t.Skip("upstream.OriginalDst asks no key")
	}
	return rec.key
}

type keyRecorder struct {
	context.Context
	key any
}

func (r *keyRecorder) Value(k any) any {
	if r.key == nil {
		r.key = k
	}
	return r.Context.Value(k)
}
