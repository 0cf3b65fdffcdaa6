package listener

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/balance"
	"github.com/strait-mesh/strait/proxy/l4"
	"github.com/strait-mesh/strait/proxy/l7"
	"github.com/strait-mesh/strait/proxy/route"
	"github.com/strait-mesh/strait/proxy/stats"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	listenerv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/listener/v3"
	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
	routerv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/transport_sockets/tls/v3"
)

// testEnv is a hand-written Env: TCP clusters dial fixed loopback addresses over real TCP, HTTP
// chains use a small net/http terminal (or real l7 when realHTTP is set), hand-off goes through a
// Registry.
type testEnv struct {
	st       *stats.Store
	tcp      map[string]string // cluster name -> backend address
	secrets  map[string]*tlsv3.Secret
	reg      Registry
	realHTTP bool
}

func newEnv() *testEnv {
	return &testEnv{st: stats.NewStore(), tcp: map[string]string{}, secrets: map[string]*tlsv3.Secret{}}
}

func (e *testEnv) Secret(name string) *tlsv3.Secret     { return e.secrets[name] }
func (e *testEnv) HTTP() l7.Env                         { return httpEnv{} }
func (e *testEnv) HTTPOptions() l7.Options              { return l7.Options{Stats: e.st} }
func (e *testEnv) TCP() l4.Env                          { return tcpEnv{e} }
func (e *testEnv) Stats() *stats.Store                  { return e.st }
func (e *testEnv) Handoff(dst netip.AddrPort) *Listener { return e.reg.Lookup(dst) }
func (e *testEnv) counter(name string) uint64           { return e.st.Counter(name, "").Value() }

// fakeHTTP is a testEnv whose HTTP chains use the small net/http terminal below instead of l7.
type fakeHTTP struct{ *testEnv }

func (fakeHTTP) NewHTTP(*hcmv3.HttpConnectionManager) (Terminal, error) { return newHTTPTerm(), nil }

type httpEnv struct{}

func (httpEnv) Route(string) *route.Table  { return nil }
func (httpEnv) Cluster(string) l7.Upstream { return nil }

type tcpEnv struct{ e *testEnv }

func (t tcpEnv) Cluster(name string) l4.Upstream {
	addr, ok := t.e.tcp[name]
	if !ok {
		return nil
	}
	return dialUpstream(addr)
}
func (t tcpEnv) Stats() *stats.Store { return t.e.st }
func (t tcpEnv) WithOriginalDst(ctx context.Context, _ netip.AddrPort) context.Context {
	return ctx
}

type dialUpstream string

func (d dialUpstream) Dial(ctx context.Context, _ balance.Context) (net.Conn, error) {
	var nd net.Dialer
	return nd.DialContext(ctx, "tcp", string(d))
}

// httpTerm is a minimal HTTP/1.1 + h2c terminal built on net/http: it answers every request with
// "<chain> <proto> <alpn>" so tests can see which chain served them.
type httpTerm struct {
	srv   *http.Server
	conns chan net.Conn
	once  sync.Once
	mu    sync.Mutex
	infos map[net.Conn]ConnInfo
	done  map[net.Conn]chan struct{}
}

func newHTTPTerm() *httpTerm {
	t := &httpTerm{conns: make(chan net.Conn), infos: map[net.Conn]ConnInfo{}, done: map[net.Conn]chan struct{}{}}
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	t.srv = &http.Server{
		Protocols: p,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			info := r.Context().Value(infoKey{}).(ConnInfo)
			fmt.Fprintf(w, "%s %s %s", info.FilterChain, r.Proto, info.ALPN)
			if info.LocalCertificate != nil {
				fmt.Fprintf(w, " local=%s", info.LocalCertificate.DNSNames[0])
			}
			if len(info.PeerCertificates) > 0 {
				fmt.Fprintf(w, " peer=%s", info.PeerCertificates[0].DNSNames[0])
			}
		}),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			t.mu.Lock()
			defer t.mu.Unlock()
			return context.WithValue(ctx, infoKey{}, t.infos[c])
		},
		ConnState: func(c net.Conn, s http.ConnState) {
			if s == http.StateClosed || s == http.StateHijacked {
				t.mu.Lock()
				if d, ok := t.done[c]; ok {
					close(d)
					delete(t.done, c)
				}
				t.mu.Unlock()
			}
		},
	}
	return t
}

type infoKey struct{}

type plain struct{ net.Conn }

func (t *httpTerm) ServeConn(c net.Conn, info ConnInfo) {
	t.once.Do(func() { go t.srv.Serve(chanListener{c: t.conns, done: make(chan struct{}), once: new(sync.Once)}) })
	c = plain{c}
	d := make(chan struct{})
	t.mu.Lock()
	t.infos[c], t.done[c] = info, d
	t.mu.Unlock()
	select {
	case t.conns <- c:
		<-d
	case <-time.After(10 * time.Second):
		c.Close()
	}
}

// chanListener feeds connections accepted elsewhere to http.Server.Serve.
type chanListener struct {
	c    chan net.Conn
	done chan struct{}
	once *sync.Once
}

func (l chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.c:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}
func (l chanListener) Addr() net.Addr { return &net.TCPAddr{} }
func (l chanListener) Close() error   { l.once.Do(func() { close(l.done) }); return nil }

func (t *httpTerm) Drain(ctx context.Context) error { return t.srv.Shutdown(ctx) }
func (t *httpTerm) Close() error                    { return t.srv.Close() }

// tcpBackend is a real TCP server that writes its tag, then echoes until EOF.
func tcpBackend(t *testing.T, tag string) string {
	t.Helper()
	return testenv.TCPEcho(t, tag+"\n")
}

// tlsBackend is a real TLS server (certificate for any name) that writes tag and the SNI it saw.
func tlsBackend(t *testing.T, tag string, cert tls.Certificate) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	return testenv.Serve(t, ln, func(c net.Conn) {
		tc := c.(*tls.Conn)
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		if tc.Handshake() != nil {
			return
		}
		fmt.Fprintf(tc, "%s %s\n", tag, tc.ConnectionState().ServerName)
	})
}

// selfSigned returns a certificate valid for the given DNS names, and its PEM forms.
func selfSigned(t *testing.T, names ...string) (tls.Certificate, []byte, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		DNSNames:     names,
		IsCA:         true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	cp := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	kp := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	c, err := tls.X509KeyPair(cp, kp)
	if err != nil {
		t.Fatal(err)
	}
	return c, cp, kp
}

func sockAddr(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}
}

func tcpChain(t testing.TB, name, cluster string, m *listenerv3.FilterChainMatch) *listenerv3.FilterChain {
	return &listenerv3.FilterChain{Name: name, FilterChainMatch: m, Filters: []*listenerv3.Filter{{
		Name:       "envoy.filters.network.tcp_proxy",
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: testenv.MustAny(t, &tcpv3.TcpProxy{StatPrefix: name, ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: cluster}})},
	}}}
}

func httpChain(t testing.TB, name string, m *listenerv3.FilterChainMatch) *listenerv3.FilterChain {
	return &listenerv3.FilterChain{Name: name, FilterChainMatch: m, Filters: []*listenerv3.Filter{{
		Name:       "envoy.filters.network.http_connection_manager",
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: testenv.MustAny(t, &hcmv3.HttpConnectionManager{StatPrefix: name})},
	}}}
}

// start compiles lr, binds it on loopback (port 0 unless given) and serves it.
func start(t testing.TB, lr *listenerv3.Listener, env Env) (*Listener, string) {
	t.Helper()
	if lr.Address == nil {
		lr.Address = sockAddr("127.0.0.1", 0)
	}
	l, err := Compile(lr, env)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := l.Listen(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	go l.Serve(ln)
	t.Cleanup(func() { l.Close() })
	return l, ln.Addr().String()
}

// readLine dials addr over plain TCP and returns the first line the far end sends.
func readLine(t *testing.T, d *net.Dialer, addr string) string {
	t.Helper()
	if d == nil {
		d = &net.Dialer{}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return firstLine(t, c)
}

// firstLine returns the first line read from c (without the newline), or what came before EOF.
func firstLine(t *testing.T, c net.Conn) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var b []byte
	one := make([]byte, 1)
	for {
		n, err := c.Read(one)
		if n == 1 {
			if one[0] == '\n' {
				return string(b)
			}
			b = append(b, one[0])
		}
		if err != nil {
			return string(b)
		}
	}
}

// waitFor polls cond until it holds or 10s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, what, 10*time.Second, cond)
}

// directResponseHCM is a chain whose HTTP connection manager answers every request with body.
func directResponseHCM(t testing.TB, body string) *listenerv3.FilterChain {
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: "direct",
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name: "direct",
			VirtualHosts: []*routev3.VirtualHost{{Name: "all", Domains: []string{"*"}, Routes: []*routev3.Route{{
				Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 200,
					Body: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: body}}}},
			}}}},
		}},
		HttpFilters: []*hcmv3.HttpFilter{{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: testenv.MustAny(t, &routerv3.Router{})}}},
	}
	return &listenerv3.FilterChain{Name: "direct", Filters: []*listenerv3.Filter{{
		Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: testenv.MustAny(t, hcm)}}}}
}
