package upstream

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strait-mesh/strait/proxy/balance"
	"github.com/strait-mesh/strait/proxy/httpmsg"
	clusterv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/cluster/v3"
	endpointv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/endpoint/v3"
)

// cxBytesWriter counts the bytes written to a connection.
type cxBytesWriter struct {
	w     io.Writer
	n     *atomic.Int64
	wrote chan struct{}
}

func (c cxBytesWriter) Write(p []byte) (int, error) {
	k, err := c.w.Write(p)
	c.n.Add(int64(k))
	select {
	case c.wrote <- struct{}{}:
	default: // the test drains it; never full
	}
	return k, err
}

// cxBytesUpstream serves raw HTTP/1.1 on loopback and counts the bytes it read and wrote:
// /len/N answers N bytes with a Content-Length, /chunked a chunked body with a trailer,
// /close a body delimited by the end of the connection, /upgrade a 101 and then echoes what
// it reads.
// Each write that ended signals on wrote.
func cxBytesUpstream(t *testing.T) (port uint32, read, written *atomic.Int64, wrote chan struct{}) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	read, written, wrote = new(atomic.Int64), new(atomic.Int64), make(chan struct{}, 64)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	serve := func(nc net.Conn) {
		defer nc.Close()
		br := bufio.NewReader(review6CountReader{nc, read})
		w := cxBytesWriter{nc, written, wrote}
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			switch p := req.URL.Path; {
			case strings.HasPrefix(p, "/len/"):
				n, _ := strconv.Atoi(p[len("/len/"):])
				io.WriteString(w, "HTTP/1.1 200 OK\r\ncontent-length: "+strconv.Itoa(n)+"\r\n\r\n"+strings.Repeat("x", n))
			case p == "/chunked":
				io.WriteString(w, "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-t\r\n\r\n"+
					"5\r\nhello\r\n1000\r\n"+strings.Repeat("y", 0x1000)+"\r\n0\r\nx-t: v\r\n\r\n")
			case p == "/close":
				io.WriteString(w, "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n"+strings.Repeat("z", 9000))
				return
			case p == "/upgrade":
				io.WriteString(w, "HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n")
				buf := make([]byte, 64)
				for {
					n, err := br.Read(buf)
					if n > 0 {
						w.Write(buf[:n])
					}
					if err != nil {
						return
					}
				}
			}
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); serve(nc) }()
		}
	}()
	return uint32(ln.Addr().(*net.TCPAddr).Port), read, written, wrote
}

// streamBody is a request body not held in memory: the HTTP/1.1 pool streams it from a
// goroutine of its own.
type streamBody struct{ r io.Reader }

func (s *streamBody) Read(p []byte) (int, error) { return s.r.Read(p) }
func (s *streamBody) Close() error               { return nil }

// TestCxBytesExactOnPlainHTTP1: over a plaintext HTTP/1.1 connection, whose codec reads and
// writes the socket beneath the connection's accounting and counts the bytes itself,
// upstream_cx_tx_bytes_total and upstream_cx_rx_bytes_total equal, byte for byte, what the
// upstream read and wrote after each exchange: bodies in memory and streamed, chunked, large
// and connection-delimited responses, and a protocol switch's tunnel.
func TestCxBytesExactOnPlainHTTP1(t *testing.T) {
	port, read, written, wrote := cxBytesUpstream(t)
	c := staticCluster("cxb", clusterv3.Cluster_ROUND_ROBIN)
	c.LoadAssignment.Endpoints = []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{
		lbEndpoint("127.0.0.1", port)}}}
	cl, st := compileT(t, c, Deps{})
	check := func(what string) {
		t.Helper()
		// The client may have read a response before the upstream's write returned: wait for
		// the writes that ended meanwhile (bounded).
		for rx := counter(st, "cluster.cxb.upstream_cx_rx_bytes_total"); rx > uint64(written.Load()); {
			select {
			case <-wrote:
			case <-time.After(10 * time.Second):
				t.Fatalf("%s: the upstream's write did not end", what)
			}
		}
		for len(wrote) > 0 {
			<-wrote
		}
		if tx := counter(st, "cluster.cxb.upstream_cx_tx_bytes_total"); tx != uint64(read.Load()) {
			t.Errorf("%s: upstream_cx_tx_bytes_total %d, the upstream read %d", what, tx, read.Load())
		}
		if rx := counter(st, "cluster.cxb.upstream_cx_rx_bytes_total"); rx != uint64(written.Load()) {
			t.Errorf("%s: upstream_cx_rx_bytes_total %d, the upstream wrote %d", what, rx, written.Load())
		}
	}
	send := func(method, path string, body io.ReadCloser, n int64) *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(context.Background(), method, "http://cxb.test"+path, nil)
		if body != nil {
			req.Body, req.ContentLength = body, n
		}
		resp, err := cl.RoundTrip(req, balance.Context{})
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		return resp
	}
	exchange := func(method, path string, body io.ReadCloser, n int64) {
		t.Helper()
		resp := send(method, path, body, n)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		check(method + " " + path)
	}
	exchange("GET", "/len/2", nil, 0)
	exchange("POST", "/len/100", httpmsg.NewBytesBody(make([]byte, 700)), 700)    // with the head
	exchange("POST", "/len/10", httpmsg.NewBytesBody(make([]byte, 20000)), 20000) // vectored
	exchange("POST", "/len/3", &streamBody{strings.NewReader(strings.Repeat("s", 9000))}, 9000)
	exchange("PUT", "/chunked", &streamBody{strings.NewReader("chunked body")}, -1)
	exchange("GET", "/len/300000", nil, 0) // read past the buffer, straight into the caller's
	exchange("GET", "/close", nil, 0)

	resp := send("GET", "/upgrade", nil, 0)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: status %d", resp.StatusCode)
	}
	rw := resp.Body.(io.ReadWriteCloser)
	if _, err := io.WriteString(rw, "ping through the tunnel"); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len("ping through the tunnel"))
	if _, err := io.ReadFull(rw, got); err != nil || string(got) != "ping through the tunnel" {
		t.Fatalf("tunnel echo %q, %v", got, err)
	}
	check("tunnel")
	rw.Close()
}
