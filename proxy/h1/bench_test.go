package h1

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/strait-mesh/strait/proxy/httpmsg"
)

var helloBody = []byte("hello, world")

// codecPair is the codec's server on a loopback port and a Pool to it.
func codecPair(tb testing.TB) *Pool {
	s := &Server{Handler: HandlerFunc(func(w *ResponseWriter, r *httpmsg.Request) {
		w.Header().Add("content-type", "text/plain")
		w.Write(helloBody)
	})}
	addr := listen(tb, func(c net.Conn) { s.ServeConn(c) })
	return newPool(addr)
}

// codecGet sends one GET through p, reading the response into resp and buf.
func codecGet(p *Pool, req *httpmsg.Request, resp *httpmsg.Response, buf []byte) error {
	if err := p.RoundTrip(context.Background(), req, resp); err != nil {
		return err
	}
	if err := drainBody(resp.Body, buf); err != nil {
		return err
	}
	return resp.Body.Close()
}

// drainBody reads r to EOF through buf, without allocating.
func drainBody(r io.Reader, buf []byte) error {
	for {
		if _, err := r.Read(buf); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
}

// TestKeepAliveGETNoAllocs checks the steady-state cost of a keep-alive GET through the
// codec's client and server (both sides counted): no allocation.
func TestKeepAliveGETNoAllocs(t *testing.T) {
	p := codecPair(t)
	defer p.Close()
	req := newRequest("GET", "/hello", "", 0)
	req.Header.Add("user-agent", "bench")
	resp := new(httpmsg.Response)
	buf := make([]byte, 512)
	for i := 0; i < 10; i++ {
		if err := codecGet(p, req, resp, buf); err != nil {
			t.Fatal(err)
		}
	}
	allocs := testing.AllocsPerRun(200, func() {
		if err := codecGet(p, req, resp, buf); err != nil {
			t.Fatal(err)
		}
	})
	// AllocsPerRun counts the whole process; allow for a rare runtime allocation.
	if allocs > 0.1 {
		t.Errorf("%.2f allocations per keep-alive GET, want 0", allocs)
	}
}

// BenchmarkKeepAliveGET is one keep-alive GET and its 12-byte response over loopback: the
// codec's Pool and Server against net/http's Transport and Server.
func BenchmarkKeepAliveGET(b *testing.B) {
	b.Run("codec", func(b *testing.B) {
		p := codecPair(b)
		defer p.Close()
		req := newRequest("GET", "/hello", "", 0)
		req.Header.Add("user-agent", "bench")
		resp := new(httpmsg.Response)
		buf := make([]byte, 512)
		b.ReportAllocs()
		for b.Loop() {
			if err := codecGet(p, req, resp, buf); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("net-http", func(b *testing.B) {
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Write(helloBody)
		})}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		go srv.Serve(ln)
		defer srv.Close()
		tr := &http.Transport{MaxIdleConnsPerHost: 4}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+"/hello", nil)
		req.Header.Set("User-Agent", "bench")
		buf := make([]byte, 512)
		b.ReportAllocs()
		for b.Loop() {
			resp, err := tr.RoundTrip(req)
			if err != nil {
				b.Fatal(err)
			}
			if err := drainBody(resp.Body, buf); err != nil {
				b.Fatal(err)
			}
			resp.Body.Close()
		}
	})
}
