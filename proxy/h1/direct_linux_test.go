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

// TestDirectConnLazyDeadline: deadlines that move later do not move the socket's; an armed
// deadline that passes before the one in force is re-armed without failing the read; a
// deadline moved earlier, or into the past, still fires; clearing after an interruption lets
// reads go on.
func TestDirectConnLazyDeadline(t *testing.T) {
	d, s := directPair(t)
	now := time.Now()
	for i := 1; i <= 100; i++ {
		d.SetReadDeadline(now.Add(time.Duration(i) * time.Hour))
		d.SetReadDeadline(time.Time{})
	}
	if n := DeadlineSets(d); n != 1 {
		t.Errorf("%d socket deadline changes for deadlines that only moved later, want 1", n)
	}

	// Armed for 50 ms, then moved to 10 s: the read outlives the armed deadline and gets the
	// bytes sent after it.
	d.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	before := DeadlineSets(d)
	d.SetReadDeadline(time.Now().Add(10 * time.Second))
	if DeadlineSets(d) != before {
		t.Error("a later deadline moved the socket's")
	}
	go func() {
		// Sent once the read has outlived the armed deadline (it re-armed the socket), not
		// after a fixed sleep: on a busy machine the read could start after the bytes came.
		for i := 0; i < 2000 && DeadlineSets(d) == before; i++ {
			time.Sleep(5 * time.Millisecond)
		}
		s.Write([]byte("late"))
	}()
	buf := make([]byte, 10)
	n, err := d.Read(buf)
	if err != nil || string(buf[:n]) != "late" {
		t.Fatalf("read across the re-armed deadline: %q, %v", buf[:n], err)
	}
	if DeadlineSets(d) == before {
		t.Error("the passed deadline was not re-armed")
	}

	// Moved earlier: fires. The clock starts before the deadline is set, so that a pause
	// between the two (a busy machine) cannot make the deadline seem early.
	d.SetReadDeadline(time.Now().Add(time.Hour))
	start := time.Now()
	d.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	if _, err := d.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past an earlier deadline: %v", err)
	}
	if el := time.Since(start); el < 20*time.Millisecond || el > 10*time.Second {
		t.Errorf("deadline fired after %v", el)
	}

	// Interrupted, then cleared: the next read waits for bytes.
	d.SetReadDeadline(time.Unix(1, 0))
	if _, err := d.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after an interruption: %v", err)
	}
	d.SetReadDeadline(time.Time{})
	s.Write([]byte("more"))
	if n, err := d.Read(buf); err != nil || string(buf[:n]) != "more" {
		t.Fatalf("read after clearing: %q, %v", buf[:n], err)
	}
	var ne net.Error
	d.SetWriteDeadline(time.Unix(1, 0))
	if _, err := d.Write([]byte("x")); !errors.As(err, &ne) || !ne.Timeout() || errors.Is(err, ErrWriteStall) {
		t.Errorf("write past its deadline: %v", err)
	}
	d.SetWriteDeadline(time.Time{})
	if _, err := d.Write([]byte("x")); err != nil {
		t.Errorf("write after clearing the deadline: %v", err)
	}
}

// smallBuffers makes writes on d block soon when s does not read.
func smallBuffers(d, s net.Conn) {
	d.(*directConn).SetWriteBuffer(4096)
	s.(*net.TCPConn).SetReadBuffer(4096)
}

// TestDirectConnWriteStall: with a write stall limit, writes the socket takes at once arm no
// deadline, a peer that reads nothing fails the write with ErrWriteStall, a peer that keeps
// reading, however slowly, does not, and the caller's own write deadline still applies.
func TestDirectConnWriteStall(t *testing.T) {
	t.Run("fast", func(t *testing.T) {
		d, s := directPair(t)
		if !SetWriteStall(d, 50*time.Millisecond) {
			t.Fatal("SetWriteStall refused a DirectConn")
		}
		go io.Copy(io.Discard, s)
		for i := 0; i < 200; i++ {
			if _, err := d.Write([]byte("0123456789")); err != nil {
				t.Fatal(err)
			}
		}
		if n := DeadlineSets(d); n != 0 {
			t.Errorf("%d socket deadline changes for writes that did not wait, want 0", n)
		}
	})
	t.Run("stalled", func(t *testing.T) {
		d, s := directPair(t)
		smallBuffers(d, s)
		SetWriteStall(d, 100*time.Millisecond)
		expectStalledWrite(t, d)
		// Closed after a stall, the connection is reset: its unsent bytes are dropped, not
		// left queued for a peer that does not read. The peer reads what it had buffered,
		// then the reset, not an orderly end.
		d.Close()
		s.SetReadDeadline(time.Now().Add(20 * time.Second))
		_, err := io.Copy(io.Discard, s)
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("the peer's read after the stalled connection closed ended with %v, want a reset", err)
		}
	})
	t.Run("slow reader", func(t *testing.T) {
		d, s := directPair(t)
		// The reader's buffer stays above two loopback segments (64 KiB), so that its window
		// opens as it reads.
		d.(*directConn).SetWriteBuffer(4096)
		s.(*net.TCPConn).SetReadBuffer(256 << 10)
		SetWriteStall(d, time.Second)
		const size = 2 << 20
		done := make(chan error, 1)
		go func() {
			// 2 MiB at up to 64 KiB every 50 ms: over 1.6 s in all, well over the stall limit,
			// yet never stalled. The limit is 20 pauses between reads, so that a reader held
			// up by a busy machine is not taken for a stalled one.
			buf := make([]byte, 64<<10)
			total := 0
			for total < size {
				time.Sleep(50 * time.Millisecond)
				n, err := s.Read(buf)
				total += n
				if err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
		start := time.Now()
		if _, err := d.Write(make([]byte, size)); err != nil {
			t.Fatalf("write to a slow but steady reader: %v", err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if DeadlineSets(d) == 0 {
			t.Error("the write never waited: the test does not exercise the stall clock")
		}
		t.Logf("written in %v", time.Since(start))
	})
	t.Run("caller deadline", func(t *testing.T) {
		d, s := directPair(t)
		smallBuffers(d, s)
		SetWriteStall(d, time.Hour)
		d.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		_, err := d.Write(make([]byte, 8<<20))
		if !errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, ErrWriteStall) {
			t.Fatalf("write past the caller's deadline: %v", err)
		}
	})
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	if SetWriteStall(p1, time.Second) || DeadlineSets(p1) != -1 {
		t.Error("SetWriteStall or DeadlineSets took a connection that is not a DirectConn")
	}
}

// expectStalledWrite writes 8 MiB to w, whose peer never reads, and fails the test unless the
// write fails with the write stall (a timeout that is ErrWriteStall) within 20 s.
func expectStalledWrite(t *testing.T, w io.Writer) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		_, err := w.Write(make([]byte, 8<<20))
		errc <- err
	}()
	select {
	case err := <-errc:
		var ne net.Error
		if !errors.Is(err, ErrWriteStall) || !errors.Is(err, os.ErrDeadlineExceeded) ||
			!errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("stalled write: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a write the peer never read did not fail")
	}
}
