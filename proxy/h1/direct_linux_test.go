package h1

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// directPair returns a DirectConn client connection and the server's end, on loopback.
func directPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	d := DirectConn(c)
	if _, ok := d.(*directConn); !ok {
		t.Fatalf("DirectConn of a TCP connection is %T", d)
	}
	t.Cleanup(func() { d.Close(); s.Close() })
	return d, s
}

// TestDirectConnIO: large writes complete through EAGAIN waits, reads see the bytes in order,
// and the peer's close is io.EOF.
func TestDirectConnIO(t *testing.T) {
	d, s := directPair(t)
	go io.Copy(s, s) // echo
	// 1 MiB: more than the socket buffers take, so the write waits for room.
	want := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	errc := make(chan error, 1)
	go func() {
		n, err := d.Write(want)
		if err == nil && n != len(want) {
			err = io.ErrShortWrite
		}
		errc <- err
	}()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(d, got); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("echo differs")
	}
	if n, err := d.Read(nil); n != 0 || err != nil {
		t.Errorf("empty read: %d, %v", n, err)
	}
	s.Close()
	if _, err := d.Read(make([]byte, 10)); err != io.EOF {
		t.Errorf("read after the peer closed: %v, want io.EOF", err)
	}
}

// TestDirectConnErrors: deadlines and a local close fail reads and writes as net's own
// connections do.
func TestDirectConnErrors(t *testing.T) {
	d, _ := directPair(t)
	d.SetReadDeadline(time.Now().Add(-time.Second))
	_, err := d.Read(make([]byte, 10))
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("read past its deadline: %v", err)
	}
	d.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() {
		_, err := d.Read(make([]byte, 10)) // blocks: the peer sends nothing
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	d.SetReadDeadline(time.Unix(1, 0)) // interrupts the waiting read
	if err := <-done; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("interrupted read: %v", err)
	}
	d.Close()
	if _, err := d.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write after close: %v", err)
	}
	if _, err := d.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("read after close: %v", err)
	}
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	if DirectConn(p1) != p1 {
		t.Error("DirectConn wrapped a connection that is not TCP")
	}
}
