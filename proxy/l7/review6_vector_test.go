package l7

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/stats"
	"github.com/strait-mesh/strait/proxy/upstream"
	"github.com/strait-mesh/strait/proxy/xdspb"
	clusterv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/cluster/v3"
	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
)

// review6Pattern is n bytes that show where each byte came from.
func review6Pattern(n int, tag byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = "0123456789abcdefghijklmnopqrstuv"[(i/7+int(tag))%32]
	}
	return b
}

// review6Upstream answers /cl/N with the request body then N bytes (Content-Length), /ch/N
// chunked, /status/S with S; a request with x-fail-first gets 503 on its id's first try. It
// records every request body it read, by x-id.
type review6Upstream struct {
	mu     sync.Mutex
	bodies map[string][][]byte
}

func (u *review6Upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	id := r.Header.Get("x-id")
	u.mu.Lock()
	tries := len(u.bodies[id])
	u.bodies[id] = append(u.bodies[id], b)
	u.mu.Unlock()
	if r.Header.Get("x-fail-first") != "" && tries == 0 {
		w.WriteHeader(503)
		return
	}
	parts := strings.Split(r.URL.Path, "/")
	n, _ := strconv.Atoi(parts[len(parts)-1])
	out := append(b, review6Pattern(n, byte(len(id)))...)
	switch parts[1] {
	case "cl":
		w.Header().Set("Content-Length", strconv.Itoa(len(out)))
		w.Write(out)
	case "ch":
		w.(http.Flusher).Flush()
		w.Write(out[:len(out)/2])
		w.(http.Flusher).Flush()
		w.Write(out[len(out)/2:])
	case "status":
		w.WriteHeader(n)
	}
}

// review6Volatile are the response fields whose values change from run to run.
var review6Volatile = regexp.MustCompile(`(?im)^(date|x-envoy-upstream-service-time|x-request-id): [^\r\n]*\r\n`)

// review6Requests is the request stream each configuration gets on one connection, one
// request at a time; the last closes.
func review6Requests() []string {
	post := func(path, id string, n int, extra string) string {
		return "POST " + path + " HTTP/1.1\r\nHost: x\r\nx-id: " + id + "\r\n" + extra + "Content-Length: " + strconv.Itoa(n) + "\r\n\r\n" + string(review6Pattern(n, byte(len(id)+1)))
	}
	return []string{
		"GET /cl/100 HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /cl/600 HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /cl/5000 HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /cl/200000 HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /ch/3000 HTTP/1.1\r\nHost: x\r\n\r\n",
		"HEAD /cl/5000 HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /status/204 HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /status/304 HTTP/1.1\r\nHost: x\r\n\r\n",
		post("/cl/1000", "a", 700, ""),
		post("/cl/10", "bb", 3000, ""),
		post("/cl/2000", "ccc", 20000, ""),
		post("/cl/600", "dddd", 2000, "x-fail-first: 1\r\n"),
		post("/cl/1000", "eeeee", 1500, "Expect: 100-continue\r\n"),
		post("/ch/800", "ffffff", 512, ""),
		"GET /cl/3000 HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
		"GET /cl/3000 HTTP/1.0\r\nHost: x\r\n\r\n", // closes
	}
}

// review6Run sends the requests on c one at a time and returns what c received, normalized.
func review6Run(t *testing.T, c net.Conn) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	var out bytes.Buffer
	buf := make([]byte, 64<<10)
	reqs := review6Requests()
	for i, req := range reqs {
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatalf("write: %v", err)
		}
		// Read until the response is complete: the upstream's answers are all identifiable by
		// their end; reading until a short pause is enough for a comparison.
		for {
			if i < len(reqs)-1 {
				c.SetReadDeadline(time.Now().Add(150 * time.Millisecond))
			} else {
				c.SetReadDeadline(time.Now().Add(20 * time.Second)) // the last: until closed
			}
			n, err := c.Read(buf)
			out.Write(buf[:n])
			if err != nil {
				break
			}
		}
	}
	return review6Volatile.ReplaceAllString(out.String(), "")
}

// review6Proxy serves a connection manager routing to a real upstream cluster (HTTP/1.1 pool)
// of u, with retries on 5xx; streamIdle sets stream_idle_timeout; how hands each accepted
// connection over: "direct" (as the listener does: h1.DirectConn inside), "hidden" (no
// DirectConn: no vectored write), "tls".
func review6Proxy(t *testing.T, u *review6Upstream, streamIdle time.Duration, how string) (*proxy, func(t *testing.T) net.Conn) {
	addr := startUpstream(t, u, false)
	cc := xdspb.MustFrom[*clusterv3.Cluster](testenv.StaticCluster("c", 2*time.Second, addr))
	cl, err := upstream.Compile(cc, upstream.Deps{Stats: stats.NewStore()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	env := &testEnv{clusters: map[string]Upstream{"c": cl}}
	a := toCluster("c")
	a.RetryPolicy = &routev3.RetryPolicy{RetryOn: "5xx", NumRetries: wrapperspb.UInt32(1)}
	hcm := inlineHCM(oneVhost(fwdRoute("r", pfx("/"), a)))
	if streamIdle > 0 {
		hcm.StreamIdleTimeout = durationpb.New(streamIdle)
	}
	switch how {
	case "tls":
		p := startProxy(t, hcm, env, true)
		return p, func(t *testing.T) net.Conn {
			c, err := tls.Dial("tcp", p.addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			return c
		}
	case "hidden":
		p := &proxy{st: stats.NewStore(), infos: make(chan *RequestInfo, 1024)}
		h, err := New(hcm, env, Options{Stats: p.st})
		if err != nil {
			t.Fatal(err)
		}
		p.h = h
		p.addr = serveConns(t, h, func(net.Conn) ConnInfo { return ConnInfo{} })
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go h.ServeConn(hiddenConn{c}, ConnInfo{})
			}
		}()
		return p, func(t *testing.T) net.Conn { return dial(t, ln.Addr().String()) }
	}
	p := startProxy(t, hcm, env, false)
	return p, func(t *testing.T) net.Conn { return dial(t, p.addr) }
}

// TestReview6ProxyWireSameWithVectoredWrites: through the whole proxy (downstream h1 server,
// router, upstream HTTP/1.1 pool), a client gets the same bytes (but for the fields that
// change from run to run) whether the downstream connection has a vectored write
// (stream_idle_timeout unset, or set with the socket keeping the write stall limit) or not
// (a connection that hides its socket), and over TLS; the upstream receives every request body
// intact, a retried one twice the same; no write stall is counted.
func TestReview6ProxyWireSameWithVectoredWrites(t *testing.T) {
	type run struct {
		name       string
		streamIdle time.Duration
		how        string
	}
	runs := []run{
		{"hidden", 0, "hidden"}, // the reference: no vectored write
		{"direct", 0, "direct"},
		{"direct, stream_idle_timeout", 5 * time.Second, "direct"},
		{"hidden, stream_idle_timeout", 5 * time.Second, "hidden"},
		{"tls", 0, "tls"},
		{"tls, stream_idle_timeout", 5 * time.Second, "tls"},
	}
	var ref string
	for _, r := range runs {
		u := &review6Upstream{bodies: map[string][][]byte{}}
		p, dialer := review6Proxy(t, u, r.streamIdle, r.how)
		got := review6Run(t, dialer(t))
		if ref == "" {
			ref = got
			if !strings.Contains(ref, "HTTP/1.1 200") {
				t.Fatalf("reference run: %.300q", ref)
			}
		} else if got != ref {
			t.Errorf("%s: the client received other bytes than without vectored writes: %s", r.name, review6DiffL7(ref, got))
		}
		u.mu.Lock()
		for id, bs := range u.bodies {
			if id == "" {
				continue
			}
			want := review6Pattern(len(bs[0]), byte(len(id)+1))
			for i, b := range bs {
				if !bytes.Equal(b, want) {
					t.Errorf("%s: request %s try %d: the upstream read %d other bytes", r.name, id, i, len(b))
				}
			}
			if id == "dddd" && len(bs) != 2 {
				t.Errorf("%s: the retried request reached the upstream %d times", r.name, len(bs))
			}
		}
		u.mu.Unlock()
		if n := p.counter("http.test.downstream_cx_write_stall_timeout"); n != 0 {
			t.Errorf("%s: downstream_cx_write_stall_timeout = %d", r.name, n)
		}
	}
}

func review6DiffL7(a, b string) string {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	lo := max(0, i-80)
	return fmt.Sprintf("lengths %d and %d, first difference at %d:\n  reference %q\n  this      %q",
		len(a), len(b), i, a[lo:min(len(a), i+80)], b[lo:min(len(b), i+80)])
}

// TestReview6SlowReaderNoStall: with stream_idle_timeout set (the socket keeps the write stall
// limit), a client with a small window that reads a large response slowly but steadily gets
// all of it, byte for byte, through the vectored writes' partial progress, and no write stall
// is counted; one that then stops reading a large response is closed and counted once.
func TestReview6SlowReaderNoStall(t *testing.T) {
	u := &review6Upstream{bodies: map[string][][]byte{}}
	p, _ := review6Proxy(t, u, 400*time.Millisecond, "direct")
	c := dial(t, p.addr)
	c.(*net.TCPConn).SetReadBuffer(4096)
	const n = 300 << 10
	io.WriteString(c, "GET /cl/"+strconv.Itoa(n)+" HTTP/1.1\r\nHost: x\r\nx-id: s\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	var got bytes.Buffer
	buf := make([]byte, 1024)
	for {
		k, err := c.Read(buf)
		got.Write(buf[:k])
		if err != nil {
			t.Fatalf("after %d bytes: %v", got.Len(), err)
		}
		head, _, ok := bytes.Cut(got.Bytes(), []byte("\r\n\r\n"))
		if ok && got.Len()-len(head)-4 >= n {
			break
		}
		time.Sleep(500 * time.Microsecond)
	}
	_, body, _ := bytes.Cut(got.Bytes(), []byte("\r\n\r\n"))
	if !bytes.Equal(body, review6Pattern(n, 1)) {
		t.Errorf("slow reader: the body differs (%d bytes)", len(body))
	}
	if s := p.counter("http.test.downstream_cx_write_stall_timeout"); s != 0 {
		t.Errorf("slow but steady reader: downstream_cx_write_stall_timeout = %d", s)
	}
	// Now a large response it never reads.
	io.WriteString(c, "GET /cl/"+strconv.Itoa(16<<20)+" HTTP/1.1\r\nHost: x\r\nx-id: s\r\n\r\n")
	waitConns(t, p, 0, 10*time.Second)
	time.Sleep(50 * time.Millisecond)
	if s := p.counter("http.test.downstream_cx_write_stall_timeout"); s != 1 {
		t.Errorf("stalled reader: downstream_cx_write_stall_timeout = %d, want 1", s)
	}
}

// TestReview6RetryAfterResetResendsSameBody: the upstream resets the first try of each
// request after reading its head; the router retries (5xx covers resets) on a new
// connection, replaying the in-memory body (ResetBody, then the codec's Take with the head),
// and the upstream reads the very same bytes on the second try; the client gets the echo.
func TestReview6RetryAfterResetResendsSameBody(t *testing.T) {
	var mu sync.Mutex
	seen := map[string][][]byte{}
	addr := acceptLoop(t, func(nc net.Conn) {
		defer nc.Close()
		br := bufio.NewReader(nc)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			id := req.Header.Get("x-id")
			mu.Lock()
			first := len(seen[id]) == 0
			if first {
				seen[id] = append(seen[id], nil)
			}
			mu.Unlock()
			if first {
				nc.(*net.TCPConn).SetLinger(0)
				return
			}
			b, _ := io.ReadAll(req.Body)
			mu.Lock()
			seen[id] = append(seen[id], b)
			mu.Unlock()
			fmt.Fprintf(nc, "HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s", len(b), b)
		}
	})
	cc := xdspb.MustFrom[*clusterv3.Cluster](testenv.StaticCluster("c", 2*time.Second, addr))
	cl, err := upstream.Compile(cc, upstream.Deps{Stats: stats.NewStore()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	env := &testEnv{clusters: map[string]Upstream{"c": cl}}
	a := toCluster("c")
	a.RetryPolicy = &routev3.RetryPolicy{RetryOn: "5xx,reset", NumRetries: wrapperspb.UInt32(1)}
	p := startProxy(t, inlineHCM(oneVhost(fwdRoute("r", pfx("/"), a))), env, false)
	c := dial(t, p.addr)
	c.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(c)
	for i, n := range []int{600, 4096, 12000} {
		id := "id" + strconv.Itoa(i)
		body := review6Pattern(n, byte(i+3))
		fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nx-id: %s\r\nContent-Length: %d\r\n\r\n%s", id, n, body)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !bytes.Equal(got, body) {
			t.Errorf("%d bytes: %d, echo of %d bytes (same: %v)", n, resp.StatusCode, len(got), bytes.Equal(got, body))
		}
		mu.Lock()
		tries := seen[id]
		mu.Unlock()
		if len(tries) != 2 || !bytes.Equal(tries[1], body) {
			t.Errorf("%d bytes: %d tries; the retry's body the same: %v", n, len(tries), len(tries) == 2 && bytes.Equal(tries[1], body))
		}
	}
}
