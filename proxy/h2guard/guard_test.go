package h2guard

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"golang.org/x/net/http2"
)

// violationCase is one way for a client to break the rules: build appends the offending
// frames to s (after any valid ones) and returns the offset of the first byte the guard must
// not deliver and the last stream id the GOAWAY must carry.
type violationCase struct {
	name  string
	lim   Limits
	build func(s *script) (bad int, last uint32)
	v     Violation
	code  ErrCode
}

func violationCases() []violationCase {
	var cases []violationCase
	add := func(name string, v Violation, code ErrCode, build func(s *script) (int, uint32)) {
		cases = append(cases, violationCase{name: name, v: v, code: code, build: build})
	}
	// Header-field rules (RFC 9113 section 8.2): the block on stream 3 is refused, the GOAWAY
	// names stream 3 (the guard saw it opened).
	headerCase := func(name string, fields ...string) {
		add("header/"+name, MessagingError, ErrProtocol, func(s *script) (int, uint32) {
			s.settings()
			s.headers(1, true, true, s.request())
			bad := s.Len()
			s.headers(3, true, true, s.block(fields...))
			return bad, 3
		})
	}
	for _, name := range []string{"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"} {
		headerCase(name, ":method", "GET", ":scheme", "http", ":path", "/", name, "x")
	}
	headerCase("te-gzip", ":method", "GET", ":scheme", "http", ":path", "/", "te", "gzip")
	headerCase("te-trailers-gzip", ":method", "GET", ":scheme", "http", ":path", "/", "te", "trailers, gzip")
	headerCase("upper-case", ":method", "GET", ":scheme", "http", ":path", "/", "X-Upper", "x")
	headerCase("upper-case-pseudo", ":Method", "GET", ":scheme", "http", ":path", "/")
	headerCase("pseudo-after-regular", ":method", "GET", "accept", "*/*", ":path", "/")
	headerCase("unknown-pseudo", ":method", "GET", ":scheme", "http", ":path", "/", ":foo", "x")
	headerCase("status-pseudo-in-request", ":status", "200", ":method", "GET")
	headerCase("empty-name", ":method", "GET", "", "x")
	add("header/pseudo-in-trailers", MessagingError, ErrProtocol, func(s *script) (int, uint32) {
		s.headers(1, false, true, s.request())
		s.fr.WriteData(1, false, []byte("body"))
		bad := s.Len()
		s.headers(1, true, true, s.block(":path", "/again"))
		return bad, 1
	})
	add("header/split-across-continuation", MessagingError, ErrProtocol, func(s *script) (int, uint32) {
		// The offending field is in the CONTINUATION: the HEADERS frame is delivered.
		b := s.request("connection", "close")
		s.headers(1, true, false, b[:len(b)-8])
		bad := s.Len()
		s.fr.WriteContinuation(1, true, b[len(b)-8:])
		return bad, 1
	})

	// HPACK errors: COMPRESSION_ERROR.
	add("hpack/bad-index", CompressionError, ErrCompression, func(s *script) (int, uint32) {
		bad := s.Len()
		s.headers(1, true, true, []byte{0xff, 0x7f}) // indexed field 254: no such entry
		return bad, 1
	})
	add("hpack/varint-overflow", CompressionError, ErrCompression, func(s *script) (int, uint32) {
		bad := s.Len()
		s.headers(1, true, true, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
		return bad, 1
	})
	add("hpack/truncated-literal", CompressionError, ErrCompression, func(s *script) (int, uint32) {
		bad := s.Len()
		s.headers(1, true, true, []byte{0x00, 0x05, 'a', 'b'}) // literal name of 5 bytes, 2 present
		return bad, 1
	})
	add("hpack/table-size-above-advertised", CompressionError, ErrCompression, func(s *script) (int, uint32) {
		bad := s.Len()
		s.headers(1, true, true, []byte{0x3f, 0xe1, 0xff, 0x03}) // dynamic table size update 65536
		return bad, 1
	})

	// CONTINUATION rules.
	add("continuation/without-block", ProtocolError, ErrProtocol, func(s *script) (int, uint32) {
		s.headers(1, true, true, s.request())
		bad := s.Len()
		s.fr.WriteContinuation(1, true, s.block("accept", "*/*"))
		return bad, 1
	})
	add("continuation/interrupted-by-ping", ProtocolError, ErrProtocol, func(s *script) (int, uint32) {
		b := s.request()
		s.headers(1, true, false, b[:4])
		bad := s.Len()
		s.ping(1)
		return bad, 1
	})
	add("continuation/interrupted-by-data", ProtocolError, ErrProtocol, func(s *script) (int, uint32) {
		b := s.request()
		s.headers(1, false, false, b[:4])
		bad := s.Len()
		s.fr.WriteData(1, true, []byte("x"))
		return bad, 1
	})
	add("continuation/other-stream", ProtocolError, ErrProtocol, func(s *script) (int, uint32) {
		b := s.request()
		s.headers(1, true, false, b[:4])
		bad := s.Len()
		s.fr.WriteContinuation(3, true, b[4:])
		return bad, 1
	})
	add("continuation/new-headers", ProtocolError, ErrProtocol, func(s *script) (int, uint32) {
		b := s.request()
		s.headers(1, true, false, b[:4])
		bad := s.Len()
		s.headers(3, true, true, b)
		return bad, 1
	})
	add("continuation/flood", HeaderBlockTooLarge, ErrEnhanceYourCalm, func(s *script) (int, uint32) {
		// Endless CONTINUATION frames without END_HEADERS, each full of valid fields whose
		// decoded size stays under twice their encoded size: the block size limit (default
		// 128 KiB) ends it.
		frag := func() []byte {
			var b []byte
			for len(b) < 16000 {
				b = append(b, s.literals("x-fill", strings.Repeat("v", 100))...)
			}
			return b
		}
		s.headers(1, true, false, s.request())
		size := 0
		for i := 0; ; i++ {
			f := frag()
			if size+len(f) > 128<<10 {
				bad := s.Len()
				s.fr.WriteContinuation(1, false, f)
				return bad, 1
			}
			size += len(f)
			s.fr.WriteContinuation(1, false, f)
		}
	})
	add("continuation/empty-flood", EmptyFramesFlood, ErrEnhanceYourCalm, func(s *script) (int, uint32) {
		s.headers(1, true, false, s.request())
		s.fr.WriteContinuation(1, false, nil)
		bad := s.Len()
		s.fr.WriteContinuation(1, false, nil)
		return bad, 1
	})

	// Huge HPACK-decoded header list: one dynamic-table entry of ~4 KiB, then one-byte
	// references to it; decodes to far more than the limit while the block stays small.
	add("hpack/decoded-list-too-large", MessagingError, ErrProtocol, func(s *script) (int, uint32) {
		big := strings.Repeat("b", 4000)
		s.headers(1, true, true, s.request("x-big", big)) // x-big enters the dynamic table at index 62
		bad := s.Len()
		blk := s.request()
		for i := 0; i < 200; i++ {
			blk = append(blk, 0x80|62)
		}
		s.headers(3, true, true, blk)
		return bad, 3
	})

	// Frame size.
	add("frame/too-large-data", FrameTooLarge, ErrFrameSize, func(s *script) (int, uint32) {
		s.headers(1, false, true, s.request())
		bad := s.Len()
		s.raw(16385, frameData, 0, 1, make([]byte, 16385))
		return bad, 1
	})
	add("frame/too-large-headers", FrameTooLarge, ErrFrameSize, func(s *script) (int, uint32) {
		bad := s.Len()
		s.raw(1<<24-1, frameHeaders, flagEndHeaders, 1, nil)
		return bad, 0
	})
	cases = append(cases, violationCase{name: "frame/too-large-custom-limit", lim: Limits{MaxFrameSize: 1000}, v: FrameTooLarge, code: ErrFrameSize,
		build: func(s *script) (int, uint32) {
			s.raw(1000, frameData, 0, 1, make([]byte, 1000)) // at the limit: fine
			bad := s.Len()
			s.raw(1001, framePing, 0, 0, make([]byte, 1001))
			return bad, 0
		}})

	// SETTINGS.
	add("settings/length-not-multiple-of-6", FrameTooLarge, ErrFrameSize, func(s *script) (int, uint32) {
		bad := s.Len()
		s.raw(7, frameSettings, 0, 0, make([]byte, 7))
		return bad, 0
	})
	add("settings/101-entries", ProtocolError, ErrProtocol, func(s *script) (int, uint32) {
		s.settings(settingsKV(100)...) // 100 distinct entries: fine
		bad := s.Len()
		s.settings(settingsKV(101)...)
		return bad, 0
	})
	add("settings/flood-unacknowledged", ControlFlood, ErrEnhanceYourCalm, func(s *script) (int, uint32) {
		for i := 0; i < 1000; i++ {
			s.settings(4, 65535)
		}
		bad := s.Len()
		s.settings(4, 65535)
		return bad, 0
	})
	add("ping/flood-unacknowledged", ControlFlood, ErrEnhanceYourCalm, func(s *script) (int, uint32) {
		s.headers(1, true, true, s.request())
		for i := 0; i < 1000; i++ {
			s.ping(uint64(i))
			s.fr.WritePing(true, [8]byte{}) // acknowledgements the client sends do not count
		}
		bad := s.Len()
		s.ping(1000)
		return bad, 1
	})

	// Empty frames.
	add("empty/data-flood", EmptyFramesFlood, ErrEnhanceYourCalm, func(s *script) (int, uint32) {
		s.headers(1, false, true, s.request())
		for i := 0; i < 50; i++ {
			s.fr.WriteData(1, false, nil)
			s.fr.WriteData(1, false, []byte("x")) // a non-empty frame resets the count
		}
		s.fr.WriteData(1, false, nil)
		s.ping(1) // other frames do not reset it (nor count)
		bad := s.Len()
		s.fr.WriteData(1, false, nil)
		return bad, 1
	})
	add("empty/headers-flood", EmptyFramesFlood, ErrEnhanceYourCalm, func(s *script) (int, uint32) {
		s.headers(1, false, true, s.request())
		s.headers(1, false, true, nil) // empty trailers without END_STREAM: the first is allowed
		bad := s.Len()
		s.headers(1, false, true, nil)
		return bad, 1
	})

	// PRIORITY: 100 × (1 + streams opened).
	add("priority/flood-no-streams", PriorityFlood, ErrEnhanceYourCalm, func(s *script) (int, uint32) {
		for i := 0; i < 100; i++ {
			s.fr.WritePriority(uint32(2*i+1), http2.PriorityParam{Weight: 10})
		}
		bad := s.Len()
		s.fr.WritePriority(1, http2.PriorityParam{Weight: 10})
		return bad, 0
	})
	add("priority/flood-two-streams", PriorityFlood, ErrEnhanceYourCalm, func(s *script) (int, uint32) {
		s.headers(1, true, true, s.request())
		s.headers(3, true, true, s.request())
		for i := 0; i < 300; i++ {
			s.fr.WritePriority(5, http2.PriorityParam{Weight: 10})
		}
		bad := s.Len()
		s.fr.WritePriority(5, http2.PriorityParam{Weight: 10})
		return bad, 3
	})

	// WINDOW_UPDATE: 5 + 10 × (1 + DATA frames sent); the library sent none here.
	add("window-update/flood", WindowUpdateFlood, ErrEnhanceYourCalm, func(s *script) (int, uint32) {
		s.headers(1, true, true, s.request())
		for i := 0; i < 15; i++ {
			s.fr.WriteWindowUpdate(uint32(i%2), 1)
		}
		bad := s.Len()
		s.fr.WriteWindowUpdate(0, 1)
		return bad, 1
	})

	// Rapid reset: 600 streams opened and reset at once; the 500th reset trips the check.
	add("rapid-reset", PrematureResets, ErrEnhanceYourCalm, func(s *script) (int, uint32) {
		bad := 0
		for i := 1; i <= 600; i++ {
			id := uint32(2*i - 1)
			s.headers(id, false, true, s.request())
			if i == 500 {
				bad = s.Len()
			}
			s.fr.WriteRSTStream(id, http2.ErrCodeCancel)
		}
		return bad, 999
	})

	add("push-promise-from-client", ProtocolError, ErrProtocol, func(s *script) (int, uint32) {
		s.headers(1, false, true, s.request())
		bad := s.Len()
		s.fr.WritePushPromise(http2.PushPromiseParam{StreamID: 1, PromiseID: 2, BlockFragment: s.request(), EndHeaders: true})
		return bad, 1
	})
	return cases
}

// settingsKV returns n distinct settings (identifiers 0x100, 0x101, ...: unknown ones, which
// receivers ignore).
func settingsKV(n int) []uint32 {
	var kv []uint32
	for i := 0; i < n; i++ {
		kv = append(kv, uint32(0x100+i), uint32(i))
	}
	return kv
}

// TestViolations: for each rule, the guard delivers every byte before the offending frame and
// none of it, Read returns an *Error with the violation and code (then again on every later
// Read), OnViolation is called once, and the GOAWAY with the right code and last stream id
// follows the library's bytes, then the connection is closed for writing.
func TestViolations(t *testing.T) {
	for _, tc := range violationCases() {
		t.Run(tc.name, func(t *testing.T) {
			s := newScript()
			bad, last := tc.build(s)
			in := s.Bytes()
			if bad < len(Preface) || bad >= len(in) {
				t.Fatalf("bad offset %d out of range (input %d bytes)", bad, len(in))
			}
			for _, readSize := range []int{9, 4096, 1 << 20} {
				c := newScriptConn(bytes.Clone(in), 1000)
				var vs violations
				lim := tc.lim
				lim.OnViolation = vs.on
				g := New(c, lim)
				if _, err := g.Write(serverSettings); err != nil {
					t.Fatal(err)
				}
				got, err := drain(t, g, readSize, 4*len(in)+100)
				var ge *Error
				if !errors.As(err, &ge) {
					t.Fatalf("read size %d: Read error %v (%T), want *Error", readSize, err, err)
				}
				if ge.Violation != tc.v || ge.Code != tc.code {
					t.Fatalf("read size %d: %v, want violation %s code %d", readSize, ge, tc.v, tc.code)
				}
				if !bytes.Equal(got, in[:bad]) {
					t.Fatalf("read size %d: delivered %d bytes, want the %d before the offending frame (first difference at %d)",
						readSize, len(got), bad, firstDiff(got, in[:bad]))
				}
				if _, err2 := g.Read(make([]byte, 10)); err2 != err {
					t.Fatalf("second Read: %v, want the same *Error", err2)
				}
				if v := vs.list(); len(v) != 1 || v[0] != tc.v {
					t.Fatalf("OnViolation calls: %v, want exactly [%s]", v, tc.v)
				}
				checkGoAway(t, c.written(), serverSettings, tc.code, last)
				if !c.closedWrite && !c.closed {
					t.Fatalf("connection not closed after the GOAWAY")
				}
				if _, err := g.Write(serverSettings); err == nil {
					t.Fatalf("a library Write after the violation succeeded")
				}
			}
		})
	}
}

func TestPreface(t *testing.T) {
	t.Run("ok", func(t *testing.T) {
		s := newScript()
		s.settings(4, 1<<20)
		in := s.Bytes()
		for split := 1; split < len(in); split++ {
			g := New(newScriptConn(bytes.Clone(in), split), Limits{})
			got, err := drain(t, g, 7, 1000)
			if err != io.EOF || !bytes.Equal(got, in) {
				t.Fatalf("split %d: delivered %q, %v; want the input, EOF", split, got, err)
			}
		}
	})
	for _, bad := range []string{
		"PRI * HTTP/1.1\r\n\r\nSM\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\r",
		"\x00\x00\x00\x04\x00\x00\x00\x00\x00", // a SETTINGS frame without the preface
	} {
		t.Run(fmt.Sprintf("bad/%q", bad[:8]), func(t *testing.T) {
			for _, size := range []int{1, 5, 100} {
				c := newScriptConn([]byte(bad+strings.Repeat("x", 50)), size)
				var vs violations
				g := New(c, Limits{OnViolation: vs.on})
				g.Write(serverSettings)
				got, err := drain(t, g, 100, 1000)
				var ge *Error
				if !errors.As(err, &ge) || ge.Violation != BadPreface || ge.Code != ErrProtocol {
					t.Fatalf("chunk %d: %v, want bad_preface", size, err)
				}
				// Bytes before the first wrong one may be delivered, never a wrong one.
				if !strings.HasPrefix(Preface, string(got)) {
					t.Fatalf("chunk %d: delivered %q, not a prefix of the preface", size, got)
				}
				if v := vs.list(); len(v) != 1 || v[0] != BadPreface {
					t.Fatalf("OnViolation calls: %v", v)
				}
				// No GOAWAY to a client that did not speak HTTP/2: only the library's bytes.
				if out := c.written(); !bytes.Equal(out, serverSettings) {
					t.Fatalf("server wrote %x after a bad preface", out[len(serverSettings):])
				}
				if !c.closedWrite && !c.closed {
					t.Fatalf("connection not closed")
				}
			}
		})
	}
}

// TestValidHeaderBlocks: what the header-field rules allow passes: "te: trailers" (the one te
// value allowed), upper-case letters in values, trailers without pseudo-header fields, CONNECT
// and extended CONNECT (:protocol).
func TestValidHeaderBlocks(t *testing.T) {
	s := newScript()
	s.headers(1, false, true, s.request("te", "trailers", "accept", "*/*", "x-lower", "V A L U E"))
	s.fr.WriteData(1, false, []byte("body"))
	s.headers(1, true, true, s.block("grpc-status", "0", "x-trailer", "y"))
	s.headers(3, true, true, s.block(":method", "CONNECT", ":authority", "example.test:443"))
	s.headers(5, true, true, s.block(":method", "CONNECT", ":protocol", "websocket", ":scheme", "https", ":path", "/ws", ":authority", "a"))
	in := s.Bytes()
	g := New(newScriptConn(bytes.Clone(in)), Limits{})
	got, err := drain(t, g, 4096, 1000)
	if err != io.EOF || !bytes.Equal(got, in) {
		t.Fatalf("delivered %d of %d bytes, %v", len(got), len(in), err)
	}
}

// TestSettingsDuplicatesCollapsed: a SETTINGS frame that repeats identifiers reaches the
// library with each identifier once, carrying its last value, in the order of the last
// occurrences, with the frame length rewritten; the bytes around it are untouched.
func TestSettingsDuplicatesCollapsed(t *testing.T) {
	s := newScript()
	s.ping(7)
	s.settings(1, 100, 4, 1000, 1, 200, 4, 2000, 3, 50, 1, 300)
	s.settings(5, 16384)
	s.fr.WriteSettingsAck()
	in := s.Bytes()

	want := newScript()
	want.ping(7)
	want.settings(4, 2000, 3, 50, 1, 300)
	want.settings(5, 16384)
	want.fr.WriteSettingsAck()

	for split := len(Preface); split <= len(in); split++ {
		for _, readSize := range []int{1, 9, 4096} {
			g := New(newScriptConn(bytes.Clone(in), split, 3, 1000), Limits{})
			got, err := drain(t, g, readSize, 10000)
			if err != io.EOF || !bytes.Equal(got, want.Bytes()) {
				t.Fatalf("split %d read %d: %v\n got %x\nwant %x", split, readSize, err, got, want.Bytes())
			}
		}
	}
	// The library's own parser takes the result.
	fr := http2.NewFramer(nil, bytes.NewReader(want.Bytes()[len(Preface):]))
	fr.ReadFrame()
	f, err := fr.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	sf := f.(*http2.SettingsFrame)
	if sf.HasDuplicates() || sf.NumSettings() != 3 {
		t.Fatalf("collapsed SETTINGS: %v", sf)
	}
}

// TestControlFramesAcknowledged: PING and SETTINGS frames the library acknowledges do not
// count towards max_outbound_control_frames, however many.
func TestControlFramesAcknowledged(t *testing.T) {
	s := newScript()
	for i := 0; i < 3000; i++ {
		s.ping(uint64(i))
		if i%10 == 0 {
			s.settings(4, 65535)
		}
	}
	in := s.Bytes()
	c := newScriptConn(bytes.Clone(in), 700)
	g := New(c, Limits{})
	g.Write(serverSettings)
	got, err := library(t, g, func(f http2.Frame, w *http2.Framer) {
		switch f := f.(type) {
		case *http2.PingFrame:
			if !f.IsAck() {
				w.WritePing(true, f.Data)
			}
		case *http2.SettingsFrame:
			if !f.IsAck() {
				w.WriteSettingsAck()
			}
		}
	})
	if err != io.EOF || !bytes.Equal(got, in) {
		t.Fatalf("delivered %d of %d bytes: %v", len(got), len(in), err)
	}
}

// TestWindowUpdatesScaleWithDataSent: each DATA frame the library sends allows 10 more
// WINDOW_UPDATE frames (Envoy's max_inbound_window_update_frames_per_data_frame_sent).
func TestWindowUpdatesScaleWithDataSent(t *testing.T) {
	s := newScript()
	s.headers(1, true, true, s.request())
	for i := 0; i < 5+10*3; i++ {
		s.fr.WriteWindowUpdate(1, 1)
	}
	ok := s.Len()
	s.fr.WriteWindowUpdate(1, 1)
	in := s.Bytes()
	c := newScriptConn(bytes.Clone(in))
	var vs violations
	g := New(c, Limits{OnViolation: vs.on})
	g.Write(serverSettings)
	dataSent := 0
	got, err := library(t, g, func(f http2.Frame, w *http2.Framer) {
		if _, ok := f.(*http2.HeadersFrame); ok {
			// The response: HEADERS and two DATA frames, one of them written in pieces.
			w.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0x88}, EndHeaders: true})
			w.WriteData(1, false, []byte("hello"))
			d := frameBytes(func(fr *http2.Framer) { fr.WriteData(1, true, []byte("world")) })
			g.Write(d[:4])
			g.Write(d[4:11])
			g.Write(d[11:])
			dataSent = 2
		}
	})
	var ge *Error
	if !errors.As(err, &ge) || ge.Violation != WindowUpdateFlood {
		t.Fatalf("after %d DATA frames: %v, want window update flood at the %dth WINDOW_UPDATE", dataSent, err, 5+10*3+1)
	}
	if !bytes.Equal(got, in[:ok]) {
		t.Fatalf("delivered %d bytes, want %d", len(got), ok)
	}
}

// TestResetsAfterResponseAreNotPremature: streams the server ended before the client reset them
// do not count as premature resets, however many.
func TestResetsAfterResponseAreNotPremature(t *testing.T) {
	s := newScript()
	for i := 1; i <= 700; i++ {
		id := uint32(2*i - 1)
		s.headers(id, false, true, s.request())
		s.fr.WriteRSTStream(id, http2.ErrCodeCancel)
	}
	in := s.Bytes()
	g := New(newScriptConn(bytes.Clone(in)), Limits{})
	g.Write(serverSettings)
	got, err := library(t, g, func(f http2.Frame, w *http2.Framer) {
		switch f := f.(type) {
		case *http2.HeadersFrame:
			if f.StreamID%4 == 1 {
				w.WriteHeaders(http2.HeadersFrameParam{StreamID: f.StreamID, BlockFragment: []byte{0x88}, EndHeaders: true, EndStream: true})
			} else {
				w.WriteHeaders(http2.HeadersFrameParam{StreamID: f.StreamID, BlockFragment: []byte{0x88}, EndHeaders: true})
				w.WriteData(f.StreamID, true, []byte("x"))
			}
		}
	})
	if err != io.EOF || !bytes.Equal(got, in) {
		t.Fatalf("delivered %d of %d bytes: %v", len(got), len(in), err)
	}
	// Half of the streams reset early is still fine: more than half is the limit.
	s = newScript()
	for i := 1; i <= 1000; i++ {
		id := uint32(2*i - 1)
		s.headers(id, false, true, s.request())
		s.fr.WriteRSTStream(id, http2.ErrCodeCancel)
	}
	in = s.Bytes()
	g = New(newScriptConn(bytes.Clone(in)), Limits{})
	g.Write(serverSettings)
	got, err = library(t, g, func(f http2.Frame, w *http2.Framer) {
		if f, ok := f.(*http2.HeadersFrame); ok && f.StreamID%4 == 1 {
			w.WriteRSTStream(f.StreamID, http2.ErrCodeRefusedStream)
		}
	})
	if err != io.EOF || !bytes.Equal(got, in) {
		t.Fatalf("half reset early: delivered %d of %d bytes: %v", len(got), len(in), err)
	}
}
