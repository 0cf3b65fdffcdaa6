package h1

import (
	"errors"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strait-mesh/strait/proxy/clock"
)

// The codec has no background read: while a handler waits (for an upstream, say), nothing
// reads the connection, so a client that closes it would be noticed only when the response
// write fails. The watch is that read, started only for a request still in flight
// Server.WatchDelay after its body was read to its end (a request still sending its body is
// not watched: the handler's body reads see the close), so the fast path pays a clock reading,
// one short critical section (arm) and one compare-and-swap (stop) per request, and no
// goroutine and no timer of its own.
//
// Armed requests wait in a watch shard shared by many connections of the same WatchDelay (one
// shard per P, up to 8): a list in arming order, so the oldest is first, and one timer, set
// for when the oldest is due. A request that ends leaves the list; the timer is left set, and
// when it fires it starts the watch of every request due and re-arms itself for the oldest
// left, or stops when none is. A busy process so moves one timer per shard about once per
// WatchDelay, whatever its number of connections and requests (a timer per connection fired,
// and started a goroutine, about once per WatchDelay per busy connection: at 1,000 requests/s
// over 16 connections that was most of a timer firing per request).
//
// The watch reads into the connection's own buffer, so that the bytes of a pipelined next
// request are kept for it, and ends at the first read: bytes (the client is there), the
// client's close or reset (Server.OnPeerGone; the connection closes after the response), or a
// read deadline. stopWatch ends it with a read deadline in the past and waits for it before
// the codec reads the connection again.
//
// A request that ends before its watch starts (most) is stopped without the shard's lock: a
// compare-and-swap of its state, which the shard's timer makes too to start the watch, decides
// which of the two comes first. The connection is left in the shard's list, out of date: the
// timer, the connection's next request (arming it again) or its end (leaveWatch) takes it out,
// under the lock.

// Watch states (watch.st).
const (
	watchOff     = iota // not armed: no handler runs, its body is not read yet, or stopped
	watchArmed          // the request is in its shard's list, waiting for WatchDelay to pass
	watchRunning        // the watch reads the connection
	watchEnded          // the watch read returned
)

// Phases of a connection's request, as the connection's goroutine sees them (watch.phase).
const (
	phaseOff   = iota // no handler runs
	phaseIdle         // a handler runs; its request body is not read to its end yet
	phaseArmed        // a handler runs; the request was armed
)

// watch is a connection's watch for the client closing it while a handler runs.
//
// phase is the connection goroutine's own (and its handler's, which arms from the goroutine
// that reads the body, in the handler's time). st is shared with the shard's timer and the
// watch read: written under the shard's mutex by armWatch (with no compare-and-swap running:
// the request was not armed, and the last one's stop and watch are over) and else changed
// only by compare-and-swap (stopWatch without the mutex, fire and watchRead with it). The
// other fields but wg are guarded by the shard's mutex.
type watch struct {
	shard      *watchShard
	phase      int
	st         int32
	armedAt    time.Duration  // when the request in flight was armed (watchArmed): clock.Mono
	prev, next *conn          // neighbours in the shard's list (linked)
	linked     bool           // in the shard's list: armed, or stopped and not taken out yet
	wg         sync.WaitGroup // the running watch read
	gone       bool           // the watch saw the client close or reset the connection
}

// watchShard is the armed requests of some connections with one WatchDelay, oldest first, and
// the one timer that starts their watches.
type watchShard struct {
	mu         sync.Mutex
	delay      time.Duration
	head, tail *conn
	timer      *time.Timer
	pending    bool // the timer is set
	fires      int  // how many times the timer fired (tests)
}

// watchShards holds the shards of each WatchDelay in use, made on first use and kept.
var watchShards struct {
	mu      sync.Mutex
	byDelay map[time.Duration]*watchGroup
}

// watchGroup is the shards of one WatchDelay; connections take them in turn.
type watchGroup struct {
	shards []*watchShard
	next   atomic.Uint32
}

// maxWatchShards bounds the shards of one WatchDelay.
const maxWatchShards = 8

// watchShardFor returns the shard a new connection with WatchDelay d arms its requests in.
func watchShardFor(d time.Duration) *watchShard {
	watchShards.mu.Lock()
	g := watchShards.byDelay[d]
	if g == nil {
		n := min(runtime.GOMAXPROCS(0), maxWatchShards)
		g = &watchGroup{shards: make([]*watchShard, n)}
		for i := range g.shards {
			g.shards[i] = &watchShard{delay: d}
		}
		if watchShards.byDelay == nil {
			watchShards.byDelay = make(map[time.Duration]*watchGroup)
		}
		watchShards.byDelay[d] = g
	}
	watchShards.mu.Unlock()
	return g.shards[int(g.next.Add(1))%len(g.shards)]
}

// push appends c, armed now, to the list and sets the timer if it is not set. sh.mu is held.
func (sh *watchShard) push(c *conn) {
	w := &c.watch
	last := sh.tail
	// The stores of pointers that are made either way together: one write barrier check.
	w.prev, w.next, sh.tail = last, nil, c
	if last != nil {
		last.watch.next = c
	} else {
		sh.head = c
	}
	w.linked = true
	if !sh.pending {
		// A timer still set for an earlier request fires sooner than this one is due, and
		// re-arms itself for the rest (fire).
		sh.pending = true
		if sh.timer == nil {
			sh.timer = time.AfterFunc(sh.delay, sh.fire)
		} else {
			sh.timer.Reset(sh.delay)
		}
	}
}

// unlink removes c from the list. sh.mu is held.
func (sh *watchShard) unlink(c *conn) {
	w := &c.watch
	if w.prev != nil {
		w.prev.watch.next = w.next
	} else {
		sh.head = w.next
	}
	if w.next != nil {
		w.next.watch.prev = w.prev
	} else {
		sh.tail = w.prev
	}
	w.prev, w.next, w.linked = nil, nil, false
}

// fire runs when the shard's timer fires: the watch of every request armed WatchDelay ago or
// more starts; requests stopped are taken out of the list; the timer is set again for the
// oldest left, if any.
func (sh *watchShard) fire() {
	var due []*conn
	sh.mu.Lock()
	sh.fires++
	now := clock.Mono()
	for c := sh.head; c != nil; c = sh.head {
		w := &c.watch
		if atomic.LoadInt32(&w.st) != watchArmed {
			sh.unlink(c) // stopped
			continue
		}
		if left := sh.delay - (now - w.armedAt); left > 0 {
			sh.timer.Reset(left)
			break
		}
		sh.unlink(c)
		// Added before the watch is started, so that a stopWatch that finds it started waits
		// for it.
		w.wg.Add(1)
		if !atomic.CompareAndSwapInt32(&w.st, watchArmed, watchRunning) {
			w.wg.Done() // stopped meanwhile
			continue
		}
		due = append(due, c)
	}
	sh.pending = sh.head != nil
	sh.mu.Unlock()
	for i, c := range due {
		if i == len(due)-1 {
			c.watchRead()
		} else {
			go c.watchRead()
		}
	}
}

// beginWatch runs before the handler is called: the request may be watched once its body
// has been read to its end (at once if it is already).
func (c *conn) beginWatch() {
	if c.srv.WatchDelay <= 0 || c.tunnel {
		return
	}
	w := &c.watch
	if w.shard == nil || w.shard.delay != c.srv.WatchDelay {
		w.shard = watchShardFor(c.srv.WatchDelay)
	}
	w.phase = phaseIdle
	if c.body.done() {
		c.armWatch()
	}
}

// armWatch puts the request in its shard's list, if the handler runs and it was not armed yet.
// It may run on the goroutine that reads the request body.
func (c *conn) armWatch() {
	w := &c.watch
	if w.phase != phaseIdle {
		return // no handler runs, or armed already
	}
	w.phase = phaseArmed
	sh := w.shard
	now := clock.Mono() // outside the shard's lock; one monotonic clock reading, no time.Time to store
	sh.mu.Lock()
	w.st = watchArmed // see watch
	w.armedAt = now
	// Left in the list by the last request's stopWatch, it moves to the end of the list (the
	// newest), unless it is there already (the shard's timer then is set: a list not empty
	// has it set).
	if !w.linked || sh.tail != c {
		if w.linked {
			sh.unlink(c)
		}
		sh.push(c)
	}
	sh.mu.Unlock()
}

// watchRead is the watch: one read of the connection, started by the shard's timer.
func (c *conn) watchRead() {
	w := &c.watch
	defer w.wg.Done()
	rd := &c.rd
	if rd.r == rd.w {
		rd.r, rd.w = 0, 0
	}
	if rd.w == len(rd.buf) {
		return // a buffer of pipelined bytes: the client is there
	}
	n, err := c.c.Read(rd.buf[rd.w:])
	rd.w += n
	sh := w.shard
	sh.mu.Lock()
	atomic.CompareAndSwapInt32(&w.st, watchRunning, watchEnded)
	gone := err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
	w.gone = gone
	sh.mu.Unlock()
	if gone && c.srv.OnPeerGone != nil {
		c.srv.OnPeerGone()
	}
}

// stopWatch ends the watch once the handler returned (or hijacks the connection) and reports
// whether the client is gone; the connection's read deadline is restored to none, the one the
// codec keeps while a handler runs.
func (c *conn) stopWatch() (gone bool) {
	w := &c.watch
	sh := w.shard
	if sh == nil {
		return false
	}
	armed := w.phase == phaseArmed
	w.phase = phaseOff
	if !armed || atomic.CompareAndSwapInt32(&w.st, watchArmed, watchOff) {
		// Not armed, or stopped before its watch started: a request armed stays in the
		// shard's list, out of date (see above), and the shard's timer stays set: when it
		// fires it acts for whoever is due.
		return false
	}
	st := atomic.LoadInt32(&w.st) // started by the timer: running or ended
	switch st {
	case watchRunning:
		c.c.SetReadDeadline(time.Unix(1, 0))
		w.wg.Wait()
		c.c.SetReadDeadline(time.Time{})
	case watchEnded:
		w.wg.Wait()
	}
	sh.mu.Lock()
	gone, w.gone = w.gone, false
	w.st = watchOff
	sh.mu.Unlock()
	return gone
}

// leaveWatch takes the connection out of its shard's list, where stopWatch may have left it,
// when it ends: its state is pooled (another connection, maybe of another shard, takes it) or
// dropped. The watch is stopped.
func (c *conn) leaveWatch() {
	sh := c.watch.shard
	if sh == nil {
		return
	}
	sh.mu.Lock()
	if c.watch.linked {
		sh.unlink(c)
	}
	sh.mu.Unlock()
}
