package l7

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/strait-mesh/strait/proxy/stats"
)

var kib = bytes.Repeat([]byte("x"), 1024)

// BenchmarkHandler measures the connection manager's own per-request work (admission, header
// handling, route match, filter pipeline, router, response copy) against an in-memory upstream,
// without sockets. Allocations include building the test request and recorder.
func BenchmarkHandler(b *testing.B) {
	env := &testEnv{clusters: map[string]Upstream{"c": cannedUpstream{}}}
	h, err := New(inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("c")))), env, Options{Stats: stats.NewStore()})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		r := httptest.NewRequest("GET", "http://svc.test/api/items?id=1", nil)
		w := httptest.NewRecorder()
		h.serveHTTP(w, r)
		if w.Code != 200 {
			b.Fatal(w.Code)
		}
	}
}

// BenchmarkLoopback compares a 1 KiB GET sent directly to an upstream with the same GET through
// the handler, HTTP/1.1 keep-alive on loopback (sequential requests).
func BenchmarkLoopback(b *testing.B) {
	up := startUpstream(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(kib) }), false)
	env := &testEnv{clusters: map[string]Upstream{"c": newTestUpstream(up, false)}}
	p := startProxyB(b, env)
	run := func(b *testing.B, url string) {
		c := h1Client()
		b.ReportAllocs()
		b.SetBytes(1024)
		for i := 0; i < b.N; i++ {
			resp, err := c.Get(url)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	b.Run("direct", func(b *testing.B) { run(b, "http://"+up+"/") })
	b.Run("proxy", func(b *testing.B) { run(b, "http://"+p+"/") })
	// The same through proxy/upstream's cluster (its HTTP/1.1 pool) instead of the test's
	// net/http Transport.
	pc := startProxyB(b, &testEnv{clusters: map[string]Upstream{"c": staticCluster(b, "c", up, false)}})
	b.Run("proxy_cluster", func(b *testing.B) { run(b, "http://"+pc+"/") })
	// A 1 KiB POST echoed back, as proxybench sends: the request body takes the small-body path.
	post := func(b *testing.B, url string) { postKiB(b, h1Client(), url) }
	b.Run("proxy_post", func(b *testing.B) { post(b, "http://"+p+"/") })
	// proxybench's path: a 1 KiB POST through a compiled cluster, and the same sent directly
	// (the client's and upstream's share, to subtract).
	b.Run("direct_post", func(b *testing.B) { post(b, "http://"+up+"/") })
	b.Run("proxy_cluster_post", func(b *testing.B) { post(b, "http://"+pc+"/") })
}

// postKiB sends b.N 1 KiB POSTs to url with c, reading each echoed response to its end.
func postKiB(b *testing.B, c *http.Client, url string) {
	b.ReportAllocs()
	b.SetBytes(2048)
	for i := 0; i < b.N; i++ {
		resp, err := c.Post(url, "application/octet-stream", bytes.NewReader(kib))
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}
