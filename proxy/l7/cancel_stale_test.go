package l7

import (
	"context"
	"net/netip"
	"testing"

	"github.com/strait-mesh/strait/proxy/upstream"
)

// TestReqCancelStaleKid: a cancel of the request's reqCancel that copied its kids before the
// attempt's reqCancel was reused for the next request must not cancel that request's attempt
// (kids are canceled by attempt number). The blocking AfterFunc stands in for the canceling goroutine being preempted between
// rc.mu.Unlock and the kids loop (funcs run exactly there).
func TestReqCancelStaleKid(t *testing.T) {
	parent, stop := context.WithCancel(context.Background())
	defer stop()
	s := cancelStream(parent, nil)
	rc := s.cancelScope()
	arc := s.attemptScope()
	entered, release := make(chan struct{}), make(chan struct{})
	rc.AfterFunc(func() { close(entered); <-release })
	fired := make(chan struct{})
	go func() { rc.idleFunc()(); close(fired) }() // the stream idle timer fires
	<-entered
	// forwardDone of request 1: attempt(nil), timer Stop false -> noReuse, cancel(nil), endRequest
	arc.cancelFunc()(nil)
	rc.noReuse()
	rc.cancelFunc()(nil)
	s.endRequest(rc, false)
	// the Stream goes back to the pool keeping arc; request 2 takes it
	s2 := cancelStream(context.Background(), nil)
	s2.rc, s2.arc = s.rc, s.arc
	rc2 := s2.cancelScope()
	arc2 := s2.attemptScope()
	if arc2 != arc {
		t.Skip("attempt reqCancel not reused")
	}
	a := &testAborter{}
	arc2.Watch(a, 42) // request 2's exchange
	close(release)
	<-fired
	if arc2.Err() != nil || len(a.gens) != 0 {
		t.Fatalf("request 2's attempt canceled by request 1's idle timer: err=%v cause=%v aborts=%v rc2.err=%v",
			arc2.Err(), causeOf(arc2), a.gens, rc2.Err())
	}
}

// TestReqCancelStaleKidPeerGone: the same through the peerLink path (client of request 1 goes away): rc itself is reused
// (gen-checked) but its kid is not.
func TestReqCancelStaleKidPeerGone(t *testing.T) {
	link := &testLink{}
	pctx, pstop := context.WithCancel(context.Background())
	defer pstop()
	s := cancelStream(pctx, link)
	rc := s.cancelScope()
	gen := link.gen
	arc := s.attemptScope()
	entered, release := make(chan struct{}), make(chan struct{})
	// stand-in for preemption inside cancelIf after Unlock (a registration that does not mark rc shared)
	rc.mu.Lock()
	rc.funcs = append(rc.funcs, afterEntry{id: 999, f: func() { close(entered); <-release }})
	rc.mu.Unlock()
	fired := make(chan struct{})
	go func() { rc.cancelGen(gen, context.Canceled); close(fired) }()
	<-entered
	arc.cancelFunc()(nil)
	rc.cancelFunc()(nil)
	s.endRequest(rc, false)
	s2 := cancelStream(pctx, link)
	s2.rc, s2.arc = s.rc, s.arc
	rc2 := s2.cancelScope()
	arc2 := s2.attemptScope()
	t.Logf("rc reused=%v arc reused=%v", rc2 == rc, arc2 == arc)
	a := &testAborter{}
	arc2.Watch(a, 42)
	close(release)
	<-fired
	if arc2.Err() != nil || len(a.gens) != 0 {
		t.Fatalf("request 2's attempt canceled by request 1's peer going away: cause=%v aborts=%v", causeOf(arc2), a.gens)
	}
}

// TestReqCancelErrIdentity: Err is context.Canceled itself, on the reqCancel and on a child,
// and the router still reads its cause.
func TestReqCancelErrIdentity(t *testing.T) {
	s := cancelStream(context.Background(), nil)
	rc := s.cancelScope()
	child, cc := context.WithCancelCause(rc)
	defer cc(nil)
	rc.routeFunc()()
	<-child.Done()
	t.Logf("rc.Err()==Canceled: %v (%v); Cause(rc)==errRouteTimeout: %v; child.Err()==Canceled: %v (%v); Cause(child)==errRouteTimeout: %v",
		rc.Err() == context.Canceled, rc.Err(), context.Cause(rc) == errRouteTimeout,
		child.Err() == context.Canceled, child.Err(), context.Cause(child) == errRouteTimeout)
	if rc.Err() != context.Canceled || child.Err() != context.Canceled {
		t.Errorf("Err differs from context.Canceled by identity: %#v / %#v", rc.Err(), child.Err())
	}
	if causeOf(rc) != errRouteTimeout {
		t.Errorf("the router reads cause %v, want the route timeout", causeOf(rc))
	}
}

// TestReqCancelKeptAttemptSeesNoNextRequest: an attempt's context that code outside kept (it
// asked for Done, so the Stream does not reuse it) does not answer, through the request's
// reqCancel that the Stream reuses, the next request's values or deadline.
func TestReqCancelKeptAttemptSeesNoNextRequest(t *testing.T) {
	s := cancelStream(context.Background(), nil)
	rc := s.cancelScope()
	rc.setValues(upstream.WithOriginalDst(context.Background(), netip.MustParseAddrPort("127.0.0.1:1")))
	arc := s.attemptScope()
	_ = arc.Done() // handed out: not reused
	if got, ok := upstream.OriginalDst(arc); !ok || got.Port() != 1 {
		t.Fatalf("the attempt does not see its own request's values: %v %v", got, ok)
	}
	arc.cancelFunc()(errStaleAttempt)
	rc.cancelFunc()(nil)
	s.endRequest(rc, false)

	rc2 := s.cancelScope()
	if rc2 != rc {
		t.Skip("the request's reqCancel was not reused")
	}
	rc2.setValues(upstream.WithOriginalDst(context.Background(), netip.MustParseAddrPort("127.0.0.1:2")))
	if got, ok := upstream.OriginalDst(arc); ok {
		t.Errorf("the kept attempt context answers the next request's original destination %v", got)
	}
	if _, ok := arc.Deadline(); ok {
		t.Error("the kept attempt context answers a deadline")
	}
	if got, ok := upstream.OriginalDst(rc2); !ok || got.Port() != 2 {
		t.Errorf("the next request's own values: %v %v", got, ok)
	}
}

// TestSharedAttemptScopeDroppedOnce: an attempt reqCancel handed out (a dial's context) keeps
// its own request's context from reuse, and is dropped then: the Stream's later requests, which
// make no attempt scope, reuse theirs (a kept shared one made every later request allocate its
// context, found in the 1,000 rps profile).
func TestSharedAttemptScopeDroppedOnce(t *testing.T) {
	s := cancelStream(context.Background(), nil)
	rc := s.cancelScope()
	arc := s.attemptScope()
	_ = arc.Done() // handed out
	arc.cancelFunc()(nil)
	rc.cancelFunc()(nil)
	s.endRequest(rc, false)
	if !s.ctxOut {
		t.Fatal("the context of a request whose attempt scope was handed out is marked for reuse")
	}
	if s.arc != nil {
		t.Fatal("the handed-out attempt scope is kept")
	}

	s.ctxOut = false // release, as far as this test needs
	rc = s.cancelScope()
	rc.cancelFunc()(nil)
	s.endRequest(rc, false)
	if s.ctxOut {
		t.Error("a later request without an attempt scope does not reuse its context")
	}
}
