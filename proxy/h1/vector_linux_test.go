package h1

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// TestDirectConnWriteVector: both slices arrive in order, in one system call when the socket
// takes them; when it does not (a slice larger than the socket buffers), the rest waits for
// room; an empty slice is a plain write; errors are Write's.
func TestDirectConnWriteVector(t *testing.T) {
	d, s := directPair(t)
	vw, ok := d.(VectorWriter)
	if !ok {
		t.Fatalf("%T is not a VectorWriter", d)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB: waits for room
	for _, tc := range []struct {
		name string
		a, b []byte
	}{
		{"small", []byte("head\r\n"), []byte("body")},
		{"large body", []byte("head\r\n"), big},
		{"large head", big, []byte("tail")},
		{"no head", nil, []byte("body only")},
		{"no body", []byte("head only"), nil},
	} {
		want := append(append([]byte{}, tc.a...), tc.b...)
		errc := make(chan error, 1)
		go func() {
			n, err := vw.WriteVector(tc.a, tc.b)
			if err == nil && n != len(want) {
				err = io.ErrShortWrite
			}
			errc <- err
		}()
		got := make([]byte, len(want))
		s.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(s, got); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if err := <-errc; err != nil {
			t.Fatalf("%s: WriteVector: %v", tc.name, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: the peer read other bytes", tc.name)
		}
	}

	// A deadline in the past fails the write as Write's does, writing nothing.
	d.SetWriteDeadline(time.Now().Add(-time.Second))
	n, err := vw.WriteVector([]byte("a"), []byte("b"))
	var ne net.Error
	if n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("write past its deadline: %d, %v", n, err)
	}
	d.SetWriteDeadline(time.Time{})

	// The peer resets the connection: a system call error, as Write reports it.
	s.(*net.TCPConn).SetLinger(0)
	s.Close()
	time.Sleep(50 * time.Millisecond)
	err = nil
	for i := 0; i < 10 && err == nil; i++ {
		_, err = vw.WriteVector([]byte("a"), []byte("b"))
	}
	var se *os.SyscallError
	if !errors.As(err, &se) || se.Syscall != "write" || !(errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)) {
		t.Errorf("write to a reset connection: %v", err)
	}
	d.Close()
	if _, err := vw.WriteVector([]byte("a"), []byte("b")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write after close: %v", err)
	}
}

// TestDirectConnWriteVectorStall: a vectored write the peer does not read fails with
// ErrWriteStall once the stall limit passes, as Write does.
func TestDirectConnWriteVectorStall(t *testing.T) {
	d, _ := directPair(t)
	d.(*directConn).SetWriteBuffer(4096)
	if !SetWriteStall(d, 100*time.Millisecond) {
		t.Fatal("SetWriteStall refused a DirectConn")
	}
	big := bytes.Repeat([]byte("x"), 8<<20)
	done := make(chan error, 1)
	go func() {
		_, err := d.(VectorWriter).WriteVector([]byte("head"), big)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrWriteStall) {
			t.Errorf("stalled vectored write: %v, want ErrWriteStall", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a stalled vectored write did not fail")
	}
}
