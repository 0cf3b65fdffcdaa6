package l7

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/strait-mesh/strait/proxy/h1"
	"github.com/strait-mesh/strait/proxy/sniff"
	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
)

// Tests of the write stall limit on TLS and peeked connections: proxy/h1 serves them, and the
// limit is kept by the socket beneath TLS and the peeked bytes (h1.SetWriteStall through
// *tls.Conn and sniff.Conn), as on plain TCP.

// stallTweak sets stream_idle_timeout to d and keeps the router's own idle timer out of the
// way, so that the connection's write stall alone can end a connection.
func stallTweak(d time.Duration) func(*hcmv3.HttpConnectionManager) {
	return func(h *hcmv3.HttpConnectionManager) {
		h.StreamIdleTimeout = ms(d)
		for _, r := range h.GetRouteConfig().VirtualHosts[0].Routes {
			if a := r.GetRoute(); a != nil {
				a.IdleTimeout = ms(time.Hour)
			}
		}
	}
}

// dialTLS opens a TLS connection to the proxy, speaking HTTP/1.1, with a receive buffer of
// rcvbuf bytes (0: the default).
func dialTLS(t *testing.T, addr string, rcvbuf int) *tls.Conn {
	t.Helper()
	raw := dial(t, addr)
	if rcvbuf > 0 {
		raw.(*net.TCPConn).SetReadBuffer(rcvbuf)
	}
	c := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Time{})
	return c
}

// onlyConn returns the proxy's only downstream connection.
func onlyConn(t *testing.T, p *proxy) *connState {
	t.Helper()
	var cs *connState
	n := 0
	p.h.conns.Range(func(_, v any) bool {
		cs = v.(*connState)
		n++
		return true
	})
	if n != 1 {
		t.Fatalf("%d downstream connections, want 1", n)
	}
	return cs
}

// TestTLSWriteStall: over TLS, a client that never reads a large response has its connection
// closed at the write stall limit (counted once), the limit kept by the socket beneath TLS;
// a client that keeps reading, however slowly, gets the whole response.
func TestTLSWriteStall(t *testing.T) {
	const stall = 300 * time.Millisecond
	t.Run("non-reader", func(t *testing.T) {
		p := slowProxyTLS(t, 64<<20, true, stallTweak(stall))
		c := dialTLS(t, p.addr, 4096)
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		waitConns(t, p, 1, 2*time.Second)
		for start := time.Now(); !onlyConn(t, p).h1.Load(); time.Sleep(time.Millisecond) {
			if time.Since(start) > 2*time.Second {
				t.Fatal("the connection is not served by proxy/h1")
			}
		}
		cs := onlyConn(t, p)
		if !cs.info.TLS || !cs.cc.stallLow.Load() {
			t.Errorf("TLS %v, write stall kept by the socket %v: want both", cs.info.TLS, cs.cc.stallLow.Load())
		}
		expectStallClosed(t, p)
	})
	t.Run("slow reader", func(t *testing.T) {
		const size = 2 << 20
		p := slowProxyTLS(t, size, true, stallTweak(stall))
		c := dialTLS(t, p.addr, 64<<10)
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		br := bufio.NewReaderSize(c, 32<<10)
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		// 2 MiB at 32 KiB every 10 ms: well over the stall limit in all, never stalled.
		start := time.Now()
		total := readSlowly(t, resp.Body)
		t.Logf("read %d bytes in %v", total, time.Since(start))
		if total != size {
			t.Errorf("read %d bytes, want %d", total, size)
		}
		if time.Since(start) < stall {
			t.Log("the body took less than the stall limit: the test may not exercise it")
		}
		if got := p.counter("http.test.downstream_cx_write_stall_timeout"); got != 0 {
			t.Errorf("downstream_cx_write_stall_timeout %d, want 0", got)
		}
	})
}

// TestTLSDownstreamDeadlineSets: keep-alive requests over TLS move the socket's deadlines
// beneath TLS a few times in all, as on plain TCP (TestDownstreamDeadlineSets).
func TestTLSDownstreamDeadlineSets(t *testing.T) {
	p := slowProxyTLS(t, 0, true, nil)
	c := dialTLS(t, p.addr, 0)
	br := bufio.NewReader(c)
	const n = 200
	for i := 0; i < n; i++ {
		postOn(t, c, br)
	}
	sets := h1.DeadlineSets(onlyConn(t, p).cc.raw)
	t.Logf("%d socket deadline changes for %d requests", sets, n)
	if sets < 0 || sets > 6 {
		t.Errorf("%d socket deadline changes for %d requests, want at most 6", sets, n)
	}
}

// servePeeked serves h on a new loopback listener whose connections are first peeked at by
// the http_inspector, as the listener does: h gets the sniff.Conn replaying the peeked bytes,
// over h1.DirectConn. The listener is closed at the end of the test.
func servePeeked(t *testing.T, h *Handler) string {
	t.Helper()
	return acceptLoop(t, func(c net.Conn) {
		pc, res, err := sniff.Inspect(c, sniff.Options{HTTP: true, Timeout: 5 * time.Second})
		if err != nil {
			c.Close()
			return
		}
		pc.Conn = h1.DirectConn(pc.Conn)
		info := loopbackInfo(c)
		if len(res.ALPN) > 0 {
			info.ALPN = res.ALPN[0]
		}
		h.ServeConn(pc, info)
	})
}

// TestPeekedWriteStall: a plaintext connection the http_inspector peeked at keeps the write
// stall limit at the socket beneath the peeked bytes: a client that never reads a large
// response has its connection closed (counted once), one that keeps reading slowly does not.
func TestPeekedWriteStall(t *testing.T) {
	const stall = 300 * time.Millisecond
	t.Run("non-reader", func(t *testing.T) {
		p := slowProxy(t, 64<<20, stallTweak(stall))
		addr := servePeeked(t, p.h)
		c := dial(t, addr)
		c.(*net.TCPConn).SetReadBuffer(4096)
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		waitConns(t, p, 1, 2*time.Second)
		for start := time.Now(); !onlyConn(t, p).h1.Load(); time.Sleep(time.Millisecond) {
			if time.Since(start) > 2*time.Second {
				t.Fatal("the connection is not served by proxy/h1")
			}
		}
		cs := onlyConn(t, p)
		if _, ok := cs.cc.raw.(*sniff.Conn); !ok || !cs.cc.stallLow.Load() {
			t.Errorf("connection %T, write stall kept by the socket %v: want a sniff.Conn, true", cs.cc.raw, cs.cc.stallLow.Load())
		}
		expectStallClosed(t, p)
	})
	t.Run("slow reader", func(t *testing.T) {
		const size = 2 << 20
		p := slowProxy(t, size, stallTweak(stall))
		c := dial(t, servePeeked(t, p.h))
		c.(*net.TCPConn).SetReadBuffer(64 << 10)
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReaderSize(c, 32<<10), nil)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		total := readSlowly(t, resp.Body)
		t.Logf("read %d bytes in %v", total, time.Since(start))
		if got := p.counter("http.test.downstream_cx_write_stall_timeout"); total != size || got != 0 {
			t.Errorf("read %d bytes (want %d), %d write stalls (want 0)", total, size, got)
		}
	})
}

// readSlowly reads r to its end, 32 KiB every 10 ms (a reader slower than the proxy writes,
// but one that keeps taking bytes), and returns how many bytes it read.
func readSlowly(t *testing.T, r io.Reader) int64 {
	t.Helper()
	var total int64
	for {
		time.Sleep(10 * time.Millisecond)
		n, err := io.CopyN(io.Discard, r, 32<<10)
		total += n
		if err == io.EOF {
			return total
		}
		if err != nil {
			t.Fatalf("after %d bytes: %v", total, err)
		}
	}
}

// expectStallClosed waits for the proxy's downstream connection to close after a write stall
// and checks that the stall was counted once.
func expectStallClosed(t *testing.T, p *proxy) {
	t.Helper()
	d := waitConns(t, p, 0, 10*time.Second)
	t.Logf("closed after %v", d)
	if got := p.counter("http.test.downstream_cx_write_stall_timeout"); got != 1 {
		t.Errorf("downstream_cx_write_stall_timeout %d, want 1", got)
	}
}
