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
type lazyDeadline struct {
	mu    sync.Mutex
	want  time.Time // the caller's deadline; zero: none
	stall time.Time // when the write waiting for room stalls; zero: none
	armed time.Time // the socket's deadline; zero: none
	past  bool      // armed was already past when set: an interruption (see apply)
	set   func(time.Time) error
	sets  *atomic.Int64 // counts the socket deadline changes
}

// due returns the deadline in force; zero: none. l.mu is held.
func (l *lazyDeadline) due() time.Time {
	switch {
	case l.stall.IsZero():
		return l.want
	case l.want.IsZero() || l.stall.Before(l.want):
		return l.stall
	}
	return l.want
}

// apply arms the socket for the deadline in force if that is earlier than the armed one, or
// if the armed one was set in the past: a deadline in the past interrupts the operations
// waiting (the usual way to cancel them), and the next deadline, often none, ends the
// interruption at once rather than through a failed operation that re-arms. l.mu is held.
func (l *lazyDeadline) apply() error {
	t := l.due()
	if l.past || !t.IsZero() && (l.armed.IsZero() || t.Before(l.armed)) {
		return l.arm(t)
	}
	return nil
}

// arm sets the socket's deadline. l.mu is held.
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
// write stalled and no interruption to end): they cost the lock and a few compares.
func (l *lazyDeadline) request(t time.Time) error {
	l.mu.Lock()
	l.want = t
	if !l.past && l.stall.IsZero() && (t.IsZero() || !l.armed.IsZero() && !t.Before(l.armed)) {
		l.mu.Unlock() // what apply would find: nothing to arm
		return nil
	}
	err := l.apply() // no panic to unlock for: set is the socket's own
	l.mu.Unlock()
	return err
}

// setStall sets (or, with zero, clears) the stall deadline of the write in progress.
func (l *lazyDeadline) setStall(t time.Time) {
	l.mu.Lock()
	l.stall = t
	if !t.IsZero() {
		_ = l.apply() // a closed socket fails the write anyway
	}
	l.mu.Unlock()
}

// rearm runs when the socket's deadline passed while an operation waited. It reports whether
// the operation goes on (the deadline in force has not passed: the socket is re-armed for
// it), and, if not, whether it was the stall deadline that passed.
func (l *lazyDeadline) rearm() (retry, stalled bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	switch {
	case !l.want.IsZero() && !now.Before(l.want):
		return false, false
	case !l.stall.IsZero() && !now.Before(l.stall):
		return false, true
	}
	if l.arm(l.due()) != nil {
		return false, false
	}
	return true, false
}
