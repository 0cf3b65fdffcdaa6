package listener

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/upstream"
	clusterv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/cluster/v3"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	endpointv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/endpoint/v3"
	listenerv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/listener/v3"
	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
	routerv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/transport_sockets/tls/v3"
)

// staticHTTPCluster compiles a STATIC cluster of one loopback endpoint, closed at the end of
// the test.
func staticHTTPCluster(t *testing.T, name, addr string, env *testEnv) *upstream.Cluster {
	t.Helper()
	ap := netip.MustParseAddrPort(addr)
	cl, err := upstream.Compile(&clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(5 * time.Second),
		LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: sockAddr(ap.Addr().String(), uint32(ap.Port()))}}}}}}},
	}, upstream.Deps{Stats: env.st})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// TestWriteStallThroughListenerFilters: HTTP/1.1 connections that the listener's filters
// peeked at (http_inspector on plaintext, tls_inspector then TLS termination) keep
// stream_idle_timeout's write stall limit: a client that never reads a large response has its
// connection closed (downstream_cx_write_stall_timeout), and one that keeps reading, however
// slowly, gets the whole response.
func TestWriteStallThroughListenerFilters(t *testing.T) {
	up := testenv.ServeHTTP(t, testenv.Listen(t, "127.0.0.1:0"), &http.Server{Handler: http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			n, _ := strconv.Atoi(r.URL.Query().Get("n"))
			w.Header().Set("Content-Length", strconv.Itoa(n))
			buf := make([]byte, 32<<10)
			for sent := 0; sent < n; sent += len(buf) {
				if _, err := w.Write(buf[:min(len(buf), n-sent)]); err != nil {
					return
				}
			}
		})})
	base := newEnv()
	env := stackEnv{testEnv: base, clusters: map[string]*upstream.Cluster{"big": staticHTTPCluster(t, "big", up, base)}}
	const stall = 300 * time.Millisecond
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix:        "stall",
		StreamIdleTimeout: durationpb.New(stall),
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name: "stall",
			VirtualHosts: []*routev3.VirtualHost{{Name: "all", Domains: []string{"*"}, Routes: []*routev3.Route{{
				Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				// The router's own idle timer stays out of the way: the write stall alone ends
				// a connection.
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{IdleTimeout: durationpb.New(time.Hour),
					ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "big"}}},
			}}}},
		}},
		HttpFilters: []*hcmv3.HttpFilter{{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: testenv.MustAny(t, &routerv3.Router{})}}},
	}
	hcmFilter := []*listenerv3.Filter{{Name: "envoy.filters.network.http_connection_manager",
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: testenv.MustAny(t, hcm)}}}
	_, certPEM, keyPEM := selfSigned(t, "svc.test")
	inline := func(b []byte) *corev3.DataSource {
		return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
	}
	plain := &listenerv3.FilterChain{Name: "plain", Filters: hcmFilter,
		FilterChainMatch: &listenerv3.FilterChainMatch{TransportProtocol: "raw_buffer"}}
	secure := &listenerv3.FilterChain{Name: "tls", Filters: hcmFilter,
		FilterChainMatch: &listenerv3.FilterChainMatch{TransportProtocol: "tls"},
		TransportSocket: &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{
			TypedConfig: testenv.MustAny(t, &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
				AlpnProtocols:   []string{"http/1.1"},
				TlsCertificates: []*tlsv3.TlsCertificate{{CertificateChain: inline(certPEM), PrivateKey: inline(keyPEM)}},
			}})}}}
	_, addr := start(t, &listenerv3.Listener{Name: "stall",
		ListenerFilters: []*listenerv3.ListenerFilter{tlsInspector(t), httpInspector(t)},
		FilterChains:    []*listenerv3.FilterChain{plain, secure}}, env)

	stalls := func() uint64 { return base.counter("http.stall.downstream_cx_write_stall_timeout") }
	dialer := func(t *testing.T, useTLS bool, rcvbuf int) net.Conn {
		t.Helper()
		raw := testenv.Dial(t, addr)
		raw.(*net.TCPConn).SetReadBuffer(rcvbuf)
		if !useTLS {
			return raw
		}
		c := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, ServerName: "svc.test", NextProtos: []string{"http/1.1"}})
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if err := c.Handshake(); err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Time{})
		return c
	}
	for _, useTLS := range []bool{false, true} {
		name := "peeked plaintext"
		if useTLS {
			name = "peeked tls"
		}
		t.Run(name+"/non-reader", func(t *testing.T) {
			before := stalls()
			c := dialer(t, useTLS, 4096)
			io.WriteString(c, "GET /?n=67108864 HTTP/1.1\r\nHost: x\r\n\r\n")
			start := time.Now()
			waitFor(t, "downstream_cx_write_stall_timeout", func() bool { return stalls() == before+1 })
			// The connection manager closed the connection (the kernel may still be sending
			// what the socket held to the client's small window).
			waitFor(t, "the connection's close", func() bool {
				return base.st.Gauge("http.stall.downstream_cx_active", "").Value() == 0
			})
			t.Logf("stalled after %v", time.Since(start))
		})
		t.Run(name+"/slow reader", func(t *testing.T) {
			before := stalls()
			c := dialer(t, useTLS, 64<<10)
			const size = 2 << 20
			io.WriteString(c, "GET /?n="+strconv.Itoa(size)+" HTTP/1.1\r\nHost: x\r\n\r\n")
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReaderSize(c, 32<<10), nil)
			if err != nil {
				t.Fatal(err)
			}
			// 2 MiB at 32 KiB every 10 ms: well over the stall limit in all, never stalled.
			start, total := time.Now(), int64(0)
			for {
				time.Sleep(10 * time.Millisecond)
				n, err := io.CopyN(io.Discard, resp.Body, 32<<10)
				total += n
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("after %d bytes: %v", total, err)
				}
			}
			t.Logf("read %d bytes in %v", total, time.Since(start))
			if total != size || stalls() != before {
				t.Errorf("read %d bytes (want %d), %d write stalls (want 0)", total, size, stalls()-before)
			}
		})
	}
}
