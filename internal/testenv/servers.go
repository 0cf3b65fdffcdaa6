package testenv

import (
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// Serve accepts connections on ln until the test ends, and runs handle for each on a goroutine
// of its own; the connection is closed when handle returns. At the end of the test ln and the
// connections still open are closed, and Serve waits for their handlers. It returns ln's address.
// It is for a listener the test makes itself (TLS, a test host's address); ServeTCP makes one.
func Serve(t testing.TB, ln net.Listener, handle func(net.Conn)) string {
	t.Helper()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]bool{}
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					c.Close()
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
				}()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// ServeTCP is Serve on a new TCP listener on addr ("127.0.0.1:0" for loopback).
func ServeTCP(t testing.TB, addr string, handle func(net.Conn)) string {
	t.Helper()
	return Serve(t, Listen(t, addr), handle)
}

// Listen opens a TCP listener on addr ("127.0.0.1:0" for a free loopback port), closed at the
// end of the test.
func Listen(t testing.TB, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	return closedAtEnd(t, ln, err)
}

// Dial opens a TCP connection to addr, closed at the end of the test.
func Dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	return closedAtEnd(t, c, err)
}

// closedAtEnd fails the test on err, else closes c at the end of the test and returns it.
func closedAtEnd[C io.Closer](t testing.TB, c C, err error) C {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// ServeHTTP serves srv on ln until the test ends, when it closes srv, and returns ln's address.
func ServeHTTP(t testing.TB, ln net.Listener, srv *http.Server) string {
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// HTTPBackend serves h with net/http's defaults on a free loopback port until the test ends, and
// returns its address.
func HTTPBackend(t testing.TB, h http.HandlerFunc) string {
	t.Helper()
	return ServeHTTP(t, Listen(t, "127.0.0.1:0"), &http.Server{Handler: h})
}

// HangingHTTPBackend is an HTTP server on a free loopback port that never answers: each request
// waits until its client goes away or the test ends. It returns the server's address.
func HangingHTTPBackend(t testing.TB) string {
	t.Helper()
	release := make(chan struct{})
	addr := HTTPBackend(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) }) // runs before the server's own cleanups
	return addr
}

// TCPEcho is a TCP server on loopback that writes greeting (which may be empty) to each
// connection, then echoes what it reads until the client closes its side, then closes its own.
func TCPEcho(t testing.TB, greeting string) string {
	t.Helper()
	return ServeTCP(t, "127.0.0.1:0", func(c net.Conn) {
		if greeting != "" {
			if _, err := io.WriteString(c, greeting); err != nil {
				return
			}
		}
		_, _ = io.Copy(c, c)
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	})
}

// Exchange dials addr, writes each part (pausing for pause between them, so that each arrives on
// its own) and reads until the server closes the connection, for up to 10 s. It returns what it
// read and the read's error: nil when the server closed the connection. Parts after one the
// server did not take are not written.
func Exchange(t testing.TB, addr string, pause time.Duration, parts ...string) ([]byte, error) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	for i, p := range parts {
		if i > 0 {
			time.Sleep(pause)
		}
		if _, err := io.WriteString(c, p); err != nil {
			break // the server already closed: the rest is not read by anyone
		}
	}
	return io.ReadAll(c)
}

// Calls records what a test server received, in order. It is safe for concurrent use; the zero
// value is empty and ready.
type Calls[T any] struct {
	mu   sync.Mutex
	list []T
}

// Add records v.
func (c *Calls[T]) Add(v T) {
	c.mu.Lock()
	c.list = append(c.list, v)
	c.mu.Unlock()
}

// Len is how many were recorded.
func (c *Calls[T]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.list)
}

// Last is the last one recorded; it fails the test when there is none.
func (c *Calls[T]) Last(t testing.TB) T {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.list) == 0 {
		t.Fatal("the server received nothing")
	}
	return c.list[len(c.list)-1]
}
