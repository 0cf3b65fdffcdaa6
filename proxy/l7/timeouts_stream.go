package l7

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strait-mesh/strait/proxy/httpmsg"
)

// The stream stage runs in front of the filter pipeline and ends streams the way Envoy's
// connection manager does where the router cannot see it:
//
//   - request_timeout: the whole request (headers and body) must arrive within it; when it
//     does not, the stream is answered 408 (or reset, if the response already began). The clock
//     stops at the end of the request body or when the response begins. Disabled by default
//     (Envoy's default too): it would end long-lived streams.
//   - HTTP/1.1 responses that begin before their request body ended carry "Connection: close"
//     (Envoy: downstream_rq_response_before_rq_complete), and the rest of the body is not waited
//     for after the response: net/http would otherwise read up to 256 KiB of it with no clock,
//     so a body trickled in after a local reply or a stream idle timeout held the connection.
//   - stream_idle_timeout while an HTTP/2 response write waits for flow-control window the
//     client never grants: the stream is reset (a connection-level stall is net/http's
//     WriteByteTimeout, HTTP/1.1's is clockConn.Write).
//   - max_connection_duration: responses of a draining connection carry "Connection: close"
//     (HTTP/2: net/http turns it into GOAWAY).
//
// Requests without a body on HTTP/1.1 pass through untouched unless max_connection_duration is
// set; the per-stream state is pooled. On proxy/h1's connections, without request_timeout,
// the codec's writer (h1Down) does the HTTP/1.1 parts itself and the stage only marks the
// request body to watch and ends it (h1Down.watchBody, bodyEnd).
func (h *Handler) streamStage(next StreamHandler) StreamHandler {
	return func(s *Stream) {
		hasBody := s.hasBody()
		h1 := s.HTTP1()
		if d, native := s.downW.(*h1Down); native && h1 && s.w == downstream(d) && !(hasBody && h.requestTimeout > 0) {
			if !hasBody {
				next(s)
				return
			}
			d.watchBody()
			next(s)
			d.bodyEnd(s)
			return
		}
		var watch time.Duration
		if !h1 {
			watch = h.streamIdle
			if s.Route != nil && s.Route.IdleTimeout > 0 {
				watch = s.Route.IdleTimeout
			}
		}
		timed := hasBody && h.requestTimeout > 0
		if !hasBody && watch <= 0 && h.maxConnDuration <= 0 {
			next(s)
			return
		}
		var cc *clockConn
		if s.cs != nil {
			cc = s.cs.cc
		}
		if !hasBody && watch <= 0 && cc == nil {
			next(s)
			return
		}
		se := s.se // the last request's, kept with the Stream
		if se == nil {
			se = new(streamEnd)
		} else {
			s.se = nil
		}
		se.begin(h, s, cc, h1, watch, hasBody, timed)
		ended := false
		defer func() {
			if !ended {
				se.abandon() // a panic: no timer may act on the writer any more
			}
		}()
		next(s)
		se.end(s)
		ended = true
		if !s.bodyHeld {
			// Nothing reads se.eb any more: se stays with the Stream (pooled) for its next
			// request.
			s.se = se
		}
	}
}

// Request timer states (the low two bits of streamEnd.rt; the rest is the generation).
const (
	rtIdle uint64 = iota
	rtArmed
	rtDone
	rtFired
)

// streamEnd is the stream stage's state for one request. It is kept with the Stream (which
// is pooled) for the Stream's next request: every field a timer
// or a late body reader may touch is checked against the generation (gen) or a deadline, so a
// stale callback never acts on the next request.
type streamEnd struct {
	h       *Handler
	cc      *clockConn
	body    *endBody
	h1      bool
	hasBody bool
	started bool   // the response began (handler goroutine only)
	gen     uint64 // written by the handler goroutine (begin), read atomically elsewhere

	mu sync.Mutex // guards rw against the timer goroutines
	rw downstream // the codec's writer while the handler runs, nil after

	// stream_idle_timeout on HTTP/2 writes.
	watch   time.Duration
	watchT  *time.Timer
	writeBy atomic.Int64 // deadline of the write in progress (unix nanos); 0: none
	stalled atomic.Bool

	// request_timeout.
	rt     atomic.Uint64 // gen<<2 | state
	rtBy   atomic.Int64  // when the timer expires (unix nanos)
	rtT    *time.Timer
	cancel context.CancelCauseFunc

	eb endBody // the request body's wrapper (body points to it while the stage runs)
}

// endWriter is the stream's downstream while the stage runs.
type endWriter streamEnd

// endBody is the stream's request body while the stage runs, the streamEnd's own (eb). A
// streamEnd whose endBody may still be read after the handler returned (an abandoned
// attempt's reader, code outside that got the body: Stream.bodyHeld) is not pooled again.
type endBody struct {
	rc  io.ReadCloser
	se  *streamEnd
	gen uint64
	eof atomic.Bool
}

// timers reports whether a timer goroutine (request_timeout, the write stall watch) may
// touch se: only then do its fields need atomic writes and its writer the lock. A streamEnd
// that never had a timer is the handler goroutine's alone between requests (one whose body
// may still be read after its request is not kept: Stream.bodyHeld), and the goroutines that
// read its body during a request (an upstream body writer) start after begin.
func (se *streamEnd) timers() bool { return se.rtT != nil || se.watchT != nil }

func (se *streamEnd) begin(h *Handler, s *Stream, cc *clockConn, h1 bool, watch time.Duration, hasBody, timed bool) {
	var gen uint64
	locked := se.timers()
	if locked {
		// A timer of an earlier request may be running: it decides under se.mu, so the new
		// request's generation, writer and request_timeout arming are published under it
		// together (requestTimedOut checks the deadline again there).
		se.mu.Lock()
		gen = atomic.AddUint64(&se.gen, 1)
		if se.stalled.Load() {
			se.stalled.Store(false)
		}
		if se.writeBy.Load() != 0 {
			se.writeBy.Store(0)
		}
	} else {
		// No timer ever ran: stalled and writeBy are still false and 0, and a timer this
		// request starts is made below, after every field is set.
		se.gen++
		gen = se.gen
	}
	se.rw = s.w
	se.h, se.cc, se.h1, se.hasBody, se.watch, se.started = h, cc, h1, hasBody, watch, false
	s.w = (*endWriter)(se)
	se.body = nil
	if hasBody {
		se.eb = endBody{rc: s.body, se: se, gen: gen}
		se.body = &se.eb
		s.body = se.body
	}
	if timed || se.rt.Load()&3 != rtIdle {
		// An earlier request's idle state (its generation) is as good as this one's: every
		// compare against rt names the generation and a state other than idle.
		se.rt.Store(gen<<2 | rtIdle)
	}
	if timed {
		ctx, cancel := context.WithCancelCause(s.Context())
		se.cancel = cancel
		s.ctx = ctx
		se.rtBy.Store(time.Now().Add(h.requestTimeout).UnixNano())
		se.rt.Store(gen<<2 | rtArmed)
		if se.rtT == nil {
			se.rtT = time.AfterFunc(h.requestTimeout, se.requestTimedOut)
		} else {
			se.rtT.Reset(h.requestTimeout)
		}
	}
	if locked {
		se.mu.Unlock()
	}
}

// end runs on the handler goroutine after the pipeline returned.
func (se *streamEnd) end(s *Stream) {
	gen := se.gen // written only by this goroutine
	fired := false
	if st := se.rt.Load(); st&3 != rtIdle {
		if !se.rt.CompareAndSwap(gen<<2|rtArmed, gen<<2|rtDone) {
			fired = se.rt.Load() == gen<<2|rtFired
		}
		se.rtT.Stop()
	}
	if se.watchT != nil {
		se.watchT.Stop()
	}
	h := se.h
	if fired {
		// The router took the canceled context for a downstream disconnect.
		s.Info.Flags &^= FlagDownstreamConnTerminated
		h.st.rqTimeout.Inc()
		if !s.wroteHeader {
			s.localReply(http.StatusRequestTimeout, 0, "request_overall_timeout", "request timeout", -1)
		} else {
			s.Info.Details = "request_overall_timeout"
		}
	}
	if se.stalled.Load() {
		s.Info.Flags = s.Info.Flags&^FlagDownstreamConnTerminated | FlagStreamIdleTimeout
		s.Info.Details = "stream_idle_timeout"
		h.tst.streamIdleReset.Inc()
	}
	if se.h1 && se.hasBody && !se.body.eof.Load() {
		leaveBody(se.rw, se.started, se.cc) // see streamStage
	}
	if se.timers() {
		se.mu.Lock()
		se.rw = nil
		se.mu.Unlock()
	} else {
		se.rw = nil
	}
	if se.cancel != nil {
		se.cancel(nil)
		se.cancel = nil
	}
	se.h, se.cc, se.body = nil, nil, nil
}

// leaveBody ends an HTTP/1.1 stream whose request body was not read to its end: the rest is
// not waited for, and the connection closes after the response (started: its head is out
// already, with whatever Connection field it had), lingering so that the client reads it.
func leaveBody(w downstream, started bool, cc *clockConn) {
	if !started {
		w.Header().Set("Connection", "close")
	}
	_ = w.SetReadDeadline(time.Unix(1, 0))
	if cc != nil {
		cc.linger.Store(true)
	}
}

// abandon disarms the timers of a stream whose pipeline panicked.
func (se *streamEnd) abandon() {
	se.mu.Lock()
	se.rw = nil
	se.mu.Unlock()
	se.rt.Store(se.gen<<2 | rtDone)
	if se.cancel != nil {
		se.cancel(nil)
	}
}

// respond runs when the response begins (its status is decided): the request clock stops and
// the connection-level decisions go into the headers.
func (se *streamEnd) respond(code int) {
	if se.started || code < 200 {
		return
	}
	se.started = true
	gen := se.gen
	if armed := gen<<2 | rtArmed; se.rt.Load() == armed && se.rt.CompareAndSwap(armed, gen<<2|rtDone) {
		se.rtT.Stop()
	}
	closeConn := false
	if se.hasBody && !se.body.eof.Load() {
		se.h.tst.beforeRqDone.Inc()
		closeConn = se.h1
	}
	if se.cc != nil && se.cc.draining.Load() {
		closeConn = true
	}
	if closeConn {
		se.rw.Header().Set("Connection", "close")
	}
}

// requestTimedOut is the request_timeout timer.
func (se *streamEnd) requestTimedOut() {
	if time.Now().UnixNano() < se.rtBy.Load() {
		return // a stale timer of an earlier request
	}
	se.mu.Lock()
	defer se.mu.Unlock()
	if time.Now().UnixNano() < se.rtBy.Load() {
		// The stream started its next request while this timer waited for the lock, and
		// armed that request's clock (begin holds se.mu while it does).
		return
	}
	gen := atomic.LoadUint64(&se.gen)
	if se.rw == nil || !se.rt.CompareAndSwap(gen<<2|rtArmed, gen<<2|rtFired) {
		return
	}
	se.cancel(errRequestTimeout)
	// End a body read in progress; later reads fail at once (endBody.Read).
	_ = se.rw.SetReadDeadline(time.Unix(1, 0))
}

// arm starts the HTTP/2 write stall watch for a write about to start; the caller clears
// writeBy when the write returns.
func (se *streamEnd) arm() {
	se.writeBy.Store(time.Now().Add(se.watch).UnixNano())
	if se.watchT == nil {
		se.watchT = time.AfterFunc(se.watch, se.writeStalled)
	} else {
		se.watchT.Reset(se.watch)
	}
}

// writeStalled is the write stall timer: a write still waiting at its deadline resets the
// stream (net/http's HTTP/2 server resets a stream whose write deadline passed).
func (se *streamEnd) writeStalled() {
	by := se.writeBy.Load()
	if by == 0 || time.Now().UnixNano() < by {
		return
	}
	se.mu.Lock()
	defer se.mu.Unlock()
	if se.rw == nil || se.writeBy.Load() != by {
		return
	}
	se.stalled.Store(true)
	_ = se.rw.SetWriteDeadline(time.Unix(1, 0))
}

// Header implements downstream.
func (w *endWriter) Header() *httpmsg.Header { return w.rw.Header() }

// Trailer implements downstream.
func (w *endWriter) Trailer() *httpmsg.Header { return w.rw.Trailer() }

// WriteHeader implements downstream.
func (w *endWriter) WriteHeader(code int) {
	se := (*streamEnd)(w)
	se.respond(code)
	se.rw.WriteHeader(code)
}

// Write implements downstream.
func (w *endWriter) Write(b []byte) (int, error) {
	se := (*streamEnd)(w)
	se.respond(http.StatusOK)
	if se.watch <= 0 {
		return se.rw.Write(b)
	}
	se.arm()
	n, err := se.rw.Write(b)
	se.writeBy.Store(0)
	return n, err
}

// Flush implements downstream, through the write stall watch.
func (w *endWriter) Flush() error {
	se := (*streamEnd)(w)
	se.respond(http.StatusOK)
	if se.watch > 0 {
		se.arm()
		defer se.writeBy.Store(0)
	}
	return se.rw.Flush()
}

// Hijack implements downstream.
func (w *endWriter) Hijack() (net.Conn, []byte, error) { return w.rw.Hijack() }

// EnableFullDuplex implements downstream.
func (w *endWriter) EnableFullDuplex() error { return w.rw.EnableFullDuplex() }

// SetReadDeadline implements downstream.
func (w *endWriter) SetReadDeadline(t time.Time) error { return w.rw.SetReadDeadline(t) }

// SetWriteDeadline implements downstream.
func (w *endWriter) SetWriteDeadline(t time.Time) error { return w.rw.SetWriteDeadline(t) }

// Read implements io.Reader.
func (b *endBody) Read(p []byte) (int, error) {
	se := b.se
	current := atomic.LoadUint64(&se.gen) == b.gen
	if current && se.rt.Load() == b.gen<<2|rtFired {
		return 0, errRequestTimeout
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.eof.Store(true)
		if armed := b.gen<<2 | rtArmed; se.rt.Load() == armed && se.rt.CompareAndSwap(armed, b.gen<<2|rtDone) {
			se.rtT.Stop()
		}
	}
	return n, err
}

// Close implements io.Closer.
func (b *endBody) Close() error { return b.rc.Close() }
