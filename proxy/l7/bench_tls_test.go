package l7

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/h1"
)

// BenchmarkDownstreamTLS is BenchmarkLoopback's proxy_cluster_post with TLS between the client
// and the proxy, terminated over h1.DirectConn as the listener does (an mTLS sidecar's inbound
// or a gateway): a 1 KiB POST echoed back, HTTP/1.1 keep-alive on loopback. The proxy's share
// is tls_post minus direct_post (the client's TLS work is in tls_post too: compare like with
// like). wdl/op is how many write deadlines the proxy set per request beneath TLS.
func BenchmarkDownstreamTLS(b *testing.B) {
	up := startUpstream(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(w, r.Body) }), false)
	h, err := New(inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("c")))),
		&testEnv{clusters: map[string]Upstream{"c": staticCluster(b, "c", up, false)}}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{testenv.SelfSigned(b, "proxy.test")},
		NextProtos: []string{"http/1.1"}}
	var wdl atomic.Int64
	b.Cleanup(func() { h.Close() })
	addr := acceptLoop(b, func(c net.Conn) {
		info := loopbackInfo(c)
		tc := tls.Server(deadlineCounter{h1.DirectConn(c), &wdl}, cfg)
		if tc.Handshake() != nil {
			c.Close()
			return
		}
		info.TLS, info.ALPN = true, tc.ConnectionState().NegotiatedProtocol
		h.ServeConn(tc, info)
	})
	c := &http.Client{Transport: &http.Transport{DisableCompression: true,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}}}}
	b.Run("direct_post", func(b *testing.B) { postKiB(b, c, "http://"+up+"/") })
	b.Run("tls_post", func(b *testing.B) {
		from := wdl.Load()
		postKiB(b, c, "https://"+addr+"/")
		b.ReportMetric(float64(wdl.Load()-from)/float64(b.N), "wdl/op")
	})
}

// deadlineCounter counts the write deadlines set on the connection beneath it; NetConn
// exposes that connection (h1.SetWriteStall finds it).
type deadlineCounter struct {
	net.Conn
	n *atomic.Int64
}

func (d deadlineCounter) NetConn() net.Conn { return d.Conn }

func (d deadlineCounter) SetWriteDeadline(t time.Time) error {
	d.n.Add(1)
	return d.Conn.SetWriteDeadline(t)
}

func (d deadlineCounter) SetDeadline(t time.Time) error {
	d.n.Add(1)
	return d.Conn.SetDeadline(t)
}
