package testenv

import (
	"io"
	"net"
	"sync"
	"testing"
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
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return Serve(t, ln, handle)
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
