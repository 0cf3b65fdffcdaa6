package l7

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/strait-mesh/strait/proxy/h1"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
)

// Tests of the downstream deadlines applied lazily (h1.DirectConn) and of the write stall
// limit armed only when a write waits (h1.SetWriteStall).

// postOn sends a small POST on c and reads its response.
func postOn(t *testing.T, c net.Conn, br *bufio.Reader) {
	t.Helper()
	if _, err := io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

// downstreamDeadlineSets returns the socket deadline changes of the proxy's only downstream
// connection.
func downstreamDeadlineSets(t *testing.T, p *proxy) int64 {
	t.Helper()
	return h1.DeadlineSets(onlyConn(t, p).cc.raw)
}

// TestDownstreamDeadlineSets: keep-alive requests with a body, through the connection manager
// with every connection timeout at its default, move the downstream socket's deadlines a few
// times in all, not several times per request, and arm no write stall deadline for responses
// the socket takes at once.
func TestDownstreamDeadlineSets(t *testing.T) {
	p := slowProxy(t, 0, nil)
	c := dial(t, p.addr)
	br := bufio.NewReader(c)
	const n = 200
	for i := 0; i < n; i++ {
		postOn(t, c, br)
	}
	sets := downstreamDeadlineSets(t, p)
	t.Logf("%d socket deadline changes for %d requests", sets, n)
	if sets < 0 || sets > 6 {
		t.Errorf("%d socket deadline changes for %d requests, want at most 6", sets, n)
	}
}

// TestIdleTimeoutAfterHeadDeadline: request_headers_timeout, armed on the socket for a request
// head, passes while the connection is idle between requests: the connection stays open and
// serves the next request, and idle_timeout then ends it, counted as an idle timeout, not a
// header timeout.
func TestIdleTimeoutAfterHeadDeadline(t *testing.T) {
	p := slowProxy(t, 0, func(h *hcmv3.HttpConnectionManager) {
		h.RequestHeadersTimeout = ms(50 * time.Millisecond)
		h.CommonHttpProtocolOptions = &corev3.HttpProtocolOptions{IdleTimeout: ms(1500 * time.Millisecond)}
	})
	c := dial(t, p.addr)
	br := bufio.NewReader(c)
	postOn(t, c, br)
	time.Sleep(300 * time.Millisecond) // past the head deadline, well within idle_timeout
	postOn(t, c, br)
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("read on an idle connection: %v, want EOF at idle_timeout", err)
	}
	waitConns(t, p, 0, 5*time.Second)
	if got := p.counter("http.test.downstream_cx_idle_timeout"); got != 1 {
		t.Errorf("downstream_cx_idle_timeout %d, want 1", got)
	}
	if got := p.counter("http.test.downstream_rq_header_timeout"); got != 0 {
		t.Errorf("downstream_rq_header_timeout %d, want 0", got)
	}
}

// TestWriteStallAfterFastResponses: responses the socket takes at once arm no deadline, and
// the write stall limit still ends a connection whose client stops reading a later, larger
// response (counted).
func TestWriteStallAfterFastResponses(t *testing.T) {
	p := slowProxy(t, 64<<20, func(h *hcmv3.HttpConnectionManager) {
		h.StreamIdleTimeout = ms(300 * time.Millisecond)
		for _, r := range h.GetRouteConfig().VirtualHosts[0].Routes {
			if a := r.GetRoute(); a != nil {
				a.IdleTimeout = ms(time.Hour) // the router's own idle timer stays out of the way
			}
		}
	})
	c := dial(t, p.addr)
	c.(*net.TCPConn).SetReadBuffer(4096)
	br := bufio.NewReader(c)
	for i := 0; i < 20; i++ {
		io.WriteString(c, "GET /direct HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n") // 64 MiB, never read
	d := waitConns(t, p, 0, 10*time.Second)
	t.Logf("closed after %v", d)
	if p.counter("http.test.downstream_cx_write_stall_timeout") != 1 {
		t.Error("downstream_cx_write_stall_timeout not counted once")
	}
}
