package h1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strait-mesh/strait/proxy/http1"
	"github.com/strait-mesh/strait/proxy/httpmsg"
)

// memConn is a connection whose reads come from a script (one chunk per Read) and whose
// writes are recorded.
type memConn struct {
	mu     sync.Mutex
	chunks []string
	out    bytes.Buffer
	closed bool
}

func newMemConn(chunks ...string) *memConn { return &memConn{chunks: chunks} }

func (c *memConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.chunks) > 0 && c.chunks[0] == "" {
		c.chunks = c.chunks[1:]
	}
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	c.chunks[0] = c.chunks[0][n:]
	return n, nil
}

func (c *memConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.Write(p)
}

func (c *memConn) output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.String()
}

func (c *memConn) Close() error                       { c.closed = true; return nil }
func (c *memConn) LocalAddr() net.Addr                { return &net.TCPAddr{} }
func (c *memConn) RemoteAddr() net.Addr               { return &net.TCPAddr{} }
func (c *memConn) SetDeadline(t time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(t time.Time) error { return nil }

// echo answers with the method, path, authority, the X-Test field, the body and the trailers.
var echo = HandlerFunc(func(w *ResponseWriter, r *httpmsg.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		w.Header().Set("connection", "close")
		w.WriteHeader(400)
		return
	}
	w.Header().Set("x-echo", r.Method+" "+r.PathString()+" "+r.AuthorityString()+" "+r.Header.Get("x-test"))
	if r.Trailer.Len() > 0 {
		w.Header().Set("x-trailer", r.Trailer.Get("t"))
	}
	w.Write(body)
})

// serve serves a scripted connection and returns what the server wrote.
func serve(t *testing.T, s *Server, chunks ...string) (string, error) {
	t.Helper()
	if s.Handler == nil {
		s.Handler = echo
	}
	c := newMemConn(chunks...)
	err := s.ServeConn(c)
	if !c.closed {
		t.Errorf("connection not closed")
	}
	return c.output(), err
}

type resp struct {
	status  int
	header  http.Header
	body    string
	trailer http.Header
	close   bool
}

// readResponses parses what a server wrote with net/http's client parser.
func readResponses(t *testing.T, out string, methods ...string) []resp {
	t.Helper()
	br := bufio.NewReader(strings.NewReader(out))
	var rs []resp
	for i := 0; ; i++ {
		if _, err := br.Peek(1); err != nil {
			return rs
		}
		req := &http.Request{Method: "GET"}
		if i < len(methods) {
			req.Method = methods[i]
		}
		r, err := http.ReadResponse(br, req)
		if err != nil {
			t.Fatalf("response %d: %v in %q", i, err, out)
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Fatalf("response %d body: %v in %q", i, err, out)
		}
		rs = append(rs, resp{r.StatusCode, r.Header, string(b), r.Trailer, r.Close})
	}
}

func TestServeKeepAlivePipelined(t *testing.T) {
	in := "GET /a HTTP/1.1\r\nHost: h\r\nX-Test: 1\r\n\r\n" +
		"POST /b?q HTTP/1.1\r\nHost: h2\r\nContent-Length: 5\r\n\r\nhello" +
		"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: tv\r\n\r\n" +
		"GET http://abs.example:81?z HTTP/1.1\r\nHost: ignored\r\nConnection: close\r\n\r\n" +
		"GET /never HTTP/1.1\r\nHost: h\r\n\r\n"
	// Whole, and cut into small pieces.
	var pieces []string
	for i := 0; i < len(in); i += 7 {
		pieces = append(pieces, in[i:min(i+7, len(in))])
	}
	for _, chunks := range [][]string{{in}, pieces} {
		out, err := serve(t, &Server{}, chunks...)
		if err != nil {
			t.Fatal(err)
		}
		rs := readResponses(t, out)
		want := []struct{ echo, body string }{
			{"GET /a h 1", ""}, {"POST /b?q h2", "hello"}, {"POST /c h", "abcde"}, {"GET /?z abs.example:81", ""},
		}
		if len(rs) != len(want) {
			t.Fatalf("%d responses, want %d: %q", len(rs), len(want), out)
		}
		for i, w := range want {
			if rs[i].status != 200 || rs[i].header.Get("X-Echo") != w.echo || rs[i].body != w.body {
				t.Errorf("response %d: %d %q %q, want %q %q", i, rs[i].status, rs[i].header.Get("X-Echo"), rs[i].body, w.echo, w.body)
			}
			if rs[i].header.Get("Content-Length") == "" {
				t.Errorf("response %d: no Content-Length for a short body", i)
			}
		}
		if rs[2].header.Get("X-Trailer") != "tv" {
			t.Errorf("trailer not seen: %v", rs[2].header)
		}
		if !rs[3].close {
			t.Errorf("Connection: close not answered")
		}
	}
}

func TestServeRejects(t *testing.T) {
	cases := []struct {
		in     string
		status int
		err    *http1.Error
	}{
		{"GET / HTTP/1.1\nHost: h\n\n", 400, http1.ErrBareLF},
		{"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400, http1.ErrLengthAndTE},
		{"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 501, http1.ErrUnsupportedTE},
		{"GET / HTTP/1.1\r\nHost: h\r\nX: " + strings.Repeat("a", 70<<10) + "\r\n\r\n", 431, http1.ErrHeadersTooLarge},
		{"GET / HTTP/1.1\r\n\r\n", 400, ErrMissingHost},
		{"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400, ErrInvalidAuthority},
		{"GET http://u@h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400, ErrInvalidAuthority},
	}
	for _, tc := range cases {
		var rejected *http1.Error
		out, err := serve(t, &Server{OnReject: func(e *http1.Error) { rejected = e }}, tc.in)
		if !errors.Is(err, tc.err) || rejected != tc.err {
			t.Errorf("%.40q: error %v (hook %v), want %v", tc.in, err, rejected, tc.err)
		}
		rs := readResponses(t, out)
		if len(rs) != 1 || rs[0].status != tc.status || !rs[0].close {
			t.Errorf("%.40q: responses %+v, want one %d with close", tc.in, rs, tc.status)
		}
	}
	// A request after a good one: the good one is answered first.
	out, _ := serve(t, &Server{}, "GET /ok HTTP/1.1\r\nHost: h\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\nHost: h\r\n\r\n")
	if rs := readResponses(t, out); len(rs) != 2 || rs[0].status != 200 || rs[1].status != 400 {
		t.Errorf("pipelined good then bad: %q", out)
	}
	// A bad chunked body after its head: the handler's read fails, the connection closes.
	out, _ = serve(t, &Server{}, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	if rs := readResponses(t, out); len(rs) != 1 || rs[0].status != 400 || !rs[0].close {
		t.Errorf("bad chunked body: %q", out)
	}
}

func TestServeResponseFraming(t *testing.T) {
	big := strings.Repeat("x", 10000)
	h := HandlerFunc(func(w *ResponseWriter, r *httpmsg.Request) {
		switch r.PathString() {
		case "/big":
			w.WriteString(big)
		case "/flush":
			w.WriteString("a")
			w.Flush()
			w.WriteString("b")
		case "/trailer":
			w.Trailer().Set("grpc-status", "0")
			w.WriteString("t")
		case "/cl":
			w.Header().Set("Content-Length", "3")
			w.WriteString("abc")
		case "/short":
			w.Header().Set("Content-Length", "3")
			w.WriteString("ab")
		case "/204":
			w.WriteHeader(204)
			if _, err := w.WriteString("x"); err != ErrBodyNotAllowed {
				t.Errorf("body on 204: %v", err)
			}
		case "/bad":
			w.Header().Add("x", "a\r\nInjected: 1")
			w.WriteString("x")
		}
	})
	s := &Server{Handler: h}
	req := func(path string) string { return "GET " + path + " HTTP/1.1\r\nHost: h\r\n\r\n" }
	out, err := serve(t, s, req("/big")+req("/flush")+req("/trailer")+req("/cl")+"HEAD /big HTTP/1.1\r\nHost: h\r\n\r\n"+req("/204"))
	if err != nil {
		t.Fatal(err)
	}
	rs := readResponses(t, out, "GET", "GET", "GET", "GET", "HEAD")
	if len(rs) != 6 {
		t.Fatalf("%d responses: %.300q", len(rs), out)
	}
	if rs[0].body != big || rs[0].header.Get("Content-Length") != "" {
		t.Errorf("big body: %d bytes, CL %q", len(rs[0].body), rs[0].header.Get("Content-Length"))
	}
	if rs[1].body != "ab" {
		t.Errorf("flushed body %q", rs[1].body)
	}
	if rs[2].body != "t" || rs[2].trailer.Get("Grpc-Status") != "0" {
		t.Errorf("trailers: %q %v", rs[2].body, rs[2].trailer)
	}
	if rs[3].body != "abc" || rs[3].header.Get("Content-Length") != "3" {
		t.Errorf("declared length: %q %v", rs[3].body, rs[3].header)
	}
	if rs[4].body != "" || rs[4].header.Get("Content-Length") != "10000" {
		t.Errorf("HEAD: %q %v", rs[4].body, rs[4].header)
	}
	if rs[5].status != 204 || rs[5].header.Get("Content-Length") != "" {
		t.Errorf("204: %+v", rs[5])
	}
	// A body shorter than its Content-Length: the connection closes after it.
	out, _ = serve(t, s, req("/short")+req("/after-short"))
	if out != "HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nab" {
		t.Errorf("short body: %q", out)
	}
	// A field with CR LF is never written.
	out, err = serve(t, s, req("/bad"))
	if err == nil || strings.Contains(out, "Injected") {
		t.Errorf("invalid field: err %v, wrote %q", err, out)
	}
}

func TestServeHTTP10(t *testing.T) {
	h := HandlerFunc(func(w *ResponseWriter, r *httpmsg.Request) {
		w.Flush() // no length known: HTTP/1.0 ends the body by closing
		w.WriteString("ten")
	})
	out, _ := serve(t, &Server{Handler: h}, "GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\n\r\n")
	if rs := readResponses(t, out); len(rs) != 1 || rs[0].body != "ten" || !rs[0].close {
		t.Errorf("HTTP/1.0 close-delimited: %q", out)
	}
	out, _ = serve(t, &Server{}, "GET /1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.0\r\n\r\nGET /3 HTTP/1.0\r\n\r\n")
	rs := readResponses(t, out)
	if len(rs) != 2 || rs[0].close || !rs[1].close {
		t.Errorf("HTTP/1.0 keep-alive: %q", out)
	}
}

func TestServeExpectContinue(t *testing.T) {
	out, _ := serve(t, &Server{}, "POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n", "ok")
	if !strings.HasPrefix(out, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n") || !strings.HasSuffix(out, "\r\n\r\nok") {
		t.Errorf("100-continue: %q", out)
	}
	// Answered without reading the body: no 100, and the connection closes.
	h := HandlerFunc(func(w *ResponseWriter, r *httpmsg.Request) { w.WriteHeader(413) })
	out, _ = serve(t, &Server{Handler: h}, "POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n", "okGET / HTTP/1.1\r\nHost: h\r\n\r\n")
	if rs := readResponses(t, out); len(rs) != 1 || rs[0].status != 413 || !rs[0].close {
		t.Errorf("early answer: %q", out)
	}
}

func TestServeUnreadBodyDrained(t *testing.T) {
	h := HandlerFunc(func(w *ResponseWriter, r *httpmsg.Request) { w.WriteString(r.PathString()) })
	out, _ := serve(t, &Server{Handler: h}, "POST /1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
		"POST /2 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\nGET /3 HTTP/1.1\r\nHost: h\r\n\r\n")
	rs := readResponses(t, out)
	if len(rs) != 3 || rs[2].body != "/3" {
		t.Errorf("unread bodies: %q", out)
	}
	out, _ = serve(t, &Server{Handler: h, MaxDrain: 10}, "POST /1 HTTP/1.1\r\nHost: h\r\nContent-Length: 10000\r\n\r\n", strings.Repeat("a", 10000), "GET /2 HTTP/1.1\r\nHost: h\r\n\r\n")
	if rs := readResponses(t, out); len(rs) != 1 {
		t.Errorf("body over MaxDrain: %q", out)
	}
}

func TestServeHijack(t *testing.T) {
	var got []byte
	h := HandlerFunc(func(w *ResponseWriter, r *httpmsg.Request) {
		w.Header().Set("Connection", "Upgrade")
		w.Header().Set("Upgrade", "websocket")
		w.WriteHeader(101)
		nc, rest, err := w.Hijack()
		if err != nil {
			t.Fatal(err)
		}
		tail, _ := io.ReadAll(nc)
		got = append(rest, tail...)
		nc.Write([]byte("pong"))
	})
	c := newMemConn("GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nping", "GET / HTTP/1.1\r\n")
	if err := (&Server{Handler: h}).ServeConn(c); err != nil {
		t.Fatal(err)
	}
	if c.closed || string(got) != "pingGET / HTTP/1.1\r\n" || !strings.HasSuffix(c.output(), "\r\n\r\npong") || !strings.HasPrefix(c.output(), "HTTP/1.1 101 Switching Protocols\r\n") {
		t.Errorf("hijack: closed %v, tunnel got %q, wrote %q", c.closed, got, c.output())
	}
	// An upgrade the handler does not take closes the connection after the answer.
	out, _ := serve(t, &Server{}, "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n")
	if rs := readResponses(t, out); len(rs) != 1 || !rs[0].close {
		t.Errorf("refused upgrade: %q", out)
	}
}

func TestServeHandlerPanicAborts(t *testing.T) {
	h := HandlerFunc(func(w *ResponseWriter, r *httpmsg.Request) {
		w.WriteString("partial")
		panic("abort")
	})
	out, err := serve(t, &Server{Handler: h}, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	var pe *PanicError
	if !errors.As(err, &pe) || out != "" {
		t.Errorf("panic: %v, wrote %q", err, out)
	}
}

// TestCheckBufferedBody: a chunked body broken within the bytes that came with the head is
// refused before the handler runs when CheckBufferedBody is set; otherwise the handler's
// body read fails.
func TestCheckBufferedBody(t *testing.T) {
	const bad = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nxx\r\n0\r\n\r\n"
	for _, check := range []bool{true, false} {
		called := false
		s := &Server{CheckBufferedBody: check, Handler: HandlerFunc(func(w *ResponseWriter, r *httpmsg.Request) {
			called = true
			echo.ServeHTTP1(w, r)
		})}
		out, _ := serve(t, s, bad)
		if !strings.HasPrefix(out, "HTTP/1.1 400 ") {
			t.Errorf("check=%v: answer %q, want 400", check, out)
		}
		if called == check {
			t.Errorf("check=%v: handler called %v", check, called)
		}
	}
	// A valid chunked body and a pipelined request after it pass.
	s := &Server{CheckBufferedBody: true, Handler: echo}
	out, _ := serve(t, s, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
	if strings.Count(out, "HTTP/1.1 200 ") != 2 || !strings.Contains(out, "abc") {
		t.Errorf("valid requests: %q", out)
	}
}

// TestOnTimeout: a read deadline between requests is an idle timeout, within a head a
// headers timeout.
func TestOnTimeout(t *testing.T) {
	for _, tc := range []struct {
		name  string
		send  string
		head  bool
		idle  time.Duration
		heads time.Duration
	}{
		{"idle", "", false, 20 * time.Millisecond, 0},
		{"head", "GET / HTTP/1.1\r\n", true, 0, 20 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := net.Pipe()
			defer b.Close()
			got := make(chan bool, 1)
			s := &Server{Handler: echo, IdleTimeout: tc.idle, HeadersTimeout: tc.heads, OnTimeout: func(head bool) { got <- head }}
			done := make(chan error, 1)
			go func() { done <- s.ServeConn(a) }()
			if tc.send != "" {
				b.Write([]byte(tc.send))
			}
			if head := <-got; head != tc.head {
				t.Errorf("OnTimeout(%v), want %v", head, tc.head)
			}
			<-done
		})
	}
}
