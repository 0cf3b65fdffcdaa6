package h1

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
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
	w.c.watch.mu.Lock()
	defer w.c.watch.mu.Unlock()
	return w.c.watch.state
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
