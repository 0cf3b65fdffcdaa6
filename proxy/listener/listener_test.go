package listener

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	glistenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"golang.org/x/net/http2"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/internal/vocab"
	"github.com/strait-mesh/strait/proxy/xdspb"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	listenerv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/listener/v3"
	httpinspv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/listener/http_inspector/v3"
	origdstv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/listener/original_dst/v3"
	tlsinspv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/listener/tls_inspector/v3"
	connlimitv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/connection_limit/v3"
	tlsv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/transport_sockets/tls/v3"
)

func tlsInspector(t testing.TB) *listenerv3.ListenerFilter {
	return &listenerv3.ListenerFilter{Name: vocab.FilterTLSInspector, ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: testenv.MustAny(t, &tlsinspv3.TlsInspector{})}}
}

func httpInspector(t testing.TB) *listenerv3.ListenerFilter {
	return &listenerv3.ListenerFilter{Name: vocab.FilterHTTPInspector, ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: testenv.MustAny(t, &httpinspv3.HttpInspector{})}}
}

func origDst(t testing.TB) *listenerv3.ListenerFilter {
	return &listenerv3.ListenerFilter{Name: vocab.FilterOriginalDst, ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: testenv.MustAny(t, &origdstv3.OriginalDst{})}}
}

func port(addr string) uint32 {
	_, p, _ := net.SplitHostPort(addr)
	var n uint32
	for _, c := range p {
		n = n*10 + uint32(c-'0')
	}
	return n
}

// TestMatchByDestinationAndSource serves one listener on several loopback sockets and checks
// that destination port, destination IP, source IP and source port pick the expected chain.
func TestMatchByDestinationAndSource(t *testing.T) {
	env := newEnv()
	for _, n := range []string{"port", "dstip", "srcip", "srcport", "any"} {
		env.tcp[n] = tcpBackend(t, n)
	}
	// Reserve a second port on 127.0.0.1 for the destination_port chain.
	extra, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	extraPort := port(extra.Addr().String())
	lr := &listenerv3.Listener{Name: "multi", Address: sockAddr("127.0.0.1", 0), FilterChains: []*listenerv3.FilterChain{
		tcpChain(t, "port", "port", &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(extraPort)}),
		tcpChain(t, "dstip", "dstip", &listenerv3.FilterChainMatch{PrefixRanges: []*corev3.CidrRange{cidr("127.0.0.3/32")}}),
		tcpChain(t, "srcip", "srcip", &listenerv3.FilterChainMatch{SourcePrefixRanges: []*corev3.CidrRange{cidr("127.0.0.5/32")}}),
		tcpChain(t, "srcport", "srcport", &listenerv3.FilterChainMatch{SourcePrefixRanges: []*corev3.CidrRange{cidr("127.0.0.5/32")}, SourcePorts: []uint32{0}}),
		tcpChain(t, "any", "any", nil),
	}}
	// source_ports needs a concrete port: pick a free one for the client to bind.
	probe, _ := net.Listen("tcp4", "127.0.0.5:0")
	srcPort := port(probe.Addr().String())
	probe.Close()
	lr.FilterChains[3].FilterChainMatch.SourcePorts = []uint32{srcPort}
	l, err := Compile(lr, env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var addrs []string
	for _, ln := range []net.Listener{extra, mustListen(t, "127.0.0.2:0"), mustListen(t, "127.0.0.3:0")} {
		go l.Serve(ln)
		addrs = append(addrs, ln.Addr().String())
	}
	from := func(ip string, p int) *net.Dialer {
		return &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip), Port: p}}
	}
	cases := []struct {
		d    *net.Dialer
		addr string
		want string
	}{
		{nil, addrs[0], "port"},
		{nil, addrs[2], "dstip"},
		{from("127.0.0.5", 0), addrs[1], "srcip"},
		{from("127.0.0.5", int(srcPort)), addrs[1], "srcport"},
		{nil, addrs[1], "any"},
	}
	for _, c := range cases {
		if got := readLine(t, c.d, c.addr); got != c.want {
			t.Errorf("dial %s: chain %q, want %q", c.addr, got, c.want)
		}
	}
}

func mustListen(t *testing.T, addr string) net.Listener {
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// TestTLSPassthroughBySNI routes real TLS ClientHellos by SNI (exact and wildcard) and ALPN to
// different TLS backends without terminating TLS.
func TestTLSPassthroughBySNI(t *testing.T) {
	cert, _, _ := selfSigned(t, "*.example.com", "a.example.com", "plain.test")
	env := newEnv()
	env.tcp["a"] = tlsBackend(t, "A", cert)
	env.tcp["wild"] = tlsBackend(t, "WILD", cert)
	env.tcp["h2"] = tlsBackend(t, "H2", cert)
	env.tcp["raw"] = tcpBackend(t, "RAW")
	_, addr := start(t, &listenerv3.Listener{Name: "sni", ListenerFilters: []*listenerv3.ListenerFilter{tlsInspector(t)},
		ListenerFiltersTimeout: durationpb.New(100 * time.Millisecond), ContinueOnListenerFiltersTimeout: true,
		FilterChains: []*listenerv3.FilterChain{
			tcpChain(t, "a", "a", &listenerv3.FilterChainMatch{ServerNames: []string{"a.example.com"}}),
			tcpChain(t, "wild", "wild", &listenerv3.FilterChainMatch{ServerNames: []string{"*.example.com"}}),
			tcpChain(t, "h2", "h2", &listenerv3.FilterChainMatch{TransportProtocol: "tls", ApplicationProtocols: []string{"h2"}}),
			tcpChain(t, "raw", "raw", &listenerv3.FilterChainMatch{TransportProtocol: "raw_buffer"}),
		}}, env)
	dialTLS := func(sni string, alpn ...string) string {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, &tls.Config{ServerName: sni, NextProtos: alpn, InsecureSkipVerify: true})
		if err != nil {
			t.Fatalf("sni %q: %v", sni, err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		return strings.TrimSpace(line)
	}
	if got := dialTLS("a.example.com"); got != "A a.example.com" {
		t.Errorf("exact SNI: %q", got)
	}
	if got := dialTLS("b.example.com"); got != "WILD b.example.com" {
		t.Errorf("wildcard SNI: %q", got)
	}
	if got := dialTLS("plain.test", "h2", "http/1.1"); got != "H2 plain.test" {
		t.Errorf("ALPN: %q", got)
	}
	if got := readLine(t, nil, addr); got != "RAW" {
		t.Errorf("raw TCP: %q", got)
	}
}

// TestTLSTerminationAndMTLS terminates TLS with an inline certificate in front of a TCP echo, and
// with an SDS certificate and client-certificate validation in front of an HTTP chain.
func TestTLSTerminationAndMTLS(t *testing.T) {
	cert, certPEM, keyPEM := selfSigned(t, "svc.test")
	env := newEnv()
	env.tcp["echo"] = tcpBackend(t, "ECHO")
	inline := func(b []byte) *corev3.DataSource {
		return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
	}
	fc := tcpChain(t, "tls-echo", "echo", nil)
	fc.TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: testenv.MustAny(t, &tlsv3.DownstreamTlsContext{
		CommonTlsContext: &tlsv3.CommonTlsContext{TlsCertificates: []*tlsv3.TlsCertificate{{CertificateChain: inline(certPEM), PrivateKey: inline(keyPEM)}}},
	})}}
	_, addr := start(t, &listenerv3.Listener{Name: "term", FilterChains: []*listenerv3.FilterChain{fc}}, env)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "svc.test", RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte("over tls\n"))
	r := bufio.NewReader(c)
	l1, _ := r.ReadString('\n')
	l2, _ := r.ReadString('\n')
	c.Close()
	if l1 != "ECHO\n" || l2 != "over tls\n" {
		t.Fatalf("got %q %q", l1, l2)
	}

	// mTLS with SDS: the HTTP chain sees the client's certificate.
	env.secrets["default"] = &tlsv3.Secret{Name: "default", Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{CertificateChain: inline(certPEM), PrivateKey: inline(keyPEM)}}}
	env.secrets["ROOTCA"] = &tlsv3.Secret{Name: "ROOTCA", Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{TrustedCa: inline(certPEM)}}}
	hc := httpChain(t, "mtls-http", nil)
	hc.TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: testenv.MustAny(t, &tlsv3.DownstreamTlsContext{
		RequireClientCertificate: wrapperspb.Bool(true),
		CommonTlsContext: &tlsv3.CommonTlsContext{
			AlpnProtocols:                  []string{"http/1.1"},
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: "default"}},
			ValidationContextType:          &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: "ROOTCA"}},
		},
	})}}
	_, maddr := start(t, &listenerv3.Listener{Name: "mtls", FilterChains: []*listenerv3.FilterChain{hc}}, fakeHTTP{env})
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{ServerName: "svc.test", RootCAs: pool, Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}}}}
	resp, err := client.Get("https://" + maddr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "mtls-http HTTP/1.1 http/1.1 local=svc.test peer=svc.test" {
		t.Errorf("body %q", body)
	}
	// Without a client certificate the handshake fails and is counted.
	noCert := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{ServerName: "svc.test", RootCAs: pool}}}
	if _, err := noCert.Get("https://" + maddr + "/"); err == nil {
		t.Fatal("request without client certificate succeeded")
	}
	waitFor(t, "ssl.connection_error", func() bool { return env.counter("listener.127.0.0.1_0.ssl.connection_error") == 1 })
}

func uitoa(n uint32) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for n > 0 {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
	}
	return string(b)
}

// TestHTTPInspectorChoosesChain serves HTTP/1.1, h2c (prior knowledge) and raw TCP on one port.
func TestHTTPInspectorChoosesChain(t *testing.T) {
	env := newEnv()
	env.tcp["tcp"] = tcpBackend(t, "TCP")
	_, addr := start(t, &listenerv3.Listener{Name: "sniffed",
		ListenerFilters:        []*listenerv3.ListenerFilter{tlsInspector(t), httpInspector(t)},
		ListenerFiltersTimeout: durationpb.New(200 * time.Millisecond), ContinueOnListenerFiltersTimeout: true,
		FilterChains: []*listenerv3.FilterChain{
			httpChain(t, "http", &listenerv3.FilterChainMatch{ApplicationProtocols: []string{"http/1.0", "http/1.1", "h2c"}}),
			tcpChain(t, "tcp", "tcp", nil),
		}}, fakeHTTP{env})
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + addr + "/x")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "http HTTP/1.1 http/1.1" {
		t.Errorf("HTTP/1.1: %q", b)
	}
	h2c := &http.Client{Timeout: 10 * time.Second, Transport: &http2.Transport{AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, a string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, a)
		}}}
	resp, err = h2c.Get("http://" + addr + "/y")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "http HTTP/2.0 h2c" {
		t.Errorf("h2c: %q", b)
	}
	// A client-speaks-first binary protocol goes to the TCP chain.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte("\x00\x01raw\n"))
	r := bufio.NewReader(c)
	l1, _ := r.ReadString('\n')
	l2, _ := r.ReadString('\n')
	c.Close()
	if l1 != "TCP\n" || l2 != "\x00\x01raw\n" {
		t.Errorf("raw: %q %q", l1, l2)
	}
	// A server-speaks-first client sends nothing: after the timeout it continues to the TCP chain.
	if got := readLine(t, nil, addr); got != "TCP" {
		t.Errorf("silent client: %q", got)
	}
	for _, name := range []string{"http_inspector.http11_found", "http_inspector.http2_found", "http_inspector.http_not_found", "tls_inspector.tls_not_found"} {
		if env.counter(name) == 0 {
			t.Errorf("%s = 0", name)
		}
	}
}

// TestRealHTTPConnectionManager serves a direct_response route through l7 over HTTP/1.1, h2c
// (prior knowledge, chosen by the http_inspector) and h2 over TLS (ALPN), on one listener.
func TestRealHTTPConnectionManager(t *testing.T) {
	env := newEnv()
	_, certPEM, keyPEM := selfSigned(t, "l7.test")
	plainChain := directResponseHCM(t, "hello from strait")
	plainChain.FilterChainMatch = &listenerv3.FilterChainMatch{TransportProtocol: "raw_buffer"}
	tlsChain := directResponseHCM(t, "hello from strait")
	tlsChain.Name = "direct-tls"
	tlsChain.FilterChainMatch = &listenerv3.FilterChainMatch{TransportProtocol: "tls"}
	inline := func(b []byte) *corev3.DataSource {
		return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
	}
	tlsChain.TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: testenv.MustAny(t, &tlsv3.DownstreamTlsContext{
		CommonTlsContext: &tlsv3.CommonTlsContext{AlpnProtocols: []string{"h2", "http/1.1"},
			TlsCertificates: []*tlsv3.TlsCertificate{{CertificateChain: inline(certPEM), PrivateKey: inline(keyPEM)}}},
	})}}
	_, addr := start(t, &listenerv3.Listener{Name: "l7",
		ListenerFilters: []*listenerv3.ListenerFilter{tlsInspector(t), httpInspector(t)},
		FilterChains:    []*listenerv3.FilterChain{plainChain, tlsChain}}, env)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	clients := map[string]*http.Client{
		"HTTP/1.1 http://": {Timeout: 10 * time.Second},
		"HTTP/2.0 http://": {Timeout: 10 * time.Second, Transport: &http2.Transport{AllowHTTP: true,
			DialTLSContext: func(ctx context.Context, network, a string, _ *tls.Config) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, a)
			}}},
		"HTTP/2.0 https://": {Timeout: 10 * time.Second, Transport: &http.Transport{ForceAttemptHTTP2: true,
			TLSClientConfig: &tls.Config{ServerName: "l7.test", RootCAs: pool}}},
	}
	for key, client := range clients {
		proto, scheme, _ := strings.Cut(key, " ")
		resp, err := client.Get(scheme + addr + "/")
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "hello from strait" || resp.Proto != proto {
			t.Errorf("%s: %d %s %q", key, resp.StatusCode, resp.Proto, b)
		}
	}
}

// TestConnectionLimits covers the connection_limit network filter and the listener-level limit.
func TestConnectionLimits(t *testing.T) {
	env := newEnv()
	env.tcp["echo"] = tcpBackend(t, "ECHO")
	fc := tcpChain(t, "limited", "echo", nil)
	fc.Filters = append([]*listenerv3.Filter{{Name: "envoy.filters.network.connection_limit", ConfigType: &listenerv3.Filter_TypedConfig{
		TypedConfig: testenv.MustAny(t, &connlimitv3.ConnectionLimit{StatPrefix: "cl", MaxConnections: wrapperspb.UInt64(1)})}}}, fc.Filters...)
	l, addr := start(t, &listenerv3.Listener{Name: "limit", FilterChains: []*listenerv3.FilterChain{fc}}, env)
	first, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	first.SetDeadline(time.Now().Add(10 * time.Second))
	if line, _ := bufio.NewReader(first).ReadString('\n'); line != "ECHO\n" {
		t.Fatalf("first: %q", line)
	}
	if got := readLine(t, nil, addr); got != "" {
		t.Fatalf("second connection over the limit got %q", got)
	}
	if n := env.counter("connection_limit.cl.limited_connections"); n != 1 {
		t.Errorf("limited_connections = %d", n)
	}
	first.Close()
	waitFor(t, "slot freed", func() bool { return l.ActiveConnections() == 0 })
	if got := readLine(t, nil, addr); got != "ECHO" {
		t.Fatalf("after release: %q", got)
	}

	// Listener-level limit (a proxy option).
	waitFor(t, "previous connection closed", func() bool { return l.ActiveConnections() == 0 })
	l.SetMaxConnections(1)
	hold, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	hold.SetDeadline(time.Now().Add(10 * time.Second))
	if line, _ := bufio.NewReader(hold).ReadString('\n'); line != "ECHO\n" {
		t.Fatalf("connection under the listener limit: %q", line)
	}
	if got := readLine(t, nil, addr); got != "" {
		t.Fatalf("over listener limit got %q", got)
	}
	waitFor(t, "overflow stat", func() bool {
		return env.counter("listener.127.0.0.1_0.downstream_cx_overflow") == 1
	})
}

// TestDrain: draining stops accepting, lets an open connection finish, and cuts it at the deadline.
func TestDrain(t *testing.T) {
	env := newEnv()
	env.tcp["echo"] = tcpBackend(t, "ECHO")
	l, addr := start(t, &listenerv3.Listener{Name: "drain", FilterChains: []*listenerv3.FilterChain{tcpChain(t, "c", "echo", nil)}}, env)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	r.ReadString('\n')
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- l.Drain(ctx)
	}()
	waitFor(t, "listener closed", func() bool {
		c2, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return true
		}
		c2.Close()
		return false
	})
	// The open connection still works.
	c.Write([]byte("still here\n"))
	if line, _ := r.ReadString('\n'); line != "still here\n" {
		t.Fatalf("open connection during drain: %q", line)
	}
	select {
	case err := <-done:
		t.Fatalf("drain returned %v with a connection open", err)
	default:
	}
	c.Close()
	if err := <-done; err != nil {
		t.Fatalf("drain: %v", err)
	}

	// Deadline: the connection is cut.
	l2, addr2 := start(t, &listenerv3.Listener{Name: "drain2", FilterChains: []*listenerv3.FilterChain{tcpChain(t, "c", "echo", nil)}}, env)
	c3, err := net.Dial("tcp", addr2)
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	c3.SetDeadline(time.Now().Add(10 * time.Second))
	r3 := bufio.NewReader(c3)
	r3.ReadString('\n')
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := l2.Drain(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("drain err = %v", err)
	}
	if _, err := r3.ReadString('\n'); err == nil {
		t.Fatal("connection survived the drain deadline")
	}
}

// TestOriginalDstFallbackAndHandoff: without iptables redirection the original destination is
// the local address; use_original_dst hands the connection to the listener registered for it
// (exact or wildcard address) or keeps it when there is none.
func TestOriginalDstFallbackAndHandoff(t *testing.T) {
	env := newEnv()
	env.tcp["own"] = tcpBackend(t, "OWN")
	env.tcp["virtual"] = tcpBackend(t, "VIRTUAL")
	capture, addr := start(t, &listenerv3.Listener{Name: "virtualOutbound", UseOriginalDst: wrapperspb.Bool(true),
		ListenerFilters: []*listenerv3.ListenerFilter{origDst(t)},
		FilterChains:    []*listenerv3.FilterChain{tcpChain(t, "own", "own", nil)}}, env)
	if got := readLine(t, nil, addr); got != "OWN" {
		t.Fatalf("no hand-off target: %q", got)
	}
	virt, err := Compile(&listenerv3.Listener{Name: "0.0.0.0_" + uitoa(port(addr)), Address: sockAddr("0.0.0.0", port(addr)), BindToPort: wrapperspb.Bool(false),
		FilterChains: []*listenerv3.FilterChain{tcpChain(t, "virtual", "virtual", nil)}}, env)
	if err != nil {
		t.Fatal(err)
	}
	if virt.BindToPort() {
		t.Fatal("bind_to_port false not reported")
	}
	env.reg.Set([]*Listener{capture, virt})
	if got := readLine(t, nil, addr); got != "VIRTUAL" {
		t.Fatalf("hand-off to wildcard listener: %q", got)
	}
	waitFor(t, "virtual listener stat", func() bool {
		return env.counter("listener.0.0.0.0_"+uitoa(port(addr))+".downstream_cx_total") == 1
	})
}

func TestCompileErrorsNameTheField(t *testing.T) {
	env := newEnv()
	redis := &listenerv3.Filter{Name: "envoy.filters.network.redis_proxy", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: testenv.MustAny(t, &tlsinspv3.TlsInspector{})}}
	redis.GetTypedConfig().TypeUrl = "type.googleapis.com/envoy.extensions.filters.network.redis_proxy.v3.RedisProxy"
	// A field strait-proxy does not read is set through go-control-plane's type.
	backlog := xdspb.MustFrom[*listenerv3.Listener](&glistenerv3.Listener{TcpBacklogSize: wrapperspb.UInt32(5)})
	backlog.Name, backlog.Address, backlog.FilterChains = "a", sockAddr("127.0.0.1", 1), []*listenerv3.FilterChain{tcpChain(t, "c", "x", nil)}
	cases := []struct {
		lr   *listenerv3.Listener
		want string
	}{
		{backlog, "tcp_backlog_size"},
		{&listenerv3.Listener{Name: "a", Address: sockAddr("127.0.0.1", 1), FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{redis, tcpChain(t, "c", "x", nil).Filters[0]}}}}, "envoy.filters.network.redis_proxy"},
		{&listenerv3.Listener{Name: "a", Address: sockAddr("127.0.0.1", 1), ListenerFilters: []*listenerv3.ListenerFilter{{Name: "envoy.filters.listener.proxy_protocol"}}, FilterChains: []*listenerv3.FilterChain{tcpChain(t, "c", "x", nil)}}, "proxy_protocol"},
		{&listenerv3.Listener{Name: "a", Address: sockAddr("127.0.0.1", 1), FilterChains: []*listenerv3.FilterChain{tcpChain(t, "c", "x", nil), tcpChain(t, "d", "x", nil)}}, "same filter_chain_match"},
		{&listenerv3.Listener{Name: "a", Address: sockAddr("not-an-ip", 1), FilterChains: []*listenerv3.FilterChain{tcpChain(t, "c", "x", nil)}}, "address"},
		{&listenerv3.Listener{Name: "a", Address: sockAddr("127.0.0.1", 1)}, "no filter chains"},
	}
	for _, c := range cases {
		_, err := Compile(c.lr, env)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("err = %v, want mention of %q", err, c.want)
		}
	}
}

// TestIPv6AndIPv4Compat: an IPv6 listener serves ::1; with ipv4_compat on [::] it also serves
// 127.0.0.1 (v4-mapped), and the chain sees the unmapped IPv4 addresses.
func TestIPv6AndIPv4Compat(t *testing.T) {
	if ln, err := net.Listen("tcp6", "[::1]:0"); err != nil {
		t.Skip("no IPv6 loopback")
	} else {
		ln.Close()
	}
	env := newEnv()
	env.tcp["v4"] = tcpBackend(t, "V4")
	env.tcp["v6"] = tcpBackend(t, "V6")
	addr := sockAddr("::", 0)
	addr.GetSocketAddress().Ipv4Compat = true
	_, a := start(t, &listenerv3.Listener{Name: "dual", Address: addr, FilterChains: []*listenerv3.FilterChain{
		tcpChain(t, "v4", "v4", &listenerv3.FilterChainMatch{SourcePrefixRanges: []*corev3.CidrRange{cidr("127.0.0.0/8")}}),
		tcpChain(t, "v6", "v6", &listenerv3.FilterChainMatch{SourcePrefixRanges: []*corev3.CidrRange{cidr("::1/128")}}),
	}}, env)
	p := uitoa(port(a))
	if got := readLine(t, nil, "127.0.0.1:"+p); got != "V4" {
		t.Errorf("IPv4 client: %q", got)
	}
	if got := readLine(t, nil, "[::1]:"+p); got != "V6" {
		t.Errorf("IPv6 client: %q", got)
	}
}

// TestSocketOptions: enable_reuse_port lets a second socket bind the same port; freebind binds an
// address not configured on any interface (198.18.0.0/15, never routed here).
func TestSocketOptions(t *testing.T) {
	env := newEnv()
	env.tcp["c"] = tcpBackend(t, "C")
	lr := &listenerv3.Listener{Name: "rp", Address: sockAddr("127.0.0.1", 0), EnableReusePort: wrapperspb.Bool(true),
		DrainType: listenerv3.Listener_MODIFY_ONLY, FilterChains: []*listenerv3.FilterChain{tcpChain(t, "c", "c", nil)}}
	l, a := start(t, lr, env)
	if !l.DrainOnlyOnModify() {
		t.Error("drain_type MODIFY_ONLY not reported")
	}
	lr.Address = sockAddr("127.0.0.1", port(a))
	l2, err := Compile(lr, env)
	if err != nil {
		t.Fatal(err)
	}
	ln2, err := l2.Listen(context.Background())
	if err != nil {
		t.Fatalf("second bind with enable_reuse_port: %v", err)
	}
	ln2.Close()
	fb, err := Compile(&listenerv3.Listener{Name: "fb", Address: sockAddr("198.18.0.77", 0), Freebind: wrapperspb.Bool(true),
		FilterChains: []*listenerv3.FilterChain{tcpChain(t, "c", "c", nil)}}, env)
	if err != nil {
		t.Fatal(err)
	}
	ln3, err := fb.Listen(context.Background())
	if err != nil {
		t.Fatalf("freebind: %v", err)
	}
	ln3.Close()
}
