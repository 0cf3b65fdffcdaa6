package upstream

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/balance"
	"github.com/strait-mesh/strait/proxy/h1"
	"github.com/strait-mesh/strait/proxy/httpmsg"
	"github.com/strait-mesh/strait/proxy/xdspb"
	clusterv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/cluster/v3"
)

// echoHeaders serves HTTP/1.1 on one connection at a time, answering each request with its
// Host and its header fields ("name=value", sorted, one a line) as the body; requests counts
// the requests it read.
func echoHeaders(t *testing.T, requests *atomic.Int32) string {
	return testenv.ServeTCP(t, "127.0.0.1:0", func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			r, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			requests.Add(1)
			_, _ = io.Copy(io.Discard, r.Body)
			lines := []string{"host=" + r.Host}
			for k, vs := range r.Header {
				for _, v := range vs {
					lines = append(lines, strings.ToLower(k)+"="+v)
				}
			}
			slices.Sort(lines)
			body := strings.Join(lines, "\n")
			_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		}
	})
}

// TestRoundTripMessageHeaderShared: an HTTP/1.1 pool writes a message's header fields from
// the caller's storage, which stays as it was, and a net/http request on the same connection
// afterwards sends its own fields (and writes nothing into the caller's storage), as does a
// message after it.
func TestRoundTripMessageHeaderShared(t *testing.T) {
	var requests atomic.Int32
	addr := echoHeaders(t, &requests)
	cl, _ := compileT(t, xdspb.MustFrom[*clusterv3.Cluster](testenv.StaticCluster("echo", 2*time.Second, addr)), Deps{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	message := func(h *httpmsg.Header) string {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://svc.test/m", nil)
		resp, err := cl.RoundTripMessage(req, &MessageHead{Header: h, Path: "/m"}, balance.Context{})
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	var first httpmsg.Header
	first.Add("x-a", "1")
	first.Add("Host", "ignored.test")
	first.Add("x-b", "2")
	if got, want := message(&first), "host=svc.test\nx-a=1\nx-b=2"; got != want {
		t.Errorf("message: upstream got\n%s\nwant\n%s", got, want)
	}
	same := func(what string) {
		t.Helper()
		if first.Len() != 3 || first.Get("x-a") != "1" || first.Get("host") != "ignored.test" || first.Get("x-b") != "2" {
			t.Errorf("%s: the caller's header changed: %d fields, x-a %q x-b %q", what, first.Len(), first.Get("x-a"), first.Get("x-b"))
		}
	}
	same("after its message")

	resp, err := doCtx(ctx, cl, balance.Context{}, "GET", "/h", "X-C", "3")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got := string(b); strings.Contains(got, "x-a=") || !strings.Contains(got, "x-c=3") {
		t.Errorf("net/http request after a message: upstream got\n%s", got)
	}
	same("after a net/http request")

	var second httpmsg.Header
	second.Add("x-d", "4")
	if got, want := message(&second), "host=svc.test\nx-d=4"; got != want {
		t.Errorf("second message: upstream got\n%s\nwant\n%s", got, want)
	}
	same("after another message")
	if n := requests.Load(); n != 3 {
		t.Errorf("upstream read %d requests, want 3", n)
	}
}

// countingWatcher is a context and the h1.Watcher of the exchanges that MessageHead.Watcher
// names, which its Value does not offer (so only the field finds it); cancel makes Watch
// report it canceled.
type countingWatcher struct {
	context.Context
	watches, unwatches atomic.Int32
	canceled           atomic.Bool
}

func (w *countingWatcher) Watch(h1.Aborter, uint64) bool {
	w.watches.Add(1)
	return !w.canceled.Load()
}

func (w *countingWatcher) Unwatch(h1.Aborter) { w.unwatches.Add(1) }

// TestRoundTripMessageWatcher: an HTTP/1.1 pool watches MessageHead.Watcher instead of the
// context; a Watcher canceled already fails the request without sending it.
func TestRoundTripMessageWatcher(t *testing.T) {
	var requests atomic.Int32
	addr := echoHeaders(t, &requests)
	cl, st := compileT(t, xdspb.MustFrom[*clusterv3.Cluster](testenv.StaticCluster("watch", 2*time.Second, addr)), Deps{})
	w := &countingWatcher{Context: context.Background()}
	if watcherOf(w) != nil {
		t.Fatal("the context offers its Watcher: the test would not tell the field's use")
	}
	send := func() (*Response, error) {
		req, _ := http.NewRequestWithContext(w, "GET", "http://svc.test/", nil)
		var h httpmsg.Header
		return cl.RoundTripMessage(req, &MessageHead{Header: &h, Path: "/", Watcher: w}, balance.Context{})
	}
	resp, err := send()
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if w.watches.Load() != 1 || requests.Load() != 1 {
		t.Errorf("watches %d, requests %d: want 1 and 1", w.watches.Load(), requests.Load())
	}

	w.canceled.Store(true)
	if _, err := send(); err == nil {
		t.Fatal("a request whose Watcher is canceled got a response")
	}
	// The context itself is not canceled (a test's shortcut): the attempt on a reused
	// connection is retried once, as a stale keep-alive connection's would be.
	if w.watches.Load() < 2 || requests.Load() != 1 {
		t.Errorf("canceled: watches %d, requests %d: want 2 or more and 1", w.watches.Load(), requests.Load())
	}
	if g := gauge(st, "cluster.watch.upstream_rq_active"); g != 0 {
		t.Errorf("upstream_rq_active %d after the requests ended", g)
	}
}

// TestRoundTripMessageBodies: an HTTP/1.1 pool sends a body in memory with its length, a body
// of unknown length (or in memory but of length 0) chunked with the request's trailers, and no
// body without framing.
func TestRoundTripMessageBodies(t *testing.T) {
	addr := testenv.ServeTCP(t, "127.0.0.1:0", func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			r, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			b, _ := io.ReadAll(r.Body)
			got := fmt.Sprintf("%s len=%d te=%v body=%q trailer=%q", r.Method, r.ContentLength, r.TransferEncoding, b, r.Trailer.Get("X-T"))
			_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(got), got)
		}
	})
	cl, st := compileT(t, xdspb.MustFrom[*clusterv3.Cluster](testenv.StaticCluster("bodies", 2*time.Second, addr)), Deps{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name   string
		method string
		body   func() io.ReadCloser
		length int64
		want   string
	}{
		{"none", "GET", func() io.ReadCloser { return nil }, 0, `GET len=0 te=[] body="" trailer=""`},
		{"NoBody", "POST", func() io.ReadCloser { return http.NoBody }, 0, `POST len=0 te=[] body="" trailer=""`},
		{"in memory", "POST", func() io.ReadCloser { return httpmsg.NewBytesBody([]byte("hello")) }, 5,
			`POST len=5 te=[] body="hello" trailer=""`},
		{"in memory, length 0", "POST", func() io.ReadCloser { return httpmsg.NewBytesBody([]byte("hi")) }, 0,
			`POST len=-1 te=[chunked] body="hi" trailer="v"`},
		{"streamed", "PUT", func() io.ReadCloser { return io.NopCloser(strings.NewReader("stream")) }, -1,
			`PUT len=-1 te=[chunked] body="stream" trailer="v"`},
	} {
		req, _ := http.NewRequestWithContext(ctx, tc.method, "http://svc.test/", nil)
		req.Body, req.ContentLength = tc.body(), tc.length
		req.Trailer = http.Header{"X-T": {"v"}}
		var h httpmsg.Header
		resp, err := cl.RoundTripMessage(req, &MessageHead{Header: &h, Path: "/"}, balance.Context{})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != tc.want {
			t.Errorf("%s: upstream got %s, want %s", tc.name, b, tc.want)
		}
	}
	if g := gauge(st, "cluster.bodies.upstream_rq_active"); g != 0 {
		t.Errorf("upstream_rq_active %d after the requests ended", g)
	}
}

// TestRoundTripMessageUpgrade: a 101 response's Body is the upgraded connection, writable, and
// closing it ends the request's accounting; a 200's Body is not writable.
func TestRoundTripMessageUpgrade(t *testing.T) {
	addr := testenv.ServeTCP(t, "127.0.0.1:0", func(c net.Conn) {
		br := bufio.NewReader(c)
		r, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		if r.Header.Get("Upgrade") == "" {
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			if r, err = http.ReadRequest(br); err != nil {
				return
			}
		}
		_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		_, _ = io.Copy(c, br) // echo
	})
	cl, st := compileT(t, xdspb.MustFrom[*clusterv3.Cluster](testenv.StaticCluster("upgrade", 2*time.Second, addr)), Deps{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	send := func(upgrade bool) *Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://svc.test/", nil)
		var h httpmsg.Header
		if upgrade {
			h.Add("Connection", "Upgrade")
			h.Add("Upgrade", "echo")
		}
		resp, err := cl.RoundTripMessage(req, &MessageHead{Header: &h, Path: "/"}, balance.Context{})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := send(false)
	if _, ok := resp.Body.(io.Writer); ok {
		t.Error("a 200 response's body is writable")
	}
	_, _ = io.ReadAll(resp.Body)
	resp.Body.Close()

	resp = send(true)
	rw, ok := resp.Body.(io.ReadWriter)
	if resp.Status != 101 || !ok {
		t.Fatalf("status %d, body %T: want 101 and a writable body", resp.Status, resp.Body)
	}
	if _, err := io.WriteString(rw, "ping"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(rw, buf); err != nil || string(buf) != "ping" {
		t.Errorf("echo %q, %v", buf, err)
	}
	resp.Body.Close()
	if g := gauge(st, "cluster.upgrade.upstream_rq_active"); g != 0 {
		t.Errorf("upstream_rq_active %d after the tunnel closed", g)
	}
}

// TestRoundTripMessageStaleRetry: a message whose kept-alive connection the upstream closed
// while idle is retried once on a fresh connection (RoundTripMessage's common path hands the
// retry to send), answered, released to the caller, and accounted for once.
func TestRoundTripMessageStaleRetry(t *testing.T) {
	var conns, requests atomic.Int32
	addr := testenv.ServeTCP(t, "127.0.0.1:0", func(c net.Conn) {
		conns.Add(1)
		r, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		requests.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		// A keep-alive response, then the connection closes (an idle timeout upstream).
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		_ = c.Close()
	})
	cl, st := compileT(t, xdspb.MustFrom[*clusterv3.Cluster](testenv.StaticCluster("stale", 2*time.Second, addr)), Deps{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 3 {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://svc.test/", nil)
		var h httpmsg.Header
		head := &MessageHead{Header: &h, Path: "/"}
		resp, err := cl.RoundTripMessage(req, head, balance.Context{})
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "ok" || resp.Status != 200 || !head.Released {
			t.Errorf("message %d: status %d, body %q, released %v", i, resp.Status, b, head.Released)
		}
		// The next message finds the connection closed by the upstream, or reuses it and
		// fails on it: either way it is answered on a fresh one.
		time.Sleep(10 * time.Millisecond)
	}
	if n, c := requests.Load(), conns.Load(); n != 3 || c < 3 {
		t.Errorf("upstream read %d requests on %d connections, want 3 on 3 or more", n, c)
	}
	if g := gauge(st, "cluster.stale.upstream_rq_active"); g != 0 {
		t.Errorf("upstream_rq_active %d after the requests ended", g)
	}
	if n := counter(st, "cluster.stale.upstream_rq_total"); n != 3 {
		t.Errorf("upstream_rq_total %d, want 3", n)
	}
	if r := cl.breaker.rq.cur.Load(); r != 0 {
		t.Errorf("the max_requests breaker holds %d requests after they ended", r)
	}
}
