package upstream

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/balance"
	"github.com/strait-mesh/strait/proxy/h1"
	"github.com/strait-mesh/strait/proxy/tlsx"
	clusterv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/cluster/v3"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	endpointv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/endpoint/v3"
	tlsv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/matcher/v3"
)

func protoOptions(t testing.TB, o *httpv3.HttpProtocolOptions) map[string]*anypb.Any {
	return map[string]*anypb.Any{httpProtocolOptionsKey: testenv.MustAny(t, o)}
}

func explicitH2() *httpv3.HttpProtocolOptions {
	return &httpv3.HttpProtocolOptions{UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{
		ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
			Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}}}}}
}

func TestKeepAliveReuse(t *testing.T) {
	a := newBackend(t, "a")
	cl, st := compileT(t, staticCluster("ka", clusterv3.Cluster_ROUND_ROBIN, a), Deps{})
	for range 20 {
		get(t, cl, balance.Context{})
	}
	if n := a.accepted.Load(); n != 1 {
		t.Fatalf("20 sequential requests used %d connections, want 1", n)
	}
	if counter(st, "cluster.ka.upstream_cx_total") != 1 || counter(st, "cluster.ka.upstream_cx_http1_total") != 1 {
		t.Fatal("connection stats wrong")
	}
	// A closed keep-alive connection (server side) is replaced transparently.
	a.srv.SetKeepAlivesEnabled(false)
	for range 3 {
		get(t, cl, balance.Context{})
	}
}

func TestMaxRequestsPerConnectionAndIdleTimeout(t *testing.T) {
	a := newBackend(t, "a")
	c := staticCluster("maxrq", clusterv3.Cluster_ROUND_ROBIN, a)
	c.TypedExtensionProtocolOptions = protoOptions(t, &httpv3.HttpProtocolOptions{
		CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{
			MaxRequestsPerConnection: u32(5),
			IdleTimeout:              durationpb.New(200 * time.Millisecond),
		},
		UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{HttpProtocolOptions: &corev3.Http1ProtocolOptions{}}}},
	})
	cl, st := compileT(t, c, Deps{})
	for range 18 {
		get(t, cl, balance.Context{})
	}
	if n := a.accepted.Load(); n != 4 {
		t.Fatalf("18 requests at 5 per connection used %d connections, want 4", n)
	}
	testenv.WaitFor(t, "idle connection to time out", 5*time.Second, func() bool {
		return gauge(st, "cluster.maxrq.upstream_cx_active") == 0
	})
	if counter(st, "cluster.maxrq.upstream_cx_idle_timeout") != 1 {
		t.Fatalf("upstream_cx_idle_timeout = %d", counter(st, "cluster.maxrq.upstream_cx_idle_timeout"))
	}
}

func TestHTTP2Multiplexing(t *testing.T) {
	const n = 50
	var mu sync.Mutex
	arrived := 0
	all := make(chan struct{})
	a := newBackend(t, "a", h2cBackend)
	a.setHandler(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		arrived++
		if arrived == n {
			close(all)
		}
		mu.Unlock()
		// Hold every stream open until all n are in flight at once.
		select {
		case <-all:
		case <-time.After(10 * time.Second):
		}
	})
	c := staticCluster("h2", clusterv3.Cluster_ROUND_ROBIN, a)
	c.TypedExtensionProtocolOptions = protoOptions(t, explicitH2())
	cl, st := compileT(t, c, Deps{})
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := do(cl, balance.Context{}, "GET", "/")
			if err == nil && resp.Header.Get("X-Proto") != "HTTP/2.0" {
				err = fmt.Errorf("backend saw %s", resp.Header.Get("X-Proto"))
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := a.accepted.Load(); got != 1 {
		t.Fatalf("%d concurrent requests used %d connections, want 1", n, got)
	}
	if counter(st, "cluster.h2.upstream_cx_http2_total") != 1 {
		t.Fatal("upstream_cx_http2_total not 1")
	}
}

func TestUseDownstreamProtocol(t *testing.T) {
	a := newBackend(t, "a", h2cBackend)
	c := staticCluster("ds", clusterv3.Cluster_ROUND_ROBIN, a)
	c.TypedExtensionProtocolOptions = protoOptions(t, &httpv3.HttpProtocolOptions{UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_UseDownstreamProtocolConfig{
		UseDownstreamProtocolConfig: &httpv3.HttpProtocolOptions_UseDownstreamHttpConfig{
			HttpProtocolOptions: &corev3.Http1ProtocolOptions{}, Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}}}})
	cl, _ := compileT(t, c, Deps{})
	for _, major := range []int{1, 2} {
		req, _ := http.NewRequest("GET", "http://svc.test/", nil)
		req.ProtoMajor = major
		resp, err := cl.RoundTrip(req, balance.Context{})
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		want := map[int]string{1: "HTTP/1.1", 2: "HTTP/2.0"}[major]
		if got := resp.Header.Get("X-Proto"); got != want {
			t.Fatalf("downstream HTTP/%d: upstream saw %s, want %s", major, got, want)
		}
	}
}

// testPKI is a CA and a server certificate for 127.0.0.1 / backend.test /
// spiffe://test.local/ns/default/sa/backend.
type testPKI struct {
	caPEM  string
	server tls.Certificate
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	ca := testenv.NewCA(t, "test CA")
	server := ca.Issue(t, testenv.Leaf{
		Serial: 2, CommonName: "backend", DNS: []string{"backend.test"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)},
		URIs: []string{"spiffe://test.local/ns/default/sa/backend"}, Usage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	return &testPKI{caPEM: string(ca.PEM), server: server}
}

type noSecrets struct{}

func (noSecrets) Secret(string) *tlsv3.Secret { return nil }

func tlsDeps() Deps {
	return Deps{ClientTLS: func(u *tlsv3.UpstreamTlsContext) (*tls.Config, error) { return tlsx.Client(u, noSecrets{}) }}
}

// newTLSBackend serves HTTP/1.1 and h2 over TLS and reports the SNI and ALPN it saw.
func newTLSBackend(t *testing.T, pki *testPKI) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{name: "tls", ln: ln}
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetHTTP2(true)
	b.srv = &http.Server{
		Protocols:         &protos,
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{pki.server}},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-SNI", r.TLS.ServerName)
			w.Header().Set("X-ALPN", r.TLS.NegotiatedProtocol)
			b.serve(w, r)
		}),
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				b.accepted.Add(1)
			}
		},
	}
	srv := b.srv
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	return b
}

func upstreamTLS(t *testing.T, pki *testPKI, san string, alpn ...string) *corev3.TransportSocket {
	u := &tlsv3.UpstreamTlsContext{
		Sni: "backend.test",
		CommonTlsContext: &tlsv3.CommonTlsContext{
			AlpnProtocols: alpn,
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: pki.caPEM}},
				MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
					SanType: tlsv3.SubjectAltNameMatcher_URI,
					Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: san}},
				}},
			}},
		},
	}
	return &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: testenv.MustAny(t, u)}}
}

func TestTLSUpstream(t *testing.T) {
	pki := newPKI(t)
	b := newTLSBackend(t, pki)
	const san = "spiffe://test.local/ns/default/sa/backend"
	cases := []struct {
		name      string
		opts      *httpv3.HttpProtocolOptions
		alpn      []string
		wantProto string
	}{
		{"http1", nil, nil, "HTTP/1.1"},
		{"http1-istio-alpn", nil, []string{"istio-peer-exchange", "istio"}, "HTTP/1.1"},
		{"h2-istio-alpn", explicitH2(), []string{"istio-peer-exchange", "istio"}, "HTTP/2.0"},
		{"explicit-h2", explicitH2(), []string{"h2"}, "HTTP/2.0"},
		{"auto", &httpv3.HttpProtocolOptions{UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_AutoConfig{
			AutoConfig: &httpv3.HttpProtocolOptions_AutoHttpConfig{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}}}}, nil, "HTTP/2.0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := staticCluster("tls-"+tc.name, clusterv3.Cluster_ROUND_ROBIN, b)
			c.TransportSocket = upstreamTLS(t, pki, san, tc.alpn...)
			if tc.opts != nil {
				c.TypedExtensionProtocolOptions = protoOptions(t, tc.opts)
			}
			cl, _ := compileT(t, c, tlsDeps())
			// The host report carries the certificate the host proved.
			var hr HostReport
			req, _ := http.NewRequestWithContext(WithHostReport(context.Background(), &hr), "GET", "http://backend.test/", nil)
			resp, err := cl.RoundTrip(req, balance.Context{})
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if hr.Host == "" || hr.PeerCertificate == nil || len(hr.PeerCertificate.URIs) != 1 || hr.PeerCertificate.URIs[0].String() != san {
				t.Fatalf("host report %+v", hr)
			}
			for range 3 {
				_, resp := get(t, cl, balance.Context{})
				if resp.Header.Get("X-SNI") != "backend.test" {
					t.Fatalf("backend saw SNI %q", resp.Header.Get("X-SNI"))
				}
				if got := resp.Header.Get("X-Proto"); got != tc.wantProto {
					t.Fatalf("protocol %s, want %s (ALPN %q)", got, tc.wantProto, resp.Header.Get("X-ALPN"))
				}
			}
		})
	}
	// A SAN mismatch fails the handshake: a connect failure.
	c := staticCluster("tls-bad-san", clusterv3.Cluster_ROUND_ROBIN, b)
	c.TransportSocket = upstreamTLS(t, pki, "spiffe://test.local/ns/default/sa/other")
	cl, _ := compileT(t, c, tlsDeps())
	getFailsWith(t, cl, FlagConnectFailure, "wrong SAN")
	// Dial (TCP proxy) also runs the TLS handshake.
	c = staticCluster("tls-dial", clusterv3.Cluster_ROUND_ROBIN, b)
	c.TransportSocket = upstreamTLS(t, pki, san, "http/1.1")
	cl, _ = compileT(t, c, tlsDeps())
	conn, err := cl.Dial(context.Background(), balance.Context{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: backend.test\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Get("X-SNI") != "backend.test" {
		t.Fatalf("dial: SNI %q", resp.Header.Get("X-SNI"))
	}
	pc, ok := conn.(interface{ PeerCertificate() *x509.Certificate })
	if !ok || pc.PeerCertificate() == nil || pc.PeerCertificate().URIs[0].String() != san {
		t.Fatalf("dial: the connection does not report the host's certificate")
	}
}

func TestTransportSocketMatches(t *testing.T) {
	pki := newPKI(t)
	tlsB := newTLSBackend(t, pki)
	plain := newBackend(t, "plain")
	cla := assignment("tsm", tlsB, plain)
	md, _ := structFromMap(map[string]any{"tlsMode": "istio"})
	cla.Endpoints[0].LbEndpoints[0].Metadata = &corev3.Metadata{FilterMetadata: map[string]*structT{transportSocketMatchMD: md}}
	matchIstio, _ := structFromMap(map[string]any{"tlsMode": "istio"})
	c := &clusterv3.Cluster{
		Name:                 "tsm",
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		LoadAssignment:       cla,
		TransportSocketMatches: []*clusterv3.Cluster_TransportSocketMatch{
			{Name: "tlsMode-istio", Match: matchIstio, TransportSocket: upstreamTLS(t, pki, "spiffe://test.local/ns/default/sa/backend")},
			{Name: "tlsMode-disabled", Match: mustStruct(), TransportSocket: &corev3.TransportSocket{Name: "envoy.transport_sockets.raw_buffer"}},
		},
	}
	cl, _ := compileT(t, c, tlsDeps())
	seen := map[string]string{}
	for range 4 {
		name, resp := get(t, cl, balance.Context{})
		seen[name] = resp.Header.Get("X-SNI")
	}
	if seen["tls"] != "backend.test" || seen["plain"] != "" || len(seen) != 2 {
		t.Fatalf("per-endpoint transport sockets: %v", seen)
	}
}

func TestDialTCPEcho(t *testing.T) {
	port := netip.MustParseAddrPort(testenv.TCPEcho(t, "")).Port()
	c := staticCluster("tcp", clusterv3.Cluster_ROUND_ROBIN)
	c.LoadAssignment.Endpoints = []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{
		lbEndpoint("127.0.0.1", uint32(port))}}}
	c.UpstreamConnectionOptions = &clusterv3.UpstreamConnectionOptions{TcpKeepalive: &corev3.TcpKeepalive{KeepaliveTime: u32(30)}}
	cl, st := compileT(t, c, Deps{})
	conn, err := cl.Dial(context.Background(), balance.Context{})
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, "ping"); err != nil {
		t.Fatal(err)
	}
	if cw, ok := conn.(interface{ CloseWrite() error }); !ok || cw.CloseWrite() != nil {
		t.Fatal("no half-close")
	}
	got, err := io.ReadAll(conn)
	if err != nil || string(got) != "ping" {
		t.Fatalf("echo %q %v", got, err)
	}
	_ = conn.Close()
	if gauge(st, "cluster.tcp.upstream_cx_active") != 0 || counter(st, "cluster.tcp.upstream_cx_total") != 1 {
		t.Fatal("tcp connection stats wrong")
	}
	if counter(st, "cluster.tcp.upstream_cx_rx_bytes_total") != 4 {
		t.Fatalf("rx bytes %d", counter(st, "cluster.tcp.upstream_cx_rx_bytes_total"))
	}
}

func TestUpgradeWebSocketStyle(t *testing.T) {
	a := newBackend(t, "a")
	a.setHandler(func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "echo") {
			w.WriteHeader(400)
			return
		}
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		_ = rw.Flush()
		buf := make([]byte, 64)
		n, _ := rw.Read(buf)
		_, _ = conn.Write(buf[:n])
	})
	cl, _ := compileT(t, staticCluster("up", clusterv3.Cluster_ROUND_ROBIN, a), Deps{})
	req, _ := http.NewRequest("GET", "http://svc.test/ws", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "echo")
	resp, err := cl.RoundTrip(req, balance.Context{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", resp.StatusCode)
	}
	rw, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		t.Fatalf("101 body %T is not writable", resp.Body)
	}
	defer rw.Close()
	if _, err := io.WriteString(rw, "hello"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(rw, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("echo %q %v", buf, err)
	}
}

func TestTCPKeepaliveApplied(t *testing.T) {
	a := newBackend(t, "a")
	c := staticCluster("ka-sock", clusterv3.Cluster_ROUND_ROBIN, a)
	c.UpstreamConnectionOptions = &clusterv3.UpstreamConnectionOptions{TcpKeepalive: &corev3.TcpKeepalive{
		KeepaliveTime: u32(42), KeepaliveInterval: u32(7), KeepaliveProbes: u32(3)}}
	cl, _ := compileT(t, c, Deps{})
	conn, err := cl.Dial(context.Background(), balance.Context{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tcp := conn.(*dialedConn).Conn.(*trackedConn).Conn.(syscall.Conn) // *net.TCPConn, through h1.DirectConn
	raw, err := tcp.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var on, idle, intvl, cnt int
	_ = raw.Control(func(fd uintptr) {
		on, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE)
		idle, _ = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE)
		intvl, _ = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL)
		cnt, _ = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT)
	})
	if on != 1 || idle != 42 || intvl != 7 || cnt != 3 {
		t.Fatalf("keepalive on=%d idle=%d interval=%d count=%d, want 1/42/7/3", on, idle, intvl, cnt)
	}
}

func TestMaxConnectionDuration(t *testing.T) {
	a := newBackend(t, "a")
	c := staticCluster("maxdur", clusterv3.Cluster_ROUND_ROBIN, a)
	c.TypedExtensionProtocolOptions = protoOptions(t, &httpv3.HttpProtocolOptions{
		CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{MaxConnectionDuration: durationpb.New(100 * time.Millisecond)},
		UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{HttpProtocolOptions: &corev3.Http1ProtocolOptions{}}}},
	})
	cl, st := compileT(t, c, Deps{})
	get(t, cl, balance.Context{})
	get(t, cl, balance.Context{})
	if a.accepted.Load() != 1 {
		t.Fatal("want reuse within max_connection_duration")
	}
	// The idle connection is closed when it reaches its max duration, without new requests.
	testenv.WaitFor(t, "connection closed at its max duration", 5*time.Second, func() bool {
		return gauge(st, "cluster.maxdur.upstream_cx_active") == 0
	})
	get(t, cl, balance.Context{})
	if a.accepted.Load() != 2 {
		t.Fatalf("accepted %d connections, want a new one after max duration", a.accepted.Load())
	}
	if counter(st, "cluster.maxdur.upstream_cx_max_duration_reached") == 0 {
		t.Fatal("upstream_cx_max_duration_reached not counted")
	}
}

func TestHTTP2MaxConcurrentStreams(t *testing.T) {
	const n = 6
	g := newGate()
	defer g.open()
	a := newBackend(t, "a", h2cBackend)
	a.setHandler(func(w http.ResponseWriter, r *http.Request) { g.wait(r) })
	c := staticCluster("h2max", clusterv3.Cluster_ROUND_ROBIN, a)
	opts := explicitH2()
	opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions().MaxConcurrentStreams = u32(2)
	c.TypedExtensionProtocolOptions = protoOptions(t, opts)
	cl, _ := compileT(t, c, Deps{})
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = do(cl, balance.Context{}, "GET", "/")
		}()
	}
	testenv.WaitFor(t, "all streams to reach the backend", 10*time.Second, func() bool { return g.waiting.Load() == n })
	g.open()
	wg.Wait()
	if got := a.accepted.Load(); got != n/2 {
		t.Fatalf("%d streams at 2 per connection used %d connections, want %d", n, got, n/2)
	}
}

// TestKeepAliveAfterCancel: the router cancels a request's context once the response has been
// streamed, before it closes the body; an HTTP/1.1 connection whose exchange was complete is
// still reused.
func TestKeepAliveAfterCancel(t *testing.T) {
	a := newBackend(t, "a")
	cl, _ := compileT(t, staticCluster("kac", clusterv3.Cluster_ROUND_ROBIN, a), Deps{})
	for range 10 {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://svc.test/", nil)
		resp, err := cl.RoundTrip(req, balance.Context{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			t.Fatal(err)
		}
		cancel()
		resp.Body.Close()
	}
	if n := a.accepted.Load(); n != 1 {
		t.Fatalf("10 sequential requests used %d connections, want 1", n)
	}
}

// TestIdleTimeoutCountsFromLastRequest keeps one connection busy more often than its idle
// timeout for three periods: the lazily re-armed idle timer must not close it, and must close
// it once the requests stop.
func TestIdleTimeoutCountsFromLastRequest(t *testing.T) {
	a := newBackend(t, "a")
	c := staticCluster("idle", clusterv3.Cluster_ROUND_ROBIN, a)
	c.TypedExtensionProtocolOptions = protoOptions(t, &httpv3.HttpProtocolOptions{
		CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{IdleTimeout: durationpb.New(500 * time.Millisecond)},
		UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{HttpProtocolOptions: &corev3.Http1ProtocolOptions{}}}},
	})
	cl, st := compileT(t, c, Deps{})
	for range 30 { // 1.5 s
		get(t, cl, balance.Context{})
		time.Sleep(50 * time.Millisecond)
	}
	if n := a.accepted.Load(); n != 1 {
		t.Fatalf("requests every 50 ms with a 500 ms idle timeout used %d connections, want 1", n)
	}
	if n := counter(st, "cluster.idle.upstream_cx_idle_timeout"); n != 0 {
		t.Fatalf("upstream_cx_idle_timeout = %d while in use", n)
	}
	testenv.WaitFor(t, "idle connection to time out", 10*time.Second, func() bool {
		return gauge(st, "cluster.idle.upstream_cx_active") == 0
	})
	if n := counter(st, "cluster.idle.upstream_cx_idle_timeout"); n != 1 {
		t.Fatalf("upstream_cx_idle_timeout = %d after the requests stopped, want 1", n)
	}
}

// TestDialVectoredWriteCounted: a connection the HTTP/1.1 pools dial offers the socket's vectored write
// (h1.VectorWriter), and its bytes count in upstream_cx_tx_bytes_total as Write's do.
func TestDialVectoredWriteCounted(t *testing.T) {
	port := netip.MustParseAddrPort(testenv.TCPEcho(t, "")).Port()
	c := staticCluster("tcp", clusterv3.Cluster_ROUND_ROBIN)
	c.LoadAssignment.Endpoints = []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{
		lbEndpoint("127.0.0.1", uint32(port))}}}
	cl, st := compileT(t, c, Deps{})
	conn, err := cl.Dial(context.Background(), balance.Context{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	// The HTTP/1.1 pools' connection (a trackedConn), beneath the TCP proxy's wrapper.
	v, ok := conn.(*dialedConn).Conn.(interface{ Vector() h1.VectorWriter })
	if !ok || v.Vector() == nil {
		t.Fatalf("%T offers no vectored write", conn.(*dialedConn).Conn)
	}
	if n, err := v.Vector().WriteVector([]byte("pi"), []byte("ng")); n != 4 || err != nil {
		t.Fatalf("WriteVector: %d, %v", n, err)
	}
	if cw, ok := conn.(interface{ CloseWrite() error }); !ok || cw.CloseWrite() != nil {
		t.Fatal("no half-close")
	}
	got, err := io.ReadAll(conn)
	if err != nil || string(got) != "ping" {
		t.Fatalf("echo %q %v", got, err)
	}
	if n := counter(st, "cluster.tcp.upstream_cx_tx_bytes_total"); n != 4 {
		t.Fatalf("tx bytes %d, want 4", n)
	}
}
