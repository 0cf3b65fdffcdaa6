package h2guard

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The tests drive a Conn the way the HTTP/2 library does (one goroutine reading, writes of the
// library's own frames) over a scripted client: scriptConn delivers a fixed inbound byte stream
// in chosen read sizes and records what the guard and the "library" write, so that most tests
// are deterministic and need no network. Tests of a peer that does not read use net.Pipe.

// scriptConn is a net.Conn whose reads return the scripted inbound segments, each at most one
// read at a time (a read may return less than a segment when the reader's buffer is smaller),
// then io.EOF; writes are recorded.
type scriptConn struct {
	segs [][]byte

	mu          sync.Mutex
	out         bytes.Buffer
	closed      bool
	closedWrite bool
}

func newScriptConn(in []byte, sizes ...int) *scriptConn {
	c := &scriptConn{}
	for len(in) > 0 {
		n := len(in)
		if len(sizes) > 0 {
			n = min(n, max(sizes[0], 1))
			sizes = sizes[1:]
		}
		c.segs = append(c.segs, in[:n])
		in = in[n:]
	}
	return c
}

func (c *scriptConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return 0, net.ErrClosed
	}
	if len(c.segs) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.segs[0])
	if c.segs[0] = c.segs[0][n:]; len(c.segs[0]) == 0 {
		c.segs = c.segs[1:]
	}
	return n, nil
}

func (c *scriptConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.closedWrite {
		return 0, net.ErrClosed
	}
	return c.out.Write(p)
}

func (c *scriptConn) written() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.out.Bytes())
}

func (c *scriptConn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	return nil
}

func (c *scriptConn) CloseWrite() error {
	c.mu.Lock()
	c.closedWrite = true
	c.mu.Unlock()
	return nil
}

func (c *scriptConn) LocalAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80} }
func (c *scriptConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }

// script builds a client's byte stream: the preface, then frames written with x/net/http2's
// Framer and header blocks encoded with its hpack Encoder.
type script struct {
	bytes.Buffer
	fr  *http2.Framer
	hb  bytes.Buffer
	enc *hpack.Encoder
}

func newScript() *script {
	s := &script{}
	s.WriteString(Preface)
	s.fr = http2.NewFramer(&s.Buffer, nil)
	s.fr.AllowIllegalWrites = true
	s.enc = hpack.NewEncoder(&s.hb)
	return s
}

// block encodes name/value pairs as one header block.
func (s *script) block(kv ...string) []byte {
	s.hb.Reset()
	for i := 0; i+1 < len(kv); i += 2 {
		s.enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	return bytes.Clone(s.hb.Bytes())
}

// literals encodes name/value pairs as never-indexed literals: nothing enters the dynamic
// table, so the decoded size stays close to the encoded one.
func (s *script) literals(kv ...string) []byte {
	s.hb.Reset()
	for i := 0; i+1 < len(kv); i += 2 {
		s.enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1], Sensitive: true})
	}
	return bytes.Clone(s.hb.Bytes())
}

// request is the header block of a valid GET request plus extra fields.
func (s *script) request(extra ...string) []byte {
	return s.block(append([]string{":method", "GET", ":scheme", "http", ":authority", "example.test", ":path", "/"}, extra...)...)
}

func (s *script) headers(stream uint32, endStream, endHeaders bool, block []byte) {
	s.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: stream, BlockFragment: block, EndStream: endStream, EndHeaders: endHeaders})
}

func (s *script) settings(kv ...uint32) {
	var ss []http2.Setting
	for i := 0; i+1 < len(kv); i += 2 {
		ss = append(ss, http2.Setting{ID: http2.SettingID(kv[i]), Val: kv[i+1]})
	}
	s.fr.WriteSettings(ss...)
}

func (s *script) ping(n uint64) {
	var d [8]byte
	binary.BigEndian.PutUint64(d[:], n)
	s.fr.WritePing(false, d)
}

// raw appends a frame header with an arbitrary length and the given payload (which may be
// shorter than length).
func (s *script) raw(length int, typ, flags byte, stream uint32, payload []byte) {
	s.Write([]byte{byte(length >> 16), byte(length >> 8), byte(length), typ, flags})
	binary.Write(&s.Buffer, binary.BigEndian, stream)
	s.Write(payload)
}

// frameBytes renders one frame written by fn as bytes.
func frameBytes(fn func(fr *http2.Framer)) []byte {
	var b bytes.Buffer
	fr := http2.NewFramer(&b, nil)
	fr.AllowIllegalWrites = true
	fn(fr)
	return b.Bytes()
}

// serverSettings is the library's first frame (the server connection preface).
var serverSettings = frameBytes(func(fr *http2.Framer) {
	fr.WriteSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 100}, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 65535})
})

// violations counts OnViolation calls.
type violations struct {
	mu   sync.Mutex
	seen []Violation
}

func (v *violations) on(x Violation) {
	v.mu.Lock()
	v.seen = append(v.seen, x)
	v.mu.Unlock()
}

func (v *violations) list() []Violation {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]Violation(nil), v.seen...)
}

// drain reads g as the library would, with reads of readSize bytes, until an error; it
// returns the delivered bytes and the error. maxReads bounds the loop.
func drain(t testing.TB, g *Conn, readSize, maxReads int) ([]byte, error) {
	t.Helper()
	var got bytes.Buffer
	buf := make([]byte, readSize)
	for i := 0; i < maxReads; i++ {
		n, err := g.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			return got.Bytes(), err
		}
		if n == 0 {
			t.Fatalf("Read returned 0 bytes and no error")
		}
	}
	t.Fatalf("no error after %d reads", maxReads)
	return nil, nil
}

// serverFrames parses what the server side wrote.
func serverFrames(t *testing.T, b []byte) []http2.Frame {
	t.Helper()
	fr := http2.NewFramer(nil, bytes.NewReader(b))
	fr.AllowIllegalReads = true
	var out []http2.Frame
	for {
		f, err := fr.ReadFrame()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("server output: frame %d: %v (bytes %x)", len(out), err, b)
		}
		if g, ok := f.(*http2.GoAwayFrame); ok {
			// The frame is reused by the next ReadFrame; keep a copy.
			cp := *g
			f = &cp
		}
		out = append(out, f)
	}
}

// checkGoAway asserts that the server wrote exactly the library's bytes lib followed by one
// GOAWAY with code and last stream id.
func checkGoAway(t *testing.T, out, lib []byte, code ErrCode, last uint32) {
	t.Helper()
	if !bytes.HasPrefix(out, lib) {
		t.Fatalf("server output does not begin with the library's bytes:\n got %x\nwant %x...", out, lib)
	}
	fs := serverFrames(t, out[len(lib):])
	if len(fs) != 1 {
		t.Fatalf("after the library's bytes the guard wrote %d frames (%v), want one GOAWAY", len(fs), fs)
	}
	ga, ok := fs[0].(*http2.GoAwayFrame)
	if !ok {
		t.Fatalf("guard wrote %v, want GOAWAY", fs[0])
	}
	if ga.ErrCode != http2.ErrCode(code) || ga.LastStreamID != last || ga.StreamID != 0 {
		t.Fatalf("GOAWAY stream %d last %d code %v, want last %d code %v", ga.StreamID, ga.LastStreamID, ga.ErrCode, last, http2.ErrCode(code))
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// library reads g with x/net/http2's Framer, as the library does (a read of the 9-byte frame
// header, then one of the payload), and calls on for each frame with a Framer that writes to
// g. It returns the bytes delivered and the error that ended the reading.
func library(t *testing.T, g *Conn, on func(http2.Frame, *http2.Framer)) ([]byte, error) {
	t.Helper()
	var got bytes.Buffer
	pre := make([]byte, len(Preface))
	if _, err := io.ReadFull(g, pre); err != nil {
		return pre, err
	}
	got.Write(pre)
	fr := http2.NewFramer(g, io.TeeReader(g, &got))
	fr.AllowIllegalReads = true
	for i := 0; i < 1e6; i++ {
		f, err := fr.ReadFrame()
		if err != nil {
			if _, ok := err.(http2.StreamError); ok {
				continue
			}
			return got.Bytes(), err
		}
		on(f, fr)
	}
	t.Fatal("library: too many frames")
	return nil, nil
}

func ones(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = 1
	}
	return s
}

// pipePair returns a guarded server end and the client end of a net.Pipe (unbuffered: a write
// completes only when the other end reads it).
func pipePair(t *testing.T, lim Limits) (*Conn, net.Conn) {
	srv, cli := net.Pipe()
	t.Cleanup(func() { srv.Close(); cli.Close() })
	return New(srv, lim), cli
}
