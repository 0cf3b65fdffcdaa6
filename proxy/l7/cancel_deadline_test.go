package l7

import (
	"context"
	"testing"
	"time"
)

// TestReqCancelDeadlineReused: a request's reqCancel answers its parent's deadline, or none,
// for each request the Stream reuses it for (the answer without a deadline takes no lock),
// and none once the router ended the exchange; an attempt's answers its request's.
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
		rc.endExchange()
		if _, ok := rc.Deadline(); ok {
			t.Fatalf("request %d: a deadline after the exchange ended", i)
		}
		s.endRequest(rc, false)
	}
}
