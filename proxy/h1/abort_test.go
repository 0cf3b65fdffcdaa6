package h1

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"

	"github.com/strait-mesh/strait/proxy/http1"
	"github.com/strait-mesh/strait/proxy/httpmsg"
)

// testWatcher is a Watcher as a caller's cancellation object implements one.
type testWatcher struct {
	mu       sync.Mutex
	canceled bool
	a        Aborter
	gen      uint64
	// last keeps the last registration after Unwatch, to play a late (racing) abort.
	last    Aborter
	lastGen uint64
}

func (w *testWatcher) Watch(a Aborter, gen uint64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.canceled {
		return false
	}
	w.a, w.gen = a, gen
	w.last, w.lastGen = a, gen
	return true
}

func (w *testWatcher) Unwatch(a Aborter) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.a == a {
		w.a = nil
	}
}

func (w *testWatcher) cancel() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.canceled = true
	if w.a != nil {
		w.a.Abort(w.gen)
		w.a = nil
	}
}

// echoConn returns a Conn to a net/http server that echoes request bodies, and the record of
// its exchanges' ends.
func echoConn(t *testing.T) (*Conn, *[]bool) {
	t.Helper()
	addr := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	}))
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ends := new([]bool)
	c := NewConn(nc, http1.Limits{}, func(r bool) { *ends = append(*ends, r) })
	t.Cleanup(func() { c.Close() })
	return c, ends
}

func postReq(body string) *httpmsg.Request {
	req := newRequest("POST", "/", "", int64(len(body)))
	req.Body = httpmsg.NewBytesBody([]byte(body))
	return req
}

// TestConnWatcherAborts: canceling the Watcher fails the exchange it watches with the
// context's error, whether the cancellation interrupts the request's write or the wait for the
// response, and one that starts after the cancellation fails at once.
func TestConnWatcherAborts(t *testing.T) {
	addr := listen(t, func(c net.Conn) {
		defer c.Close()
		io.Copy(io.Discard, c) // never answers
	})
	for _, when := range []string{"while waiting", "during the write", "before"} {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c := NewConn(nc, http1.Limits{}, func(bool) {})
		ctx, cancel := context.WithCancel(context.Background())
		w := &testWatcher{}
		// The context ends first, as the Watcher's contract wants.
		cancelBoth := func() { cancel(); w.cancel() }
		var wrote func()
		switch when {
		case "before":
			cancelBoth()
		case "during the write":
			// The head is in the buffer, not yet sent: the abort fails the flush.
			wrote = cancelBoth
		case "while waiting":
			// Cancel once the request head is written, from another goroutine: the
			// cancellation lands while the request goes out or while the exchange waits for
			// the response.
			wrote = func() { go cancelBoth() }
		}
		err = c.RoundTripWatch(ctx, w, newRequest("GET", "/", "", 0), new(httpmsg.Response), wrote)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("exchange canceled %s: %v", when, err)
		}
		c.Close()
	}
}

// TestConnWatcherLateAbort: an abort that races with the end of an exchange (it fires after
// the response body was read, or arrives for an exchange that is over) does not reach the next
// exchange on the same connection, which is reused.
func TestConnWatcherLateAbort(t *testing.T) {
	c, ends := echoConn(t)
	send := func(w Watcher, body string, beforeClose func()) {
		t.Helper()
		var resp httpmsg.Response
		if err := c.RoundTripWatch(context.Background(), w, postReq(body), &resp, nil); err != nil {
			t.Fatalf("exchange %q: %v", body, err)
		}
		b, err := io.ReadAll(resp.Body)
		if beforeClose != nil {
			beforeClose()
		}
		resp.Body.Close()
		if err != nil || string(b) != body {
			t.Fatalf("echo %q: %q, %v", body, b, err)
		}
	}
	// The cancellation fires between the body's end and its Close.
	w1 := &testWatcher{}
	send(w1, "one", w1.cancel)
	// A stale registration aborts (a source that lost the race with Unwatch).
	w2 := &testWatcher{}
	send(w2, "two", nil)
	w2.last.Abort(w2.lastGen)
	send(&testWatcher{}, "three", nil)
	send(nil, "four", nil)
	if len(*ends) != 4 {
		t.Fatalf("exchanges ended: %v", *ends)
	}
	for i, r := range *ends {
		if !r {
			t.Errorf("exchange %d ended not reusable: %v", i+1, *ends)
		}
	}
}
