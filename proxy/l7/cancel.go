package l7

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strait-mesh/strait/proxy/h1"
	"github.com/strait-mesh/strait/proxy/upstream"
)

// reqCancel is the cancellation of a request's upstream exchange, the router's context: the
// route timeout, the stream idle timeout, max stream duration and the downstream going away
// (its parent, the stream's context) cancel it, each with its cause. It is a Stream's, reused
// from one request to the next, so that forwarding a request costs no context.WithCancelCause
// (two allocations and the context tree's bookkeeping) and an HTTP/1.1 exchange no
// context.AfterFunc: the upstream codec watches it as an h1.Watcher (upstream.WatcherKey).
// An attempt that can be canceled on its own (a per-try timeout, abandoned on retry) gets
// another, a child of the request's (attemptScope), also the Stream's.
//
// It implements context.Context. Its Done channel is made only when asked for, and a
// context derived from it registers through its AfterFunc method (the context package's
// afterFuncer), so that no goroutine watches it. A reqCancel whose Done channel or AfterFunc
// was handed out, or whose link to its parent may still fire, is not reused: code outside may
// hold it after the request (Stream.endRequest).
//
// Once canceled, Err returns context.Canceled itself (the context package's contract, which
// code outside compares by identity) and causeOf the cause (errRouteTimeout, errIdleTimeout,
// ...), as context.Cause does for context.WithCancelCause. A cancel with a nil cause is the
// router's own end of the request (see cancel).
type reqCancel struct {
	mu     sync.Mutex
	gen    uint64          // the request or attempt it serves (reset); a late cancel from a link checks it
	parent context.Context // the stream's context, or the request's reqCancel (up)
	values context.Context // values rc answers before its parent's (setValues), nil if none
	up     *reqCancel      // an attempt's: the request's reqCancel
	upGen  uint64          // up's number for the request this attempt belongs to
	err    error           // nil until canceled
	cause  error           // the cancel's cause (nil: the router's end of the request)
	kids   []kidEntry      // attempts' reqCancels not canceled yet
	kbuf   [1]kidEntry
	done   chan struct{} // made by Done, closed by cancel
	// shared: not to be reused: Done or AfterFunc was called, or a timer may still fire
	// (noReuse). Written under mu; read without it by the goroutine that owns rc.
	shared atomic.Bool
	// noDeadline: rc serves a request (not an attempt) whose parent has no deadline (reset),
	// so that Deadline answers without the lock.
	noDeadline atomic.Bool
	watch      []watchEntry // the HTTP/1.1 exchanges watching it
	funcs      []afterEntry // AfterFunc registrations
	nextID     uint64
	wbuf       [2]watchEntry
	fbuf       [2]afterEntry

	// Methods as func values, each made at its first use and kept (a method value made per
	// request would be an allocation each): see cancelFunc and the others below.
	cancelFn                  context.CancelCauseFunc
	parentFn, perTryFn        func()
	idleFn, maxDurFn, routeFn func()
	body                      *replayBody // the request body the stream timers interrupt (setBody)

	// The link to the parent while the request runs: a peerLink (linkOn, under mu: the
	// connection whose peerCancel reaches the request rc serves, nil once it ended), or a
	// context.AfterFunc registration with the stream's context (stopParent).
	stopParent func() bool
	linkOn     peerLink
}

type watchEntry struct {
	a   h1.Aborter
	gen uint64
}

type afterEntry struct {
	id uint64
	f  func()
}

// peerLink is a downstream connection that cancels its current request's reqCancel when the
// client goes away, without a context registration (the HTTP/1.1 codec's connection): it
// calls rc.peerCancel(itself) on the last reqCancel it was given. Whether that reaches a
// request is rc's to decide (linkOn, set by reset and cleared by endRequest under rc.mu), so
// a request's start and end take no lock of the connection's.
type peerLink interface {
	// link makes rc the connection's reqCancel, the one it cancels when the client goes
	// away (rc serves a request linked to it: linkOn); false: the client is gone already.
	// It is called after rc.linkOn is set and must read the connection's gone state after
	// storing rc (both atomic), so that a client going away at the same time is seen by one
	// of the two sides.
	link(rc *reqCancel) bool
}

var (
	_ context.Context = (*reqCancel)(nil)
	_ h1.Watcher      = (*reqCancel)(nil)
)

func newReqCancel() *reqCancel { return &reqCancel{} }

// cancelFunc returns cancel as a func value. It and the getters below run on the goroutine
// that owns rc (the router's).
func (rc *reqCancel) cancelFunc() context.CancelCauseFunc {
	if rc.cancelFn == nil {
		rc.cancelFn = rc.cancel
	}
	return rc.cancelFn
}

// parentFunc returns parentDone as a func value.
func (rc *reqCancel) parentFunc() func() {
	if rc.parentFn == nil {
		rc.parentFn = rc.parentDone
	}
	return rc.parentFn
}

// perTryFunc returns perTryExpired as a func value.
func (rc *reqCancel) perTryFunc() func() {
	if rc.perTryFn == nil {
		rc.perTryFn = rc.perTryExpired
	}
	return rc.perTryFn
}

// idleFunc returns idleExpired as a func value.
func (rc *reqCancel) idleFunc() func() {
	if rc.idleFn == nil {
		rc.newIdleFn()
	}
	return rc.idleFn
}

// newIdleFn makes idleFunc's func value, once per reqCancel: out of the line of its callers
// (forward), which find it made on every request but the first.
//
//go:noinline
func (rc *reqCancel) newIdleFn() { rc.idleFn = rc.idleExpired }

// maxDurFunc returns maxDurExpired as a func value.
func (rc *reqCancel) maxDurFunc() func() {
	if rc.maxDurFn == nil {
		rc.maxDurFn = rc.maxDurExpired
	}
	return rc.maxDurFn
}

// maxDurTimer starts the max stream duration timer d for rc's request. Out of forward's common
// path: most routes and connection managers set no max_stream_duration.
//
//go:noinline
func (rc *reqCancel) maxDurTimer(d time.Duration) *time.Timer {
	return time.AfterFunc(d, rc.maxDurFunc())
}

// routeFunc returns routeExpired as a func value.
func (rc *reqCancel) routeFunc() func() {
	if rc.routeFn == nil {
		rc.routeFn = rc.routeExpired
	}
	return rc.routeFn
}

// reset starts rc for a new request or attempt, with link (nil: none) as the connection whose
// peerCancel reaches it; it returns rc's number for it. noDL: rc serves a request whose parent
// has no deadline (noDeadline); false is always correct (Deadline asks the parent).
func (rc *reqCancel) reset(parent context.Context, up *reqCancel, link peerLink, noDL bool) uint64 {
	if rc.noDeadline.Load() != noDL {
		rc.noDeadline.Store(noDL)
	}
	// up's number changes only with up's reset, on this goroutine: read before rc.mu.
	var upGen uint64
	if up != nil {
		upGen = up.genNow()
	}
	rc.mu.Lock()
	rc.gen++
	if rc.shared.Load() {
		// A reused reqCancel never is (attemptScope, unlinkCancel): only one that was not
		// given up (a test's) may have AfterFunc registrations in fbuf.
		rc.unshare()
	}
	// The pointer fields together: one write barrier check.
	rc.parent, rc.up, rc.err, rc.cause, rc.done, rc.linkOn = parent, up, nil, nil, nil, link
	rc.values, rc.body = nil, nil
	rc.watch, rc.funcs, rc.kids = rc.wbuf[:0], rc.fbuf[:0], rc.kbuf[:0]
	rc.upGen = upGen
	gen := rc.gen
	rc.mu.Unlock()
	return gen
}

// unshare makes a shared rc reusable (reset), dropping the AfterFunc registrations it kept in
// fbuf; rc.mu is held. Out of reset's common path.
//
//go:noinline
func (rc *reqCancel) unshare() {
	rc.shared.Store(false)
	clear(rc.fbuf[:])
}

// genNow returns rc's current number.
func (rc *reqCancel) genNow() uint64 {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.gen
}

// parentNow returns rc's parent while it still serves rc's request: an attempt's reqCancel
// that code outside kept (net/http finishing an abandoned attempt's dial, say) must not see,
// through the request's reqCancel the Stream reused since, the next request's values or
// deadline.
func (rc *reqCancel) parentNow() context.Context {
	p, _ := rc.parentGuarded()
	return p
}

// parentGuarded is parentNow with the guard to check again once the parent answered
// (g.ours): the request's reqCancel may start serving the next request between the check and
// the question (check-then-use), and its answer is then dropped.
func (rc *reqCancel) parentGuarded() (context.Context, parentGuard) {
	rc.mu.Lock()
	p, g := rc.parent, parentGuard{rc.up, rc.upGen}
	rc.mu.Unlock()
	if !g.ours() {
		return nil, g
	}
	return p, g
}

// parentGuard is an attempt's link to its request's reqCancel: the request's number it serves.
type parentGuard struct {
	up  *reqCancel
	gen uint64
}

// ours reports whether the request's reqCancel still serves the attempt's request.
func (g parentGuard) ours() bool { return g.up == nil || g.up.genNow() == g.gen }

// cancelScope returns the stream's reqCancel started for this request as a child of s.ctx.
func (s *Stream) cancelScope() *reqCancel {
	rc := s.rc
	if rc == nil || rc.stopParent != nil {
		rc = s.freshCancel()
	}
	if s.ctx.Done() == nil {
		rc.reset(s.ctx, nil, nil, noDeadline(s.ctx))
		return rc
	}
	if s.plink != nil && s.ctx == s.baseCtx {
		// The connection's own context (one request at a time): the connection cancels the
		// request directly. The connection's context has no deadline (streamStart).
		rc.reset(s.ctx, nil, s.plink, s.baseNoDL || noDeadline(s.ctx))
		if !s.plink.link(rc) {
			rc.cancel(context.Canceled)
		}
		return rc
	}
	rc.reset(s.ctx, nil, nil, noDeadline(s.ctx))
	rc.stopParent = context.AfterFunc(s.ctx, rc.parentFunc())
	return rc
}

// freshCancel returns the stream's reqCancel with no link to a parent's context: a new one
// for the stream's first request (or one after a reqCancel was given up), or the kept one
// whose link its last request did not stop (endRequest does: only tests skip it). Out of
// cancelScope's common path.
//
//go:noinline
func (s *Stream) freshCancel() *reqCancel {
	rc := s.rc
	if rc == nil {
		rc = newReqCancel()
		s.rc = rc
	}
	rc.stopParent = nil
	return rc
}

// noDeadline reports whether ctx has no deadline.
func noDeadline(ctx context.Context) bool {
	_, has := ctx.Deadline()
	return !has
}

// attemptScope returns a reqCancel for an attempt that can be canceled on its own: a child of
// the request's (s.rc, which cancels it with its cause), canceled by its own cancel
// (abandoned: errStaleAttempt) or by perTryFunc (errPerTryTimeout). The Stream keeps it for its
// next attempt once it was canceled, unless code outside may hold it (as endRequest) or a
// per-try timer may still fire (noReuse).
func (s *Stream) attemptScope() *reqCancel {
	arc := s.arc
	if arc != nil {
		arc.mu.Lock()
		reuse := arc.err != nil && !arc.shared.Load()
		arc.mu.Unlock()
		if !reuse {
			arc = nil
		}
	}
	if arc == nil {
		arc = newReqCancel()
		s.arc = arc
	}
	gen := arc.reset(s.rc, s.rc, nil, false)
	s.rc.addKid(arc, gen)
	return arc
}

// kidEntry is an attempt's reqCancel linked to its request's, with the number of the attempt
// it serves: a cancel that reaches it late (its canceller was preempted while the Stream moved
// on and reused the reqCancel for another request's attempt) must not cancel that attempt.
type kidEntry struct {
	rc  *reqCancel
	gen uint64
}

// addKid links an attempt's reqCancel (serving attempt gen) to rc, canceling it at once when
// rc is canceled.
func (rc *reqCancel) addKid(k *reqCancel, gen uint64) {
	rc.mu.Lock()
	if rc.err != nil {
		cause := rc.cause
		rc.mu.Unlock()
		k.cancelGen(gen, cause)
		return
	}
	rc.kids = append(rc.kids, kidEntry{k, gen})
	rc.mu.Unlock()
}

// removeKid unlinks k from rc.
func (rc *reqCancel) removeKid(k *reqCancel) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for i, x := range rc.kids {
		if x.rc == k {
			n := len(rc.kids) - 1
			rc.kids[i], rc.kids[n] = rc.kids[n], kidEntry{}
			rc.kids = rc.kids[:n]
			return
		}
	}
}

// perTryExpired cancels an attempt with errPerTryTimeout.
func (rc *reqCancel) perTryExpired() { rc.cancel(errPerTryTimeout) }

// routeExpired cancels the request with errRouteTimeout (routeTimer).
func (rc *reqCancel) routeExpired() { rc.cancel(errRouteTimeout) }

// idleExpired cancels the request with errIdleTimeout and ends a prefetch wait (idleTimer).
func (rc *reqCancel) idleExpired() { rc.expire(errIdleTimeout) }

// maxDurExpired cancels the request with errMaxDuration and ends a prefetch wait.
func (rc *reqCancel) maxDurExpired() { rc.expire(errMaxDuration) }

func (rc *reqCancel) expire(cause error) {
	rc.cancel(cause)
	rc.mu.Lock()
	body := rc.body
	rc.mu.Unlock()
	body.interrupt()
}

// attachBody sets the request body the stream timers interrupt. It runs before the request's
// stream timers start (forward), and rc serves a new request only when no timer of the last
// one may still fire (noReuse): no other goroutine reads rc.body yet, so it takes no lock.
// endRequest clears it under the lock.
func (rc *reqCancel) attachBody(body *replayBody) {
	rc.body = body
}

// noReuse keeps rc from being reused: a timer that may still call it fired late.
func (rc *reqCancel) noReuse() {
	rc.mu.Lock()
	rc.shared.Store(true)
	rc.mu.Unlock()
}

// endRequest ends the request rc serves (forwardDone), in one critical section: it drops the
// body the stream timers interrupt, keeps rc from reuse when a timer fired late, cancels rc as
// the router's own end of the request (a nil cause) unless it was canceled already, and
// detaches it from its parent and its peerLink (no cancel of the request comes from the
// connection after); then it stops rc's other links (unlinkCancel). A timer that still runs
// finds rc canceled and no body.
func (s *Stream) endRequest(rc *reqCancel, late bool) {
	rc.mu.Lock()
	rc.body, rc.linkOn, rc.parent = nil, nil, nil
	if late {
		rc.shared.Store(true)
	}
	if rc.err == nil {
		s.endUncanceled(rc)
		return
	}
	keep := !rc.shared.Load()
	rc.mu.Unlock()
	// Most requests' reqCancel has no link to its parent's context (a peerLink's is rc.linkOn,
	// cleared above), is kept, and no attempt's reqCancel (s.arc) is shared: then
	// unlinkCancel has nothing to do.
	if rc.stopParent != nil || !keep || s.arc != nil && s.arc.isShared() {
		s.unlinkCancel(rc, keep)
	}
}

// endUncanceled is endRequest for a reqCancel not canceled yet (respond cancels most): it
// cancels rc as the router's own end of the request, releases rc.mu (held) and runs what the
// cancel left for after it. Out of endRequest's common path.
//
//go:noinline
func (s *Stream) endUncanceled(rc *reqCancel) {
	var rest cancelRest
	rc.cancelLocked(nil, &rest)
	keep := !rc.shared.Load()
	rc.mu.Unlock()
	rest.run(rc, nil)
	s.unlinkCancel(rc, keep)
}

// unlinkCancel stops rc's link to its parent (rc is canceled and detached from it already;
// keep: rc was not shared then), and drops rc when code outside may still hold it. Out of
// endRequest's common path, which tells when there is nothing to do.
//
//go:noinline
func (s *Stream) unlinkCancel(rc *reqCancel, keep bool) {
	if rc.stopParent != nil {
		keep = rc.stopParent() && keep
		rc.stopParent = nil
	}
	if !keep && s.rc == rc {
		s.rc = nil
	}
	// Code that may still reach rc, or the attempts' reqCancel, may reach s.ctx through
	// them (Value), and a registration with s.ctx that fired may still remove itself from
	// it: the Stream's context object is then not reused either (release). A shared attempt
	// reqCancel is dropped with it: attemptScope would not reuse it, and once rc moves on it
	// reaches no later request's context (parentNow), so it must not keep the Stream's next
	// requests from reusing theirs (most requests make no attempt scope of their own).
	if s.arc != nil && s.arc.isShared() {
		s.arc = nil
		keep = false
	}
	if !keep {
		s.ctxOut = true
	}
}

// isShared reports whether rc is kept from reuse (noReuse, Done, AfterFunc).
func (rc *reqCancel) isShared() bool { return rc.shared.Load() }

// parentDone cancels with the parent's cause.
func (rc *reqCancel) parentDone() {
	rc.mu.Lock()
	p := rc.parent
	rc.mu.Unlock()
	if p != nil && p.Err() != nil {
		rc.cancel(causeOf(p))
	}
}

// cancelGen cancels request gen's exchange, if rc still serves it (an attempt's reqCancel,
// from its request's).
func (rc *reqCancel) cancelGen(gen uint64, cause error) {
	rc.cancelIf(true, gen, nil, cause)
}

// peerCancel cancels the request rc serves with context.Canceled if it is linked to from (its
// client went away): a cancel of an ended request's link, late, reaches no other request.
//
//go:noinline
func (rc *reqCancel) peerCancel(from peerLink) {
	rc.cancelIf(false, 0, from, context.Canceled)
}

// cancel cancels with cause; only the first cancel counts. A nil cause (Err is then
// context.Canceled) is the router's own end of the request (respond, forwardDone): it closes
// the body of any exchange still open right after, which ends that exchange, so the
// HTTP/1.1 exchanges watching rc are not aborted (that would only set the connection a past
// deadline and clear it again before its next exchange).
func (rc *reqCancel) cancel(cause error) { rc.cancelIf(false, 0, nil, cause) }

// cancelIf is cancel if rc still serves request gen (checkGen) and, for a non-nil from, is
// linked to that peerLink.
func (rc *reqCancel) cancelIf(checkGen bool, gen uint64, from peerLink, cause error) {
	rc.mu.Lock()
	if rc.err != nil || checkGen && rc.gen != gen || from != nil && rc.linkOn != from {
		rc.mu.Unlock()
		return
	}
	if rc.done == nil && len(rc.funcs) == 0 && len(rc.kids) == 0 && rc.up == nil && (cause == nil || len(rc.watch) == 0) {
		// Nothing to close, abort, run or unlink (cancelLocked, cancelRest.run): the common
		// end of a request (respond).
		rc.err, rc.cause = context.Canceled, cause
		rc.mu.Unlock()
		return
	}
	rc.cancelAll(cause)
}

// cancelAll is cancelIf's cancel of a reqCancel with something to close, abort, run or
// unlink: it cancels rc (rc.mu held), releases rc.mu and runs the rest. Out of cancelIf's
// common path.
//
//go:noinline
func (rc *reqCancel) cancelAll(cause error) {
	var rest cancelRest
	rc.cancelLocked(cause, &rest)
	rc.mu.Unlock()
	rest.run(rc, cause)
}

// cancelRest is what a cancel does once rc.mu is released: the AfterFunc registrations, the
// attempts' reqCancels, and the unlink from the request's reqCancel.
type cancelRest struct {
	funcs []afterEntry
	kids  [2]kidEntry
	nk    int
	more  []kidEntry
	up    *reqCancel
}

// cancelLocked cancels rc (not canceled yet) with cause; rc.mu is held. rest gets what must
// run after it is released.
func (rc *reqCancel) cancelLocked(cause error, rest *cancelRest) {
	rc.err, rc.cause = context.Canceled, cause
	if rc.done != nil {
		close(rc.done)
	}
	if cause != nil {
		for _, w := range rc.watch {
			w.a.Abort(w.gen) // does not block
		}
		clear(rc.watch)
		rc.watch = rc.watch[:0]
	}
	rest.funcs = rc.funcs
	rc.funcs = nil
	rest.nk = copy(rest.kids[:], rc.kids)
	rest.more = rc.kids[rest.nk:]
	rc.kids = nil
	rest.up = rc.up
}

// run runs what cancelLocked left for after the lock.
func (rest *cancelRest) run(rc *reqCancel, cause error) {
	for _, e := range rest.funcs {
		e.f() // the context package's registrations: they cancel a child, or start a goroutine
	}
	for _, k := range rest.kids[:rest.nk] {
		k.rc.cancelGen(k.gen, cause)
	}
	for _, k := range rest.more {
		k.rc.cancelGen(k.gen, cause)
	}
	if rest.up != nil {
		rest.up.removeKid(rc)
	}
}

// Deadline implements context.Context: the parent's.
func (rc *reqCancel) Deadline() (time.Time, bool) {
	if rc.noDeadline.Load() {
		return time.Time{}, false
	}
	return rc.parentDeadline()
}

// parentDeadline is Deadline asking the parent.
func (rc *reqCancel) parentDeadline() (time.Time, bool) {
	p, g := rc.parentGuarded()
	if p == nil {
		return time.Time{}, false
	}
	if d, ok := p.Deadline(); ok && g.ours() {
		return d, true
	}
	return time.Time{}, false
}

// Done implements context.Context; the channel is made at the first call.
func (rc *reqCancel) Done() <-chan struct{} {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if !rc.shared.Load() {
		rc.shared.Store(true)
	}
	if rc.done == nil {
		rc.done = make(chan struct{})
		if rc.err != nil {
			close(rc.done)
		}
	}
	return rc.done
}

// Err implements context.Context: nil, or context.Canceled wrapping the cause.
func (rc *reqCancel) Err() error {
	rc.mu.Lock()
	err := rc.err
	rc.mu.Unlock()
	return err
}

// setValues makes rc answer vals's values (a chain of context.WithValue above
// context.Background) before its parent's, for this request or attempt.
func (rc *reqCancel) setValues(vals context.Context) {
	rc.mu.Lock()
	rc.values = vals
	rc.mu.Unlock()
}

// Value implements context.Context: the values set with setValues, the parent's, and rc
// itself as the request's h1.Watcher. The context package finds the nearest cancelable context
// through a private key (context.Cause and the parent search of WithCancel look up
// &cancelCtxKey): rc answers nil for exactly that key (cancelCtxKey, found once at start-up),
// so that context.Cause and a context derived from rc see rc (through Err and AfterFunc) and
// not a cancelable context above it. Every other key reaches the parent.
func (rc *reqCancel) Value(key any) any {
	switch key.(type) {
	case upstream.WatcherKey:
		return h1.Watcher(rc)
	}
	if key == cancelCtxKey {
		return nil
	}
	rc.mu.Lock()
	vals := rc.values
	rc.mu.Unlock()
	p, g := rc.parentGuarded()
	if vals != nil {
		if v := vals.Value(key); v != nil {
			return v
		}
	}
	if p == nil {
		return nil
	}
	if v := p.Value(key); g.ours() {
		return v
	}
	return nil
}

// cancelCtxKey is the key the context package looks up to find a cancelable context (its
// unexported &cancelCtxKey), learned by asking context.Cause about a context that records the
// keys it is asked for. Nil if the context package no longer asks (then rc is simply never
// mistaken for an ancestor's key; TestReqCancelCauses checks that causes still come through).
var cancelCtxKey = func() any {
	var p keyProbe
	_ = context.Cause(&p)
	return p.key
}()

// keyProbe is a context that records the first pointer-typed key it is asked for.
type keyProbe struct {
	context.Context
	key any
}

func (p *keyProbe) Value(key any) any {
	if _, ok := key.(*int); ok && p.key == nil {
		p.key = key
	}
	return nil
}

func (p *keyProbe) Err() error { return context.Canceled }

// AfterFunc arranges for f to run once rc is canceled, as the context package's afterFuncer:
// f runs on the canceling goroutine (the context package's functions only cancel a child or
// start a goroutine), or on a goroutine of its own when rc is canceled already. The returned
// stop reports whether it unregistered f before it ran.
func (rc *reqCancel) AfterFunc(f func()) func() bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.shared.Store(true)
	if rc.err != nil {
		go f()
		return func() bool { return false }
	}
	rc.nextID++
	id := rc.nextID
	rc.funcs = append(rc.funcs, afterEntry{id: id, f: f})
	return func() bool {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		for i, e := range rc.funcs {
			if e.id == id {
				rc.funcs = append(rc.funcs[:i], rc.funcs[i+1:]...)
				return true
			}
		}
		return false
	}
}

// Watch implements h1.Watcher.
func (rc *reqCancel) Watch(a h1.Aborter, gen uint64) bool {
	rc.mu.Lock()
	ok := rc.err == nil
	if ok {
		rc.watch = append(rc.watch, watchEntry{a: a, gen: gen})
	}
	rc.mu.Unlock()
	return ok
}

// Unwatch implements h1.Watcher. An exchange's reqCancel is mostly watched by that exchange
// alone: its one entry goes without a search (unwatchAny).
func (rc *reqCancel) Unwatch(a h1.Aborter) {
	rc.mu.Lock()
	if len(rc.watch) == 1 && rc.watch[0].a == a {
		rc.watch[0] = watchEntry{}
		rc.watch = rc.watch[:0]
	} else {
		rc.unwatchAny(a)
	}
	rc.mu.Unlock()
}

// unwatchAny removes a's entry from rc.watch, if any; rc.mu is held. Out of Unwatch's common
// path.
//
//go:noinline
func (rc *reqCancel) unwatchAny(a h1.Aborter) {
	for i, w := range rc.watch {
		if w.a == a {
			n := len(rc.watch) - 1
			rc.watch[i] = rc.watch[n]
			rc.watch[n] = watchEntry{}
			rc.watch = rc.watch[:n]
			return
		}
	}
}

// causeOf returns why ctx was canceled: for a reqCancel the cause it was canceled with (the
// router's errRouteTimeout, errIdleTimeout, ...; context.Canceled when none), otherwise
// context.Cause. A reqCancel's Err is context.Canceled itself, as the context package's
// contract has it, and context.Cause(rc) answers that too: code outside sees a canceled
// context, the router its own reasons.
func causeOf(ctx context.Context) error {
	rc, ok := ctx.(*reqCancel)
	if !ok {
		return context.Cause(ctx)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.err == nil {
		return nil
	}
	if rc.cause == nil {
		return rc.err
	}
	return rc.cause
}
