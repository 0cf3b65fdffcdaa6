package l7

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/strait-mesh/strait/proxy/httpmsg"
)

// TestH1ConnStreamLifecycle: an HTTP/1.1 connection's Stream stays with it across release
// (kept), and goes back to streamPool when the connection ends only if its last request
// released it.
func TestH1ConnStreamLifecycle(t *testing.T) {
	c := &h1Conn{}
	s := c.newStream()
	if c.stream != s || !s.kept {
		t.Fatal("newStream: the connection does not keep its Stream")
	}
	s.method, s.req = "GET", &httpmsg.Request{}
	sc := s.newStreamCtx()
	sc.Context = context.Background()
	s.release()
	if c.stream != s || !s.kept || s.req != nil || s.method != "" {
		t.Fatal("release: a kept Stream is not left to its connection, reduced to what it keeps")
	}
	if s.sctx != sc || sc.Context == nil {
		t.Fatal("release: a kept Stream's context lost its parent (the connection's)")
	}
	c.endStream()
	if c.stream != nil || s.kept || sc.Context != nil {
		t.Fatal("endStream: a released Stream is not handed back to the pool without its context's parent")
	}

	c = &h1Conn{}
	s = c.newStream()
	s.req = &httpmsg.Request{} // a request that did not get to release (a panic)
	c.endStream()
	if c.stream != nil || !s.kept {
		t.Fatal("endStream: a Stream its request did not release went back to the pool")
	}
}

// TestKeepAliveResponsesThroughCopyBuffers sends requests over one keep-alive connection for
// responses that fit the Stream's own copy buffer (copyBufSmall), that do not, and of unknown
// length (the pooled buffer), with and without a request body: each response arrives whole.
func TestKeepAliveResponsesThroughCopyBuffers(t *testing.T) {
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		body := strings.Repeat(string(rune('a'+n%26)), n)
		if r.URL.Query().Get("chunked") == "" {
			w.Header().Set("Content-Length", strconv.Itoa(n))
		}
		for i := 0; i < len(body); i += 1000 {
			_, _ = io.WriteString(w, body[i:min(i+1000, len(body))])
			if f, ok := w.(http.Flusher); ok && r.URL.Query().Get("chunked") != "" {
				f.Flush()
			}
		}
	}), false)
	env := &testEnv{clusters: map[string]Upstream{"c": staticCluster(t, "c", up, false)}}
	p := startProxy(t, inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("c")))), env, false)
	c := h1Client()
	sizes := []int{0, 10, copyBufSmall, copyBufSmall + 1, 40000, 1024, 3}
	for _, method := range []string{"GET", "POST"} {
		for _, chunked := range []string{"", "1"} {
			for _, n := range sizes {
				u := p.url("/?n=" + strconv.Itoa(n) + "&chunked=" + chunked)
				var rb io.Reader
				if method == "POST" {
					rb = strings.NewReader(strings.Repeat("x", 1024))
				}
				req, _ := http.NewRequest(method, u, rb)
				resp, got := roundTrip(t, c, req)
				want := strings.Repeat(string(rune('a'+n%26)), n)
				if resp.StatusCode != 200 || got != want {
					t.Errorf("%s n=%d chunked=%q: status %d, %d bytes, want 200 and %d bytes",
						method, n, chunked, resp.StatusCode, len(got), n)
				}
			}
		}
	}
}

// TestLargeBodyHandsStreamBack: after a request with a body larger than keptStreamBody (or of
// unknown length) an HTTP/1.1 connection gives its Stream, which may keep the body's buffer,
// back to the pool (endStream) and takes another for its next request: every request on the
// keep-alive connection reaches the upstream whole.
func TestLargeBodyHandsStreamBack(t *testing.T) {
	up := startUpstream(t, echoHandler(), false)
	env := &testEnv{clusters: map[string]Upstream{"c": staticCluster(t, "c", up, false)}}
	p := startProxy(t, inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("c")))), env, false)
	c := h1Client()
	for i, body := range []string{"small", strings.Repeat("L", keptStreamBody+1), "s", strings.Repeat("M", 3*keptStreamBody), ""} {
		req, _ := http.NewRequest("POST", p.url("/"), strings.NewReader(body))
		if body == "" {
			req.Body = http.NoBody
		}
		if i == 3 {
			req.ContentLength = -1 // chunked
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if s := decodeSeen(t, resp); s.Body != body {
			t.Errorf("request %d: upstream got %d bytes, want %d", i, len(s.Body), len(body))
		}
	}
}
