package xds

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Flow control: what bounds the server's work and memory whatever the proxies do.
//
// One response in flight per stream and type. A response is outstanding from the moment the cache
// builds it until the proxy answers its nonce with an ACK or a NACK (or the stream ends). While a
// type is outstanding on a stream, no other response of that type is built for it: a newer
// snapshot only moves the node's target (a pointer, nodeCache.snap), and the response built when
// the ACK arrives carries the newest state, every change in between coalesced (Envoy's xDS
// protocol lets a server wait for the ACK; istiod's flow control does the same). SotW gets this
// from go-control-plane, which opens a type's next watch only on a request carrying the latest
// nonce; for Delta, whose server opens a watch on every request, the cache holds the watch while
// the type is outstanding (deltaResponse).
//
// Bytes. Every outstanding response's resource bytes count against a per-stream and a
// server-wide cap (FlowLimits). This counts until the ACK, not only until gRPC accepted the
// message: gRPC keeps an encoded copy until the proxy reads it, so a proxy that stops reading
// holds its bytes, and only the ACK proves they are gone. A response that does not fit is not
// built: its watch stays open and the node waits in a FIFO queue (per-stream: until that stream's
// next ACK) — a pointer to the node, never a queued response. A response larger than a cap is
// still sent when nothing else is outstanding under that cap, so nothing waits forever.
//
// ACK timeout. A stream with a response outstanding for longer than FlowLimits.AckTimeout is
// ended with DEADLINE_EXCEEDED and a log line naming the proxy, the type and the nonce; the
// proxy reconnects and is resynced (its pending state was only a pointer).
//
// Push throttle. Generation (generate, validate, marshal) and each send take a slot of one
// semaphore of FlowLimits.PushThrottle slots. A send gives its slot back when gRPC accepted the
// message or after the write timeout, whichever is first, so that proxies that stop reading
// cannot hold every slot; what they hold from then on is bounded by the byte caps.

// Defaults for FlowLimits.
const (
	DefaultPushThrottle         = 100 // istiod's PILOT_PUSH_THROTTLE
	DefaultMaxQueuedBytes       = 512 << 20
	DefaultMaxStreamQueuedBytes = 32 << 20
	DefaultAckTimeout           = 5 * time.Minute
)

// FlowLimits bound the xDS server's push work and memory. The zero value of each field means
// its default.
type FlowLimits struct {
	// PushThrottle is the number of pushes (generation of one proxy's resources, or the send of
	// one response) that may run at once (default 100).
	PushThrottle int
	// MaxQueuedBytes caps the resource bytes of all responses built and not yet acknowledged,
	// across all streams (default 512 MiB); MaxStreamQueuedBytes caps them per stream (default
	// 32 MiB).
	MaxQueuedBytes       int64
	MaxStreamQueuedBytes int64
	// AckTimeout is how long a response may stay unacknowledged before its stream is ended
	// (default 5 minutes; negative: never).
	AckTimeout time.Duration
	// StreamRate is the number of new ADS streams admitted per second (default 100; negative:
	// unlimited), StreamBurst how many may start at once (default 100), and StreamWait how long
	// a new stream may wait for its turn before it is refused with UNAVAILABLE and a retry delay
	// (default 2 s; negative: refused at once). See admission.go.
	StreamRate  float64
	StreamBurst int
	StreamWait  time.Duration
}

func (l FlowLimits) withDefaults() FlowLimits {
	if l.PushThrottle <= 0 {
		l.PushThrottle = DefaultPushThrottle
	}
	if l.MaxQueuedBytes <= 0 {
		l.MaxQueuedBytes = DefaultMaxQueuedBytes
	}
	if l.MaxStreamQueuedBytes <= 0 {
		l.MaxStreamQueuedBytes = DefaultMaxStreamQueuedBytes
	}
	if l.AckTimeout == 0 {
		l.AckTimeout = DefaultAckTimeout
	}
	if l.StreamRate == 0 {
		l.StreamRate = DefaultStreamRate
	}
	if l.StreamBurst <= 0 {
		l.StreamBurst = DefaultStreamBurst
	}
	if l.StreamWait == 0 {
		l.StreamWait = DefaultStreamWait
	}
	return l
}

// flowControl is the server-wide flow-control state: the byte budget and the nodes waiting for it.
// Lock order: nodeCache.mu, then streamFlow.mu, then flowControl.mu.
type flowControl struct {
	limits  FlowLimits
	metrics *metrics
	wake    chan struct{} // a release happened: the pump retries waiting nodes

	mu      sync.Mutex
	used    int64
	waiting []*nodeCache // FIFO; a node at most once (queued)
	queued  map[*nodeCache]bool
}

func newFlowControl(l FlowLimits, m *metrics) *flowControl {
	return &flowControl{limits: l, metrics: m, wake: make(chan struct{}, 1), queued: make(map[*nodeCache]bool)}
}

// enqueue adds n to the nodes waiting for budget (at the front when it was already first in line).
func (fc *flowControl) enqueue(n *nodeCache, front bool) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if fc.queued[n] {
		return
	}
	fc.queued[n] = true
	if front {
		fc.waiting = append([]*nodeCache{n}, fc.waiting...)
	} else {
		fc.waiting = append(fc.waiting, n)
	}
}

// pop removes the first waiting node, or returns nil.
func (fc *flowControl) pop() *nodeCache {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if len(fc.waiting) == 0 {
		return nil
	}
	n := fc.waiting[0]
	fc.waiting[0] = nil
	fc.waiting = fc.waiting[1:]
	delete(fc.queued, n)
	return n
}

// released tells the pump that budget was freed.
func (fc *flowControl) released() {
	select {
	case fc.wake <- struct{}{}:
	default:
	}
}

// pump answers the watches of waiting nodes as budget frees up, in FIFO order, until ctx ends. A
// node that still does not fit goes back to the front and the pump waits for the next release.
func (fc *flowControl) pump(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-fc.wake:
		}
		for {
			n := fc.pop()
			if n == nil {
				break
			}
			if n.retry(fc) {
				fc.enqueue(n, true)
				break
			}
		}
	}
}

// queuedBytes returns the bytes accounted now, for tests and logs.
func (fc *flowControl) queuedBytes() int64 {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.used
}

// streamFlow is the flow-control state of one ADS stream: the responses built for it and not yet
// acknowledged, at most one per type. A nil *streamFlow (the cache used without a stream, in
// tests) applies no flow control.
type streamFlow struct {
	key  streamKey
	ctx  context.Context // the RPC's
	fc   *flowControl
	kill chan struct{} // closed when the stream must end; killErr says why

	mu      sync.Mutex
	node    *nodeCache
	out     map[string]*outstanding // typeURL → response not yet ACKed or NACKed
	bytes   int64                   // sum of out's bytes
	blocked bool                    // a response waits for this stream's budget
	closed  bool
	killErr error
}

// outstanding is one response built for a stream and not yet acknowledged.
type outstanding struct {
	bytes int64
	nonce string // set when sent
	sent  bool
	since time.Time
}

func newStreamFlow(key streamKey, fc *flowControl) *streamFlow {
	return &streamFlow{key: key, fc: fc, kill: make(chan struct{}), out: make(map[string]*outstanding)}
}

// bind records the node the stream serves. Called with n.mu held.
func (f *streamFlow) bind(n *nodeCache) {
	if f == nil {
		return
	}
	f.mu.Lock()
	f.node = n
	f.mu.Unlock()
}

// inFlight reports whether a response of typeURL is outstanding on the stream.
func (f *streamFlow) inFlight(typeURL string) bool {
	if f == nil {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.out[typeURL] != nil
}

// reserve accounts a response of size bytes of typeURL about to be built for the stream. When it
// does not fit it accounts nothing and returns false, with global true when the server-wide cap
// (not the stream's) is what is full. Called with the node's lock held.
func (f *streamFlow) reserve(typeURL string, size int64) (ok, global bool) {
	if f == nil {
		return true, false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return true, false // the response goes nowhere; nothing to account
	}
	if old := f.out[typeURL]; old != nil { // not expected: the callers hold outstanding types
		f.drop(typeURL, old)
	}
	if f.bytes > 0 && f.bytes+size > f.fc.limits.MaxStreamQueuedBytes {
		f.blocked = true
		return false, false
	}
	fc := f.fc
	fc.mu.Lock()
	if fc.used > 0 && fc.used+size > fc.limits.MaxQueuedBytes {
		fc.mu.Unlock()
		return false, true
	}
	fc.used += size
	fc.mu.Unlock()
	fc.metrics.queuedBytes.Add(float64(size))
	f.out[typeURL] = &outstanding{bytes: size, since: time.Now()}
	f.bytes += size
	return true, false
}

// drop forgets an outstanding response and returns its bytes to the budget. Called with f.mu held.
func (f *streamFlow) drop(typeURL string, o *outstanding) {
	delete(f.out, typeURL)
	f.bytes -= o.bytes
	f.fc.mu.Lock()
	f.fc.used -= o.bytes
	f.fc.mu.Unlock()
	f.fc.metrics.queuedBytes.Sub(float64(o.bytes))
}

// releasedLocked wakes what waits for budget after drops. Called with f.mu held; it takes only
// fc.mu.
func (f *streamFlow) releasedLocked() {
	if f.blocked && f.node != nil {
		f.blocked = false
		f.fc.enqueue(f.node, true)
	}
	f.fc.released()
}

// sent records the nonce of a response of typeURL as it is sent.
func (f *streamFlow) sent(typeURL, nonce string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if o := f.out[typeURL]; o != nil {
		o.nonce, o.sent = nonce, true
	}
}

// ack releases the outstanding response of typeURL when nonce is its nonce (an ACK or a NACK of
// it), and reports whether it did.
func (f *streamFlow) ack(typeURL, nonce string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	o := f.out[typeURL]
	if o == nil || !o.sent || o.nonce != nonce {
		return false
	}
	f.drop(typeURL, o)
	f.releasedLocked()
	return true
}

// dropUnsent releases a response of typeURL that was built but never sent: go-control-plane's
// SotW server discards a queued response of a type when a new request of that type arrives, just
// before it opens the next watch. Called with the node's lock held.
func (f *streamFlow) dropUnsent(typeURL string) {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if o := f.out[typeURL]; o != nil && !o.sent {
		f.drop(typeURL, o)
		f.releasedLocked()
	}
}

// close releases everything the stream holds; it is called once its server stopped sending.
func (f *streamFlow) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	for t, o := range f.out {
		f.drop(t, o)
	}
	f.blocked = false
	f.fc.released()
}

// oldest returns the type, nonce and age of the response outstanding longest, if any.
func (f *streamFlow) oldest(now time.Time) (typeURL, nonce string, age time.Duration, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for t, o := range f.out {
		if d := now.Sub(o.since); !ok || d > age {
			typeURL, nonce, age, ok = t, o.nonce, d, true
		}
	}
	return typeURL, nonce, age, ok
}

// end asks the stream's handler to end the stream with err; the first call wins.
func (f *streamFlow) end(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.killErr != nil {
		return
	}
	f.killErr = err
	close(f.kill)
}

// endErr is the error end was called with.
func (f *streamFlow) endErr() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.killErr
}

// reapUnacked ends streams whose oldest outstanding response waited longer than the ACK timeout,
// every tick until the server closes.
func (s *Server) reapUnacked() {
	limit := s.opts.Flow.AckTimeout
	if limit < 0 {
		return
	}
	tick := min(max(limit/4, 10*time.Millisecond), 5*time.Second)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case now := <-t.C:
			s.connMu.Lock()
			flows := make([]*streamFlow, 0, len(s.flows))
			for _, f := range s.flows {
				flows = append(flows, f)
			}
			s.connMu.Unlock()
			for _, f := range flows {
				typeURL, nonce, age, ok := f.oldest(now)
				if !ok || age <= limit || f.endErr() != nil {
					continue
				}
				proxy := s.streamProxy(f.key)
				s.metrics.ackTimeouts.Inc()
				s.log.Warn("disconnecting xds stream: the proxy did not ACK or NACK a response within the ACK timeout",
					"proxy", proxy, "stream", f.key.id, "delta", f.key.delta, "type", shortType(typeURL),
					"nonce", nonce, "waited", age.Round(time.Millisecond), "ackTimeout", limit)
				f.end(status.Error(codes.DeadlineExceeded, fmt.Sprintf(
					"no ACK or NACK of the %s response (nonce %q) within %s", shortType(typeURL), nonce, limit)))
			}
		}
	}
}

// streamProxy names the proxy of a stream for logs ("" before its first request).
func (s *Server) streamProxy(key streamKey) string {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if st := s.streams[key]; st != nil {
		return st.proxy.key
	}
	return ""
}

// acquirePush takes a push slot, waiting for one; it fails when ctx or the server ends first.
// The returned release is safe to call more than once.
func (s *Server) acquirePush(ctx context.Context) (release func(), err error) {
	select {
	case s.push <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.ctx.Done():
		return nil, s.ctx.Err()
	}
	s.metrics.pushesInProgress.Inc()
	for n := int64(len(s.push)); ; { // high-water mark, for tests
		if p := s.pushPeak.Load(); n <= p || s.pushPeak.CompareAndSwap(p, n) {
			break
		}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			s.metrics.pushesInProgress.Dec()
			<-s.push
		})
	}, nil
}

// retry answers the node's open watches again after budget was freed, and reports whether one
// of them still waits for the server-wide budget.
func (n *nodeCache) retry(fc *flowControl) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cleared {
		return false
	}
	n.heldGlobal = false
	n.answer(func(string) bool { return true })
	n.updatePending(fc)
	held := n.heldGlobal
	n.heldGlobal = false
	return held
}

// settle finishes an operation on the node: it queues the node when a response waits for the
// server-wide budget and updates the pending-push gauge. Called with n.mu held.
func (c *snapshotCache) settle(n *nodeCache) {
	if n.heldGlobal && c.fc != nil {
		n.heldGlobal = false
		c.fc.enqueue(n, false)
	}
	n.updatePending(c.fc)
}

// updatePending sets the node's share of strait_xds_pending_pushes: the types it subscribed to
// whose newest view was not yet sent (held back by an unacknowledged response or the byte caps).
// Called with n.mu held.
func (n *nodeCache) updatePending(fc *flowControl) {
	if fc == nil || n.cleared {
		return
	}
	count := 0
	if n.snap != nil {
		for t := range n.subscribed {
			if !n.settled(t) {
				count++
			}
		}
	}
	if count != n.pendingTypes {
		fc.metrics.pendingPushes.Add(float64(count - n.pendingTypes))
		n.pendingTypes = count
	}
}
