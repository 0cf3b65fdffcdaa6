package h1

import (
	"bufio"
	"context"
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

// listen serves connections on an ephemeral loopback port with serve, until the test ends.
func listen(t testing.TB, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); serve(c) }()
		}
	}()
	return ln.Addr().String()
}

// serveHTTP serves h with net/http's server on an ephemeral loopback port until the test
// ends, and returns its address.
func serveHTTP(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := &http.Server{Handler: h}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func newPool(addr string) *Pool {
	return &Pool{Dial: func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}}
}

func newRequest(method, path string, body string, length int64) *httpmsg.Request {
	r := &httpmsg.Request{Method: method, ContentLength: length}
	r.SetAuthorityString("upstream")
	r.SetPathString(path)
	if body != "" {
		r.Body = strings.NewReader(body)
	}
	return r
}

// roundTrip sends req and returns the response with its body read and closed.
func roundTrip(t *testing.T, p *Pool, req *httpmsg.Request) (*httpmsg.Response, string) {
	t.Helper()
	resp := new(httpmsg.Response)
	if err := p.RoundTrip(context.Background(), req, resp); err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.PathString(), err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: body: %v", req.Method, req.PathString(), err)
	}
	resp.Body.Close()
	return resp, string(b)
}

func TestClientAgainstNetHTTP(t *testing.T) {
	var mu sync.Mutex
	conns := map[string]bool{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		conns[r.RemoteAddr] = true
		mu.Unlock()
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Got", r.Method+" "+r.Host+" "+r.RequestURI+" "+r.Header.Get("X-A")+" "+r.Trailer.Get("T"))
		switch r.URL.Path {
		case "/chunked":
			w.Header().Set("Trailer", "X-Sum")
			w.Write(b)
			w.(http.Flusher).Flush()
			w.Write([]byte("!"))
			w.Header().Set("X-Sum", "42")
		default:
			w.Write(b)
		}
	})
	p := newPool(serveHTTP(t, h))
	defer p.Close()

	req := newRequest("GET", "/a?b", "", 0)
	req.Header.Add("X-A", "1")
	resp, body := roundTrip(t, p, req)
	if resp.Status != 200 || resp.Header.Get("x-got") != "GET upstream /a?b 1" || body != "" {
		t.Errorf("GET: %d %q %q", resp.Status, resp.Header.Get("x-got"), body)
	}
	resp, body = roundTrip(t, p, newRequest("POST", "/len", "hello", 5))
	if body != "hello" {
		t.Errorf("POST with length: %q", body)
	}
	req = newRequest("POST", "/chunked", "streamed", -1)
	req.Trailer.Add("T", "tv")
	resp, body = roundTrip(t, p, req)
	if body != "streamed!" || resp.Trailer.Get("x-sum") != "42" || !strings.HasSuffix(resp.Header.Get("x-got"), " tv") {
		t.Errorf("chunked both ways: %q trailer %q got %q", body, resp.Trailer.Get("x-sum"), resp.Header.Get("x-got"))
	}
	resp, _ = roundTrip(t, p, newRequest("HEAD", "/len", "", 0))
	if resp.Status != 200 {
		t.Errorf("HEAD: %d", resp.Status)
	}
	mu.Lock()
	n := len(conns)
	mu.Unlock()
	if n != 1 || p.Idle() != 1 {
		t.Errorf("%d upstream connections, %d idle: want 1 kept alive", n, p.Idle())
	}
}

// rawServer answers each request head it reads with the next scripted response.
func rawServer(t *testing.T, responses ...string) string {
	var mu sync.Mutex
	return listen(t, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			mu.Lock()
			if len(responses) == 0 {
				mu.Unlock()
				return
			}
			r := responses[0]
			responses = responses[1:]
			mu.Unlock()
			if r == "" { // close without answering
				return
			}
			c.Write([]byte(r))
			mu.Lock()
			last := len(responses) == 0
			mu.Unlock()
			if last {
				return
			}
		}
	})
}

func TestClientRefusesBadResponses(t *testing.T) {
	cases := []struct {
		resp string
		err  *http1.Error
	}{
		{"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", http1.ErrLengthAndTE},
		{"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\na", http1.ErrDuplicateLength},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", http1.ErrUnsupportedTE},
		{"HTTP/1.1 200 OK\nContent-Length: 0\n\n", http1.ErrBareLF},
		{"HTTP/1.1 2000 OK\r\n\r\n", http1.ErrInvalidStatus},
		{"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", http1.ErrObsFold},
		{"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", http1.ErrTEInHTTP10},
		{"HTTP/2.0 200 OK\r\n\r\n", http1.ErrInvalidVersion},
	}
	for _, tc := range cases {
		p := newPool(rawServer(t, tc.resp))
		var re *ResponseError
		err := p.RoundTrip(context.Background(), newRequest("GET", "/", "", 0), new(httpmsg.Response))
		if !errors.As(err, &re) || re.Err != tc.err {
			t.Errorf("%q: %v, want %v", tc.resp, err, tc.err)
		}
		p.Close()
	}
	// A bad chunked body fails the body's read, and the connection is not reused.
	p := newPool(rawServer(t, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"))
	resp := new(httpmsg.Response)
	if err := p.RoundTrip(context.Background(), newRequest("GET", "/", "", 0), resp); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(resp.Body); !errors.Is(err, http1.ErrChunkSize) {
		t.Errorf("bad chunked body: %v", err)
	}
	resp.Body.Close()
	if p.Idle() != 0 {
		t.Errorf("connection with a bad body kept")
	}
}

func TestClientReuseRules(t *testing.T) {
	// Until-close body, Connection: close, HTTP/1.0 without keep-alive: not reused; extra
	// bytes after a response (a desync): not reused.
	for _, r := range []string{
		"HTTP/1.1 200 OK\r\n\r\nuntil close",
		"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\na",
		"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\na",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 200 OK\r\n\r\n",
	} {
		p := newPool(rawServer(t, r))
		_, body := roundTrip(t, p, newRequest("GET", "/", "", 0))
		if p.Idle() != 0 || body == "" {
			t.Errorf("%q: body %q, %d idle", r, body, p.Idle())
		}
		p.Close()
	}
	p := newPool(rawServer(t, "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\na"))
	roundTrip(t, p, newRequest("GET", "/", "", 0))
	if p.Idle() != 1 {
		t.Errorf("HTTP/1.0 keep-alive not reused")
	}
	p.Close()
	// A body not read to its end: the connection closes.
	p = newPool(rawServer(t, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"+strings.Repeat("a", 100000)))
	resp := new(httpmsg.Response)
	if err := p.RoundTrip(context.Background(), newRequest("GET", "/", "", 0), resp); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if p.Idle() != 0 {
		t.Errorf("unread body: connection kept")
	}
	p.Close()
}

func TestClientRetriesStaleConnection(t *testing.T) {
	// The first connection answers once and then closes without answering; the pool retries
	// the body-less request on a new connection.
	p := newPool(rawServer(t, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na", "", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb"))
	defer p.Close()
	if _, body := roundTrip(t, p, newRequest("GET", "/", "", 0)); body != "a" {
		t.Fatalf("first: %q", body)
	}
	if _, body := roundTrip(t, p, newRequest("GET", "/", "", 0)); body != "b" {
		t.Fatalf("retried: %q", body)
	}
}

func TestClientInterimAndTunnel(t *testing.T) {
	p := newPool(rawServer(t, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	if resp, body := roundTrip(t, p, newRequest("GET", "/", "", 0)); resp.Status != 200 || body != "ok" || resp.Header.Has("link") {
		t.Errorf("after interim responses: %d %q", resp.Status, body)
	}
	p.Close()

	addr := listen(t, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\nhi"))
		b := make([]byte, 4)
		if _, err := io.ReadFull(br, b); err == nil {
			c.Write(b)
		}
	})
	p = newPool(addr)
	defer p.Close()
	req := newRequest("GET", "/ws", "", 0)
	req.Header.Add("Connection", "Upgrade")
	req.Header.Add("Upgrade", "x")
	resp := new(httpmsg.Response)
	if err := p.RoundTrip(context.Background(), req, resp); err != nil || resp.Status != 101 {
		t.Fatalf("upgrade: %v %d", err, resp.Status)
	}
	tun := resp.Body.(io.ReadWriter)
	tun.Write([]byte("ping"))
	got := make([]byte, 6)
	if _, err := io.ReadFull(tun, got); err != nil || string(got) != "hiping" {
		t.Errorf("tunnel: %q %v", got, err)
	}
	resp.Body.Close()
}

func TestClientContextCancels(t *testing.T) {
	addr := listen(t, func(c net.Conn) {
		defer c.Close()
		io.Copy(io.Discard, c) // never answers
	})
	p := newPool(addr)
	defer p.Close()
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	err := p.RoundTrip(ctx, newRequest("GET", "/", "", 0), new(httpmsg.Response))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("canceled round trip: %v", err)
	}
}

func TestClientRefusesInvalidRequest(t *testing.T) {
	p := newPool("127.0.0.1:1")
	for _, req := range []*httpmsg.Request{newRequest("G T", "/", "", 0), newRequest("GET", "/a b", "", 0), newRequest("GET", "", "", 0)} {
		if err := p.RoundTrip(context.Background(), req, new(httpmsg.Response)); err != ErrInvalidTarget {
			t.Errorf("%q %q: %v", req.Method, req.Path(), err)
		}
	}
	req := newRequest("GET", "/", "", 0)
	req.Header.Add("X", "a\r\nInjected: 1")
	seenCh := make(chan []byte, 1)
	addr := listen(t, func(c net.Conn) { b, _ := io.ReadAll(c); c.Close(); seenCh <- b })
	p = newPool(addr)
	if err := p.RoundTrip(context.Background(), req, new(httpmsg.Response)); err != ErrInvalidField {
		t.Errorf("CRLF in a value: %v", err)
	}
	p.Close()
	if seen := <-seenCh; strings.Contains(string(seen), "Injected") {
		t.Errorf("wrote an invalid field")
	}
}

// countingConn counts the writes on a connection.
type countingConn struct {
	net.Conn
	writes int
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes++
	return c.Conn.Write(p)
}

// TestConnInMemoryBody: a Conn writes a body held in memory with its head, in one write, and a
// deadline one exchange's context set does not outlive that exchange.
func TestConnInMemoryBody(t *testing.T) {
	addr := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	}))
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cc := &countingConn{Conn: nc}
	var reused []bool
	c := NewConn(cc, http1.Limits{}, func(r bool) { reused = append(reused, r) })
	defer c.Close()
	send := func(ctx context.Context, body string) {
		t.Helper()
		req := newRequest("POST", "/", "", int64(len(body)))
		req.Body = httpmsg.NewBytesBody([]byte(body))
		before := cc.writes
		var resp httpmsg.Response
		if err := c.RoundTrip(ctx, req, &resp); err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(b) != body {
			t.Fatalf("echo of %d bytes: %d bytes, %v", len(body), len(b), err)
		}
		if w := cc.writes - before; w != 1 {
			t.Errorf("request written in %d writes, want 1", w)
		}
		if !req.Body.(*httpmsg.BytesBody).Done() {
			t.Error("a body written with the head is not marked done")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	send(ctx, "first")
	cancel()
	time.Sleep(100 * time.Millisecond) // past the first exchange's deadline
	send(context.Background(), strings.Repeat("x", 2000))
	if len(reused) != 2 || !reused[0] || !reused[1] {
		t.Errorf("exchanges ended reusable: %v", reused)
	}
}

// TestConnLargeInMemoryBodyNotDone: a body held in memory but too large to write with the head
// goes from a writer goroutine of its own, which may read it after RoundTrip returned: it is not
// marked done, so its owner does not reuse its bytes.
func TestConnLargeInMemoryBodyNotDone(t *testing.T) {
	addr := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	}))
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := NewConn(nc, http1.Limits{}, func(bool) {})
	defer c.Close()
	body := strings.Repeat("y", maxInMemoryWrite+1)
	req := newRequest("POST", "/", "", int64(len(body)))
	bb := httpmsg.NewBytesBody([]byte(body))
	req.Body = bb
	var resp httpmsg.Response
	if err := c.RoundTrip(context.Background(), req, &resp); err != nil {
		t.Fatal(err)
	}
	if bb.Done() {
		t.Error("a body written from the Conn's writer goroutine is marked done")
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(b) != body {
		t.Fatalf("echo of %d bytes: %d bytes, %v", len(body), len(b), err)
	}
}
