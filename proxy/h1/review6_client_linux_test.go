package h1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strait-mesh/strait/proxy/http1"
	"github.com/strait-mesh/strait/proxy/httpmsg"
)

// review6Capture is an upstream that records the exact bytes of each request it reads (head
// and body), and answers each with "ok".
type review6Capture struct {
	mu   sync.Mutex
	reqs [][]byte
	addr string
}

// tee records what the bufio.Reader takes from the connection.
type review6Tee struct {
	r   io.Reader
	buf *bytes.Buffer
}

func (t review6Tee) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.buf.Write(p[:n])
	return n, err
}

func newReview6Capture(t *testing.T, slow bool) *review6Capture {
	c := &review6Capture{}
	c.addr = listen(t, func(nc net.Conn) {
		defer nc.Close()
		if slow {
			nc.(*net.TCPConn).SetReadBuffer(16 << 10)
		}
		var raw bytes.Buffer
		br := bufio.NewReaderSize(review6Tee{nc, &raw}, 4096)
		if slow {
			br = bufio.NewReaderSize(review6Tee{review6Slow{nc}, &raw}, 16)
		}
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			c.mu.Lock()
			c.reqs = append(c.reqs, append([]byte{}, raw.Bytes()[:raw.Len()-br.Buffered()]...))
			c.mu.Unlock()
			raw.Next(raw.Len() - br.Buffered())
			io.WriteString(nc, "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
		}
	})
	return c
}

// review6Slow reads a few hundred bytes at a time, slowly.
type review6Slow struct{ net.Conn }

var review6SlowReads atomic.Int64

func (s review6Slow) Read(p []byte) (int, error) {
	if len(p) > 1000 {
		p = p[:1000]
	}
	if review6SlowReads.Add(1)%64 == 0 {
		time.Sleep(time.Millisecond)
	}
	return s.Conn.Read(p)
}

func (c *review6Capture) take() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.reqs
	c.reqs = nil
	return r
}

// review6Pools returns a Pool whose connections have no vectored write (the reference) and
// one whose connections are DirectConns (vectored), both to addr; vectored counts the
// latter's vectored writes.
func review6Pools(addr string, sendBuf int) (ref, vec *Pool, vectored *atomic.Int32) {
	vectored = new(atomic.Int32)
	dial := func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		nc, err := d.DialContext(ctx, "tcp", addr)
		if err == nil && sendBuf > 0 {
			nc.(*net.TCPConn).SetWriteBuffer(sendBuf)
		}
		return nc, err
	}
	ref = &Pool{Dial: func(ctx context.Context) (net.Conn, error) {
		nc, err := dial(ctx)
		if err != nil {
			return nil, err
		}
		return struct{ net.Conn }{nc}, nil // no vectored write
	}}
	vec = &Pool{Dial: func(ctx context.Context) (net.Conn, error) {
		nc, err := dial(ctx)
		if err != nil {
			return nil, err
		}
		d := DirectConn(nc)
		return review6Counted2{Conn: d, vw: d.(VectorWriter), n: vectored}, nil
	}}
	return ref, vec, vectored
}

type review6Counted2 struct {
	net.Conn
	vw VectorWriter
	n  *atomic.Int32
}

func (c review6Counted2) WriteVector(a, b []byte) (int, error) {
	c.n.Add(1)
	return c.vw.WriteVector(a, b)
}

// TestReview6ClientWireSameAsBuffered: the bytes an upstream receives for requests with
// in-memory bodies (Content-Length equal to the body, shorter than it, 511 and 512 bytes, a
// body partly read already, a large body to an upstream with a small window that reads
// slowly, the same body sent again after ResetBody as l7's retries do) are exactly those
// the codec sends without a vectored write; a body shorter than its Content-Length sends
// nothing either way.
func TestReview6ClientWireSameAsBuffered(t *testing.T) {
	body := review6Body(256<<10, 7)
	type tc struct {
		name   string
		length int64
		body   []byte
		skip   int // bytes read from the body before the request
		again  bool
	}
	cases := []tc{
		{"equal", 1024, body[:1024], 0, false},
		{"longer body", 1024, body[:3000], 0, false},
		{"512", 512, body[:512], 0, false},
		{"511", 511, body[:511], 0, false},
		{"partly read", 1000, body[:1500], 300, false},
		{"again", 2048, body[:2048], 0, true},
		{"16 KiB+", 20000, body[:20000], 0, false},
		{"256 KiB", 256 << 10, body, 0, false},
	}
	for _, slow := range []bool{false, true} {
		up := newReview6Capture(t, slow)
		sendBuf := 0
		if slow {
			sendBuf = 16 << 10
		}
		ref, vec, vectored := review6Pools(up.addr, sendBuf)
		defer ref.Close()
		defer vec.Close()
		send := func(p *Pool, c tc) [][]byte {
			t.Helper()
			req := newRequest("POST", "/u?x=1", "", c.length)
			req.Header.Add("x-test", "v")
			bb := httpmsg.NewBytesBody(c.body)
			if c.skip > 0 {
				bb.Read(make([]byte, c.skip))
			}
			req.Body = bb
			roundTrip(t, p, req)
			if c.again {
				bb.ResetBody(c.body)
				roundTrip(t, p, req)
			}
			return up.take()
		}
		for _, c := range cases {
			vectored.Store(0)
			want, got := send(ref, c), send(vec, c)
			if len(want) != len(got) {
				t.Fatalf("%s (slow %v): %d requests, want %d", c.name, slow, len(got), len(want))
			}
			for i := range want {
				if !bytes.Equal(want[i], got[i]) {
					t.Errorf("%s (slow %v): request %d differs: %s", c.name, slow, i, review6Diff(string(want[i]), string(got[i])))
				}
			}
			if c.length >= vectorMin && vectored.Load() == 0 {
				t.Errorf("%s (slow %v): no vectored write", c.name, slow)
			}
		}
		// A body shorter than its Content-Length: refused, nothing sent.
		for _, p := range []*Pool{ref, vec} {
			req := newRequest("POST", "/", "", 2000)
			req.Body = httpmsg.NewBytesBody(body[:1500])
			if err := p.RoundTrip(context.Background(), req, new(httpmsg.Response)); !errors.Is(err, ErrContentLength) {
				t.Errorf("body shorter than its Content-Length: %v", err)
			}
		}
		time.Sleep(20 * time.Millisecond)
		if r := up.take(); len(r) != 0 {
			t.Errorf("a body shorter than its Content-Length sent %d requests", len(r))
		}
	}
}

// TestReview6ClientVectoredWriteFailsNotReused: a vectored request write that fails part way
// (the exchange's deadline passes while the upstream reads nothing; the upstream resets the
// connection) fails RoundTrip with the socket's error and the connection is not reused: the
// next request goes on a new connection, and gets through.
func TestReview6ClientVectoredWriteFailsNotReused(t *testing.T) {
	var conns atomic.Int32
	var mode atomic.Int32 // 0: serve; 1: read nothing; 2: reset after the head
	addr := listen(t, func(nc net.Conn) {
		conns.Add(1)
		defer nc.Close()
		nc.(*net.TCPConn).SetReadBuffer(64 << 10)
		br := bufio.NewReader(nc)
		for {
			req, err := http.ReadRequest(br) // the head (and what came with it)
			if err != nil {
				return
			}
			switch mode.Load() {
			case 1:
				time.Sleep(2 * time.Second)
				return
			case 2:
				nc.(*net.TCPConn).SetLinger(0)
				return
			}
			n, _ := io.Copy(io.Discard, req.Body)
			io.WriteString(nc, "HTTP/1.1 200 OK\r\ncontent-length: "+strconv.Itoa(len(strconv.FormatInt(n, 10)))+"\r\n\r\n"+strconv.FormatInt(n, 10))
		}
	})
	_, p, vectored := review6Pools(addr, 64<<10)
	defer p.Close()
	body := review6Body(4<<20, 9)
	post := func(ctx context.Context) error {
		req := newRequest("POST", "/", "", int64(len(body)))
		req.Body = httpmsg.NewBytesBody(body)
		resp := new(httpmsg.Response)
		err := p.RoundTrip(ctx, req, resp)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != strconv.Itoa(len(body)) {
				err = errors.New("upstream read " + string(b) + " bytes")
			}
		}
		return err
	}
	if err := post(context.Background()); err != nil {
		t.Fatal(err)
	}
	if vectored.Load() == 0 {
		t.Fatal("no vectored write")
	}
	if p.Idle() != 1 {
		t.Fatalf("%d idle connections after a good exchange", p.Idle())
	}

	mode.Store(1)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	err := post(ctx)
	cancel()
	if err == nil || !(errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded)) {
		t.Errorf("request write past the exchange's deadline: %v", err)
	}
	if p.Idle() != 0 {
		t.Errorf("%d idle connections after a failed vectored write", p.Idle())
	}

	mode.Store(2)
	err = post(context.Background())
	if err == nil {
		t.Errorf("request written to an upstream that reset: no error")
	}
	if p.Idle() != 0 {
		t.Errorf("%d idle connections after a vectored write to a reset connection", p.Idle())
	}

	mode.Store(0)
	before := conns.Load()
	if err := post(context.Background()); err != nil {
		t.Fatalf("after the failures: %v", err)
	}
	if conns.Load() != before+1 {
		t.Errorf("the request after the failures used %d new connections, want 1", conns.Load()-before)
	}
}

// TestReview6ConnVectoredBodyDone: a Conn (duplex) writes an in-memory body of 512 bytes up
// to 16 KiB with its head in one vectored write, marks it done (its owner may reuse the
// bytes), and the upstream got exactly the bytes the body held when RoundTrip was called,
// also when the caller overwrites them right after; larger ones go from the writer
// goroutine, not marked done.
func TestReview6ConnVectoredBodyDone(t *testing.T) {
	up := newReview6Capture(t, false)
	nc, err := net.Dial("tcp", up.addr)
	if err != nil {
		t.Fatal(err)
	}
	d := DirectConn(nc)
	var vectored atomic.Int32
	var reusable []bool
	c := NewConn(review6Counted2{Conn: d, vw: d.(VectorWriter), n: &vectored}, http1.Limits{}, func(r bool) { reusable = append(reusable, r) })
	defer c.Close()
	for _, n := range []int{512, 4096, maxInMemoryWrite, maxInMemoryWrite + 1} {
		vectored.Store(0)
		buf := review6Body(n, 11)
		want := append([]byte{}, buf...)
		req := newRequest("PUT", "/c", "", int64(n))
		bb := httpmsg.NewBytesBody(buf)
		req.Body = bb
		resp := new(httpmsg.Response)
		if err := c.RoundTrip(context.Background(), req, resp); err != nil {
			t.Fatal(err)
		}
		if bb.Done() {
			for i := range buf {
				buf[i] = 'Z' // the owner reuses the bytes
			}
		}
		io.ReadAll(resp.Body)
		resp.Body.Close()
		got := up.take()
		if len(got) != 1 || !bytes.HasSuffix(got[0], want) {
			t.Errorf("%d bytes: the upstream did not get the body's bytes", n)
		}
		inMem := n <= maxInMemoryWrite
		if bb.Done() != inMem {
			t.Errorf("%d bytes: done %v", n, bb.Done())
		}
		if (vectored.Load() == 1) != inMem {
			t.Errorf("%d bytes: %d vectored writes", n, vectored.Load())
		}
	}
	// The last exchange's body (not in memory) is written by a goroutine of its own: when the
	// response ends before that writer reported its end, the connection is closed rather than
	// kept (release: "a writer still at work"), by design; only the others must be reusable.
	for i, r := range reusable[:len(reusable)-1] {
		if !r {
			t.Errorf("exchange %d ended not reusable", i)
		}
	}
}
