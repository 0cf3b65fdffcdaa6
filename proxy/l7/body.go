package l7

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

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
type replayBody struct {
	mu       sync.Mutex
	src      io.Reader
	record   bool
	buf      []byte
	total    int64
	overflow bool
	eof      bool
	err      error
	gen      int
	idle     *idleTimer
	received *int64
	onEOF    *routeTimer // started when the downstream body ends (may be nil)
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
func newReplayBody(src io.Reader, record bool, received *int64, onEOF *routeTimer) *replayBody {
	return &replayBody{src: src, record: record, received: received, onEOF: onEOF}
}

// downstreamErr returns the error reading the downstream body failed with, if any; rb may be
// nil (no body).
func (rb *replayBody) downstreamErr() error {
	if rb == nil {
		return nil
	}
	rb.mu.Lock()
	defer rb.mu.Unlock()
	return rb.err
}

// attempt returns a reader for a new upstream attempt; earlier attempts' readers fail from now
// on. Call canReplay first for a retry.
func (rb *replayBody) attempt() io.ReadCloser {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	rb.gen++
	if rb.eof && !rb.overflow && int64(len(rb.buf)) == rb.total {
		// The whole body is in memory: the upstream codec (h1.Conn, or net/http's for an
		// *bytes.Reader, see proxy/upstream) then sends the request headers and body in one
		// write, from this goroutine. An abandoned attempt keeps reading its own reader.
		return httpmsg.NewBytesBody(rb.buf)
	}
	return &bodyView{rb: rb, gen: rb.gen}
}

// prefetch reads, before the request goes upstream, what has already arrived of a small body
// (0 < length <= MaxPrefetchBytes): one Read, which returns the bytes the server has buffered
// or waits for the next ones, as Envoy forwards the body data that came with the headers. When
// that is the whole body, attempts send it from memory. The rest of a body that did not come
// at once streams as before. interrupt (the stream idle timeout, max duration) ends the wait
// through the response's read deadline; a downstream reset ends the Read itself. Without read
// deadline support (a test recorder) nothing is prefetched.
func (rb *replayBody) prefetch(w downstream, length int64) {
	if length <= 0 || length > MaxPrefetchBytes {
		return
	}
	if w.SetReadDeadline(time.Time{}) != nil {
		return
	}
	rb.on = waitingOn{w}
	rb.waiting.Store(&rb.on)
	buf := make([]byte, length)
	n, err := rb.src.Read(buf)
	rb.waiting.Store(nil)
	rb.mu.Lock()
	defer rb.mu.Unlock()
	if n > 0 {
		rb.buf = buf[:n]
		rb.total = int64(n)
		*rb.received += int64(n)
		rb.idle.touch()
		if rb.countGRPC {
			rb.grpc.Feed(buf[:n])
			rb.grpcCount.Store(rb.grpc.Messages())
		}
	}
	switch {
	case err == io.EOF || err == nil && int64(n) == length:
		// The server enforces Content-Length: reaching it ends the body.
		rb.eof = true
		rb.onEOF.start()
	case err != nil:
		rb.err = err
	}
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
	rb.mu.Lock()
	defer rb.mu.Unlock()
	return rb.eof && !rb.overflow && int64(len(rb.buf)) == rb.total
}

// canReplay reports whether a new attempt can send the whole body again.
func (rb *replayBody) canReplay() bool {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	return rb.total == 0 || rb.record && !rb.overflow
}

// complete returns the whole body if it was read to the end and fits the replay buffer.
func (rb *replayBody) complete() ([]byte, bool) {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	if !rb.eof || rb.overflow || !rb.record {
		return nil, false
	}
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
type idleTimer struct {
	t       *time.Timer
	d       time.Duration
	last    atomic.Int64 // monotonic time of the last activity (sinceBase)
	stopped atomic.Bool
	fire    func()
}

// monoBase anchors sinceBase's monotonic readings.
var monoBase = time.Now()

func sinceBase() int64 { return int64(time.Since(monoBase)) }

func newIdleTimer(d time.Duration, fire func()) *idleTimer {
	if d <= 0 {
		return nil
	}
	it := &idleTimer{d: d, fire: fire}
	it.last.Store(sinceBase())
	it.t = time.AfterFunc(d, it.check)
	return it
}

func (it *idleTimer) touch() {
	if it != nil {
		it.last.Store(sinceBase())
	}
}

// check runs when the timer fires: the stream is idle only if nothing happened for d.
func (it *idleTimer) check() {
	if it.stopped.Load() {
		return
	}
	if quiet := time.Duration(sinceBase() - it.last.Load()); quiet < it.d {
		it.t.Reset(it.d - quiet)
		if it.stopped.Load() {
			it.t.Stop() // stop ran meanwhile: do not keep the stream alive in a timer
		}
		return
	}
	it.fire()
}

// stop stops the timer; false reports that it may still fire (it was firing).
func (it *idleTimer) stop() bool {
	if it == nil {
		return true
	}
	it.stopped.Store(true)
	return it.t.Stop()
}

var copyBufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// routeTimer is the route timeout: started once, when the downstream request is complete;
// fire cancels the request with errRouteTimeout.
type routeTimer struct {
	mu      sync.Mutex
	t       *time.Timer
	d       time.Duration
	stopped bool
	fire    func()
}

func (rt *routeTimer) start() {
	if rt == nil {
		return
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.t == nil && !rt.stopped {
		rt.t = time.AfterFunc(rt.d, rt.fire)
	}
}

// stop stops the timer; false reports that it may still fire (it was firing).
func (rt *routeTimer) stop() bool {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.stopped = true
	return rt.t == nil || rt.t.Stop()
}
