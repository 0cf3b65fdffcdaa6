package l7

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/anypb"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/balance"
	"github.com/strait-mesh/strait/proxy/h1"
	"github.com/strait-mesh/strait/proxy/route"
	"github.com/strait-mesh/strait/proxy/stats"
	"github.com/strait-mesh/strait/proxy/upstream"
	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
	routerv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
)

// testEnv is the proxy runtime as the handler sees it: RDS tables and clusters by name.
type testEnv struct {
	mu       sync.Mutex
	tables   map[string]*route.Table
	clusters map[string]Upstream
}

func (e *testEnv) Route(name string) *route.Table {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.tables[name]
}

func (e *testEnv) Cluster(name string) Upstream {
	e.mu.Lock()
	defer e.mu.Unlock()
	if u, ok := e.clusters[name]; ok {
		return u
	}
	return nil
}

// testUpstream is a minimal cluster: one loopback endpoint reached over HTTP/1.1 or h2c with
// real transports. Failures are reported as *upstream.Error like the real clusters do.
type testUpstream struct {
	unlimitedRetries
	addr string
	rt   http.RoundTripper
}

// unlimitedRetries is the retry budget of a test upstream without circuit breakers: it admits
// every retry. Fakes embed it to say so; *upstream.Cluster enforces max_retries.
type unlimitedRetries struct{}

func (unlimitedRetries) AcquireRetry() bool { return true }
func (unlimitedRetries) ReleaseRetry()      {}

func newTestUpstream(addr string, h2c bool) *testUpstream {
	dialErr := func(err error) error { return &upstream.Error{Flag: upstream.FlagConnectFailure, Err: err} }
	d := &net.Dialer{Timeout: 2 * time.Second}
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, dialErr(err)
		}
		return c, nil
	}
	tr := &http.Transport{DialContext: dial, DisableCompression: true, MaxIdleConnsPerHost: 16}
	if h2c {
		p := new(http.Protocols)
		p.SetUnencryptedHTTP2(true)
		tr.Protocols = p
	}
	return &testUpstream{addr: addr, rt: tr}
}

func (u *testUpstream) RoundTrip(req *http.Request, _ balance.Context) (*http.Response, error) {
	out := new(http.Request)
	*out = *req
	out.RequestURI = ""
	nu := *req.URL
	nu.Scheme, nu.Host = "http", u.addr
	out.URL = &nu
	if out.Header == nil {
		out.Header = http.Header{}
	}
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = nil
	}
	resp, err := u.rt.RoundTrip(out)
	if err != nil {
		var ue *upstream.Error
		if errors.As(err, &ue) {
			return nil, ue
		}
		return nil, &upstream.Error{Flag: upstream.FlagConnectionTerminate, Err: err}
	}
	return resp, nil
}

// proxy is an l7.Handler serving on a loopback listener.
type proxy struct {
	h     *Handler
	addr  string
	st    *stats.Store
	infos chan *RequestInfo
	tls   *tls.Config // set for TLS listeners
	cert  *x509.Certificate
}

func routerFilter() *hcmv3.HttpFilter {
	a, _ := anypb.New(&routerv3.Router{})
	return &hcmv3.HttpFilter{Name: route.RouterFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: a}}
}

func inlineHCM(rc *routev3.RouteConfiguration, filters ...*hcmv3.HttpFilter) *hcmv3.HttpConnectionManager {
	return &hcmv3.HttpConnectionManager{
		StatPrefix:     "test",
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: rc},
		HttpFilters:    append(filters, routerFilter()),
		UpgradeConfigs: []*hcmv3.HttpConnectionManager_UpgradeConfig{{UpgradeType: "websocket"}},
	}
}

// startProxy compiles hcm and serves it on 127.0.0.1; withTLS terminates TLS (ALPN h2,
// http/1.1) over h1.DirectConn before handing connections over, as a listener's filter chain
// does.
func startProxy(t *testing.T, hcm *hcmv3.HttpConnectionManager, env Env, withTLS bool) *proxy {
	t.Helper()
	return startProxyTLS(t, hcm, env, withTLS, nil)
}

// startProxyTLS is startProxy with a hook to adjust the server TLS config (e.g. client auth).
func startProxyTLS(t *testing.T, hcm *hcmv3.HttpConnectionManager, env Env, withTLS bool, adjust func(*tls.Config)) *proxy {
	t.Helper()
	p := &proxy{st: stats.NewStore(), infos: make(chan *RequestInfo, 1024)}
	h, err := New(hcm, env, Options{Stats: p.st, OnComplete: func(ri *RequestInfo) {
		c := *ri
		select {
		case p.infos <- &c:
		default:
		}
	}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	p.h = h
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	if withTLS {
		p.tls, p.cert = selfSigned(t)
		if adjust != nil {
			adjust(p.tls)
		}
	}
	var wg sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				info := ConnInfo{
					Source:      netip.MustParseAddrPort(c.RemoteAddr().String()),
					OriginalDst: netip.MustParseAddrPort(c.LocalAddr().String()),
				}
				if p.tls != nil {
					// Over a DirectConn, as the listener terminates TLS for HTTP chains.
					tc := tls.Server(h1.DirectConn(c), p.tls)
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					err := tc.HandshakeContext(ctx)
					cancel()
					if err != nil {
						c.Close()
						return
					}
					cs := tc.ConnectionState()
					info.TLS, info.ALPN, info.SNI = true, cs.NegotiatedProtocol, cs.ServerName
					info.PeerCertificates, info.LocalCertificate = cs.PeerCertificates, p.cert
					c = tc
				}
				h.ServeConn(c, info)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		h.Close()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("connections did not finish after Close")
		}
	})
	return p
}

func (p *proxy) counter(name string) uint64 {
	return p.st.Counter(name, "").Value()
}

// nextInfo returns the next completed request record.
func (p *proxy) nextInfo(t *testing.T) *RequestInfo {
	t.Helper()
	select {
	case ri := <-p.infos:
		return ri
	case <-time.After(10 * time.Second):
		t.Fatal("no request completed")
		return nil
	}
}

func (p *proxy) url(path string) string { return "http://" + p.addr + path }

// h1Client returns an HTTP/1.1 client for the proxy.
func h1Client() *http.Client {
	return &http.Client{Transport: &http.Transport{DisableCompression: true}, Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// h2cClient speaks HTTP/2 with prior knowledge.
func h2cClient() *http.Client {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: p, DisableCompression: true}, Timeout: 20 * time.Second}
}

// startProxyB serves a handler routing everything to cluster "c" for benchmarks.
func startProxyB(b *testing.B, env Env) string {
	h, err := New(inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("c")))), env, Options{})
	if err != nil {
		b.Fatal(err)
	}
	return serveConns(b, h, loopbackInfo)
}

// serveConns serves h on a new loopback listener, each connection on a goroutine of its own
// with the ConnInfo info gives it, and returns the listener's address. At the end of the test
// the listener, then h, is closed.
func serveConns(t testing.TB, h *Handler, info func(net.Conn) ConnInfo) string {
	t.Helper()
	t.Cleanup(func() { h.Close() })
	return acceptLoop(t, func(c net.Conn) { h.ServeConn(c, info(c)) })
}

// acceptLoop listens on a new loopback address and runs serve on a goroutine of its own for
// each connection accepted, until the listener is closed at the end of the test; it returns
// the address.
func acceptLoop(t testing.TB, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// loopbackInfo is the ConnInfo of a connection accepted directly (not redirected): its peer
// and its local address.
func loopbackInfo(c net.Conn) ConnInfo {
	return ConnInfo{Source: netip.MustParseAddrPort(c.RemoteAddr().String()),
		OriginalDst: netip.MustParseAddrPort(c.LocalAddr().String())}
}

// dial opens a TCP connection to addr, closed at the end of the test.
func dial(t *testing.T, addr string) net.Conn { return testenv.Dial(t, addr) }

// roundTrip sends req with c and returns the response with its body, read and closed.
func roundTrip(t testing.TB, c *http.Client, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// startUpstream runs handler on a loopback server; h2c adds cleartext HTTP/2.
func startUpstream(t testing.TB, handler http.Handler, h2c bool) string {
	t.Helper()
	p := new(http.Protocols)
	p.SetHTTP1(true)
	if h2c {
		p.SetUnencryptedHTTP2(true)
	}
	return testenv.ServeHTTP(t, testenv.Listen(t, "127.0.0.1:0"), &http.Server{Handler: handler, Protocols: p})
}

func selfSigned(t *testing.T) (*tls.Config, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse("spiffe://cluster.local/ns/default/sa/proxy")
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "proxy.test"},
		DNSNames: []string{"proxy.test"}, URIs: []*url.URL{u}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		NextProtos: []string{"h2", "http/1.1"}, MinVersion: tls.VersionTLS12}, cert
}

func fwdRoute(name string, m *routev3.RouteMatch, action *routev3.RouteAction) *routev3.Route {
	return &routev3.Route{Name: name, Match: m, Action: &routev3.Route_Route{Route: action}}
}

func pfx(p string) *routev3.RouteMatch {
	return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: p}}
}

func toCluster(name string) *routev3.RouteAction {
	return &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: name}}
}

func oneVhost(routes ...*routev3.Route) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{Name: "test", VirtualHosts: []*routev3.VirtualHost{{Name: "all", Domains: []string{"*"}, Routes: routes}}}
}

// waitFor polls cond until it holds or 10s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, what, 10*time.Second, cond)
}
