package l7

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/strait-mesh/strait/proxy/httpmsg"
	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
)

// readAllFrom reads an attempt's body to its end.
func readAllFrom(t *testing.T, r io.Reader) string {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("reading the attempt's body: %v", err)
	}
	return string(b)
}

// TestReplayBodyReuseGuards checks when a Stream keeps its replayBody (and its buffer) for the
// next request: only when every attempt's in-memory body came back (its codec marked it done),
// no mirror took the bytes, and no reader is in the middle of a read; and that the readers of
// the earlier request fail once it ended, whether or not the body is reused.
func TestReplayBodyReuseGuards(t *testing.T) {
	// first reads the whole body through a streaming attempt, then takes an in-memory one.
	first := func(t *testing.T, s *Stream, body string) (*replayBody, io.Reader, *httpmsg.BytesBody) {
		t.Helper()
		rb := s.replayBody(io.NopCloser(strings.NewReader(body)), true, nil)
		v := rb.attempt()
		if got := readAllFrom(t, v); got != body {
			t.Fatalf("first attempt read %q, want %q", got, body)
		}
		bb, ok := rb.attempt().(*httpmsg.BytesBody)
		if !ok {
			t.Fatal("the second attempt of a body read whole is not in memory")
		}
		if got := readAllFrom(t, bb); got != body {
			t.Fatalf("in-memory attempt read %q, want %q", got, body)
		}
		return rb, v, bb
	}
	t.Run("reused", func(t *testing.T) {
		s := &Stream{}
		rb, v, bb := first(t, s, "first body")
		bb.MarkDone()
		if !rb.end() {
			t.Fatal("end: not reusable, though every attempt's codec was done")
		}
		if _, err := v.Read(make([]byte, 8)); !errors.Is(err, errStaleAttempt) {
			t.Errorf("a reader of the ended request read on: %v", err)
		}
		oldBuf := rb.buf[:1]
		rb2 := s.replayBody(io.NopCloser(strings.NewReader("second")), true, nil)
		// A body that handed out a streaming reader is not solo any more: the Stream keeps
		// its buffer in a new replayBody (one that never did is kept whole).
		if rb2 == rb || !rb2.solo || cap(rb2.buf) == 0 || &rb2.buf[:1][0] != &oldBuf[0] {
			t.Fatal("the Stream did not keep its body buffer in a new, solo replayBody")
		}
		if got := readAllFrom(t, rb2.attempt()); got != "second" {
			t.Errorf("next request's attempt read %q", got)
		}
		if _, err := v.Read(make([]byte, 8)); !errors.Is(err, errStaleAttempt) {
			t.Errorf("a reader of the earlier request reads the next one's body: %v", err)
		}
		if got := readAllFrom(t, rb2.attempt()); got != "second" {
			t.Errorf("next request's in-memory attempt read %q", got)
		}
	})
	t.Run("codec not done", func(t *testing.T) {
		s := &Stream{}
		rb, _, _ := first(t, s, "held by a transport")
		if rb.end() {
			t.Error("end: reusable, though an attempt's codec may still read its body")
		}
	})
	t.Run("retry after a codec that is not done", func(t *testing.T) {
		s := &Stream{}
		rb, _, bb := first(t, s, "abc")
		bb2 := rb.attempt().(*httpmsg.BytesBody)
		if bb2 == bb {
			t.Fatal("a retry reuses the in-memory body an abandoned attempt may still read")
		}
		if got := readAllFrom(t, bb2); got != "abc" {
			t.Errorf("retry read %q", got)
		}
		if rb.end() {
			t.Error("end: reusable after an attempt whose codec was not done")
		}
	})
	t.Run("mirrored", func(t *testing.T) {
		s := &Stream{}
		rb, _, bb := first(t, s, "to the shadow")
		bb.MarkDone()
		if b, ok := rb.complete(); !ok || string(b) != "to the shadow" {
			t.Fatalf("complete: %q %v", b, ok)
		}
		if rb.end() {
			t.Error("end: reusable, though a mirror holds its bytes")
		}
	})
	t.Run("reader waiting", func(t *testing.T) {
		s := &Stream{}
		pr, pw := io.Pipe()
		rb := s.replayBody(pr, true, nil)
		v := rb.attempt()
		done := make(chan error, 1)
		go func() {
			_, err := v.Read(make([]byte, 8))
			done <- err
		}()
		// The reader holds rb.mu while it waits for the downstream.
		waitFor(t, "the reader to wait", func() bool {
			if rb.mu.TryLock() {
				rb.mu.Unlock()
				return false
			}
			return true
		})
		if rb.end() {
			t.Error("end: reusable while a reader waits for the downstream")
		}
		pw.CloseWithError(io.ErrUnexpectedEOF)
		<-done
	})
}

// TestStreamTimersReuse: a Stream's route and idle timers, once stopped before firing, serve the
// next request with its own duration and callback; a timer that fired says so (stop false), and
// the router then drops it (and the body and reqCancel a late callback may reach).
func TestStreamTimersReuse(t *testing.T) {
	s := &Stream{}
	var old, cur atomic.Int32
	rt := s.routeTimer(time.Hour, func() { old.Add(1) })
	rt.start()
	if !rt.stop() {
		t.Fatal("route timer: stop before it fired returned false")
	}
	if rt2 := s.routeTimer(time.Millisecond, func() { cur.Add(1) }); rt2 != rt {
		t.Fatal("route timer not kept")
	}
	rt.start()
	waitFor(t, "the reused route timer to fire", func() bool { return cur.Load() == 1 })
	if rt.stop() {
		t.Error("route timer: stop after it fired returned true")
	}

	it := s.idleTimer(time.Hour, func() { old.Add(1) })
	if !it.stop() {
		t.Fatal("idle timer: stop before it fired returned false")
	}
	if it2 := s.idleTimer(time.Millisecond, func() { cur.Add(1) }); it2 != it {
		t.Fatal("idle timer not kept")
	}
	waitFor(t, "the reused idle timer to fire", func() bool { return cur.Load() == 2 })
	if old.Load() != 0 {
		t.Errorf("an earlier request's callback ran %d times", old.Load())
	}

	// The router's end with the fired timers: nothing a late callback may reach is kept.
	rc := newReqCancel()
	rc.reset(context.Background(), nil, nil, false)
	s.rc = rc
	rb := s.replayBody(io.NopCloser(strings.NewReader("x")), false, rt)
	rc.attachBody(rb)
	d := forwardDone{idle: it, rtimer: rt, body: rb, s: s, rc: rc}
	d.run()
	if s.idleT != nil || s.rtimer != nil || s.rbody != nil || s.rc != nil {
		t.Errorf("kept after late timers: idle %v route %v body %v reqCancel %v",
			s.idleT != nil, s.rtimer != nil, s.rbody != nil, s.rc != nil)
	}
	if s.idleTimer(time.Hour, func() {}) == it || s.routeTimer(time.Hour, func() {}) == rt {
		t.Error("a fired timer serves the next request")
	}
}

// TestRetryAfterPerTryTimeoutReplaysBodyOnReusedStreams sends requests with different bodies
// one after the other (the proxy's Streams, bodies and timers are reused between them), each
// abandoned by a per-try timeout on its first attempt: both attempts of each get that request's
// body, over an HTTP/1.1 cluster (whose codec hands in-memory bodies back) and an HTTP/2 one
// (whose transport does not).
func TestRetryAfterPerTryTimeoutReplaysBodyOnReusedStreams(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			var mu sync.Mutex
			var got []string // attempt:body as the upstream read it
			up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				n := r.Header.Get("X-Envoy-Attempt-Count")
				mu.Lock()
				got = append(got, n+":"+string(b))
				mu.Unlock()
				if n == "1" {
					select { // abandoned by the per-try timeout
					case <-r.Context().Done():
					case <-time.After(10 * time.Second):
					}
					return
				}
				w.Write(b)
			}), h2)
			env := &testEnv{clusters: map[string]Upstream{"c": staticCluster(t, "c", up, h2)}}
			a := toCluster("c")
			a.RetryPolicy = &routev3.RetryPolicy{RetryOn: "5xx", NumRetries: wrapperspb.UInt32(1),
				PerTryTimeout: durationpb.New(50 * time.Millisecond),
				RetryBackOff:  &routev3.RetryPolicy_RetryBackOff{BaseInterval: durationpb.New(time.Millisecond)}}
			rc := oneVhost(fwdRoute("r", pfx("/"), a))
			rc.VirtualHosts[0].IncludeRequestAttemptCount = true
			p := startProxy(t, inlineHCM(rc), env, false)
			c := h1Client()
			var want []string
			for i, body := range []string{"alpha", strings.Repeat("b", 3000), "c", strings.Repeat("d", 1500), "eeeeeeeeeeee"} {
				resp, err := c.Post(p.url(fmt.Sprintf("/%d", i)), "text/plain", strings.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(b) != body {
					t.Errorf("request %d: %d, %d bytes back, want its %d", i, resp.StatusCode, len(b), len(body))
				}
				if ri := p.nextInfo(t); ri.Attempts != 2 {
					t.Errorf("request %d: %d attempts", i, ri.Attempts)
				}
				want = append(want, "1:"+body, "2:"+body)
			}
			mu.Lock()
			defer mu.Unlock()
			if !slices.Equal(got, want) {
				t.Errorf("the upstream read other bodies than sent (%d attempts, want %d)", len(got), len(want))
			}
		})
	}
}

// TestMirrorGetsBodyAfterStreamReuse: a mirror that sends its copy only after the request ended
// and later requests reused the proxy's Streams still sends its own request's body.
func TestMirrorGetsBodyAfterStreamReuse(t *testing.T) {
	gate := make(chan struct{})
	shadowGot := make(chan string, 8)
	shadow := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-gate
		b, _ := io.ReadAll(r.Body)
		shadowGot <- string(b)
	}), false)
	main := startUpstream(t, echoHandler(), false)
	env := &testEnv{clusters: map[string]Upstream{
		"main":   staticCluster(t, "main", main, false),
		"shadow": staticCluster(t, "shadow", shadow, false),
	}}
	a := toCluster("main")
	a.RequestMirrorPolicies = []*routev3.RouteAction_RequestMirrorPolicy{{Cluster: "shadow"}}
	p := startProxy(t, inlineHCM(oneVhost(fwdRoute("m", pfx("/"), a))), env, false)
	c := h1Client()
	var sent []string
	for i := range 4 {
		body := strings.Repeat(string(rune('k'+i)), 500+100*i)
		sent = append(sent, body)
		resp, err := c.Post(p.url("/m"), "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if s := decodeSeen(t, resp); s.Body != body {
			t.Errorf("request %d: main saw another body", i)
		}
	}
	close(gate)
	var got []string
	for range sent {
		select {
		case b := <-shadowGot:
			got = append(got, b)
		case <-time.After(10 * time.Second):
			t.Fatal("a shadow request never arrived")
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, sent) {
		t.Error("the shadow got other bodies than the requests'")
	}
}

// TestStreamContextReuse: the Stream keeps its context object for the next request only when
// no code outside got it (Stream.Context) and its reqCancels were not handed out.
func TestStreamContextReuse(t *testing.T) {
	parent := context.WithValue(context.Background(), infoKey{}, "not this")
	start := func(s *Stream) {
		sc := s.sctx
		if sc == nil {
			sc = s.newStreamCtx()
		}
		sc.Context = parent
		s.ctx = sc
	}
	s := &Stream{}
	start(s)
	if got := s.ctx.Value(infoKey{}); got != s {
		t.Fatalf("infoKey: %v", got)
	}
	sc := s.sctx
	s.release()
	if s.sctx != sc || sc.Context != nil || sc.s != s {
		t.Fatal("an unshared context is not kept, keeps the request's parent, or lost its Stream")
	}

	s = &Stream{}
	start(s)
	held := s.Context()
	s.release()
	if s.sctx != nil {
		t.Fatal("a context code outside got is kept for reuse")
	}
	if held.Value(infoKey{}) == nil || held.Err() != nil {
		t.Error("the handed-out context lost its values")
	}

	s = &Stream{}
	start(s)
	rc := s.cancelScope()
	_ = rc.Done() // handed out: rc is not reused, and s.ctx is reachable through it
	rc.cancel(nil)
	s.endRequest(rc, false)
	if !s.ctxOut {
		t.Error("the context of a stream whose reqCancel was handed out is marked for reuse")
	}
}

// TestBodyHeldSignals: the request body's objects (the codec's h1Body, the stream stage's
// endBody) are kept for another request only when the stream says nothing may read them after
// the request: code outside that got the body, or an attempt's reader that the router's end
// could not detach (it waits for the downstream), say otherwise.
func TestBodyHeldSignals(t *testing.T) {
	s := &Stream{}
	s.body = io.NopCloser(strings.NewReader("x"))
	if s.bodyHeld {
		t.Fatal("held before anyone got it")
	}
	_ = s.Body()
	if !s.bodyHeld {
		t.Error("Stream.Body does not mark the body held")
	}

	s = &Stream{}
	pr, pw := io.Pipe()
	defer pw.Close()
	rb := s.replayBody(pr, true, nil)
	v := rb.attempt()
	go func() { _, _ = v.Read(make([]byte, 8)) }()
	waitFor(t, "the reader to wait", func() bool {
		if rb.mu.TryLock() {
			rb.mu.Unlock()
			return false
		}
		return true
	})
	rc := newReqCancel()
	rc.reset(context.Background(), nil, nil, false)
	s.rc = rc
	d := forwardDone{body: rb, s: s, rc: rc}
	d.run()
	if !s.bodyHeld || s.rbody != nil {
		t.Errorf("a body an attempt still reads: held %v, replayBody kept %v", s.bodyHeld, s.rbody != nil)
	}
	pw.CloseWithError(io.ErrUnexpectedEOF)
}

// TestKeepAliveBodiesOnReusedObjects sends requests with bodies of different lengths (and one
// without) over one keep-alive connection: each reaches the upstream whole and alone, through
// the reused body objects of the connection, the stream stage and the router.
func TestKeepAliveBodiesOnReusedObjects(t *testing.T) {
	up := startUpstream(t, echoHandler(), false)
	env := &testEnv{clusters: map[string]Upstream{"c": staticCluster(t, "c", up, false)}}
	p := startProxy(t, inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("c")))), env, false)
	c := h1Client()
	for i, body := range []string{strings.Repeat("1", 4000), "2", "", strings.Repeat("3", 17000), "44", strings.Repeat("5", 900)} {
		req, _ := http.NewRequest("POST", p.url("/"), strings.NewReader(body))
		if body == "" {
			req.Body = http.NoBody
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if s := decodeSeen(t, resp); s.Body != body {
			t.Errorf("request %d: upstream got %d bytes, want %d", i, len(s.Body), len(body))
		}
	}
}

// TestAttemptRequestReuse: an attempt reuses the Stream's last upstream request only when its
// cluster released it (upstream.MessageHead.Released) and it carries the attempt's context; it
// then has the new request's fields and no earlier body.
func TestAttemptRequestReuse(t *testing.T) {
	s := &Stream{}
	s.headSet = true
	ctx := newReqCancel()
	r1 := s.attemptRequest(&http.Request{Method: "POST", Host: "a", ContentLength: 3}, ctx)
	r1.Body = io.NopCloser(strings.NewReader("abc"))
	if r2 := s.attemptRequest(&http.Request{Method: "GET", Host: "b"}, ctx); r2 == r1 {
		t.Fatal("a request the cluster did not release is reused")
	}
	s.outFree = true
	r2 := s.outReq
	r3 := s.attemptRequest(&http.Request{Method: "PUT", Host: "c", ContentLength: 1, Proto: "HTTP/1.1"}, ctx)
	if r3 != r2 {
		t.Fatal("a released request is not reused")
	}
	if r3.Method != "PUT" || r3.Host != "c" || r3.ContentLength != 1 || r3.Body != nil || r3.Context() != context.Context(ctx) {
		t.Errorf("reused request: %s %s %d body %v", r3.Method, r3.Host, r3.ContentLength, r3.Body != nil)
	}
	if s.outFree {
		t.Error("the request handed out is still marked free")
	}
	s.outFree = true
	other := newReqCancel()
	if r4 := s.attemptRequest(&http.Request{Method: "GET"}, other); r4 == r3 || r4.Context() != context.Context(other) {
		t.Error("a request with another context is reused")
	}
	s.outFree, s.headSet = true, false
	prev := s.outReq
	if r5 := s.attemptRequest(&http.Request{Method: "GET"}, other); r5 == prev {
		t.Error("reused off the message path")
	}
}

// TestRequestIDSlab: request ids cut from the Stream's slab are version 4 UUIDs, all different,
// and an id stays as it was while later ones fill the slab and the next.
func TestRequestIDSlab(t *testing.T) {
	s := &Stream{}
	first := s.newRequestID()
	keep := strings.Clone(first)
	seen := map[string]bool{first: true}
	for range 3 * idSlabIDs {
		id := s.newRequestID()
		if len(id) != uuidLen || id[8] != '-' || id[13] != '-' || id[14] != '4' || id[18] != '-' || id[23] != '-' ||
			!strings.ContainsRune("89ab", rune(id[19])) {
			t.Fatalf("not a version 4 UUID: %q", id)
		}
		if seen[id] {
			t.Fatalf("id %q twice", id)
		}
		seen[id] = true
	}
	if first != keep {
		t.Errorf("an id changed after it was handed out: %q, was %q", first, keep)
	}
}
