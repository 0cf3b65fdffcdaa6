package h1

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strait-mesh/strait/proxy/httpmsg"
)

// serveDirect serves s on one DirectConn connection and returns the client's end, the
// server's connection and ServeConn's result.
func serveDirect(t *testing.T, s *Server) (net.Conn, <-chan net.Conn, <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	done := make(chan error, 1)
	conns := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		d := DirectConn(c)
		conns <- d
		done <- s.ServeConn(d)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return c, conns, done
}

func okHandler() Handler {
	return HandlerFunc(func(w *ResponseWriter, r *httpmsg.Request) {
		io.Copy(io.Discard, r.Body)
		w.Write([]byte("ok"))
	})
}

// get sends a request on c and reads its response.
func get(t *testing.T, c net.Conn, br *bufio.Reader) {
	t.Helper()
	if _, err := io.WriteString(c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// TestServeLazyDeadlines: on a DirectConn, keep-alive requests move the socket's read deadline
// a few times in all rather than three times each (idle, head, none).
func TestServeLazyDeadlines(t *testing.T) {
	s := &Server{Handler: okHandler(), IdleTimeout: time.Hour, HeadersTimeout: 10 * time.Second}
	c, conns, _ := serveDirect(t, s)
	br := bufio.NewReader(c)
	const n = 200
	for i := 0; i < n; i++ {
		get(t, c, br)
	}
	if sets := DeadlineSets(<-conns); sets > 4 {
		t.Errorf("%d socket deadline changes for %d requests, want at most 4", sets, n)
	}
}

// TestServeIdleAfterHeadDeadline: the request head deadline armed on the socket passes while
// the connection is idle between requests: the connection stays open (the deadline is
// re-armed for idle_timeout), serves the next request, and then idle_timeout ends it,
// reported as an idle timeout.
func TestServeIdleAfterHeadDeadline(t *testing.T) {
	var idle, head atomic.Int32
	s := &Server{
		Handler:        okHandler(),
		IdleTimeout:    1500 * time.Millisecond,
		HeadersTimeout: 50 * time.Millisecond,
		OnTimeout: func(h bool) {
			if h {
				head.Add(1)
			} else {
				idle.Add(1)
			}
		},
	}
	c, _, done := serveDirect(t, s)
	br := bufio.NewReader(c)
	get(t, c, br)
	time.Sleep(300 * time.Millisecond) // past the head deadline, well within idle_timeout
	get(t, c, br)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ServeConn: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("idle_timeout did not end the connection")
	}
	if idle.Load() != 1 || head.Load() != 0 {
		t.Errorf("timeouts reported: idle %d, head %d; want idle 1", idle.Load(), head.Load())
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("client read after the idle timeout: %v, want EOF", err)
	}
}

// TestServeHeadDeadlineAfterKeepAlive: after many requests (the socket's deadline left where
// the first head put it), a head that stops half way still ends the connection at
// HeadersTimeout, reported as a head timeout.
func TestServeHeadDeadlineAfterKeepAlive(t *testing.T) {
	var head atomic.Int32
	s := &Server{
		Handler:        okHandler(),
		IdleTimeout:    time.Hour,
		HeadersTimeout: 200 * time.Millisecond,
		OnTimeout: func(h bool) {
			if h {
				head.Add(1)
			}
		},
	}
	c, _, done := serveDirect(t, s)
	br := bufio.NewReader(c)
	for i := 0; i < 50; i++ {
		get(t, c, br)
	}
	time.Sleep(400 * time.Millisecond) // the first head's deadline, still armed, passes
	io.WriteString(c, "GET / HTTP/1.1\r\nHo")
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("request_headers_timeout did not end the connection")
	}
	if head.Load() != 1 {
		t.Errorf("head timeouts reported: %d, want 1", head.Load())
	}
}

// TestServeHeadTrickledDirect is TestHeadTrickledPastTimeout on a DirectConn (lazy deadlines).
func TestServeHeadTrickledDirect(t *testing.T) {
	s, heads, served := trickleServer()
	c, _, done := serveDirect(t, s)
	trickleHead(t, c, done, heads, served)
}
