package upstream

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/balance"
	clusterv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/cluster/v3"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	ppv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/transport_sockets/proxy_protocol/v3"
)

// proxyListener strips and records the PROXY header of each accepted connection.
type proxyListener struct {
	net.Listener
	mu      sync.Mutex
	headers []string
}

type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(b []byte) (int, error) { return c.r.Read(b) }

func (l *proxyListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	var hdr string
	if sig, _ := r.Peek(12); bytes.Equal(sig, proxyV2Signature) {
		fixed := make([]byte, 16)
		if _, err := io.ReadFull(r, fixed); err == nil {
			body := make([]byte, binary.BigEndian.Uint16(fixed[14:16]))
			_, _ = io.ReadFull(r, body)
			hdr = describeV2(fixed, body)
		}
	} else {
		line, _ := r.ReadString('\n')
		hdr = strings.TrimSpace(line)
	}
	_ = c.SetReadDeadline(time.Time{})
	l.mu.Lock()
	l.headers = append(l.headers, hdr)
	l.mu.Unlock()
	return &bufConn{Conn: c, r: r}, nil
}

func describeV2(fixed, body []byte) string {
	if fixed[12] == 0x20 {
		return "v2 LOCAL"
	}
	switch fixed[13] {
	case 0x11:
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[0:4])), binary.BigEndian.Uint16(body[8:10]))
		dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[4:8])), binary.BigEndian.Uint16(body[10:12]))
		return "v2 " + src.String() + " " + dst.String()
	case 0x21:
		src := netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[0:16])), binary.BigEndian.Uint16(body[32:34]))
		dst := netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[16:32])), binary.BigEndian.Uint16(body[34:36]))
		return "v2 " + src.String() + " " + dst.String()
	}
	return "v2 ?"
}

func (l *proxyListener) seen() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.headers...)
}

func proxyProtocolSocket(t *testing.T, v corev3.ProxyProtocolConfig_Version) *corev3.TransportSocket {
	pp := &ppv3.ProxyProtocolUpstreamTransport{
		Config:          &corev3.ProxyProtocolConfig{Version: v},
		TransportSocket: &corev3.TransportSocket{Name: "envoy.transport_sockets.raw_buffer"},
	}
	return &corev3.TransportSocket{Name: "envoy.transport_sockets.upstream_proxy_protocol",
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: testenv.MustAny(t, pp)}}
}

func TestUpstreamProxyProtocol(t *testing.T) {
	for _, v := range []corev3.ProxyProtocolConfig_Version{corev3.ProxyProtocolConfig_V1, corev3.ProxyProtocolConfig_V2} {
		t.Run(v.String(), func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			pl := &proxyListener{Listener: ln}
			srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-Backend", "pp")
			})}
			go func() { _ = srv.Serve(pl) }()
			defer srv.Close()
			c := staticCluster("pp-"+v.String(), clusterv3.Cluster_ROUND_ROBIN)
			c.LoadAssignment.Endpoints[0].LbEndpoints = nil
			c.LoadAssignment.Endpoints[0].LbEndpoints = append(c.LoadAssignment.Endpoints[0].LbEndpoints,
				lbEndpoint("127.0.0.1", uint32(ln.Addr().(*net.TCPAddr).Port)))
			c.TransportSocket = proxyProtocolSocket(t, v)
			cl, _ := compileT(t, c, Deps{})

			down1 := WithDownstreamAddrs(context.Background(), netip.MustParseAddrPort("10.1.2.3:40000"), netip.MustParseAddrPort("10.9.9.9:8080"))
			down2 := WithDownstreamAddrs(context.Background(), netip.MustParseAddrPort("10.1.2.4:40001"), netip.MustParseAddrPort("10.9.9.9:8080"))
			for _, ctx := range []context.Context{down1, down1, down2, context.Background()} {
				ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				resp, err := doCtx(ctx, cl, balance.Context{}, "GET", "/")
				cancel()
				if err != nil || resp.Header.Get("X-Backend") != "pp" {
					t.Fatalf("request: %v %v", resp, err)
				}
			}
			conn, err := cl.Dial(down2, balance.Context{})
			if err != nil {
				t.Fatal(err)
			}
			_ = conn.Close()
			want := map[corev3.ProxyProtocolConfig_Version][]string{
				corev3.ProxyProtocolConfig_V1: {"PROXY TCP4 10.1.2.3 10.9.9.9 40000 8080", "PROXY TCP4 10.1.2.4 10.9.9.9 40001 8080", "PROXY UNKNOWN", "PROXY TCP4 10.1.2.4 10.9.9.9 40001 8080"},
				corev3.ProxyProtocolConfig_V2: {"v2 10.1.2.3:40000 10.9.9.9:8080", "v2 10.1.2.4:40001 10.9.9.9:8080", "v2 LOCAL", "v2 10.1.2.4:40001 10.9.9.9:8080"},
			}[v]
			testenv.WaitFor(t, "the TCP connection's header", 5*time.Second, func() bool { return len(pl.seen()) == len(want) })
			// One connection per downstream address pair (the repeated down1 request reused its own).
			if got := pl.seen(); strings.Join(got, "|") != strings.Join(want, "|") {
				t.Fatalf("headers\n%q\nwant\n%q", got, want)
			}
		})
	}
}

func TestProxyHeaderIPv6(t *testing.T) {
	d := downstreamAddrs{src: netip.MustParseAddrPort("[2001:db8::1]:1234"), dst: netip.MustParseAddrPort("[2001:db8::2]:80")}
	if got := string(proxyHeader(1, d, true)); got != "PROXY TCP6 2001:db8::1 2001:db8::2 1234 80\r\n" {
		t.Fatalf("v1: %q", got)
	}
	h := proxyHeader(2, d, true)
	if got := describeV2(h[:16], h[16:]); got != "v2 [2001:db8::1]:1234 [2001:db8::2]:80" {
		t.Fatalf("v2: %q", got)
	}
	// Mixed families cannot be expressed: LOCAL.
	d.dst = netip.MustParseAddrPort("10.0.0.1:80")
	if got := string(proxyHeader(1, d, true)); got != "PROXY UNKNOWN\r\n" {
		t.Fatalf("mixed: %q", got)
	}
}
