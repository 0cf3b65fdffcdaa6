package h1

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/httpmsg"
)

// serveAndDial serves s on a loopback listener (TLS with a self-signed certificate if useTLS)
// and returns a client connection to it, closed at the end of the test, and a channel with
// ServeConn's result.
func serveAndDial(t *testing.T, s *Server, useTLS bool) (net.Conn, <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var cfg *tls.Config
	if useTLS {
		cfg = &tls.Config{Certificates: []tls.Certificate{testenv.SelfSigned(t, "example.com")}}
	}
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		if cfg != nil {
			c = tls.Server(c, cfg)
		}
		done <- s.ServeConn(c)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if useTLS {
		c = tls.Client(c, &tls.Config{InsecureSkipVerify: true})
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, done
}

// watchState returns the state of the connection's watch.
func watchState(w *ResponseWriter) int {
	return int(atomic.LoadInt32(&w.c.watch.st))
}

// TestWatchPeerGone: a client that closes its connection while its request is in flight is
// noticed (OnPeerGone) before the handler returns, over plain TCP and TLS, with and without a
// request body.
func TestWatchPeerGone(t *testing.T) {
	for _, tc := range []struct {
		name string
		tls  bool
		req  string
	}{
		{"get", false, "GET /wait HTTP/1.1\r\nHost: a\r\n\r\n"},
		{"post", false, "POST /wait HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"},
		{"chunked", false, "POST /wait HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
		{"tls", true, "GET /wait HTTP/1.1\r\nHost: a\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gone := make(chan struct{})
			served := make(chan bool, 1)
			s := &Server{
				WatchDelay: time.Millisecond,
				OnPeerGone: func() { close(gone) },
				Handler: HandlerFunc(func(w *ResponseWriter, r *httpmsg.Request) {
					if _, err := io.ReadAll(r.Body); err != nil {
						t.Errorf("body: %v", err)
					}
					select {
					case <-gone:
						served <- true
					case <-time.After(10 * time.Second):
						served <- false
					}
				}),
			}
			c, done := serveAndDial(t, s, tc.tls)
			if _, err := io.WriteString(c, tc.req); err != nil {
				t.Fatal(err)
			}
			c.Close()
			if !<-served {
				t.Fatal("the client's close was not noticed while the handler waited")
			}
			<-done
		})
	}
}

// TestWatchKeepsPipelined: the bytes of a pipelined request that the watch reads are the next
// request's, and the connection's reads go on after the watch is stopped.
func TestWatchKeepsPipelined(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		name := "plain"
		if useTLS {
			name = "tls"
		}
		t.Run(name, func(t *testing.T) {
			first := make(chan struct{})
			s := &Server{
				WatchDelay: time.Millisecond,
				OnPeerGone: func() { t.Error("a pipelining client was taken for gone") },
				Handler: HandlerFunc(func(w *ResponseWriter, r *httpmsg.Request) {
					body, _ := io.ReadAll(r.Body)
					if r.PathString() == "/first" {
						close(first)
						// The watch reads the second request, and stops.
						testenv.WaitFor(t, "the watch to read the next request", 10*time.Second, func() bool {
							return watchState(w) == watchEnded
						})
					}
					w.Header().Set("x-path", r.PathString())
					w.Write(body)
				}),
			}
			c, _ := serveAndDial(t, s, useTLS)
			if _, err := io.WriteString(c, "GET /first HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			<-first
			second := "POST /second HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\nsecond" +
				"GET /third HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
			if _, err := io.WriteString(c, second); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			for _, want := range []struct{ path, body string }{{"/first", ""}, {"/second", "second"}, {"/third", ""}} {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("%s: %v", want.path, err)
				}
				b, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != 200 || resp.Header.Get("x-path") != want.path || string(b) != want.body {
					t.Errorf("%s: status %d path %q body %q", want.path, resp.StatusCode, resp.Header.Get("x-path"), b)
				}
			}
			if rest, _ := io.ReadAll(br); len(strings.TrimSpace(string(rest))) > 0 {
				t.Errorf("after the responses: %q", rest)
			}
		})
	}
}

// TestWatchStopped: a watch read still waiting when the handler returns is ended (a read
// deadline in the past) and the connection's next request is read as usual, over plain TCP
// and TLS.
func TestWatchStopped(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		name := "plain"
		if useTLS {
			name = "tls"
		}
		t.Run(name, func(t *testing.T) {
			s := &Server{
				WatchDelay: time.Millisecond,
				OnPeerGone: func() { t.Error("a client waiting for its response was taken for gone") },
				Handler: HandlerFunc(func(w *ResponseWriter, r *httpmsg.Request) {
					testenv.WaitFor(t, "the watch to start", 10*time.Second, func() bool {
						return watchState(w) == watchRunning
					})
					w.Header().Set("x-path", r.PathString())
				}),
			}
			c, _ := serveAndDial(t, s, useTLS)
			br := bufio.NewReader(c)
			for _, path := range []string{"/1", "/2", "/3"} {
				if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
					t.Fatal(err)
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("%s: %v", path, err)
				}
				resp.Body.Close()
				if resp.StatusCode != 200 || resp.Header.Get("x-path") != path {
					t.Errorf("%s: status %d path %q", path, resp.StatusCode, resp.Header.Get("x-path"))
				}
			}
		})
	}
}

// TestWatchLazyTimer: the watch's timer, left set by a request answered at once, does not
// start the watch of the next request before that request's own WatchDelay: it re-arms itself
// for the rest, and the watch then starts.
func TestWatchLazyTimer(t *testing.T) {
	const delay = 300 * time.Millisecond
	var started time.Time
	s := &Server{
		WatchDelay: delay,
		Handler: HandlerFunc(func(w *ResponseWriter, r *httpmsg.Request) {
			if r.PathString() != "/wait" {
				return
			}
			testenv.WaitFor(t, "the watch to start", 10*time.Second, func() bool {
				return watchState(w) == watchRunning
			})
			started = time.Now()
		}),
	}
	c, _ := serveAndDial(t, s, false)
	br := bufio.NewReader(c)
	send := func(path string) {
		t.Helper()
		if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		resp.Body.Close()
	}
	send("/fast")             // sets the timer and leaves it set
	time.Sleep(delay * 2 / 3) // the timer fires a third of the delay into the next request
	// The clock starts before the request is sent, so before the codec arms its watch: a
	// pause of the server's goroutines (a busy machine) can only make the wait seem longer.
	sent := time.Now()
	send("/wait")
	// Started by the earlier request's timer, the watch would start a third of the delay in.
	if waited := started.Sub(sent); waited < delay*5/6 {
		t.Errorf("the watch started %v into its request, before WatchDelay (%v)", waited, delay)
	}
}

// oneWatchShard makes the connections of WatchDelay d share one watch shard (a delay no other
// test uses) and returns it.
func oneWatchShard(d time.Duration) *watchShard {
	sh := &watchShard{delay: d}
	watchShards.mu.Lock()
	defer watchShards.mu.Unlock()
	if watchShards.byDelay == nil {
		watchShards.byDelay = make(map[time.Duration]*watchGroup)
	}
	watchShards.byDelay[d] = &watchGroup{shards: []*watchShard{sh}}
	return sh
}

// TestWatchSharedTimer: connections answered at once move their shard's one timer, not a timer
// each: ten connections' requests within one WatchDelay make the timer fire once or twice.
func TestWatchSharedTimer(t *testing.T) {
	const delay = 997 * time.Millisecond
	sh := oneWatchShard(delay)
	s := &Server{WatchDelay: delay, Handler: HandlerFunc(func(w *ResponseWriter, r *httpmsg.Request) {})}
	for i := 0; i < 10; i++ {
		c, _ := serveAndDial(t, s, false)
		br := bufio.NewReader(c)
		for j := 0; j < 3; j++ {
			if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
	}
	testenv.WaitFor(t, "the shard's timer to stop", 10*time.Second, func() bool {
		sh.mu.Lock()
		defer sh.mu.Unlock()
		return !sh.pending
	})
	sh.mu.Lock()
	fires, head := sh.fires, sh.head
	sh.mu.Unlock()
	if fires < 1 || fires > 3 {
		t.Errorf("the shared timer fired %d times for 30 requests on 10 connections within a few WatchDelays, want 1-3", fires)
	}
	if head != nil {
		t.Error("a request that ended is still in the shard's list")
	}
}

// TestWatchSharedShardOrder: two requests in flight in one shard, armed half a WatchDelay
// apart, are each watched no earlier than their own WatchDelay, and both are.
func TestWatchSharedShardOrder(t *testing.T) {
	const delay = 401 * time.Millisecond
	oneWatchShard(delay)
	release := make(chan struct{})
	startedAt := make(chan string, 2)
	at := map[string]time.Time{}
	var atMu sync.Mutex
	s := &Server{
		WatchDelay: delay,
		Handler: HandlerFunc(func(w *ResponseWriter, r *httpmsg.Request) {
			testenv.WaitFor(t, "the watch to start", 10*time.Second, func() bool {
				return watchState(w) == watchRunning
			})
			atMu.Lock()
			at[r.PathString()] = time.Now()
			atMu.Unlock()
			startedAt <- r.PathString()
			<-release
		}),
	}
	a, _ := serveAndDial(t, s, false)
	b, _ := serveAndDial(t, s, false)
	sentA := time.Now()
	if _, err := io.WriteString(a, "GET /a HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(delay / 2)
	sentB := time.Now()
	if _, err := io.WriteString(b, "GET /b HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	<-startedAt
	<-startedAt
	close(release)
	// The clocks start before the requests are sent: a busy machine can only make the waits
	// seem longer.
	atMu.Lock()
	defer atMu.Unlock()
	if w := at["/a"].Sub(sentA); w < delay*5/6 {
		t.Errorf("the first request's watch started %v into it, before WatchDelay (%v)", w, delay)
	}
	if w := at["/b"].Sub(sentB); w < delay*5/6 {
		t.Errorf("the second request's watch started %v into it, before WatchDelay (%v)", w, delay)
	}
	for _, c := range []net.Conn{a, b} {
		if _, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil {
			t.Fatal(err)
		}
	}
}

// TestWatchStoppedRequestLeftInList: a request that ends before its watch starts is stopped
// without the shard's lock and left in the list; the connection's next request takes its
// place at the end of the list (the list holds the connection once), and the connection's end
// takes it out.
func TestWatchStoppedRequestLeftInList(t *testing.T) {
	const delay = 3 * time.Second // not reached
	sh := oneWatchShard(delay)
	s := &Server{WatchDelay: delay, Handler: HandlerFunc(func(w *ResponseWriter, r *httpmsg.Request) {})}
	c, done := serveAndDial(t, s, false)
	br := bufio.NewReader(c)
	for j := 0; j < 3; j++ {
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		sh.mu.Lock()
		n := 0
		for x := sh.head; x != nil; x = x.watch.next {
			n++
			if st := atomic.LoadInt32(&x.watch.st); st != watchOff {
				t.Errorf("request %d: state %d in the list, want stopped (%d)", j, st, watchOff)
			}
		}
		sh.mu.Unlock()
		if n != 1 {
			t.Fatalf("request %d: %d entries in the shard's list, want the connection once", j, n)
		}
	}
	c.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.head != nil || sh.tail != nil {
		t.Error("the connection is still in the shard's list after ServeConn returned")
	}
}

// TestWatchReArmedInPlace: a keep-alive connection's request, armed where its last request
// was left in the shard's list (at its end), is watched once WatchDelay passes.
func TestWatchReArmedInPlace(t *testing.T) {
	const delay = 31 * time.Millisecond
	oneWatchShard(delay)
	s := &Server{WatchDelay: delay, Handler: HandlerFunc(func(w *ResponseWriter, r *httpmsg.Request) {
		if r.PathString() == "/wait" {
			testenv.WaitFor(t, "the watch to start", 10*time.Second, func() bool {
				st := watchState(w)
				return st == watchRunning || st == watchEnded
			})
		}
	})}
	c, _ := serveAndDial(t, s, false)
	br := bufio.NewReader(c)
	for _, p := range []string{"/", "/", "/wait", "/"} {
		if _, err := io.WriteString(c, "GET "+p+" HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
}
