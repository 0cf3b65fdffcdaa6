package h1

import (
	"bytes"
	"fmt"
	"io"
	"math/rand"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/strait-mesh/strait/proxy/httpmsg"
)

// review6Body is n bytes that show where each byte came from (a shifted copy shows).
func review6Body(n int, tag byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = "0123456789abcdefghijklmnopqrstuv"[(i/7+int(tag))%32]
	}
	return b
}

// review6Handler answers by the request's path; each case writes bodies of 512 bytes or more
// (the vectored path) in another way: framing by the codec, by the handler, with Content-Length
// mismatches, after Flush, held then flushed, to HEAD, 204, 304, after 1xx, hijacked.
var review6Handler = HandlerFunc(func(w *ResponseWriter, r *httpmsg.Request) {
	path := r.PathString()
	name, arg, _ := strings.Cut(path[1:], "/")
	n, _ := strconv.Atoi(arg)
	switch name {
	case "cl": // Content-Length, one write
		w.Header().Set("Content-Length", strconv.Itoa(n))
		w.Write(review6Body(n, 1))
	case "clshort": // declared n, writes n-100: the connection closes after it
		w.Header().Set("Content-Length", strconv.Itoa(n))
		w.Write(review6Body(n-100, 2))
	case "cllong": // declared n, writes n+100 in one write: refused
		w.Header().Set("Content-Length", strconv.Itoa(n))
		if _, err := w.Write(review6Body(n+100, 3)); err == nil {
			panic("a write longer than Content-Length was taken")
		}
		w.Write(review6Body(n, 3))
	case "cllong2": // declared n, writes n-10 then 600: the second refused
		w.Header().Set("Content-Length", strconv.Itoa(n))
		w.Write(review6Body(n-10, 4))
		w.Write(review6Body(600, 4))
	case "held": // held, the codec counts
		w.Write(review6Body(n, 5))
	case "heldmany": // held writes then larger ones: chunked (or to close for HTTP/1.0)
		for i := 0; i < 4; i++ {
			w.Write(review6Body(n, byte(6+i)))
		}
	case "flush": // held, Flush, then more
		w.Write(review6Body(n, 10))
		w.Flush()
		w.Write(review6Body(n, 11))
	case "clflush": // Content-Length, Flush between writes
		w.Header().Set("Content-Length", strconv.Itoa(3*n))
		w.Write(review6Body(n, 12))
		w.Flush()
		w.Write(review6Body(n, 13))
		w.Flush()
		w.Write(review6Body(n, 14))
	case "small-big": // a small write buffered, then a large one vectored
		w.Header().Set("Content-Length", strconv.Itoa(100+n))
		w.Write(review6Body(100, 15))
		w.Write(review6Body(n, 16))
	case "status": // 204, 304, ... with a body written
		w.WriteHeader(n)
		w.Write(review6Body(1024, 17))
	case "early": // 103 then a body
		w.Header().Set("Link", "</a.css>; rel=preload")
		w.WriteHeader(103)
		w.Header().Del("Link")
		w.Header().Set("Content-Length", strconv.Itoa(n))
		w.Write(review6Body(n, 18))
	case "trailer": // chunked with trailers
		w.Header().Set("Trailer", "x-t")
		w.Write(review6Body(n, 19))
		w.Trailer().Set("x-t", "v")
	case "readfirst": // reads the body (100-continue), then answers
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Length", strconv.Itoa(len(b)+n))
		w.Write(b)
		w.Write(review6Body(n, 20))
	case "writefirst": // answers before reading the body
		w.Header().Set("Content-Length", strconv.Itoa(n))
		w.Write(review6Body(n, 21))
		io.ReadAll(r.Body)
	case "hijack": // writes, then takes the connection over
		w.WriteHeader(101)
		w.Write(review6Body(n, 22))
		nc, rest, err := w.Hijack()
		if err != nil {
			panic(err)
		}
		nc.Write([]byte("rest:" + strconv.Itoa(len(rest)) + "\n"))
		nc.Write(review6Body(n, 23))
		nc.Close()
	case "hijack200": // a 200 whose head and body are written, then hijacked
		w.Header().Set("Content-Length", strconv.Itoa(n))
		w.Write(review6Body(n, 24))
		nc, _, err := w.Hijack()
		if err != nil {
			panic(err)
		}
		nc.Write([]byte("after"))
		nc.Close()
	default:
		w.WriteHeader(404)
	}
})

// review6Cases are the request streams each served connection gets (all sent at once, then
// the client's half-close).
var review6Cases = []struct{ name, req string }{
	{"cl", "GET /cl/1024 HTTP/1.1\r\nHost: a\r\n\r\n"},
	{"cl-512", "GET /cl/512 HTTP/1.1\r\nHost: a\r\n\r\n"},
	{"cl-511", "GET /cl/511 HTTP/1.1\r\nHost: a\r\n\r\n"},
	{"cl-big", "GET /cl/300000 HTTP/1.1\r\nHost: a\r\n\r\n"},
	{"clshort", "GET /clshort/2000 HTTP/1.1\r\nHost: a\r\n\r\nGET /cl/600 HTTP/1.1\r\nHost: a\r\n\r\n"},
	{"cllong", "GET /cllong/1000 HTTP/1.1\r\nHost: a\r\n\r\nGET /cl/600 HTTP/1.1\r\nHost: a\r\n\r\n"},
	{"cllong2", "GET /cllong2/1000 HTTP/1.1\r\nHost: a\r\n\r\nGET /cl/600 HTTP/1.1\r\nHost: a\r\n\r\n"},
	{"held", "GET /held/1024 HTTP/1.1\r\nHost: a\r\n\r\n"},
	{"held-4096", "GET /held/4096 HTTP/1.1\r\nHost: a\r\n\r\n"},
	{"held-4097", "GET /held/4097 HTTP/1.1\r\nHost: a\r\n\r\n"},
	{"heldmany", "GET /heldmany/1500 HTTP/1.1\r\nHost: a\r\n\r\n"},
	{"heldmany-10", "GET /heldmany/1500 HTTP/1.0\r\nHost: a\r\n\r\n"},
	{"held-10", "GET /held/1024 HTTP/1.0\r\nHost: a\r\n\r\n"},
	{"held-10-ka", "GET /held/1024 HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\nGET /cl/700 HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n"},
	{"held-10-big", "GET /held/9000 HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n"},
	{"flush", "GET /flush/1024 HTTP/1.1\r\nHost: a\r\n\r\n"},
	{"flush-small", "GET /flush/300 HTTP/1.1\r\nHost: a\r\n\r\n"},
	{"flush-10", "GET /flush/1024 HTTP/1.0\r\nHost: a\r\n\r\n"},
	{"clflush", "GET /clflush/700 HTTP/1.1\r\nHost: a\r\n\r\n"},
	{"small-big", "GET /small-big/5000 HTTP/1.1\r\nHost: a\r\n\r\n"},
	{"head-cl", "HEAD /cl/1024 HTTP/1.1\r\nHost: a\r\n\r\nHEAD /held/2000 HTTP/1.1\r\nHost: a\r\n\r\nHEAD /heldmany/3000 HTTP/1.1\r\nHost: a\r\n\r\n"},
	{"204", "GET /status/204 HTTP/1.1\r\nHost: a\r\n\r\nGET /cl/600 HTTP/1.1\r\nHost: a\r\n\r\n"},
	{"304", "GET /status/304 HTTP/1.1\r\nHost: a\r\n\r\nGET /cl/600 HTTP/1.1\r\nHost: a\r\n\r\n"},
	{"201", "GET /status/201 HTTP/1.1\r\nHost: a\r\n\r\n"},
	{"early", "GET /early/2048 HTTP/1.1\r\nHost: a\r\n\r\n"},
	{"trailer", "GET /trailer/1024 HTTP/1.1\r\nHost: a\r\n\r\n"},
	{"continue-read", "POST /readfirst/1024 HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 700\r\n\r\n" + string(review6Body(700, 30))},
	{"continue-write", "POST /writefirst/1024 HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 700\r\n\r\n" + string(review6Body(700, 31)) + "GET /cl/600 HTTP/1.1\r\nHost: a\r\n\r\n"},
	{"post-unread", "POST /cl/2048 HTTP/1.1\r\nHost: a\r\nContent-Length: 700\r\n\r\n" + string(review6Body(700, 32)) + "GET /cl/600 HTTP/1.1\r\nHost: a\r\n\r\n"},
	{"pipelined", strings.Repeat("GET /cl/1024 HTTP/1.1\r\nHost: a\r\n\r\nGET /held/800 HTTP/1.1\r\nHost: a\r\n\r\nGET /cl/10 HTTP/1.1\r\nHost: a\r\n\r\n", 3)},
	{"hijack", "GET /hijack/1024 HTTP/1.1\r\nHost: a\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\nextra"},
	{"hijack200", "GET /hijack200/1024 HTTP/1.1\r\nHost: a\r\n\r\n"},
}

// review6Reference serves req on a scripted connection (no vectored write) and returns what
// the server wrote.
func review6Reference(req string) string { return review6ServeWith(review6Handler, req) }

func review6ServeWith(h Handler, req string) string {
	c := newMemConn(req)
	s := &Server{Handler: h}
	s.ServeConn(c)
	return c.output()
}

// review6Socket serves req on a DirectConn (vectored writes) over loopback and returns what
// the client read until the server closed. small: the server's send buffer and the client's
// receive buffer are small and the client reads slowly in small pieces, so that writes go out
// in parts.
func review6Socket(t *testing.T, req string, small bool) string {
	t.Helper()
	return review6SocketWith(t, review6Handler, req, small)
}

func review6SocketWith(t *testing.T, h Handler, req string, small bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		if small {
			c.(*net.TCPConn).SetWriteBuffer(2048)
		}
		d := DirectConn(c)
		if _, ok := d.(VectorWriter); !ok {
			done <- fmt.Errorf("%T is not a VectorWriter", d)
			c.Close()
			return
		}
		s := &Server{Handler: h}
		s.ServeConn(review6Counted{Conn: d, vw: d.(VectorWriter)})
		done <- nil
	}()
	dl := net.Dialer{}
	if small {
		dl.Control = func(network, address string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) {
				syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 2048)
			})
		}
	}
	c, err := dl.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	var out bytes.Buffer
	buf := make([]byte, 32<<10)
	if small {
		buf = buf[:700]
	}
	for reads := 0; ; reads++ {
		n, err := c.Read(buf)
		out.Write(buf[:n])
		if err != nil {
			if err != io.EOF {
				t.Fatalf("client read: %v", err)
			}
			break
		}
		if small && reads%16 == 0 {
			time.Sleep(time.Millisecond) // slow: the server's writes find the window shut
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// review6Counted is a DirectConn whose vectored writes are counted (review6Vectored).
type review6Counted struct {
	net.Conn
	vw VectorWriter
}

var review6Vectored atomic.Int64

func (c review6Counted) WriteVector(a, b []byte) (int, error) {
	review6Vectored.Add(1)
	return c.vw.WriteVector(a, b)
}

// review6Diff describes where a and b first differ.
func review6Diff(a, b string) string {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	lo := max(0, i-60)
	return fmt.Sprintf("lengths %d and %d, first difference at %d:\n  reference %q\n  vectored  %q",
		len(a), len(b), i, a[lo:min(len(a), i+60)], b[lo:min(len(b), i+60)])
}

// TestReview6ServerWireSameAsBuffered: whatever a handler does (Content-Length right, short or
// long, codec framing held or chunked, HTTP/1.0, Flush between writes, HEAD, 204/304, 1xx
// before the body, trailers, 100-continue, pipelined requests, Hijack after writes), the bytes
// a client receives from a server on a DirectConn (whose body writes of 512 bytes or more go
// out as vectored writes) are exactly those the same server writes on a connection without a
// vectored write; also when the client's window is small and it reads slowly, so that the
// vectored writes go out in parts.
func TestReview6ServerWireSameAsBuffered(t *testing.T) {
	review6Vectored.Store(0)
	defer func() {
		if review6Vectored.Load() == 0 {
			t.Error("no vectored write was made: the test does not test the vectored path")
		}
	}()
	for _, small := range []bool{false, true} {
		for _, tc := range review6Cases {
			want := review6Reference(tc.req)
			got := review6Socket(t, tc.req, small)
			if got != want {
				t.Errorf("%s (small window %v): the bytes on the wire differ: %s", tc.name, small, review6Diff(want, got))
			}
		}
	}
}

// review6RandomHandler writes the response its path's seed describes: a random sequence of
// body writes (0 to 6000 bytes), Flushes, with or without a (right, short or long)
// Content-Length.
var review6RandomHandler = HandlerFunc(func(w *ResponseWriter, r *httpmsg.Request) {
	seed, _ := strconv.ParseInt(r.PathString()[1:], 10, 64)
	rng := rand.New(rand.NewSource(seed))
	k := rng.Intn(6)
	sizes := make([]int, k)
	total := 0
	for i := range sizes {
		switch rng.Intn(3) {
		case 0:
			sizes[i] = rng.Intn(512)
		case 1:
			sizes[i] = 512 + rng.Intn(4096)
		default:
			sizes[i] = rng.Intn(6000)
		}
		total += sizes[i]
	}
	switch rng.Intn(4) {
	case 0:
		w.Header().Set("Content-Length", strconv.Itoa(total))
	case 1:
		w.Header().Set("Content-Length", strconv.Itoa(max(0, total-rng.Intn(700))))
	case 2:
		w.Header().Set("Content-Length", strconv.Itoa(total+rng.Intn(700)))
	}
	if rng.Intn(5) == 0 {
		w.WriteHeader(200 + rng.Intn(2)*201) // 200 or 401
	}
	for i, n := range sizes {
		w.Write(review6Body(n, byte(i)))
		if rng.Intn(4) == 0 {
			w.Flush()
		}
	}
})

// TestReview6ServerWireRandom: random handlers (see review6RandomHandler), to HTTP/1.1,
// HTTP/1.0 and HEAD requests, two per connection: a server on a DirectConn sends the same
// bytes as on a connection without a vectored write.
func TestReview6ServerWireRandom(t *testing.T) {
	for seed := 1; seed <= 300; seed++ {
		proto, method := "HTTP/1.1", "GET"
		switch seed % 5 {
		case 1:
			proto = "HTTP/1.0"
		case 2:
			method = "HEAD"
		}
		s := strconv.Itoa(seed)
		req := method + " /" + s + " " + proto + "\r\nHost: a\r\nConnection: keep-alive\r\n\r\n" +
			"GET /" + s + "0 HTTP/1.1\r\nHost: a\r\n\r\n"
		want := review6ServeWith(review6RandomHandler, req)
		got := review6SocketWith(t, review6RandomHandler, req, seed%3 == 0)
		if got != want {
			t.Fatalf("seed %d (%s %s): the bytes differ: %s", seed, method, proto, review6Diff(want, got))
		}
	}
}
