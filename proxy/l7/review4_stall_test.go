package l7

import (
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/strait-mesh/strait/proxy/stats"
)

// hiddenConn hides the TCP connection beneath it: h1.DirectConn and h1.SetWriteStall do not
// find it, so the connection's write stall limit is clockConn.Write's (stallLow false), as
// for a listener that hands over some other net.Conn.
type hiddenConn struct{ net.Conn }

// TestReview4WriteStallWithoutSocketLimit: with stallLow false, h1Net.Write goes through
// clockConn.Write's deadline loop: a client that reads nothing of a large response is closed
// after stream_idle_timeout without progress, and downstream_cx_write_stall_timeout counts it
// once.
func TestReview4WriteStallWithoutSocketLimit(t *testing.T) {
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", itoa(64<<20))
		buf := make([]byte, 32<<10)
		for n := 0; n < 64<<20; n += len(buf) {
			if _, err := w.Write(buf); err != nil {
				return
			}
		}
	}), false)
	env := &testEnv{clusters: map[string]Upstream{"b": newTestUpstream(up, false)}}
	hcm := inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("b"))))
	hcm.StreamIdleTimeout = ms(300 * time.Millisecond)
	for _, r := range hcm.GetRouteConfig().VirtualHosts[0].Routes {
		if a := r.GetRoute(); a != nil {
			a.IdleTimeout = ms(time.Hour)
		}
	}
	p := &proxy{st: stats.NewStore(), infos: make(chan *RequestInfo, 1024)}
	h, err := New(hcm, env, Options{Stats: p.st})
	if err != nil {
		t.Fatal(err)
	}
	p.h = h
	p.addr = serveConns(t, h, func(net.Conn) ConnInfo { return ConnInfo{} })
	// serveConns hands over the accepted *net.TCPConn; wrap it through a listener of our own.
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
	c := dial(t, ln.Addr().String())
	c.(*net.TCPConn).SetReadBuffer(4096)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	waitConns(t, p, 1, 2*time.Second)
	d := waitConns(t, p, 0, 10*time.Second)
	t.Logf("closed after %v", d)
	time.Sleep(100 * time.Millisecond)
	if n := p.counter("http.test.downstream_cx_write_stall_timeout"); n != 1 {
		t.Errorf("downstream_cx_write_stall_timeout = %d, want 1", n)
	}
}
