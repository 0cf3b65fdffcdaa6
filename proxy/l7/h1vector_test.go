package l7

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/h1"
	"github.com/strait-mesh/strait/proxy/sniff"
)

// TestH1NetVector: the connection proxy/h1 serves offers the socket's vectored write when its
// writes go straight to a DirectConn socket, beneath the listener's peeked bytes too; not over
// TLS, nor when the write stall is clockConn's rather than the socket's.
func TestH1NetVector(t *testing.T) {
	pair := func() (net.Conn, net.Conn) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(); s.Close() })
		return h1.DirectConn(s), c
	}
	netOver := func(raw net.Conn, streamIdle time.Duration, stallLow bool) *h1Net {
		cc := &clockConn{h: &Handler{streamIdle: streamIdle}, raw: raw}
		cc.stallLow.Store(stallLow)
		return &h1Net{clockConn: cc, raw: raw}
	}
	for _, tc := range []struct {
		name string
		wrap func(net.Conn) net.Conn
	}{
		{"direct", func(c net.Conn) net.Conn { return c }},
		{"peeked", func(c net.Conn) net.Conn { return sniff.NewConn(c) }},
	} {
		srv, cli := pair()
		n := netOver(tc.wrap(srv), 0, false)
		v := n.Vector()
		if v == nil {
			t.Fatalf("%s: no vectored write", tc.name)
		}
		if k, err := v.WriteVector([]byte("head "), []byte("body")); k != 9 || err != nil {
			t.Fatalf("%s: WriteVector: %d, %v", tc.name, k, err)
		}
		got := make([]byte, 9)
		cli.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(cli, got); err != nil || string(got) != "head body" {
			t.Fatalf("%s: the peer read %q, %v", tc.name, got, err)
		}
		if netOver(tc.wrap(srv), time.Minute, true).Vector() == nil {
			t.Errorf("%s: no vectored write with the stall limit kept by the socket", tc.name)
		}
		if netOver(tc.wrap(srv), time.Minute, false).Vector() != nil {
			t.Errorf("%s: a vectored write around clockConn's write stall loop", tc.name)
		}
	}
	srv, _ := pair()
	tc := tls.Server(srv, &tls.Config{Certificates: []tls.Certificate{testenv.SelfSigned(t, "proxy.test")}})
	if netOver(tc, 0, false).Vector() != nil {
		t.Error("a vectored write beneath TLS (plaintext on the socket)")
	}
}
