package l7

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/strait-mesh/strait/proxy/h1"
	"github.com/strait-mesh/strait/proxy/upstream"
)

// cancelStream returns a Stream whose context is a child of parent, as serve makes it.
func cancelStream(parent context.Context, link peerLink) *Stream {
	s := &Stream{}
	s.plink = link
	s.ctx = context.WithValue(parent, infoKey{}, s)
	s.baseCtx = s.ctx
	return s
}

func waitDone(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: not canceled", what)
	}
}

// TestReqCancelCauses: the router's causes read back through causeOf on the reqCancel, a canceled
// context (context.Canceled itself) on contexts derived from it (values, a cancelable child,
// context.AfterFunc).
func TestReqCancelCauses(t *testing.T) {
	for _, cause := range []error{errRouteTimeout, errIdleTimeout, errMaxDuration, errPerTryTimeout, nil} {
		parent, stop := context.WithCancel(context.Background())
		s := cancelStream(parent, nil)
		rc := s.cancelScope()
		vctx := upstream.WithHostReport(rc, &s.hostReport)
		child, childCancel := context.WithCancel(rc)
		ran := make(chan struct{})
		context.AfterFunc(rc, func() { close(ran) })
		rc.mu.Lock()
		n := len(rc.funcs)
		rc.mu.Unlock()
		if n != 2 {
			// Not registered through AfterFunc: the context package watches with a goroutine,
			// or attached the child to the cancelable context above.
			t.Fatalf("%v: %d AfterFunc registrations, want 2", cause, n)
		}
		if rc.Err() != nil || child.Err() != nil {
			t.Fatalf("%v: canceled before cancel", cause)
		}
		rc.cancelFunc()(cause)
		want := cause
		if want == nil {
			want = context.Canceled
		}
		for name, c := range map[string]context.Context{"reqCancel": rc, "value child": vctx, "cancel child": child} {
			waitDone(t, c, name)
			// The router reads its cause from the reqCancel; code outside sees a canceled
			// context (its cause does not travel to derived contexts).
			wantCause := want
			if c != context.Context(rc) {
				wantCause = context.Canceled
			}
			if got := causeOf(c); !errors.Is(got, wantCause) {
				t.Errorf("%v: %s: cause %v, want %v", cause, name, got, wantCause)
			}
			if c.Err() != context.Canceled || context.Cause(c) != context.Canceled {
				t.Errorf("%v: %s: err %v, context.Cause %v: want context.Canceled itself", cause, name, c.Err(), context.Cause(c))
			}
		}
		select {
		case <-ran:
		case <-time.After(10 * time.Second):
			t.Errorf("%v: AfterFunc did not run", cause)
		}
		if parent.Err() != nil {
			t.Errorf("%v: the cancel reached the parent", cause)
		}
		childCancel()
		stop()
		s.endRequest(rc, false)
	}
}

// TestReqCancelParent: the stream's context ending cancels the reqCancel with its cause, both
// when the stream's context is the connection's (a peerLink) and otherwise.
func TestReqCancelParent(t *testing.T) {
	parent, cancel := context.WithCancelCause(context.Background())
	s := cancelStream(parent, nil)
	rc := s.cancelScope()
	cancel(errRequestTimeout)
	waitDone(t, rc, "reqCancel")
	if got := causeOf(rc); !errors.Is(got, errRequestTimeout) || errors.Is(got, errRouteTimeout) {
		t.Errorf("cause %v, want the parent's", got)
	}
	s.endRequest(rc, false)

	// A parent canceled already.
	rc = cancelStream(parent, nil).cancelScope()
	waitDone(t, rc, "reqCancel of a canceled parent")

	// The connection cancels through the link; a link made after the client left cancels at once.
	link := &testLink{}
	parent2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	s = cancelStream(parent2, link)
	rc = s.cancelScope()
	if link.rc != rc {
		t.Fatal("not linked")
	}
	link.gone()
	waitDone(t, rc, "linked reqCancel")
	s.endRequest(rc, false)
	if rc.linkOn != nil {
		t.Error("not unlinked")
	}
	rc = s.cancelScope()
	waitDone(t, rc, "reqCancel linked after the client left")
	s.endRequest(rc, false)
}

// testLink is a peerLink; gen records the number of the request it linked last.
type testLink struct {
	dead bool
	rc   *reqCancel
	gen  uint64
}

func (l *testLink) link(rc *reqCancel) bool {
	l.rc, l.gen = rc, rc.genNow()
	return !l.dead
}

func (l *testLink) gone() {
	l.dead = true
	if l.rc != nil {
		l.rc.peerCancel(l)
	}
}

// TestReqCancelReuse: a Stream keeps its reqCancel from one request to the next unless code
// outside may hold it (its Done channel was handed out), and a late cancel from a link of an
// earlier request does not reach the next one.
func TestReqCancelReuse(t *testing.T) {
	parent, cancel := context.WithCancel(context.Background())
	defer cancel()
	link := &testLink{}
	s := cancelStream(parent, link)
	rc := s.cancelScope()
	oldGen := link.gen
	rc.cancelFunc()(nil)
	s.endRequest(rc, false)
	if s.rc != rc {
		t.Fatal("reqCancel not kept")
	}
	rc2 := s.cancelScope()
	if rc2 != rc {
		t.Fatal("reqCancel not reused")
	}
	if rc2.Err() != nil {
		t.Fatal("reused reqCancel starts canceled")
	}
	rc.cancelGen(oldGen, context.Canceled) // the earlier request's link, late
	if rc2.Err() != nil {
		t.Fatal("a late cancel of the earlier request canceled the next")
	}
	_ = rc2.Done() // handed out: it may be watched after the request
	rc2.cancelFunc()(nil)
	s.endRequest(rc2, false)
	if s.rc == rc2 {
		t.Fatal("a reqCancel whose Done channel was handed out is reused")
	}
}

// testAborter records its aborts.
type testAborter struct{ gens []uint64 }

func (a *testAborter) Abort(gen uint64) { a.gens = append(a.gens, gen) }

// TestReqCancelWatch: the reqCancel is the request's h1.Watcher: a watched exchange is aborted
// once, with its number; an unwatched one is not; a watch after the cancel is refused; a
// context derived with its own cancellation offers no Watcher.
func TestReqCancelWatch(t *testing.T) {
	s := cancelStream(context.Background(), nil)
	rc := s.cancelScope()
	ctx := upstream.WithHostReport(rc, &s.hostReport)
	w, _ := ctx.Value(upstream.WatcherKey{}).(h1.Watcher)
	if w == nil {
		t.Fatal("no Watcher through a value context")
	}
	a, b := &testAborter{}, &testAborter{}
	if !w.Watch(a, 7) || !w.Watch(b, 9) {
		t.Fatal("watch refused")
	}
	w.Unwatch(b)
	rc.cancelFunc()(errIdleTimeout)
	if len(a.gens) != 1 || a.gens[0] != 7 || len(b.gens) != 0 {
		t.Errorf("aborts: watched %v, unwatched %v", a.gens, b.gens)
	}
	rc.cancelFunc()(errRouteTimeout)
	if len(a.gens) != 1 || !errors.Is(causeOf(rc), errIdleTimeout) {
		t.Errorf("second cancel: aborts %v, cause %v", a.gens, causeOf(rc))
	}
	if w.Watch(&testAborter{}, 1) {
		t.Error("watch after the cancel accepted")
	}
	s.endRequest(rc, false)

	// The router's own end of the request (a nil cause) leaves the exchange to its body's
	// Close.
	rc = s.cancelScope()
	c := &testAborter{}
	if !rc.Watch(c, 3) {
		t.Fatal("watch refused")
	}
	rc.cancelFunc()(nil)
	if len(c.gens) != 0 || !errors.Is(rc.Err(), context.Canceled) {
		t.Errorf("end of request: aborts %v, err %v", c.gens, rc.Err())
	}
	rc.Unwatch(c)
	s.endRequest(rc, false)
}

// TestAttemptCancel: an attempt's reqCancel is canceled by the request's, with its cause, and
// by its own cancel or per-try timer without the request's; the Stream reuses it once it was
// canceled, unless a per-try timer fired late or its Done channel was handed out.
func TestAttemptCancel(t *testing.T) {
	s := cancelStream(context.Background(), nil)
	rc := s.cancelScope()
	arc := s.attemptScope()
	if w, _ := upstream.WithHostReport(arc, &s.hostReport).Value(upstream.WatcherKey{}).(*reqCancel); w != arc {
		t.Fatal("an attempt's context does not offer its own Watcher")
	}
	a := &testAborter{}
	arc.Watch(a, 1)
	arc.perTryFunc()()
	if !errors.Is(causeOf(arc), errPerTryTimeout) || rc.Err() != nil || len(a.gens) != 1 {
		t.Fatalf("per-try timeout: cause %v, request err %v, aborts %v", causeOf(arc), rc.Err(), a.gens)
	}
	arc2 := s.attemptScope()
	if arc2 != arc || arc2.Err() != nil {
		t.Fatalf("attempt reqCancel not reused (%v), or canceled (%v)", arc2 == arc, arc2.Err())
	}
	arc2.cancelFunc()(errStaleAttempt)
	if !errors.Is(causeOf(arc2), errStaleAttempt) || rc.Err() != nil {
		t.Fatalf("abandoned attempt: cause %v, request err %v", causeOf(arc2), rc.Err())
	}
	arc3 := s.attemptScope()
	arc3.noReuse()
	rc.cancelFunc()(errRouteTimeout)
	waitDone(t, arc3, "attempt of a canceled request")
	if !errors.Is(causeOf(arc3), errRouteTimeout) {
		t.Errorf("attempt canceled by the request: cause %v", causeOf(arc3))
	}
	if arc4 := s.attemptScope(); arc4 == arc3 {
		t.Error("an attempt reqCancel whose per-try timer fired late is reused")
	} else if !errors.Is(causeOf(arc4), errRouteTimeout) {
		t.Errorf("attempt of a request canceled before it: cause %v", causeOf(arc4))
	}
	rc.mu.Lock()
	n := len(rc.kids)
	rc.mu.Unlock()
	if n != 0 {
		t.Errorf("%d attempts still linked to a canceled request", n)
	}
	s.endRequest(rc, false)
}

// TestReqCancelValues: the values a reqCancel answers itself come before its parent's, which
// stay visible, and a context derived from it with its own timeout (a dial's) registers with
// it rather than with a goroutine.
func TestReqCancelValues(t *testing.T) {
	s := cancelStream(context.Background(), nil)
	rc := s.cancelScope()
	addr := netip.MustParseAddrPort("127.0.0.1:8080")
	rc.setValues(upstream.WithOriginalDst(context.Background(), addr))
	if got, ok := upstream.OriginalDst(rc); !ok || got != addr {
		t.Errorf("original destination %v %v", got, ok)
	}
	if rc.Value(infoKey{}) != s {
		t.Error("the parent's value is hidden")
	}
	dctx, cancel := context.WithTimeout(rc, time.Hour)
	defer cancel()
	rc.mu.Lock()
	n := len(rc.funcs)
	rc.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d AfterFunc registrations, want 1", n)
	}
	rc.cancelFunc()(errIdleTimeout)
	waitDone(t, dctx, "derived context")
	// The derived context is canceled (context.Canceled, as code outside expects); the router
	// reads the cause from its reqCancel.
	if dctx.Err() != context.Canceled || !errors.Is(causeOf(rc), errIdleTimeout) {
		t.Errorf("derived context: err %v; the request's cause %v", dctx.Err(), causeOf(rc))
	}
	s.endRequest(rc, false)
	if rc2 := s.cancelScope(); rc2.Value(infoKey{}) != s {
		t.Error("values after reuse")
	} else if _, ok := upstream.OriginalDst(rc2); ok {
		t.Error("an earlier request's values survive the reuse")
	}
}

// TestReqCancelTimers: the stream timers cancel the request's reqCancel with their causes, and
// a timer that fired reports it when stopped, so that the Stream does not reuse a reqCancel
// it may still reach (forwardDone).
func TestReqCancelTimers(t *testing.T) {
	for _, tc := range []struct {
		cause error
		arm   func(rc *reqCancel) func() bool // returns the timer's stop
	}{
		{errRouteTimeout, func(rc *reqCancel) func() bool {
			rt := &routeTimer{d: time.Millisecond, fire: rc.routeFunc()}
			rt.start()
			return rt.stop
		}},
		{errIdleTimeout, func(rc *reqCancel) func() bool {
			return newIdleTimer(time.Millisecond, rc.idleFunc()).stop
		}},
		{errMaxDuration, func(rc *reqCancel) func() bool {
			return time.AfterFunc(time.Millisecond, rc.maxDurFunc()).Stop
		}},
	} {
		s := cancelStream(context.Background(), nil)
		rc := s.cancelScope()
		stop := tc.arm(rc)
		deadline := time.Now().Add(10 * time.Second)
		for rc.Err() == nil && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if !errors.Is(causeOf(rc), tc.cause) {
			t.Errorf("%v: cause %v", tc.cause, causeOf(rc))
		}
		if stop() {
			t.Errorf("%v: a fired timer's stop reports it could not fire", tc.cause)
		}
		rc.noReuse()
		s.endRequest(rc, false)
		if s.rc == rc {
			t.Errorf("%v: reqCancel kept after a late timer", tc.cause)
		}
	}
	// A timer stopped before it fired.
	s := cancelStream(context.Background(), nil)
	rc := s.cancelScope()
	rt := &routeTimer{d: time.Hour, fire: rc.routeFunc()}
	rt.start()
	if !rt.stop() || !newIdleTimer(time.Hour, rc.idleFunc()).stop() {
		t.Error("a pending timer's stop reports it may fire")
	}
}

// TestCancelCtxKeyFound checks that the context package's private key was learned, and that
// reqCancel hides only that key: a value under another *int key still comes from the parent.
func TestCancelCtxKeyFound(t *testing.T) {
	if cancelCtxKey == nil {
		t.Fatal("context.Cause no longer looks up a pointer key: reqCancel's Value needs another look")
	}
	key := new(int)
	parent := context.WithValue(context.Background(), key, "v")
	rc := newReqCancel()
	rc.reset(parent, nil, nil, false)
	if got := rc.Value(key); got != "v" {
		t.Fatalf("Value(*int key) = %v, want the parent's value", got)
	}
	if got := rc.Value(cancelCtxKey); got != nil {
		t.Fatalf("Value(cancelCtxKey) = %v, want nil", got)
	}
}
