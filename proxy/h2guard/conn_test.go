package h2guard

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// TestGoAwayOnlyAtFrameBoundary: when the library is in the middle of writing a frame, the
// guard must not put its GOAWAY inside it; the peer sees the library's bytes and then the end
// of the connection. When the library's last write ended a frame (however it was split), the
// GOAWAY follows it.
func TestGoAwayOnlyAtFrameBoundary(t *testing.T) {
	data := frameBytes(func(fr *http2.Framer) { fr.WriteData(1, false, bytes.Repeat([]byte("d"), 100)) })
	ping := frameBytes(func(fr *http2.Framer) { fr.WritePing(true, [8]byte{1}) })
	for _, tc := range []struct {
		name     string
		writes   [][]byte
		boundary bool
	}{
		{"half-payload", [][]byte{serverSettings, data[:9+50]}, false},
		{"header-only", [][]byte{serverSettings, data[:9]}, false},
		{"part-of-header", [][]byte{serverSettings, data[:5]}, false},
		{"one-byte", [][]byte{serverSettings, data[:1]}, false},
		{"whole-frame-split", [][]byte{serverSettings, data[:3], data[3:9], data[9:70], data[70:]}, true},
		{"two-frames-one-write", [][]byte{append(bytes.Clone(serverSettings), ping...)}, true},
		{"frame-then-partial-in-one-write", [][]byte{append(append(bytes.Clone(serverSettings), ping...), data[:20]...)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newScript()
			s.headers(1, false, true, s.request())
			s.fr.WriteData(1, false, nil)
			s.fr.WriteData(1, false, nil) // empty-frame flood
			c := newScriptConn(s.Bytes())
			var vs violations
			g := New(c, Limits{OnViolation: vs.on})
			var lib []byte
			for _, w := range tc.writes {
				if _, err := g.Write(w); err != nil {
					t.Fatal(err)
				}
				lib = append(lib, w...)
			}
			_, err := drain(t, g, 4096, 1000)
			var ge *Error
			if !errors.As(err, &ge) || ge.Violation != EmptyFramesFlood {
				t.Fatalf("%v, want empty frames flood", err)
			}
			out := c.written()
			if tc.boundary {
				checkGoAway(t, out, lib, ErrEnhanceYourCalm, 1)
			} else if !bytes.Equal(out, lib) {
				t.Fatalf("mid-frame: the peer got %x after the library's bytes, want nothing", out[min(len(lib), len(out)):])
			}
			if !c.closedWrite && !c.closed {
				t.Fatal("connection not closed")
			}
			if len(vs.list()) != 1 {
				t.Fatalf("OnViolation calls: %v", vs.list())
			}
		})
	}
}

// validTraffic is a client stream the guard must pass unchanged: every frame type a client
// sends, padding, priorities, header blocks split over CONTINUATION frames, dynamic-table use
// and a table size update, trailers, DATA of several sizes.
func validTraffic() []byte {
	s := newScript()
	s.settings(uint32(http2.SettingHeaderTableSize), 4096, uint32(http2.SettingEnablePush), 0, uint32(http2.SettingInitialWindowSize), 1<<20)
	s.fr.WriteWindowUpdate(0, 1<<30)
	s.fr.WriteSettingsAck()
	s.headers(1, false, true, s.request("content-type", "text/plain", "x-custom", "one"))
	s.fr.WriteData(1, false, bytes.Repeat([]byte("a"), 1000))
	s.fr.WriteDataPadded(1, false, []byte("padded"), make([]byte, 20))
	s.fr.WriteData(1, false, bytes.Repeat([]byte("b"), 16384))
	s.headers(1, true, true, s.block("x-trailer", "t"))
	b := s.request("x-custom", "one", "cookie", strings.Repeat("c", 300))
	s.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: b[:10], EndStream: true, PadLength: 5,
		Priority: http2.PriorityParam{StreamDep: 1, Weight: 200}})
	s.fr.WriteContinuation(3, false, b[10:20])
	s.fr.WriteContinuation(3, true, b[20:])
	s.fr.WritePriority(5, http2.PriorityParam{StreamDep: 3, Exclusive: true, Weight: 3})
	s.ping(42)
	s.fr.WritePing(true, [8]byte{9})
	s.enc.SetMaxDynamicTableSize(1024)
	s.headers(5, false, true, s.request("x-after-resize", "v"))
	s.fr.WriteData(5, true, []byte("end"))
	s.fr.WriteRSTStream(3, http2.ErrCodeCancel)
	s.fr.WriteWindowUpdate(5, 100)
	s.fr.WriteRawFrame(0x10, 0, 0, []byte("unknown frame type")) // ignored by receivers
	s.fr.WriteGoAway(0, http2.ErrCodeNo, []byte("bye"))
	return s.Bytes()
}

// TestEverySplitDeliversSameBytes is a property test: valid traffic, arriving split at any byte
// boundary (and in one-byte pieces), read with any read size, reaches the library unchanged.
func TestEverySplitDeliversSameBytes(t *testing.T) {
	in := validTraffic()
	check := func(name string, c *scriptConn, readSize int) {
		t.Helper()
		var vs violations
		g := New(c, Limits{OnViolation: vs.on})
		got, err := drain(t, g, readSize, 10*len(in)+10)
		if err != io.EOF || !bytes.Equal(got, in) {
			t.Fatalf("%s read %d: %v; delivered %d of %d bytes, first difference at %d", name, readSize, err, len(got), len(in), firstDiff(got, in))
		}
		if len(vs.list()) != 0 {
			t.Fatalf("%s: violations %v", name, vs.list())
		}
		if g.buf != nil {
			t.Fatalf("%s: buffer kept after everything was delivered", name)
		}
	}
	readSizes := []int{9, 1 << 16, 100, 4096}
	for split := 1; split < len(in); split++ {
		check(fmt.Sprintf("split %d", split), newScriptConn(bytes.Clone(in), split), readSizes[split%len(readSizes)])
	}
	check("one-byte pieces", newScriptConn(bytes.Clone(in), ones(len(in))...), 1)
	check("one-byte pieces", newScriptConn(bytes.Clone(in), ones(len(in))...), 4096)
	// And through the library's own frame reader.
	g := New(newScriptConn(bytes.Clone(in), 3, 17, 1, 4000, 2, 9, 100), Limits{})
	got, err := library(t, g, func(http2.Frame, *http2.Framer) {})
	if err != io.EOF || !bytes.Equal(got, in) {
		t.Fatalf("through the Framer: %v; delivered %d of %d bytes", err, len(got), len(in))
	}
}

// TestDataStreamsThrough: DATA payload bytes reach the library as they arrive, without waiting
// for the rest of the frame; a control frame is held until it is complete.
func TestDataStreamsThrough(t *testing.T) {
	g, cli := pipePair(t, Limits{})
	s := newScript()
	s.headers(1, false, true, s.request())
	s.raw(16000, frameData, 0, 1, bytes.Repeat([]byte("p"), 100))
	head := bytes.Clone(s.Bytes())
	go cli.Write(head)
	buf := make([]byte, 1<<16)
	got := 0
	for got < len(head) {
		g.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := g.Read(buf[got:])
		if err != nil {
			t.Fatalf("after %d of %d bytes: %v (DATA payload held back?)", got, len(head), err)
		}
		got += n
	}
	if !bytes.Equal(buf[:got], head) {
		t.Fatal("delivered bytes differ")
	}
	// The rest of the payload, then half a PING: the payload arrives, the PING does not.
	rest := bytes.Repeat([]byte("q"), 15900)
	ping := frameBytes(func(fr *http2.Framer) { fr.WritePing(false, [8]byte{1}) })
	go cli.Write(append(rest, ping[:12]...))
	got = 0
	for got < len(rest) {
		g.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := g.Read(buf[got:])
		if err != nil {
			t.Fatalf("payload: %v", err)
		}
		got += n
	}
	if got != len(rest) || !bytes.Equal(buf[:got], rest) {
		t.Fatalf("delivered %d bytes, want the %d payload bytes and no part of the PING", got, len(rest))
	}
	g.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, err := g.Read(buf); n != 0 || err == nil {
		t.Fatalf("an incomplete PING was delivered: %d bytes, %v", n, err)
	}
	g.SetReadDeadline(time.Now().Add(5 * time.Second))
	go cli.Write(ping[12:])
	if n, err := io.ReadFull(g, buf[:len(ping)]); err != nil || !bytes.Equal(buf[:n], ping) {
		t.Fatalf("completed PING: %d bytes, %v", n, err)
	}
}

// TestControlFloodPeerNotReading: a client that sends PINGs and never reads makes the library's
// writes block; the guard must still count, close the connection (without waiting for the
// blocked write forever), and let the library's Close return.
func TestControlFloodPeerNotReading(t *testing.T) {
	var vs violations
	g, cli := pipePair(t, Limits{OnViolation: vs.on})
	acks := make(chan [8]byte, 5000)
	writerDone := make(chan error, 1)
	go func() {
		// The library's writer: its first write blocks, since the client never reads.
		if _, err := g.Write(serverSettings); err != nil {
			writerDone <- err
			return
		}
		for d := range acks {
			if _, err := g.Write(frameBytes(func(fr *http2.Framer) { fr.WritePing(true, d) })); err != nil {
				writerDone <- err
				return
			}
		}
		writerDone <- nil
	}()
	s := newScript()
	for i := 0; i < 1500; i++ {
		s.ping(uint64(i))
	}
	go cli.Write(s.Bytes())
	readErr := make(chan error, 1)
	go func() {
		_, err := library(t, g, func(f http2.Frame, _ *http2.Framer) {
			if p, ok := f.(*http2.PingFrame); ok && !p.IsAck() {
				select {
				case acks <- p.Data:
				default:
				}
			}
		})
		readErr <- err
	}()
	select {
	case err := <-readErr:
		var ge *Error
		if !errors.As(err, &ge) || ge.Violation != ControlFlood {
			t.Fatalf("Read: %v, want outbound control flood", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the guard did not end a PING flood from a client that does not read (Read blocked)")
	}
	closed := make(chan error, 1)
	go func() { closed <- g.Close() }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close blocked behind the library's blocked write")
	}
	select {
	case err := <-writerDone:
		if err == nil {
			t.Fatal("the blocked write succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the library's blocked write did not return after Close")
	}
	close(acks)
	if v := vs.list(); len(v) != 1 {
		t.Fatalf("OnViolation calls: %v", v)
	}
	// The client sees the connection end.
	cli.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, cli); err != nil && !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("client read: %v", err)
	}
}

// TestCloseWhileWriteBlocked: the library may close the connection (idle timeout, shutdown,
// its own limits) while its writer is blocked on a client that does not read; Close must not
// wait for that write.
func TestCloseWhileWriteBlocked(t *testing.T) {
	g, _ := pipePair(t, Limits{})
	wrote := make(chan error, 1)
	go func() { _, err := g.Write(serverSettings); wrote <- err }()
	time.Sleep(20 * time.Millisecond) // let the write block (not needed for correctness)
	done := make(chan struct{})
	go func() { g.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close blocked behind a blocked Write")
	}
	select {
	case err := <-wrote:
		if err == nil {
			t.Fatal("blocked write succeeded after Close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("blocked write did not return after Close")
	}
}

// TestReadNotBlockedByWrite: frames the guard counts under its lock (WINDOW_UPDATE, RST_STREAM,
// PING) are read while the library's writer is blocked on the client.
func TestReadNotBlockedByWrite(t *testing.T) {
	g, cli := pipePair(t, Limits{})
	go g.Write(serverSettings) // blocks: the client reads nothing yet
	s := newScript()
	s.headers(1, false, true, s.request())
	s.fr.WriteWindowUpdate(0, 1000)
	s.fr.WriteRSTStream(1, http2.ErrCodeCancel)
	s.ping(1)
	in := bytes.Clone(s.Bytes())
	go cli.Write(in)
	buf := make([]byte, len(in))
	g.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(g, buf); err != nil || !bytes.Equal(buf, in) {
		t.Fatalf("reading while the library's write is blocked: %v", err)
	}
}
