package h1

import (
	"errors"
	"os"
	"sync"
	"time"
)

// The codec has no background read: while a handler waits (for an upstream, say), nothing
// reads the connection, so a client that closes it would be noticed only when the response
// write fails. The watch is that read, started only for a request still in flight
// Server.WatchDelay after its body was read to its end (a request still sending its body is
// not watched: the handler's body reads see the close), so the fast path pays a clock reading
// per request and no goroutine. The timer is re-armed lazily: a request that ends before it
// fires leaves it running, the next one does not move it, and when it fires it re-arms itself
// for what is left of the delay of the request then in flight (as the stream idle timer in
// proxy/l7 does), so a busy connection moves a runtime timer about once per WatchDelay
// rather than twice per request. It reads into the connection's own buffer, so that
// the bytes of a pipelined next request are kept for it, and ends at the first read: bytes (the
// client is there), the client's close or reset (Server.OnPeerGone; the connection closes after
// the response), or a read deadline. stopWatch ends it with a read deadline in the past and
// waits for it before the codec reads the connection again.

// Watch states.
const (
	watchOff     = iota // no handler runs
	watchIdle           // a handler runs; its request body is not read to its end yet
	watchArmed          // the timer runs
	watchRunning        // the watch reads the connection
	watchEnded          // the watch read returned
)

// watch is a connection's watch for the client closing it while a handler runs.
type watch struct {
	mu      sync.Mutex
	state   int
	timer   *time.Timer
	pending bool           // the timer is set: it fires later (and re-arms itself if need be)
	armedAt time.Time      // when the request in flight was armed (watchArmed)
	wg      sync.WaitGroup // the running watch read
	gone    bool           // the watch saw the client close or reset the connection
}

// beginWatch runs before the handler is called: the request may be watched once its body
// has been read to its end (at once if it is already).
func (c *conn) beginWatch() {
	if c.srv.WatchDelay <= 0 || c.tunnel {
		return
	}
	w := &c.watch
	w.mu.Lock()
	w.state = watchIdle
	w.mu.Unlock()
	if c.body.done() {
		c.armWatch()
	}
}

// armWatch starts the watch's timer, if the handler runs and it was not started yet. It may
// run on the goroutine that reads the request body.
func (c *conn) armWatch() {
	w := &c.watch
	w.mu.Lock()
	if w.state == watchIdle {
		w.state = watchArmed
		w.armedAt = time.Now()
		if !w.pending {
			// A timer still set for an earlier request fires sooner than this one's delay
			// ends, and re-arms itself for the rest (watchFire).
			w.pending = true
			if w.timer == nil {
				w.timer = time.AfterFunc(c.srv.WatchDelay, c.watchFire)
			} else {
				w.timer.Reset(c.srv.WatchDelay)
			}
		}
	}
	w.mu.Unlock()
}

// watchFire runs when the timer fires: the watch read if the request in flight was armed
// WatchDelay ago or more; the timer again for the rest of the delay if it was armed later; nothing
// if no request is armed (the handler returned meanwhile).
func (c *conn) watchFire() {
	w := &c.watch
	w.mu.Lock()
	if w.state != watchArmed {
		w.pending = false
		w.mu.Unlock()
		return
	}
	if left := c.srv.WatchDelay - time.Since(w.armedAt); left > 0 {
		w.timer.Reset(left)
		w.mu.Unlock()
		return
	}
	w.pending = false
	w.state = watchRunning
	w.wg.Add(1)
	w.mu.Unlock()
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
	w.mu.Lock()
	if w.state == watchRunning {
		w.state = watchEnded
	}
	gone := err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
	w.gone = gone
	w.mu.Unlock()
	if gone && c.srv.OnPeerGone != nil {
		c.srv.OnPeerGone()
	}
}

// stopWatch ends the watch once the handler returned (or hijacks the connection) and reports
// whether the client is gone; the connection's read deadline is restored to none, the one the
// codec keeps while a handler runs.
func (c *conn) stopWatch() (gone bool) {
	w := &c.watch
	w.mu.Lock()
	st := w.state
	w.state = watchOff
	w.mu.Unlock()
	switch st {
	case watchArmed:
		// The timer stays set (see armWatch): when it fires it finds no request armed, or
		// the next one's, and acts for that one.
	case watchRunning:
		c.c.SetReadDeadline(time.Unix(1, 0))
		w.wg.Wait()
		c.c.SetReadDeadline(time.Time{})
	case watchEnded:
		w.wg.Wait()
	}
	w.mu.Lock()
	gone, w.gone = w.gone, false
	w.mu.Unlock()
	return gone
}
