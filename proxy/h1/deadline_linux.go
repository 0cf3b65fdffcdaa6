package h1

import (
	"sync"
	"sync/atomic"
	"time"
)

// lazyDeadline is one direction's deadline on a DirectConn socket, applied lazily. The
// deadline in force is the earlier of want (the caller's) and stall (a write waiting for
// room); the socket's own deadline, armed, is never later than it: it moves when the deadline
// in force becomes earlier than it, and otherwise only once it passed (rearm), to the
// deadline then in force. So the deadline in force fires exactly (the waiting operation sees
// it at the same time as with the socket's own deadline), while a deadline that only moves
// later costs no poller timer operation until the armed one passes.
//
// Most requests (SetReadDeadline, SetWriteDeadline) change nothing the socket sees: they take
// no lock (request's fast path). The caller's deadline is then kept as a number (want: see
// encodeWant), and gate tells a request whether the state the lock guards lets it skip the
// lock. A change of that state under the lock closes the gate before it reads want, and
// opens it again once done; a request on the fast path stores want, then checks that the
// gate did not move meanwhile (else it takes the lock). The atomics being sequentially
// consistent, either the request sees the gate move, or the change under the lock reads the
// request's want.
type lazyDeadline struct {
	mu    sync.Mutex
	want  atomic.Int64 // the caller's deadline: encodeWant's, or wantExact (wantT)
	gate  atomic.Int64 // what request's fast path may skip the lock for: gateLocked, or armed (encodeWant)
	wantT time.Time    // the caller's deadline when want is wantExact
	stall time.Time    // when the write waiting for room stalls; zero: none
	armed time.Time    // the socket's deadline; zero: none
	past  bool         // armed was already past when set: an interruption (see apply)
	set   func(time.Time) error
	sets  *atomic.Int64 // counts the socket deadline changes
}

// wantBase is the origin of the deadlines kept as numbers: a time with a monotonic reading.
var wantBase = time.Now()

// maxWant bounds the deadlines kept as numbers (about 36 years after wantBase): wantBase.Add
// of any of them keeps its monotonic reading (a time's wall reading beside a monotonic one
// only goes to the year 2157).
const maxWant = 1 << 60

// wantExact is want's value for a deadline not kept as a number: wantT holds it.
const wantExact = -1

// gateLocked is gate's value when every request takes the lock: the socket's armed deadline
// is an interruption (past), a write waits for room (stall), a slow request, rearm or
// setStall is under way, or the armed deadline is not kept as a number.
const gateLocked = -1

// encodeWant returns t as a number when that is exact (ok): 0 for none, else its monotonic
// time since wantBase, which wantBase.Add turns back into a time whose monotonic reading is
// t's; durations, comparisons with other monotonic times, and the poller's deadline (which
// it takes from the monotonic reading) are then exactly t's. A time without a monotonic
// reading (time.Unix, time.Date, Round(0)), before wantBase or beyond maxWant is not kept as
// a number.
func encodeWant(t time.Time) (n int64, ok bool) {
	if t.IsZero() {
		return 0, true
	}
	if t == t.Round(0) {
		return 0, false // no monotonic reading: Round(0) would strip it
	}
	d := t.Sub(wantBase)
	if d <= 0 || d > maxWant {
		return 0, false
	}
	return int64(d), true
}

// wantTime returns the caller's deadline; zero: none. l.mu is held.
func (l *lazyDeadline) wantTime() time.Time {
	switch n := l.want.Load(); {
	case n == 0:
		return time.Time{}
	case n == wantExact:
		return l.wantT
	default:
		return wantBase.Add(time.Duration(n))
	}
}

// closeGate sends the requests to the lock, before state under it is read or changed (see
// lazyDeadline). l.mu is held.
func (l *lazyDeadline) closeGate() {
	if l.gate.Load() != gateLocked {
		l.gate.Store(gateLocked)
	}
}

// openGate sets the gate for the state left: what a request may skip the lock for. l.mu is
// held.
func (l *lazyDeadline) openGate() {
	g := int64(gateLocked)
	if !l.past && l.stall.IsZero() {
		if n, ok := encodeWant(l.armed); ok {
			g = n // 0: none armed
		}
	}
	if g != gateLocked {
		l.gate.Store(g)
	}
}

// due returns the deadline in force with want the caller's deadline; zero: none. l.mu is held.
func (l *lazyDeadline) due(want time.Time) time.Time {
	switch {
	case l.stall.IsZero():
		return want
	case want.IsZero() || l.stall.Before(want):
		return l.stall
	}
	return want
}

// apply arms the socket for the deadline in force if that is earlier than the armed one, or
// if the armed one was set in the past: a deadline in the past interrupts the operations
// waiting (the usual way to cancel them), and the next deadline, often none, ends the
// interruption at once rather than through a failed operation that re-arms. l.mu is held and
// the gate closed.
func (l *lazyDeadline) apply() error {
	t := l.due(l.wantTime())
	if l.past || !t.IsZero() && (l.armed.IsZero() || t.Before(l.armed)) {
		return l.arm(t)
	}
	return nil
}

// arm sets the socket's deadline. l.mu is held and the gate closed.
func (l *lazyDeadline) arm(t time.Time) error {
	if err := l.set(t); err != nil {
		return err
	}
	l.armed = t
	l.past = !t.IsZero() && !time.Now().Before(t)
	l.sets.Add(1)
	return nil
}

// request sets the caller's deadline (SetReadDeadline, SetWriteDeadline). Most requests
// change nothing the socket sees (none, or a deadline no earlier than the armed one, with no
// write stalled and no interruption to end): they take no lock, and store want only if it
// changes (see lazyDeadline).
func (l *lazyDeadline) request(t time.Time) error {
	n, ok := int64(0), true
	if !t.IsZero() { // none (0) needs no call
		n, ok = encodeWant(t)
	}
	if ok {
		// What apply would find: nothing to arm.
		if g := l.gate.Load(); g != gateLocked && (n == 0 || g > 0 && n >= g) {
			if l.want.Load() == n {
				return nil // want unchanged: whoever reads it reads n
			}
			l.want.Store(n)
			if l.gate.Load() == g {
				return nil
			}
			// The state under the lock changed meanwhile: decide under the lock.
		}
	}
	return l.requestLocked(t, n, ok)
}

// requestLocked is request's slow path, under the lock: n and ok are encodeWant's for t. Out
// of request: rare.
//
//go:noinline
func (l *lazyDeadline) requestLocked(t time.Time, n int64, ok bool) error {
	l.mu.Lock()
	l.closeGate()
	if ok {
		l.want.Store(n)
	} else {
		l.wantT = t
		l.want.Store(wantExact)
	}
	err := l.apply() // no panic to unlock for: set is the socket's own
	l.openGate()
	l.mu.Unlock()
	return err
}

// setStall sets (or, with zero, clears) the stall deadline of the write in progress.
func (l *lazyDeadline) setStall(t time.Time) {
	l.mu.Lock()
	l.closeGate()
	l.stall = t
	if !t.IsZero() {
		_ = l.apply() // a closed socket fails the write anyway
	}
	l.openGate()
	l.mu.Unlock()
}

// rearm runs when the socket's deadline passed while an operation waited. It reports whether
// the operation goes on (the deadline in force has not passed: the socket is re-armed for
// it), and, if not, whether it was the stall deadline that passed.
func (l *lazyDeadline) rearm() (retry, stalled bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closeGate()
	defer l.openGate()
	want := l.wantTime()
	now := time.Now()
	switch {
	case !want.IsZero() && !now.Before(want):
		return false, false
	case !l.stall.IsZero() && !now.Before(l.stall):
		return false, true
	}
	if l.arm(l.due(want)) != nil {
		return false, false
	}
	return true, false
}
