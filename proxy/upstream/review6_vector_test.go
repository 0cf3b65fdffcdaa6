package upstream

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/strait-mesh/strait/proxy/balance"
	"github.com/strait-mesh/strait/proxy/httpmsg"
	clusterv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/cluster/v3"
	endpointv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/endpoint/v3"
)

// review6CountReader counts the bytes read from a connection.
type review6CountReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c review6CountReader) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	c.n.Add(int64(k))
	return k, err
}

// review6Body is n bytes that show where each byte came from.
func review6Body(n int, tag byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = "0123456789abcdefghijklmnopqrstuv"[(i/7+int(tag))%32]
	}
	return b
}

// TestReview6TxBytesExactWithVectoredBodies: requests with in-memory bodies (below, at and
// above the codec's vectored-write minimum, and above the size written with the head) go out
// through the HTTP/1.1 pool, and upstream_cx_tx_bytes_total equals, byte for byte, what the
// upstream read; each body arrives intact.
func TestReview6TxBytesExactWithVectoredBodies(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var received atomic.Int64
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	var mu sync.Mutex
	var bodies [][]byte
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer nc.Close()
				br := bufio.NewReader(review6CountReader{nc, &received})
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					b, _ := io.ReadAll(req.Body)
					mu.Lock()
					bodies = append(bodies, b)
					mu.Unlock()
					io.WriteString(nc, "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
				}
			}()
		}
	}()
	port := uint32(ln.Addr().(*net.TCPAddr).Port)
	c := staticCluster("vec", clusterv3.Cluster_ROUND_ROBIN)
	c.LoadAssignment.Endpoints = []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{
		lbEndpoint("127.0.0.1", port)}}}
	cl, st := compileT(t, c, Deps{})
	sizes := []int{100, 511, 512, 1024, 4096, 5000, 16 << 10, 20000, 300 << 10}
	for i, n := range sizes {
		body := review6Body(n, byte(i))
		req, _ := http.NewRequestWithContext(context.Background(), "POST", "http://vec.test/p", nil)
		req.Body = httpmsg.NewBytesBody(body)
		req.ContentLength = int64(n)
		resp, err := cl.RoundTrip(req, balance.Context{})
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		mu.Lock()
		got := bodies[len(bodies)-1]
		mu.Unlock()
		if !bytes.Equal(got, body) {
			t.Errorf("%d bytes: the upstream read %d other bytes", n, len(got))
		}
		if tx := counter(st, "cluster.vec.upstream_cx_tx_bytes_total"); tx != uint64(received.Load()) {
			t.Errorf("after %d bytes: upstream_cx_tx_bytes_total %d, the upstream read %d", n, tx, received.Load())
		}
	}
}

// TestReview6TLSUpstreamInMemoryBody: over TLS (no vectored write beneath TLS) an in-memory
// body of every size arrives intact.
func TestReview6TLSUpstreamInMemoryBody(t *testing.T) {
	pki := newPKI(t)
	b := newTLSBackend(t, pki)
	b.setHandler(func(w http.ResponseWriter, r *http.Request) {
		got, _ := io.ReadAll(r.Body)
		w.Header().Set("x-len", strconv.Itoa(len(got)))
		w.Write(got)
	})
	c := staticCluster("tls-vec", clusterv3.Cluster_ROUND_ROBIN, b)
	c.TransportSocket = upstreamTLS(t, pki, "spiffe://test.local/ns/default/sa/backend")
	cl, _ := compileT(t, c, tlsDeps())
	for i, n := range []int{600, 4096, 20000, 200 << 10} {
		body := review6Body(n, byte(i))
		req, _ := http.NewRequestWithContext(context.Background(), "POST", "http://backend.test/p", nil)
		req.Body = httpmsg.NewBytesBody(body)
		req.ContentLength = int64(n)
		resp, err := cl.RoundTrip(req, balance.Context{})
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !bytes.Equal(got, body) {
			t.Errorf("%d bytes over TLS: echoed %d other bytes", n, len(got))
		}
	}
}
