package l7

import (
	"bufio"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
)

// Review (full-review4) of h1Net (h1conn.go): the codec reads the first bytes awaitFirstHead
// kept, then the accepted connection directly; the first head's request_headers_timeout
// (headBy) must hold across that switch when the head is larger than awaitMax and split over
// reads, be counted once, and be gone once the first request is served.

// bigHead is a request head of about n bytes.
func bigHead(path string, n int) string {
	h := "GET " + path + " HTTP/1.1\r\nHost: x\r\n"
	for len(h) < n {
		h += "X-Pad-" + itoa(len(h)) + ": " + strings.Repeat("p", 200) + "\r\n"
	}
	return h
}

func TestReview4BigFirstHeadTimeout(t *testing.T) {
	p := headsProxy(t)
	before := p.counter("http.test.downstream_rq_header_timeout")
	c := dial(t, p.addr)
	start := time.Now()
	head := bigHead("/", 6<<10) // more than awaitMax: the codec reads the rest itself
	io.WriteString(c, head[:5000])
	go func() {
		// The rest trickles: never complete within rht.
		for i := 5000; i < len(head); i += 50 {
			if _, err := io.WriteString(c, head[i:min(i+50, len(head))]); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	readUntilClosed(t, c, 5*time.Second)
	if d := time.Since(start); d < rht-50*time.Millisecond || d > rht+time.Second {
		t.Errorf("closed %v after accept, want about %v", d, rht)
	}
	time.Sleep(50 * time.Millisecond)
	if n := p.counter("http.test.downstream_rq_header_timeout") - before; n != 1 {
		t.Errorf("downstream_rq_header_timeout counted %d times, want 1", n)
	}
}

// TestReview4BigFirstHeadThenIdle: a first head larger than awaitMax, in two parts within the
// timeout, is served, with the next request pipelined in the second part; afterwards the
// connection idles well past request_headers_timeout (only idle_timeout, an hour, applies) and
// serves a third request.
func TestReview4BigFirstHeadThenIdle(t *testing.T) {
	p := headsProxy(t)
	c := dial(t, p.addr)
	br := bufio.NewReader(c)
	head := bigHead("/a", 6<<10) + "\r\n"
	io.WriteString(c, head[:4500])
	time.Sleep(rht / 4)
	io.WriteString(c, head[4500:]+"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
	for _, path := range []string{"/a", "/b"} {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != 200 {
			t.Errorf("%s: status %d", path, resp.StatusCode)
		}
	}
	time.Sleep(3 * rht)
	before := p.counter("http.test.downstream_rq_header_timeout")
	io.WriteString(c, "GET /c HTTP/1.1\r\nHost: x\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("after idling: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	if n := p.counter("http.test.downstream_rq_header_timeout") - before; n != 0 {
		t.Errorf("header timeouts counted while idle: %d", n)
	}
}

// TestReview4TLSBigFirstHeadThenTrickle: over TLS, a first head larger than awaitMax is
// served, and a later trickled head is ended by request_headers_timeout from its first byte.
func TestReview4TLSBigFirstHeadThenTrickle(t *testing.T) {
	p := slowProxyTLS(t, 0, true, func(h *hcmv3.HttpConnectionManager) {
		h.RequestHeadersTimeout = ms(rht)
		h.CommonHttpProtocolOptions = &corev3.HttpProtocolOptions{IdleTimeout: ms(time.Hour)}
	})
	c := dialTLS(t, p.addr, 0)
	br := bufio.NewReader(c)
	io.WriteString(c, bigHead("/a", 6<<10)+"\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	time.Sleep(2 * rht)
	before := p.counter("http.test.downstream_rq_header_timeout")
	start := time.Now()
	go func() {
		for _, b := range []byte("GET / HTTP/1.1\r\nHost: x\r\nX-Slow: abcdefghijklmnop") {
			if _, err := c.Write([]byte{b}); err != nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	readUntilClosed(t, c, 5*time.Second)
	if d := time.Since(start); d < rht-50*time.Millisecond || d > rht+time.Second {
		t.Errorf("closed %v after the head began, want about %v", d, rht)
	}
	waitFor(t, "header timeout counted", func() bool {
		return p.counter("http.test.downstream_rq_header_timeout") == before+1
	})
}
