package l7

import (
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/strait-mesh/strait/proxy/httpmsg"
)

// A replayBody is solo (no lock) until its first streaming attempt reader; from then on a stale
// reader may race with the router, so the Stream's next request gets a new, solo replayBody
// with the old one's buffer, and the stale reader keeps failing (run with -race).
func TestReplayBodySoloUntilFirstView(t *testing.T) {
	var received int64
	rb := newReplayBody(io.NopCloser(strings.NewReader("hello")), true, &received, nil)
	if !rb.solo {
		t.Fatal("a new replayBody is not solo")
	}
	if rb.inMemory() || !rb.canReplay() || rb.downstreamErr() != nil {
		t.Fatal("unexpected state before any read")
	}
	view := rb.attempt()
	if _, ok := view.(*bodyView); !ok {
		t.Fatalf("attempt on an unread body = %T, want a streaming view", view)
	}
	if rb.solo {
		t.Fatal("rb stays solo after handing out a view")
	}
	b, err := io.ReadAll(view)
	if err != nil || string(b) != "hello" {
		t.Fatalf("view read %q, %v", b, err)
	}
	if !rb.end() {
		t.Fatal("end refused an idle body")
	}

	// Reuse it as a Stream would, while the stale view keeps reading from another goroutine.
	s := &Stream{rbody: rb}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 200; i++ {
			if _, err := view.Read(make([]byte, 4)); err != errStaleAttempt && err != io.EOF {
				t.Errorf("stale view read: %v", err)
				return
			}
		}
	}()
	for i := 0; i < 50; i++ {
		rb2 := s.replayBody(io.NopCloser(strings.NewReader("next")), true, nil)
		if rb2 == rb || !rb2.solo {
			t.Fatal("a body that handed out a view was reused")
		}
		v2 := rb2.attempt()
		if _, err := io.ReadAll(v2); err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		_ = rb2.inMemory()
		_ = rb2.end()
	}
	wg.Wait()
}

// An in-memory body never leaves solo: its attempts read a BytesBody of their own.
func TestReplayBodyInMemoryStaysSolo(t *testing.T) {
	var received int64
	rb := newReplayBody(io.NopCloser(strings.NewReader("")), true, &received, nil)
	rb.buf, rb.total, rb.eof = []byte("abc"), 3, true
	for i := 0; i < 3; i++ {
		r := rb.attempt()
		b, err := io.ReadAll(r)
		if err != nil || string(b) != "abc" {
			t.Fatalf("attempt %d read %q, %v", i, b, err)
		}
		r.(*httpmsg.BytesBody).MarkDone() // as a codec done with it does
	}
	if !rb.solo || !rb.inMemory() {
		t.Fatal("an in-memory body left solo")
	}
	if !rb.end() {
		t.Fatal("end refused")
	}
}
