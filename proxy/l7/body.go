package l7

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strait-mesh/strait/proxy/clock"
	"github.com/strait-mesh/strait/proxy/httpmsg"
	"github.com/strait-mesh/strait/proxy/telemetry"
)

// MaxReplayBytes bounds the request body kept for retries and mirroring: a request whose body
// is larger is neither retried after its body started flowing nor mirrored with its body.
const MaxReplayBytes = 64 << 10

var errStaleAttempt = errors.New("request body belongs to an abandoned upstream attempt")

// MaxPrefetchBytes bounds the request bodies (by Content-Length) whose first bytes are read before
// the request goes upstream; see replayBody.prefetch.
const MaxPrefetchBytes = 16 << 10

// replayBody streams the downstream request body to the current upstream attempt while
// remembering up to MaxReplayBytes of it, so that a retry can send the same bytes again.
// Bytes read by prefetch are always kept in buf (they are at most MaxPrefetchBytes).
//
// It is the Stream's, reused from one request to the next with its buffer (Stream.replayBody)
// when end says nothing can still reach it: end retires every attempt's reader (gen) and drops
// the timers and the downstream body, and a body whose bytes went to code that may still read
// them (a mirror, an upstream codec that reads on a goroutine of its own) is not reused.
type replayBody struct {
	mu sync.Mutex
	// solo: no attempt reader (bodyView) of rb was ever handed out, so only the router's
	// goroutine reaches rb's fields (the timers reach waiting only, an in-memory attempt's
	// codec its own BytesBody): rb's methods skip mu (see lock). It is cleared, for good, when
	// the first bodyView is made; from then on a stale reader of an earlier request or
	// attempt may take mu at any time.
	solo     bool
	src      io.ReadCloser
	record   bool
	buf      []byte
	total    int64
	overflow bool
	eof      bool
	err      error
	gen      int // never reset: a reader of an earlier request or attempt stays stale
	idle     *idleTimer
	received *int64
	onEOF    *routeTimer // started when the downstream body ends (may be nil)
	// bb is the in-memory body an attempt reads (attempt); out: bb was handed to the attempt
	// being made, until settle sees whether its codec is done with it (a flag, not a pointer
	// to bb: a request stores no pointer for it).
	bb  httpmsg.BytesBody
	out bool
	// shared: buf or bb went where they may still be read after the request (mirror, an
	// upstream that reads the body on a goroutine of its own): not to be reused.
	shared bool
	// grpc counts the gRPC messages of the downstream body (istio_request_messages_total)
	// when countGRPC is set; each byte is fed once, when it is read from the downstream.
	grpc      telemetry.GRPCFrames
	countGRPC bool
	// grpcCount is grpc's count, published for readers that must not wait for mu: the reader
	// holds mu while it waits for the downstream, and a stream's response (a gRPC status while
	// the client still sends) finishes without waiting for it.
	grpcCount atomic.Uint64
	// waiting is set while prefetch waits for the downstream (see interrupt).
	waiting atomic.Pointer[waitingOn]
	// on is what waiting points to during the wait (set before it is published).
	on waitingOn
}

// waitingOn is the downstream whose read deadline ends a prefetch wait.
type waitingOn struct{ d downstream }

// newReplayBody wraps src; set idle before the first read.
func newReplayBody(src io.ReadCloser, record bool, received *int64, onEOF *routeTimer) *replayBody {
	return &replayBody{src: src, record: record, received: received, onEOF: onEOF, solo: true}
}

// lock takes rb.mu unless rb is solo (only the router's goroutine, the caller, can reach its
// fields); it reports whether it took it, for the caller's unlock. The methods on a request's
// way release it with unlock, not a deferred Unlock: nothing between can panic, and a
// conditional defer leaves its machinery in their lines.
func (rb *replayBody) lock() bool {
	if rb.solo {
		return false
	}
	return rb.lockShared()
}

// lockShared is lock for a replayBody that is not solo. Out of lock's common path.
//
//go:noinline
func (rb *replayBody) lockShared() bool {
	rb.mu.Lock()
	return true
}

// unlock releases rb.mu if lock took it (locked).
func (rb *replayBody) unlock(locked bool) {
	if locked {
		rb.unlockShared()
	}
}

// unlockShared releases rb.mu (unlock). Out of unlock's common path.
//
//go:noinline
func (rb *replayBody) unlockShared() { rb.mu.Unlock() }

// maxKeptBodyBuf bounds the buffer a Stream keeps for its next request's body.
const maxKeptBodyBuf = MaxPrefetchBytes

// replayBody returns the stream's replayBody, reused when the last request's end allowed it
// (see end) and it is still solo, started for src.
func (s *Stream) replayBody(src io.ReadCloser, record bool, onEOF *routeTimer) *replayBody {
	rb := s.rbody
	if rb == nil || !rb.solo {
		return s.newRequestBody(src, record, onEOF)
	}
	buf := rb.buf[:0]
	if cap(buf) > maxKeptBodyBuf {
		buf = nil
	}
	// rb.received is &s.Info.BytesReceived already (rb is s's); the pointers together share
	// one write barrier check.
	rb.src, rb.buf, rb.err, rb.idle, rb.onEOF, rb.on = src, buf, nil, nil, onEOF, waitingOn{}
	rb.record, rb.total, rb.overflow, rb.eof, rb.out, rb.shared = record, 0, false, false, false, false
	rb.grpc, rb.countGRPC = telemetry.GRPCFrames{}, false
	if rb.grpcCount.Load() != 0 {
		rb.grpcCount.Store(0)
	}
	if rb.waiting.Load() != nil {
		rb.waiting.Store(nil)
	}
	return rb
}

// newRequestBody is replayBody for a stream with no replayBody to reuse: its first, or one
// that is not solo. Out of replayBody's common path.
//
//go:noinline
func (s *Stream) newRequestBody(src io.ReadCloser, record bool, onEOF *routeTimer) *replayBody {
	rb := s.rbody
	if rb == nil {
		rb = newReplayBody(src, record, &s.Info.BytesReceived, onEOF)
		s.rbody = rb
		return rb
	}
	// A streaming reader of rb was handed out, and a stale one may still take rb.mu: a new
	// replayBody, solo again, takes over rb's buffer, which a stale reader no longer touches
	// (end moved rb's generation on).
	rb.mu.Lock()
	buf := rb.buf[:0]
	rb.buf = nil
	rb.mu.Unlock()
	nb := newReplayBody(src, record, &s.Info.BytesReceived, onEOF)
	if cap(buf) <= maxKeptBodyBuf {
		nb.buf = buf
	}
	s.rbody = nb
	return nb
}

// enableFullDuplex lets the upstream response of an HTTP/1.1 request stream back while its
// body is still arriving, on a downstream other than proxy/h1's codec (which always does). Out
// of forward's common path.
//
//go:noinline
func (s *Stream) enableFullDuplex() {
	if s.HTTP1() {
		_ = s.w.EnableFullDuplex()
	}
}

// settle records whether the codec of the attempt that read rb.bb (out) is done with it: one
// that did not say so (BytesBody.MarkDone) may read it on, so rb is not reused. It runs on the
// router's goroutine after that attempt's round trip returned; rb.mu is held (or rb is solo).
func (rb *replayBody) settle() {
	if rb.out {
		if !rb.bb.Done() {
			rb.shared = true
		}
		rb.out = false
	}
}

// end detaches rb from the request, which forward ends: readers of its attempts fail from now
// on (errStaleAttempt), and rb no longer reads the downstream body or touches the request's
// timers. It reports whether rb may be reused for the stream's next request: false when an
// attempt's reader is reading (it holds rb.mu, maybe waiting for the downstream, which end
// must not wait for; it keeps the timers), or when rb's bytes went where they may still be
// read.
func (rb *replayBody) end() bool {
	if !rb.solo {
		return rb.endShared()
	}
	return rb.detach()
}

// endShared is end for a replayBody that is not solo: it detaches rb under rb.mu, unless an
// attempt's reader holds it. Out of end's common path.
//
//go:noinline
func (rb *replayBody) endShared() bool {
	if !rb.mu.TryLock() {
		return false
	}
	ok := rb.detach()
	rb.mu.Unlock()
	return ok
}

// detach is end's work once rb's fields are the caller's (solo, or rb.mu held).
func (rb *replayBody) detach() bool {
	rb.settle()
	rb.gen++
	rb.src, rb.idle, rb.onEOF = nil, nil, nil
	return !rb.shared
}

// downstreamErr returns the error reading the downstream body failed with, if any; rb may be
// nil (no body).
func (rb *replayBody) downstreamErr() error {
	if rb == nil {
		return nil
	}
	locked := rb.lock()
	err := rb.err
	rb.unlock(locked)
	return err
}

// attempt returns a reader for a new upstream attempt; earlier attempts' readers fail from now
// on. Call canReplay first for a retry.
func (rb *replayBody) attempt() io.ReadCloser {
	locked := rb.lock()
	rb.gen++
	rb.settle()
	var r io.ReadCloser
	if rb.whole() && !rb.shared {
		// The whole body is in memory: the upstream codec (h1.Conn, or net/http's for an
		// *bytes.Reader, see proxy/upstream) then sends the request headers and body in one
		// write, from this goroutine. An abandoned attempt keeps reading its own reader.
		rb.bb.ResetBody(rb.buf)
		rb.out = true
		r = &rb.bb
	} else {
		r = rb.otherReader()
	}
	rb.unlock(locked)
	return r
}

// otherReader is attempt's reader for a body that is not in memory (a view that reads on from
// the downstream), or whose rb.bb may still be read (a BytesBody of its own). Out of attempt's
// common path; rb.mu is held (or rb is solo).
//
//go:noinline
func (rb *replayBody) otherReader() io.ReadCloser {
	if rb.whole() {
		return httpmsg.NewBytesBody(rb.buf) // shared: rb.bb may still be read
	}
	rb.solo = false // the view may read rb from another goroutine, now or late
	return &bodyView{rb: rb, gen: rb.gen}
}

// prefetch reads, before the request goes upstream, what has already arrived of a small body
// (0 < length <= MaxPrefetchBytes): one Read, which returns the bytes the server has buffered
// or waits for the next ones, as Envoy forwards the body data that came with the headers. When
// that is the whole body, attempts send it from memory. The rest of a body that did not come
// at once streams as before. interrupt (the stream idle timeout, max duration) ends the wait
// through the response's read deadline; a downstream reset ends the Read itself. Without read
// deadline support (a test recorder) nothing is prefetched. It returns the sinceBase reading
// taken when the Read returned, 0 when it read nothing. idle is the stream idle timer the
// body's reads touch (nil: none), set first.
func (rb *replayBody) prefetch(w downstream, length int64, idle *idleTimer) (now int64) {
	rb.idle = idle
	if length <= 0 || length > MaxPrefetchBytes {
		return 0
	}
	if w.SetReadDeadline(time.Time{}) != nil {
		return 0
	}
	rb.on = waitingOn{w}
	rb.waiting.Store(&rb.on)
	buf := rb.buf[:0] // empty: nothing was read yet
	if int64(cap(buf)) < length {
		buf = make([]byte, length)
	}
	buf = buf[:length]
	n, err := rb.src.Read(buf)
	rb.waiting.Store(nil)
	// One clock reading for what the read ended: the idle timer's activity, the route
	// timer's start at the body's end, and the caller's next phase.
	now = sinceBase()
	locked := rb.lock()
	if n > 0 {
		rb.buf = buf[:n]
		rb.total = int64(n)
		*rb.received += int64(n)
		rb.idle.touchAt(now)
		if rb.countGRPC {
			rb.grpc.Feed(buf[:n])
			rb.grpcCount.Store(rb.grpc.Messages())
		}
	}
	// The server enforces Content-Length: reaching it ends the body (rb.eof is still false).
	rb.eof = err == io.EOF || err == nil && int64(n) == length
	if rb.eof && rb.onEOF != nil || !rb.eof && err != nil {
		rb.prefetchEnd(err, now)
	}
	rb.unlock(locked)
	return now
}

// prefetchEnd is what prefetch's Read leaves for later: at the body's end (rb.eof) the route
// timer's start, else the Read's error, kept for the attempts. Out of prefetch's common path.
//
//go:noinline
func (rb *replayBody) prefetchEnd(err error, now int64) {
	if rb.eof {
		rb.onEOF.startAt(now)
		return
	}
	rb.err = err
}

// interrupt ends a prefetch wait (the stream is being canceled). Safe on a nil body.
func (rb *replayBody) interrupt() {
	if rb == nil {
		return
	}
	if wo := rb.waiting.Swap(nil); wo != nil {
		_ = wo.d.SetReadDeadline(time.Unix(1, 0))
	}
}

// grpcMessages returns the gRPC messages read from the downstream body so far; 0 for a nil
// body or one that does not count them.
func (rb *replayBody) grpcMessages() uint64 {
	if rb == nil {
		return 0
	}
	return rb.grpcCount.Load()
}

// inMemory reports whether the whole body was read and kept, so that attempts read it from
// memory and never wait for the downstream.
func (rb *replayBody) inMemory() bool {
	if rb.solo {
		return rb.whole()
	}
	return rb.inMemoryShared()
}

// inMemoryShared is inMemory under rb.mu, for a replayBody that is not solo. Out of its
// common path (inMemory inlines in attempt).
//
//go:noinline
func (rb *replayBody) inMemoryShared() bool {
	rb.mu.Lock()
	in := rb.whole()
	rb.mu.Unlock()
	return in
}

// whole reports whether rb holds the whole body: read to the end and kept. rb.mu is held (or
// rb is solo).
func (rb *replayBody) whole() bool {
	return rb.eof && !rb.overflow && int64(len(rb.buf)) == rb.total
}

// canReplay reports whether a new attempt can send the whole body again.
func (rb *replayBody) canReplay() bool {
	if rb.lock() {
		defer rb.mu.Unlock()
	}
	return rb.total == 0 || rb.record && !rb.overflow
}

// complete returns the whole body if it was read to the end and fits the replay buffer.
func (rb *replayBody) complete() ([]byte, bool) {
	if rb.lock() {
		defer rb.mu.Unlock()
	}
	if !rb.eof || rb.overflow || !rb.record {
		return nil, false
	}
	rb.shared = true // the caller keeps the bytes (mirror)
	return rb.buf, true
}

type bodyView struct {
	rb  *replayBody
	gen int
	off int64
}

// Read serves recorded bytes first, then reads on from the downstream body (recording them).
func (v *bodyView) Read(p []byte) (int, error) {
	rb := v.rb
	rb.mu.Lock()
	defer rb.mu.Unlock()
	if v.gen != rb.gen {
		return 0, errStaleAttempt
	}
	if !rb.overflow && v.off < int64(len(rb.buf)) {
		n := copy(p, rb.buf[v.off:])
		v.off += int64(n)
		return n, nil
	}
	if rb.eof {
		return 0, io.EOF
	}
	if rb.err != nil {
		return 0, rb.err
	}
	n, err := rb.src.Read(p)
	if n > 0 {
		rb.total += int64(n)
		*rb.received += int64(n)
		v.off += int64(n)
		rb.idle.touch()
		if rb.countGRPC {
			rb.grpc.Feed(p[:n])
			rb.grpcCount.Store(rb.grpc.Messages())
		}
		if rb.record && !rb.overflow {
			if len(rb.buf)+n <= MaxReplayBytes {
				rb.buf = append(rb.buf, p[:n]...)
			} else {
				rb.overflow, rb.buf = true, nil
			}
		}
	}
	switch {
	case err == io.EOF:
		rb.eof = true
		rb.onEOF.start()
	case err != nil:
		rb.err = err
	}
	return n, err
}

// Close does not close the downstream body: a retry may still need it.
func (v *bodyView) Close() error { return nil }

// idleTimer cancels a stream after a period without body bytes in either direction. touch
// only records the time: the timer, when it fires, re-arms itself for what is left of the
// period since the last activity, so that a stream's body reads and writes do not each move a
// runtime timer.
//
// A Stream keeps its router's idleTimer for the next request (Stream.idleTimer) when stop
// reported that it cannot fire or run any more. Such a kept timer is lazy: stop leaves its
// runtime timer pending, and the next request's start reuses the pending timer when it fires
// no later than the new period ends (check re-arms it for the rest), so that a stream of
// requests neither stops nor resets a runtime timer per request. A pending timer that finds
// no request running only records that it is no longer pending.
type idleTimer struct {
	t    *time.Timer
	last atomic.Int64 // monotonic time of the last activity (sinceBase)
	mu   sync.Mutex
	// Under mu:
	d      time.Duration
	fire   func()
	when   int64 // sinceBase time the runtime timer fires at; 0: not pending
	active bool  // started and not stopped
	fired  bool  // check called fire for the current request
	lazy   bool  // stop leaves the runtime timer pending (the Stream's kept timer)
}

// sinceBase is clock.Mono as a number.
func sinceBase() int64 { return int64(clock.Mono()) }

func newIdleTimer(d time.Duration, fire func()) *idleTimer {
	if d <= 0 {
		return nil
	}
	it := &idleTimer{d: d, fire: fire, active: true}
	now := sinceBase()
	it.last.Store(now)
	it.mu.Lock()
	it.when = now + int64(d)
	it.t = time.AfterFunc(d, it.check)
	it.mu.Unlock()
	return it
}

// idleTimer returns the stream's idle timer started for d (nil if d <= 0), reused when the
// last request's stop allowed it.
func (s *Stream) idleTimer(d time.Duration, fire func()) *idleTimer {
	return s.idleTimerAt(d, fire, sinceBase())
}

// idleTimerAt is idleTimer started at now, the caller's sinceBase reading.
func (s *Stream) idleTimerAt(d time.Duration, fire func(), now int64) *idleTimer {
	if d <= 0 {
		return nil
	}
	it := s.idleT
	if it == nil {
		return s.newKeptIdleTimer(d, fire)
	}
	// Stopped, and fire was not called (stop returned true).
	it.last.Store(now)
	it.mu.Lock()
	it.d, it.fire, it.active, it.fired = d, fire, true, false
	if by := now + int64(d); it.when == 0 || it.when > by {
		it.rearm(by)
	}
	it.mu.Unlock()
	return it
}

// newKeptIdleTimer starts the stream's first idle timer (idleTimerAt), lazy: the Stream keeps
// it for its next requests. Out of idleTimerAt's common path.
//
//go:noinline
func (s *Stream) newKeptIdleTimer(d time.Duration, fire func()) *idleTimer {
	it := newIdleTimer(d, fire)
	it.mu.Lock()
	it.lazy = true
	it.mu.Unlock()
	s.idleT = it
	return it
}

// rearm moves the pending runtime timer to by, a sinceBase time it.d from now (idleTimerAt:
// the kept timer fires later, or is not pending); it.mu is held. Out of idleTimerAt's common
// path.
//
//go:noinline
func (it *idleTimer) rearm(by int64) {
	it.when = by
	it.t.Reset(it.d)
}

func (it *idleTimer) touch() {
	if it != nil {
		it.last.Store(sinceBase())
	}
}

// touchAt is touch with the caller's sinceBase reading.
func (it *idleTimer) touchAt(now int64) {
	if it != nil {
		it.last.Store(now)
	}
}

// check runs when the timer fires: the stream is idle only if nothing happened for d.
func (it *idleTimer) check() {
	it.mu.Lock()
	if !it.active {
		it.when = 0
		it.mu.Unlock()
		return
	}
	now := sinceBase()
	if quiet := now - it.last.Load(); quiet < int64(it.d) {
		rest := int64(it.d) - quiet
		it.when = now + rest
		it.t.Reset(time.Duration(rest))
		it.mu.Unlock()
		return
	}
	it.when, it.fired = 0, true
	fire := it.fire
	it.mu.Unlock()
	fire()
}

// stop ends the timer's current period; false reports that it fired (fire was called, and
// may still be running). A lazy timer's runtime timer stays pending for the next request.
func (it *idleTimer) stop() bool {
	if it == nil {
		return true
	}
	// No defer: nothing below can panic, and a deferred unlock costs a call of its own.
	it.mu.Lock()
	it.active, it.fire = false, nil
	if !it.lazy && it.when != 0 {
		it.stopPending()
	}
	ok := !it.fired
	it.mu.Unlock()
	return ok
}

// stopPending stops the pending runtime timer of a timer that is not lazy (stop); it.mu is
// held. Out of stop's common path (the Stream's kept timer is lazy).
//
//go:noinline
func (it *idleTimer) stopPending() {
	if it.t.Stop() {
		it.when = 0
	}
}

var copyBufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// routeTimer is the route timeout: started once, when the downstream request is complete;
// fire cancels the request with errRouteTimeout. A Stream keeps it, and its runtime timer,
// for the next request (Stream.routeTimer) when stop reported that it cannot fire. Like the
// kept idleTimer it is lazy: stop leaves the runtime timer pending, start reuses a pending one
// that fires no later than the new deadline, and expired re-arms it for the rest.
type routeTimer struct {
	mu      sync.Mutex
	t       *time.Timer
	d       time.Duration
	by      int64 // sinceBase deadline of the current request (armed)
	when    int64 // sinceBase time the runtime timer fires at; 0: not pending
	armed   bool  // started for this request
	stopped bool
	fired   bool // expired called fire for this request
	fire    func()
	// The next period's d and fire, set by Stream.routeTimer and taken on by the first start
	// or stop after it (fresh), under mu: a request's setup takes no lock of its own. Written
	// without mu by the goroutine that owns the Stream, before the timer reaches any other.
	nd    time.Duration
	nfire func()
	fresh bool
}

// routeTimer returns the stream's route timer for d, not started, reused when the last
// request's stop allowed it. Until its start (or stop) takes the new period on (renew), it
// stays as the last request's stop left it: stopped, so that a pending runtime timer that
// fires meanwhile finds nothing to do, as it would not armed.
func (s *Stream) routeTimer(d time.Duration, fire func()) *routeTimer {
	rt := s.rtimer
	if rt == nil {
		rt = &routeTimer{stopped: true}
		s.rtimer = rt
	}
	rt.nd, rt.nfire, rt.fresh = d, fire, true
	return rt
}

// renew begins the period routeTimer set up, if it was not yet; rt.mu is held.
func (rt *routeTimer) renew() {
	if rt.fresh {
		rt.d, rt.fire, rt.armed, rt.stopped, rt.fired = rt.nd, rt.nfire, false, false, false
		rt.nfire, rt.fresh = nil, false
	}
}

func (rt *routeTimer) start() {
	if rt != nil {
		rt.startAt(sinceBase())
	}
}

// startAt is start at now, the caller's sinceBase reading. Small enough to inline: most
// requests have no route timer (rt nil) and make no call.
func (rt *routeTimer) startAt(now int64) {
	if rt != nil {
		rt.arm(now)
	}
}

// arm is startAt for a route timer.
func (rt *routeTimer) arm(now int64) {
	rt.mu.Lock() // no defer, as in idleTimer.stop
	rt.renew()
	if !rt.armed && !rt.stopped {
		rt.armed = true
		rt.by = now + int64(rt.d)
		switch {
		case rt.t == nil:
			rt.when = rt.by
			rt.t = time.AfterFunc(rt.d, rt.expired)
		case rt.when == 0 || rt.when > rt.by:
			rt.when = rt.by
			rt.t.Reset(rt.d)
		}
	}
	rt.mu.Unlock()
}

// expired runs when the timer fires.
func (rt *routeTimer) expired() {
	rt.mu.Lock()
	if !rt.armed || rt.stopped {
		rt.when = 0 // a pending timer the last request left
		rt.mu.Unlock()
		return
	}
	if now := sinceBase(); now < rt.by {
		rt.when = rt.by
		rt.t.Reset(time.Duration(rt.by - now))
		rt.mu.Unlock()
		return
	}
	rt.when, rt.fired = 0, true
	fire := rt.fire
	rt.mu.Unlock()
	fire()
}

// stop stops the timer; false reports that it fired (fire was called, and may still be
// running). The runtime timer stays pending for the next request.
func (rt *routeTimer) stop() bool {
	rt.mu.Lock() // no defer, as in idleTimer.stop
	rt.renew()
	rt.stopped, rt.fire = true, nil
	ok := !rt.fired
	rt.mu.Unlock()
	return ok
}
