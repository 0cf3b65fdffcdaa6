package http1

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// scriptConn is a net.Conn whose reads return the script's chunks in order (a read never spans
// two chunks, like reads of a socket that received them apart), then io.EOF. Writes are kept.
type scriptConn struct {
	mu      sync.Mutex
	chunks  [][]byte
	errs    []error // errs[i], when set, is returned instead of chunk i (and the chunk is kept)
	out     bytes.Buffer
	closed  bool
	halfCls bool
}

func newScript(chunks ...string) *scriptConn {
	c := &scriptConn{}
	for _, s := range chunks {
		c.chunks = append(c.chunks, []byte(s))
	}
	return c
}

// cutScript cuts in at the given offsets.
func cutScript(in string, cuts ...int) *scriptConn {
	var chunks []string
	prev := 0
	for _, c := range append(cuts, len(in)) {
		if c > prev {
			chunks = append(chunks, in[prev:c])
			prev = c
		}
	}
	return newScript(chunks...)
}

func (c *scriptConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	if len(c.errs) > 0 {
		err := c.errs[0]
		c.errs = c.errs[1:]
		if err != nil {
			return 0, err
		}
	}
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	if c.chunks[0] = c.chunks[0][n:]; len(c.chunks[0]) == 0 {
		c.chunks = c.chunks[1:]
	}
	return n, nil
}

func (c *scriptConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.Write(p)
}

func (c *scriptConn) output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.String()
}

func (c *scriptConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}

func (c *scriptConn) CloseWrite() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.halfCls = true
	return nil
}

func (c *scriptConn) LocalAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80} }
func (c *scriptConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}
func (c *scriptConn) SetDeadline(t time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(t time.Time) error { return nil }

// drain reads g with reads of size n until an error, or until Read returns 0, nil (a tunnel
// waiting for Hijacked). It returns the bytes read and the error.
func drain(g *GuardConn, n int) ([]byte, error) {
	var out []byte
	buf := make([]byte, n)
	for {
		k, err := g.Read(buf)
		out = append(out, buf[:k]...)
		if err != nil {
			return out, err
		}
		if k == 0 {
			return out, nil
		}
		if len(out) > 1<<20 {
			return out, errors.New("endless")
		}
	}
}

const (
	goodReq   = "GET /good HTTP/1.1\r\nHost: a\r\n\r\n"
	postReq   = "POST /post HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
	chunkReq  = "POST /chunked HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: v\r\n\r\n"
	clteReq   = "POST /bad HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX"
	smuggled  = "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
	upgradeRq = "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
)

func TestGuardDeliversValidStream(t *testing.T) {
	in := goodReq + postReq + chunkReq + goodReq
	for _, size := range []int{1, 7, 63, 64, 4096} {
		g := NewGuardConn(newScript(in), Limits{})
		out, err := drain(g, size)
		if err != io.EOF || string(out) != in || g.Violation() != nil || g.Validated() != int64(len(in)) {
			t.Fatalf("read size %d: %q, %v, violation %v", size, out, err, g.Violation())
		}
	}
}

func TestGuardPoisonReplacesBadRequest(t *testing.T) {
	cases := []struct {
		name, bad string
		lim       Limits
		want      *Error
		poison    string
	}{
		{"cl.te", clteReq, Limits{}, ErrLengthAndTE, poison400},
		{"bare lf", "GET /bad HTTP/1.1\nHost: a\r\n\r\n", Limits{}, ErrBareLF, poison400},
		{"te.te", "POST /bad HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n", Limits{}, ErrUnsupportedTE, poison501},
		{"chunk overflow", "POST /bad HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n", Limits{}, ErrChunkSize, poison400},
		{"too many headers", "GET /bad HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", Limits{MaxHeaderCount: 2}, ErrTooManyHeaders, poison431},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewGuardConn(newScript(goodReq+tc.bad+smuggled), tc.lim)
			out, err := drain(g, 4096)
			if tc.want.Status == 431 {
				if err == nil || !strings.HasPrefix(string(out), goodReq+poison431+"aaaa") {
					t.Fatalf("got %q..., %v", out[:min(len(out), 80)], err)
				}
			} else if err != io.EOF || string(out) != goodReq+tc.poison {
				t.Fatalf("got %q, %v", out, err)
			}
			if g.Violation() != tc.want || g.Validated() != int64(len(goodReq)) {
				t.Fatalf("violation %v, validated %d", g.Violation(), g.Validated())
			}
			if tc.want.Status == 431 {
				return // the 431 poison goes on until net/http's header limit
			}
			if n, err := g.Read(make([]byte, 10)); n != 0 || err != io.EOF {
				t.Fatalf("after the poison: %d, %v", n, err)
			}
		})
	}
}

func TestGuardContinuesDeliveredHead(t *testing.T) {
	// The start of the bad head was delivered in an earlier read: the poison continues it.
	g := NewGuardConn(newScript(goodReq+"GET /bad HTTP/1.1\r\nHo", "st: a\r\nX: \x00\r\n\r\n"+smuggled), Limits{})
	out, err := drain(g, 4096)
	want := goodReq + "GET /bad HTTP/1.1\r\nHo" + "st: a\r\nX: " + poison400
	if err != io.EOF || string(out) != want || g.Violation() != ErrHeaderValue {
		t.Fatalf("got %q, %v, %v", out, err, g.Violation())
	}

	// 501 at the end of a delivered head: the CR that may end it is held, so the poison
	// starts on a line of its own.
	g = NewGuardConn(newScript("POST /bad HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r", "\n"+smuggled), Limits{})
	out, err = drain(g, 4096)
	want = "POST /bad HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n" + poison501Cont
	if err != io.EOF || string(out) != want || g.Violation() != ErrUnsupportedTE {
		t.Fatalf("got %q, %v, %v", out, err, g.Violation())
	}
}

func TestGuardHoldsFinalCR(t *testing.T) {
	g := NewGuardConn(newScript("GET / HTTP/1.1\r\nHost: a\r\n\r", "\n"), Limits{})
	buf := make([]byte, 4096)
	n, err := g.Read(buf)
	if err != nil || string(buf[:n]) != "GET / HTTP/1.1\r\nHost: a\r\n" {
		t.Fatalf("first read %q, %v", buf[:n], err)
	}
	n, err = g.Read(buf)
	if err != nil || string(buf[:n]) != "\r\n" {
		t.Fatalf("second read %q, %v", buf[:n], err)
	}
	// A lone CR then EOF: the CR is never delivered.
	g = NewGuardConn(newScript("GET / HTTP/1.1\r\n\r"), Limits{})
	out, err := drain(g, 4096)
	if err != io.EOF || string(out) != "GET / HTTP/1.1\r\n" {
		t.Fatalf("got %q, %v", out, err)
	}
}

func TestGuardBodyViolationAfterHead(t *testing.T) {
	head := "POST /slow HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
	g := NewGuardConn(newScript(head, "5\r\nhello\r\n", "3\r\nabcX\r\n0\r\n\r\n"+smuggled), Limits{})
	out, err := drain(g, 4096)
	if err != ErrChunkData || string(out) != head+"5\r\nhello\r\n3\r\nabc" {
		t.Fatalf("got %q, %v", out, err)
	}
	if e, ok := IsViolation(err); !ok || e.Status != 400 {
		t.Fatalf("IsViolation(%v) = %v, %v", err, e, ok)
	}
	var ne net.Error
	if errors.As(err, &ne) {
		t.Fatal("a violation must not look like a network error to net/http")
	}
	if _, err := g.Read(make([]byte, 10)); err != ErrChunkData {
		t.Fatalf("not sticky: %v", err)
	}
}

func TestGuardBodyViolationWithEndOfHead(t *testing.T) {
	// The start of the head was delivered, but its end is in the read with the bad chunk:
	// net/http does not have the whole head, so it gets a poison instead of a failing body.
	bad := "POST /bad HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n"
	head := "POST /bad HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
	for _, cut := range []int{5, 20, len(head), len(head) + 1} {
		g := NewGuardConn(cutScript(bad, cut), Limits{})
		out, err := drain(g, 4096)
		if err != io.EOF || string(out) != head+poison400 || g.Violation() != ErrChunkSize {
			t.Fatalf("cut %d: %q, %v, %v", cut, out, err, g.Violation())
		}
	}
	// The whole head was in the first read: net/http has it, so its body read fails.
	g := NewGuardConn(cutScript(bad, len(head)+2), Limits{})
	if out, err := drain(g, 4096); err != ErrChunkSize || string(out) != head+"\r\n"+strings.Repeat("f", 16) {
		t.Fatalf("head whole: %q, %v", out, err)
	}
}

func TestGuardFirstReadJudgedWhole(t *testing.T) {
	// net/http's first read is a 14-byte peek for the h2 preface: a request sent in one piece
	// must still be judged in one piece (never "head delivered, body failed").
	bad := "POST /bad HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n"
	g := NewGuardConn(newScript(bad+smuggled), Limits{})
	buf := make([]byte, 14)
	n, err := g.Read(buf)
	if err != nil || string(buf[:n]) != poison400[:min(14, len(poison400))] {
		t.Fatalf("first read %q, %v", buf[:n], err)
	}
	// A good request is delivered in pieces of 14, then the rest in one read.
	g = NewGuardConn(newScript(postReq+goodReq), Limits{})
	out := make([]byte, 0, 256)
	n, _ = g.Read(buf)
	out = append(out, buf[:n]...)
	big := make([]byte, 4096)
	n, _ = g.Read(big)
	out = append(out, big[:n]...)
	if string(out) != postReq+goodReq || g.start != nil {
		t.Fatalf("got %q; start buffer released: %v", out, g.start == nil)
	}
}

func TestGuardH2Preface(t *testing.T) {
	frames := "\x00\x00\x00\x04\x00\x00\x00\x00\x00GET / HTTP/1.1 anything\x00"
	for _, cuts := range [][]int{nil, {1}, {3, 10, 23}, {24}, {5, 30}} {
		g := NewGuardConn(cutScript(h2Preface+frames, cuts...), Limits{})
		out, err := drain(g, 14) // net/http's first read is at most 14 bytes
		if err != io.EOF || string(out) != h2Preface+frames {
			t.Fatalf("cuts %v: %q, %v", cuts, out, err)
		}
	}
	// Almost a preface: parsed as HTTP/1.1 and refused.
	g := NewGuardConn(cutScript("PRI * HTTP/2.0\r\n\r\nSX\r\n\r\n", 3, 20), Limits{})
	if out, err := drain(g, 4096); err != io.EOF || string(out) != poison400 || g.Violation() != ErrInvalidURL {
		t.Fatalf("near preface: %q, %v, %v", out, err, g.Violation())
	}
	// The preface later on a connection is an invalid request.
	g = NewGuardConn(newScript(goodReq+h2Preface), Limits{})
	if out, err := drain(g, 4096); err != io.EOF || string(out) != goodReq+poison400 {
		t.Fatalf("preface after a request: %q, %v", out, err)
	}
}

func TestGuardUpgradeWaitsForHijack(t *testing.T) {
	early := "\x81\x05hello"
	g := NewGuardConn(newScript(upgradeRq+early, "more"), Limits{})
	buf := make([]byte, 4096)
	n, err := g.Read(buf)
	if err != nil || string(buf[:n]) != upgradeRq {
		t.Fatalf("head: %q, %v", buf[:n], err)
	}
	for i := 0; i < 3; i++ { // no hijack yet: nothing, without reading
		if n, err := g.Read(buf); n != 0 || err != nil {
			t.Fatalf("before hijack: %d, %v", n, err)
		}
	}
	g.Hijacked()
	out, err := drain(g, 3)
	if err != io.EOF || string(out) != early+"more" {
		t.Fatalf("tunnel: %q, %v", out, err)
	}

	// An upgrade request with a body is validated up to the end of the body.
	g = NewGuardConn(newScript("POST /u HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: x\r\nContent-Length: 3\r\n\r\nabc"+"GARBAGE\x00"), Limits{})
	out, _ = drain(g, 4096)
	if !strings.HasSuffix(string(out), "\r\n\r\nabc") {
		t.Fatalf("upgrade with body: %q", out)
	}
	g.Hijacked()
	if out, err := drain(g, 4096); err != io.EOF || string(out) != "GARBAGE\x00" {
		t.Fatalf("after hijack: %q, %v", out, err)
	}
}

func TestGuardSmallReads(t *testing.T) {
	// net/http's background read asks for one byte while a handler runs.
	// Short reads go through a 64-byte buffer, so the bad head may be partly delivered before
	// its violation is read: the poison then continues it.
	in := goodReq + postReq + clteReq
	g := NewGuardConn(newScript(in), Limits{})
	out, err := drain(g, 1)
	cut := len(out) - len(poison400)
	if err != io.EOF || cut < len(goodReq+postReq) || in[:cut] != string(out[:cut]) || string(out[cut:]) != poison400 {
		t.Fatalf("got %q, %v", out, err)
	}
	if g.Violation() != ErrLengthAndTE {
		t.Fatal(g.Violation())
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestGuardPassesTimeouts(t *testing.T) {
	sc := newScript("GET / HT", "TP/1.1\r\n\r\n")
	sc.errs = []error{nil, timeoutErr{}}
	g := NewGuardConn(sc, Limits{})
	buf := make([]byte, 100)
	if n, err := g.Read(buf); n != 8 || err != nil {
		t.Fatalf("first: %d, %v", n, err)
	}
	if _, err := g.Read(buf); err != (timeoutErr{}) {
		t.Fatalf("timeout not passed through: %v", err)
	}
	if n, err := g.Read(buf); n != 10 || err != nil {
		t.Fatalf("after timeout: %d, %v", n, err)
	}
}

func TestGuardCloseLingersAfterViolation(t *testing.T) {
	sc := newScript(clteReq)
	g := NewGuardConn(sc, Limits{})
	drain(g, 4096)
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	sc.mu.Lock()
	half := sc.halfCls
	sc.mu.Unlock()
	if !half {
		t.Fatal("no half-close before closing a rejected connection")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		sc.mu.Lock()
		closed := sc.closed
		sc.mu.Unlock()
		if closed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("not closed after draining")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestGuardReadNoAllocs(t *testing.T) {
	in := []byte(goodReq + postReq + chunkReq)
	sc := &scriptConn{}
	g := NewGuardConn(sc, Limits{})
	buf := make([]byte, 4096)
	var script [1][]byte
	allocs := testing.AllocsPerRun(100, func() {
		script[0] = in
		sc.chunks = script[:]
		if n, err := g.Read(buf); n != len(in) || err != nil {
			t.Fatal(n, err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per read", allocs)
	}
}
