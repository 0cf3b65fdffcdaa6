package h1

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/sniff"
)

// Tests of the write stall limit beneath wrappers (SetWriteStall through NetConn): TLS and
// peeked connections, as the listener hands them to the HTTP connection manager.

// tlsOverDirect returns a TLS server connection over a DirectConn (beneath it a sniff.Conn
// when peeked is set, as after the listener's tls_inspector), its handshake done, and the
// client's TLS end and raw TCP end on loopback. small makes the server's send buffer small,
// so that its writes wait soon when the client reads slowly or not at all.
func tlsOverDirect(t *testing.T, peeked, small bool) (srv *tls.Conn, cli *tls.Conn, raw net.Conn) {
	t.Helper()
	d, s := directPair(t)
	if small {
		d.(*directConn).SetWriteBuffer(4096)
	}
	var under net.Conn = d
	if peeked {
		under = sniff.NewConn(d)
	}
	srv = tls.Server(under, &tls.Config{Certificates: []tls.Certificate{testenv.SelfSigned(t, "example.com")}})
	cli = tls.Client(s, &tls.Config{InsecureSkipVerify: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- cli.HandshakeContext(ctx) }()
	if err := srv.HandshakeContext(ctx); err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	return srv, cli, s
}

// TestWriteStallBeneathWrappers: SetWriteStall and DeadlineSets find the DirectConn beneath
// *tls.Conn and sniff.Conn (nested too), and refuse wrappers of other connections.
func TestWriteStallBeneathWrappers(t *testing.T) {
	d, _ := directPair(t)
	peeked := sniff.NewConn(d)
	for _, nc := range []net.Conn{peeked, tls.Server(d, &tls.Config{}), tls.Server(peeked, &tls.Config{})} {
		if !SetWriteStall(nc, time.Second) {
			t.Errorf("SetWriteStall refused %T over a DirectConn", nc)
		}
		if DeadlineSets(nc) < 0 {
			t.Errorf("DeadlineSets refused %T over a DirectConn", nc)
		}
	}
	if got := time.Duration(d.(*directConn).wr.stall.Load()); got != time.Second {
		t.Errorf("stall limit beneath the wrappers %v, want 1s", got)
	}
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	for _, nc := range []net.Conn{sniff.NewConn(p1), tls.Server(sniff.NewConn(p1), &tls.Config{})} {
		if SetWriteStall(nc, time.Second) || DeadlineSets(nc) != -1 {
			t.Errorf("SetWriteStall or DeadlineSets took %T over a pipe", nc)
		}
	}
}

// TestTLSWriteStall: over TLS on a DirectConn with a write stall limit, writes the socket takes
// at once arm no deadline, a TLS write to a peer that reads nothing fails with ErrWriteStall
// (and the TLS connection stays failed), and a peer that keeps reading, however slowly, is
// not cut off.
func TestTLSWriteStall(t *testing.T) {
	for _, peeked := range []bool{false, true} {
		name := "tls"
		if peeked {
			name = "peeked tls"
		}
		t.Run(name+"/fast", func(t *testing.T) {
			srv, cli, _ := tlsOverDirect(t, peeked, false)
			SetWriteStall(srv, 50*time.Millisecond)
			before := DeadlineSets(srv)
			go io.Copy(io.Discard, cli)
			for i := 0; i < 200; i++ {
				if _, err := srv.Write([]byte("0123456789")); err != nil {
					t.Fatal(err)
				}
			}
			if n := DeadlineSets(srv) - before; n != 0 {
				t.Errorf("%d socket deadline changes for TLS writes that did not wait, want 0", n)
			}
		})
		t.Run(name+"/stalled", func(t *testing.T) {
			srv, _, raw := tlsOverDirect(t, peeked, true)
			raw.(*net.TCPConn).SetReadBuffer(4096)
			SetWriteStall(srv, 100*time.Millisecond)
			expectStalledWrite(t, srv)
			if _, err := srv.Write([]byte("x")); !errors.Is(err, ErrWriteStall) {
				t.Errorf("TLS write after a stall: %v, want the stall again", err)
			}
		})
		t.Run(name+"/slow reader", func(t *testing.T) {
			srv, cli, raw := tlsOverDirect(t, peeked, true)
			raw.(*net.TCPConn).SetReadBuffer(256 << 10)
			SetWriteStall(srv, time.Second)
			before := DeadlineSets(srv)
			const size = 2 << 20
			done := make(chan error, 1)
			go func() {
				// 2 MiB at up to 64 KiB every 50 ms: over 1.6 s in all, well over the stall
				// limit, yet never stalled. The limit is 20 pauses between reads, so that a
				// reader held up by a busy machine is not taken for a stalled one.
				buf := make([]byte, 64<<10)
				total := 0
				for total < size {
					time.Sleep(50 * time.Millisecond)
					n, err := io.ReadFull(cli, buf) // several TLS records: size is a multiple
					total += n
					if err != nil {
						done <- err
						return
					}
				}
				done <- nil
			}()
			start := time.Now()
			if _, err := srv.Write(make([]byte, size)); err != nil {
				t.Fatalf("TLS write to a slow but steady reader: %v", err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if DeadlineSets(srv) == before {
				t.Error("the write never waited: the test does not exercise the stall clock")
			}
			t.Logf("written in %v", time.Since(start))
		})
	}
}
