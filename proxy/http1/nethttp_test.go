package http1

import (
	"bufio"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/testenv"
)

// oneConnListener hands one connection to http.Server.Serve.
type oneConnListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newOneConnListener(c net.Conn) *oneConnListener {
	l := &oneConnListener{ch: make(chan net.Conn, 1), done: make(chan struct{})}
	l.ch <- c
	return l
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *oneConnListener) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *oneConnListener) Addr() net.Addr { return &net.TCPAddr{} }

// recorder is a handler that records request paths and answers 200, or 400 when the body
// read fails (as the proxy's router maps a guard violation).
type recorder struct {
	mu    sync.Mutex
	paths []string
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec.mu.Lock()
	rec.paths = append(rec.paths, r.URL.Path)
	rec.mu.Unlock()
	if _, err := io.ReadAll(r.Body); err != nil {
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	io.WriteString(w, "ok "+r.URL.Path)
}

func (rec *recorder) seen() []string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return slices.Clone(rec.paths)
}

// newServer is an http.Server that tells a GuardConn when it is hijacked; MaxHeaderBytes is
// set so that a 431 poison is short.
func newServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:        h,
		MaxHeaderBytes: 4096,
		ErrorLog:       log.New(io.Discard, "", 0),
		ConnState: func(c net.Conn, s http.ConnState) {
			if g, ok := c.(*GuardConn); ok && s == http.StateHijacked {
				g.Hijacked()
			}
		},
	}
}

// serveScript serves one scripted connection (wrapped in a GuardConn when lim is not nil)
// with a real net/http server and returns what the server wrote once it closed.
func serveScript(t *testing.T, lim *Limits, sc *scriptConn, h http.Handler) (string, *GuardConn) {
	t.Helper()
	var c net.Conn = sc
	var g *GuardConn
	if lim != nil {
		g = NewGuardConn(sc, *lim)
		c = g
	}
	closed := make(chan struct{})
	srv := newServer(h)
	srv.ConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			close(closed)
		}
	}
	ln := newOneConnListener(c)
	go srv.Serve(ln)
	defer srv.Close()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatalf("server did not close the connection; wrote %q", sc.output())
	}
	return sc.output(), g
}

type response struct {
	status int
	close  bool
	body   string
}

func parseResponses(t *testing.T, out string) []response {
	t.Helper()
	br := bufio.NewReader(strings.NewReader(out))
	var rs []response
	for {
		if _, err := br.Peek(1); err == io.EOF {
			return rs
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("server wrote %q: %v", out, err)
		}
		b, _ := io.ReadAll(resp.Body)
		rs = append(rs, response{resp.StatusCode, resp.Close, string(b)})
	}
}

// splitCases are a good request, then a bad one, then a request smuggled after it.
var splitCases = []struct {
	name   string
	bad    string
	status int
	body   bool // the violation is in the body: with the head delivered, the handler sees /bad
}{
	{"cl.te", clteReq, 400, false},
	{"te.cl", "POST /bad HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\n", 400, false},
	{"te xchunked", "POST /bad HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", 501, false},
	{"te chunked identity", "POST /bad HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", 501, false},
	{"te twice", "POST /bad HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501, false},
	{"te space before colon", "POST /bad HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400, false},
	{"te obs-fold", "POST /bad HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n", 400, false},
	{"te http/1.0", "POST /bad HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n" + smuggled + "0\r\n\r\n", 400, false},
	{"cl duplicate", "POST /bad HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400, false},
	{"cl sign", "POST /bad HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc", 400, false},
	{"bare lf", "GET /bad HTTP/1.1\nHost: a\r\n\r\n", 400, false},
	{"nul in value", "GET /bad HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400, false},
	{"chunk overflow", "POST /bad HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n", 400, true},
	{"chunk bad crlf", "POST /bad HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX0\r\n\r\n", 400, true},
}

// TestGuardNetHTTPSplits serves good+bad+smuggled through GuardConn and net/http, delivered
// whole, cut at every offset, and byte by byte: the good request is answered 200, the bad one
// with Envoy's status (or, when the violation is in a body whose head net/http already has,
// the handler's body read fails), the connection is closed, and the smuggled request is never
// seen.
func TestGuardNetHTTPSplits(t *testing.T) {
	for _, tc := range splitCases {
		t.Run(tc.name, func(t *testing.T) {
			in := goodReq + tc.bad + smuggled
			scripts := []*scriptConn{newScript(in)}
			var all []int
			for c := 1; c < len(in); c++ {
				scripts = append(scripts, cutScript(in, c))
				all = append(all, c)
			}
			scripts = append(scripts, cutScript(in, all...))
			for i, sc := range scripts {
				rec := &recorder{}
				out, g := serveScript(t, &Limits{}, sc, rec)
				rs := parseResponses(t, out)
				seen := rec.seen()
				if len(rs) != 2 || rs[0].status != 200 || rs[0].body != "ok /good" || !rs[1].close {
					t.Fatalf("script %d: responses %+v (wrote %q)", i, rs, out)
				}
				switch {
				case rs[1].status == tc.status && slices.Equal(seen, []string{"/good"}):
				case tc.body && rs[1].status == 400 && slices.Equal(seen, []string{"/good", "/bad"}):
				default:
					t.Fatalf("script %d: second response %d, handler saw %q", i, rs[1].status, seen)
				}
				if g.Violation() == nil || g.Violation().Status != tc.status {
					t.Fatalf("script %d: violation %v", i, g.Violation())
				}
			}
		})
	}
}

// TestGuardNetHTTP431 checks the 431 poison, whole and continued (net/http waits half a
// second before closing after a 431, so only some cuts).
func TestGuardNetHTTP431(t *testing.T) {
	bad := "GET /bad HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: " + strings.Repeat("c", 100) + "\r\n\r\n"
	in := goodReq + bad + smuggled
	var wg sync.WaitGroup
	for _, lim := range []Limits{{MaxHeaderCount: 2}, {MaxHeaderBytes: 80}} {
		for _, cut := range []int{0, 10, len(goodReq), len(goodReq) + 5, len(goodReq) + 30, len(goodReq) + 45, len(goodReq) + 60} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rec := &recorder{}
				sc := newScript(in)
				if cut > 0 {
					sc = cutScript(in, cut)
				}
				out, g := serveScript(t, &lim, sc, rec)
				rs := parseResponses(t, out)
				if len(rs) != 2 || rs[0].status != 200 || rs[1].status != 431 || !rs[1].close || !slices.Equal(rec.seen(), []string{"/good"}) {
					t.Errorf("limits %+v cut %d: %+v, saw %q", lim, cut, rs, rec.seen())
				}
				if g.Violation() == nil || g.Violation().Status != 431 {
					t.Errorf("violation %v", g.Violation())
				}
			}()
		}
	}
	wg.Wait()
}

// TestPoisonsContinueAnyHead feeds net/http (no guard) every validated prefix of valid heads
// followed by the continuation poison the guard would send, and checks net/http's answer.
func TestPoisonsContinueAnyHead(t *testing.T) {
	heads := []string{
		"GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nX-Empty:\r\nX-Tab: a\tb \r\n\r\n",
		"POST http://example.com/x HTTP/1.1\r\nHost: example.com\r\nContent-Length: 12\r\nTransfer-Encoding: chunked\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n",
		"GET / HTTP/1.0\r\nTransfer-Encoding: gzip\r\n\r\n",
	}
	type job struct {
		in     string
		status int
	}
	var jobs []job
	for _, h := range heads {
		for k := 0; k < len(h)-1; k++ { // the guard holds the last CR of a head
			prefix := h[:k]
			jobs = append(jobs, job{prefix + poison400, 400})
			if k >= 2 && h[k-2:k] == "\r\n" && strings.Contains(h, "HTTP/1.1\r\n") {
				jobs = append(jobs, job{prefix + poison501Cont, 501})
			}
			if k%9 == 0 {
				jobs = append(jobs, job{prefix + strings.Repeat("a", 9000), 431})
			}
		}
		jobs = append(jobs, job{poison501, 501}, job{poison431 + strings.Repeat("a", 9000), 431})
	}
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			rec := &recorder{}
			out, _ := serveScript(t, nil, newScript(j.in), rec)
			rs := parseResponses(t, out)
			if len(rs) != 1 || rs[0].status != j.status || !rs[0].close || len(rec.seen()) != 0 {
				t.Errorf("%q: %+v, handler saw %q", j.in[:min(len(j.in), 120)], rs, rec.seen())
			}
		}()
	}
	wg.Wait()
}

// guardedServer is a real net/http server on loopback whose connections are wrapped in a
// GuardConn, as the proxy does.
type guardedServer struct {
	addr  string
	srv   *http.Server
	mu    sync.Mutex
	conns []*GuardConn
}

type guardListener struct {
	net.Listener
	s   *guardedServer
	lim Limits
}

func (l guardListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	g := NewGuardConn(c, l.lim)
	l.s.mu.Lock()
	l.s.conns = append(l.s.conns, g)
	l.s.mu.Unlock()
	return g, nil
}

func startGuarded(t *testing.T, lim Limits, h http.Handler) *guardedServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &guardedServer{addr: ln.Addr().String(), srv: newServer(h)}
	s.srv.Protocols = new(http.Protocols)
	s.srv.Protocols.SetHTTP1(true)
	s.srv.Protocols.SetUnencryptedHTTP2(true)
	go s.srv.Serve(guardListener{ln, s, lim})
	t.Cleanup(func() { s.srv.Close() })
	return s
}

// exchange writes each part (pausing between them) on a new connection and reads until the
// server closes it.
func exchange(t *testing.T, addr string, parts ...string) string {
	t.Helper()
	b, err := testenv.Exchange(t, addr, 50*time.Millisecond, parts...)
	if err != nil {
		t.Fatalf("reading: %v (got %q)", err, b)
	}
	return string(b)
}

func TestGuardLoopbackPipelined(t *testing.T) {
	rec := &recorder{}
	s := startGuarded(t, Limits{}, rec)
	out := exchange(t, s.addr, goodReq+clteReq+smuggled)
	rs := parseResponses(t, out)
	if len(rs) != 2 || rs[0].status != 200 || rs[1].status != 400 || !rs[1].close {
		t.Fatalf("responses %+v", rs)
	}
	if seen := rec.seen(); !slices.Equal(seen, []string{"/good"}) {
		t.Fatalf("handler saw %q", seen)
	}

	rec.paths = nil
	out = exchange(t, s.addr, goodReq+"POST /bad HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n"+smuggled)
	if rs := parseResponses(t, out); len(rs) != 2 || rs[1].status != 501 || !rs[1].close {
		t.Fatalf("responses %+v", rs)
	}
	if seen := rec.seen(); !slices.Equal(seen, []string{"/good"}) {
		t.Fatalf("handler saw %q", seen)
	}
}

func TestGuardLoopbackSlowBody(t *testing.T) {
	rec := &recorder{}
	s := startGuarded(t, Limits{}, rec)
	head := "POST /slow HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
	out := exchange(t, s.addr, head, "5\r\nhello\r\n", "ffffffffffffffffff\r\n"+smuggled)
	rs := parseResponses(t, out)
	if len(rs) != 1 || rs[0].status != 400 || !rs[0].close {
		t.Fatalf("responses %+v", rs)
	}
	if seen := rec.seen(); !slices.Equal(seen, []string{"/slow"}) {
		t.Fatalf("handler saw %q", seen)
	}
}

func TestGuardLoopbackSlowHead(t *testing.T) {
	rec := &recorder{}
	s := startGuarded(t, Limits{}, rec)
	out := exchange(t, s.addr, goodReq+"POST /bad HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n", "Transfer-Encoding: chunked\r\n\r\n", "0\r\n\r\n"+smuggled)
	rs := parseResponses(t, out)
	if len(rs) != 2 || rs[0].status != 200 || rs[1].status != 400 || !rs[1].close {
		t.Fatalf("responses %+v", rs)
	}
	if seen := rec.seen(); !slices.Equal(seen, []string{"/good"}) {
		t.Fatalf("handler saw %q", seen)
	}
}

// upgrader hijacks Upgrade requests and echoes the tunnel; others get 403.
func upgrader(rec *recorder, allow bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rec.mu.Lock()
		rec.paths = append(rec.paths, r.URL.Path)
		rec.mu.Unlock()
		if !allow || r.Header.Get("Upgrade") == "" {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
		io.Copy(c, brw) // echo until the client half-closes
	}
}

func TestGuardLoopbackUpgrade(t *testing.T) {
	rec := &recorder{}
	s := startGuarded(t, Limits{}, upgrader(rec, true))
	c, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	// Early tunnel data (here: bytes that are no valid HTTP) in the same write as the request.
	early := "\x00not http\r\n"
	io.WriteString(c, upgradeRq+early)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	io.WriteString(c, "GET /later HTTP/1.1\r\n\r\n")
	c.(*net.TCPConn).CloseWrite()
	got, _ := io.ReadAll(br)
	if string(got) != early+"GET /later HTTP/1.1\r\n\r\n" {
		t.Fatalf("tunnel echoed %q", got)
	}
	if seen := rec.seen(); !slices.Equal(seen, []string{"/ws"}) {
		t.Fatalf("handler saw %q", seen)
	}
}

// TestGuardLoopbackRejectedUpgrade: a request the server answers without switching protocols
// ends the connection (as in Envoy), so bytes after an upgrade request are never parsed as a
// request.
func TestGuardLoopbackRejectedUpgrade(t *testing.T) {
	rec := &recorder{}
	s := startGuarded(t, Limits{}, upgrader(rec, false))
	for _, req := range []string{upgradeRq, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"} {
		rec.paths = nil
		out := exchange(t, s.addr, req+smuggled, smuggled)
		rs := parseResponses(t, out)
		if len(rs) != 1 || rs[0].status != 403 {
			t.Fatalf("%q: responses %+v", req, rs)
		}
		if seen := rec.seen(); len(seen) != 1 {
			t.Fatalf("handler saw %q", seen)
		}
	}
}

func TestGuardLoopbackH2C(t *testing.T) {
	s := startGuarded(t, Limits{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", r.Proto, r.URL.Path)
	}))
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("http://" + s.addr + "/h2")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "HTTP/2.0 /h2" {
		t.Fatalf("got %q", b)
	}
}

func TestGuardLoopbackKeepAlive(t *testing.T) {
	rec := &recorder{}
	s := startGuarded(t, Limits{}, rec)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	for i := 0; i < 20; i++ {
		var body io.Reader
		if i%2 == 1 {
			body = strings.NewReader(strings.Repeat("x", i*1000))
		}
		req, _ := http.NewRequest("POST", fmt.Sprintf("http://%s/r%d", s.addr, i), body)
		if i%4 == 1 {
			req.ContentLength = -1 // chunked
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != fmt.Sprintf("ok /r%d", i) {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, b)
		}
	}
	s.mu.Lock()
	n := len(s.conns)
	s.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d connections, want keep-alive on one", n)
	}
}
