package h1

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/strait-mesh/strait/proxy/httpmsg"
)

// review6SmallPair is directPair with a small send buffer on the DirectConn and a small
// receive buffer on the peer, so that a write of a few hundred KiB the peer does not read
// waits for room.
func review6SmallPair(t *testing.T) (*directConn, *net.TCPConn) {
	t.Helper()
	d, s := directPair(t)
	dc := d.(*directConn)
	dc.SetWriteBuffer(4096)
	s.(*net.TCPConn).SetReadBuffer(4096)
	return dc, s.(*net.TCPConn)
}

// review6ReadAll reads what the peer receives until the DirectConn closes.
func review6ReadAll(t *testing.T, s net.Conn) []byte {
	t.Helper()
	s.SetReadDeadline(time.Now().Add(20 * time.Second))
	got, err := io.ReadAll(s)
	if err != nil {
		t.Fatalf("peer read: %v", err)
	}
	return got
}

// review6CheckWriteError checks that err is what Write reports for the same cause: a
// *net.OpError with Op "write" on tcp, with is inside (errors.Is).
func review6CheckWriteError(t *testing.T, what string, err, is error) {
	t.Helper()
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "write" || oe.Net != "tcp" || !errors.Is(err, is) {
		t.Errorf("%s: %#v (%v), want a write *net.OpError with %v inside", what, err, err, is)
	}
}

// TestReview6WriteVectorDeadlineMidWrite: a write deadline that passes while a vectored write
// waits for room (in the head, or in the body) ends it as Write's does (a timeout, Op
// "write"), and the count it reports is exactly the bytes the peer then receives, which are
// the first bytes of head and body in order.
func TestReview6WriteVectorDeadlineMidWrite(t *testing.T) {
	for _, tc := range []struct {
		name       string
		head, body int
	}{
		{"in the body", 300, 8 << 20},
		{"in the head", 8 << 20, 1024},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, s := review6SmallPair(t)
			a, b := review6Body(tc.head, 1), review6Body(tc.body, 2)
			d.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
			n, err := d.WriteVector(a, b)
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Errorf("WriteVector past its deadline: %v, want a timeout", err)
			}
			review6CheckWriteError(t, "deadline", err, os.ErrDeadlineExceeded)
			if n <= 0 || n >= len(a)+len(b) {
				t.Fatalf("WriteVector reported %d of %d bytes", n, len(a)+len(b))
			}
			d.Close()
			got := review6ReadAll(t, s)
			want := append(append([]byte{}, a...), b...)[:n]
			if len(got) != n || !bytes.Equal(got, want) {
				t.Errorf("WriteVector reported %d bytes; the peer received %d (same prefix: %v)", n, len(got),
					bytes.Equal(got, want[:min(len(got), len(want))]))
			}
		})
	}
}

// TestReview6WriteVectorLazyDeadlineRearm: a deadline moved later (the socket keeps the
// earlier one armed, lazily) that passed before a vectored write does not fail it: the write
// re-arms and completes, as Write does; one then moved into the past fails the next one.
func TestReview6WriteVectorLazyDeadlineRearm(t *testing.T) {
	d, s := directPair(t)
	dc := d.(*directConn)
	d.SetWriteDeadline(time.Now().Add(20 * time.Millisecond))
	d.SetWriteDeadline(time.Now().Add(time.Hour)) // lazily: the 20 ms one stays armed
	time.Sleep(60 * time.Millisecond)
	a, b := []byte("head\r\n"), review6Body(2048, 3)
	errc := make(chan error, 1)
	go func() {
		n, err := dc.WriteVector(a, b)
		if err == nil && n != len(a)+len(b) {
			err = io.ErrShortWrite
		}
		errc <- err
	}()
	got := make([]byte, len(a)+len(b))
	s.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(s, got); err != nil {
		t.Fatalf("peer read: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("WriteVector after the armed (earlier) deadline passed: %v", err)
	}
	if !bytes.Equal(got, append(append([]byte{}, a...), b...)) {
		t.Fatal("the peer read other bytes")
	}
	d.SetWriteDeadline(time.Now().Add(-time.Second))
	n, err := dc.WriteVector(a, b)
	if n != 0 {
		t.Errorf("WriteVector past its deadline wrote %d bytes", n)
	}
	review6CheckWriteError(t, "past deadline", err, os.ErrDeadlineExceeded)
}

// TestReview6WriteVectorStallAsWrite: a vectored write the peer stops reading fails with the
// error a Write fails with (ErrWriteStall in a write *net.OpError), whether the stall comes
// in the head or the body.
func TestReview6WriteVectorStallAsWrite(t *testing.T) {
	for _, tc := range []struct {
		name       string
		head, body int
	}{
		{"in the body", 300, 8 << 20},
		{"in the head", 8 << 20, 1024},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := review6SmallPair(t)
			SetWriteStall(d, 100*time.Millisecond)
			n, err := d.WriteVector(review6Body(tc.head, 1), review6Body(tc.body, 2))
			review6CheckWriteError(t, "stall", err, ErrWriteStall)
			if n <= 0 || n >= tc.head+tc.body {
				t.Errorf("stalled WriteVector reported %d of %d bytes", n, tc.head+tc.body)
			}
			// Write on another connection, for the same error.
			d2, _ := review6SmallPair(t)
			SetWriteStall(d2, 100*time.Millisecond)
			_, werr := d2.Write(review6Body(tc.head+tc.body, 1))
			var oe, woe *net.OpError
			if !errors.As(err, &oe) || !errors.As(werr, &woe) || oe.Err != woe.Err {
				t.Errorf("stall: WriteVector's error %q, Write's %q", err, werr)
			}
		})
	}
}

// TestReview6WriteVectorClosedWhileWaiting: a vectored write waiting for room when the
// connection is closed fails with net.ErrClosed (a write *net.OpError), as Write does.
func TestReview6WriteVectorClosedWhileWaiting(t *testing.T) {
	d, _ := review6SmallPair(t)
	errc := make(chan error, 1)
	go func() {
		_, err := d.WriteVector(review6Body(300, 1), review6Body(8<<20, 2))
		errc <- err
	}()
	time.Sleep(100 * time.Millisecond)
	d.Close()
	select {
	case err := <-errc:
		review6CheckWriteError(t, "closed", err, net.ErrClosed)
	case <-time.After(20 * time.Second):
		t.Fatal("a vectored write waiting for room did not end when the connection closed")
	}
}

// TestReview6WriteVectorPeerResetWhileWaiting: the peer resets the connection while a
// vectored write waits for room: a system call error in a write *net.OpError, as Write's.
func TestReview6WriteVectorPeerResetWhileWaiting(t *testing.T) {
	d, s := review6SmallPair(t)
	errc := make(chan error, 1)
	go func() {
		_, err := d.WriteVector(review6Body(300, 1), review6Body(8<<20, 2))
		errc <- err
	}()
	time.Sleep(100 * time.Millisecond)
	s.SetLinger(0)
	s.Close()
	select {
	case err := <-errc:
		var se *os.SyscallError
		var oe *net.OpError
		if !errors.As(err, &oe) || oe.Op != "write" || !errors.As(err, &se) || se.Syscall != "write" {
			t.Errorf("peer reset: %#v (%v), want a write *net.OpError over a write *os.SyscallError", err, err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a vectored write did not end when the peer reset the connection")
	}
}

// TestReview6WriteVectorAtomicAmongWriters: net.Conn's Write is atomic among goroutines
// writing the same connection (one Write's bytes are never interleaved with another's; the
// DirectConn's Write holds its lock for the whole write); a vectored write, "as Write does",
// should be too. Here the socket is full when the vectored write starts (another Write waits
// for room) and a third goroutine's Write waits behind it: once its part of a writev leaves
// the socket full again, WriteVector lets go of the lock before the rest goes through Write,
// and the waiting Write's bytes land inside the vectored write's.
func TestReview6WriteVectorAtomicAmongWriters(t *testing.T) {
	d, s := directPair(t)
	dc := d.(*directConn)
	dc.SetWriteBuffer(64 << 10)
	fill := bytes.Repeat([]byte("f"), 1<<20)
	a, b := bytes.Repeat([]byte("A"), 1000), bytes.Repeat([]byte("B"), 1<<20)
	other := []byte("xxxxxxxx")
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); dc.Write(fill) }() // waits for room, holding the write lock
	time.Sleep(20 * time.Millisecond)
	go func() { defer wg.Done(); dc.WriteVector(a, b) }() // waits for the lock
	time.Sleep(20 * time.Millisecond)
	go func() { defer wg.Done(); dc.Write(other) }() // waits for the lock, behind it
	time.Sleep(20 * time.Millisecond)
	total := len(fill) + len(a) + len(b) + len(other)
	got := make([]byte, total)
	s.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.ReadFull(s, got); err != nil {
		t.Fatalf("peer read: %v", err)
	}
	wg.Wait()
	i := bytes.IndexByte(got, 'A')
	j := bytes.LastIndexByte(got, 'B')
	if i < 0 || j < 0 {
		t.Fatal("the vectored write's bytes are missing")
	}
	if k := bytes.IndexByte(got[i:j], 'x'); k >= 0 {
		t.Errorf("another goroutine's Write landed inside a vectored write's bytes (at %d of its %d)", k, j+1-i)
	}
}

// TestReview6ServerVectoredWriteErrorSticks: when the client resets the connection while a
// response body goes out as a vectored write, the handler's Write reports the socket's error
// (a write *net.OpError), later writes and Flush report it too without writing, and
// ServeConn ends (the connection is not used for another request).
func TestReview6ServerVectoredWriteErrorSticks(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		first, later, flush error
		serve               error
		served              int
	}
	res := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.(*net.TCPConn).SetWriteBuffer(4096)
		var r result
		s := &Server{Handler: HandlerFunc(func(w *ResponseWriter, req *httpmsg.Request) {
			r.served++
			w.Header().Set("Content-Length", strconv.Itoa(64<<20))
			chunk := review6Body(256<<10, 1)
			for i := 0; i < 256 && r.first == nil; i++ {
				_, r.first = w.Write(chunk)
			}
			_, r.later = w.Write(chunk)
			r.flush = w.Flush()
		})}
		r.serve = s.ServeConn(DirectConn(c))
		res <- r
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).SetReadBuffer(4096)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
	time.Sleep(100 * time.Millisecond) // the server's write waits for room
	c.(*net.TCPConn).SetLinger(0)
	c.Close()
	select {
	case r := <-res:
		var oe *net.OpError
		if !errors.As(r.first, &oe) || oe.Op != "write" {
			t.Errorf("Write to a reset connection: %v, want a write *net.OpError", r.first)
		}
		if r.later != r.first || r.flush != r.first {
			t.Errorf("later Write %v, Flush %v: want the first error %v again", r.later, r.flush, r.first)
		}
		if r.served != 1 {
			t.Errorf("%d requests served on a connection whose write failed", r.served)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("ServeConn did not end after the client reset")
	}
}
