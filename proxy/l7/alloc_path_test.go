package l7

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"github.com/strait-mesh/strait/proxy/accesslog"
	"github.com/strait-mesh/strait/proxy/h1"
	"github.com/strait-mesh/strait/proxy/stats"
	"github.com/strait-mesh/strait/proxy/telemetry"
	accesslogv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/accesslog/v3"
	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/matcher/v3"
	"io"
	"net"
	"runtime"
	"testing"

	"google.golang.org/protobuf/types/known/wrapperspb"
)

// TestKeepAliveRequestsAllocateNothing: HTTP/1.1 keep-alive requests through the connection
// manager and a compiled cluster, as an edge proxy forwards them (use_remote_address: the
// client's address appended to x-forwarded-for, a generated x-request-id), allocate nothing
// per request once the connections are warm. Client and upstream speak raw bytes from fixed
// buffers so that every allocation counted is the proxy's. (Per-request allocations found in
// the 1,000 rps profile, which BenchmarkLoopback's configuration did not reach: the client
// address's text made for each request, and a handed-out attempt context that kept every later
// request of its Stream from reusing its context object.) A count, not a timing: the bound
// leaves room for amortized slabs (request ids) and pools emptied by a collection.
func TestKeepAliveRequestsAllocateNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates on its own")
	}
	up := fixedUpstream(t)
	for _, tc := range []struct {
		name, fields string
		edge         bool
		routes       []*routev3.Route
		// with adds "metrics" (Istio's standard metrics), "access log" (Istio's text format), or
		// "mtls" (the client presents a certificate; x-forwarded-client-cert as Istio's inbound)
		with string
	}{
		{"edge", "", true, nil, ""},
		{"edge, client's request id and forwarded-for", "X-Request-Id: 4bf92f35-77b3-4da6-a3ce-929d0e0e4736\r\nX-Forwarded-For: 198.18.0.1\r\n", true, nil, ""},
		{"sidecar inbound", "X-Request-Id: 4bf92f35-77b3-4da6-a3ce-929d0e0e4736\r\n", false, nil, ""},
		{"sidecar, Connection and TE", "Connection: keep-alive\r\nTE: trailers\r\n", false, nil, ""},
		{"edge, nominated field", "Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nTE: gzip, trailers\r\n", true, nil, ""},
		{"header routes", "Content-Type: application/json\r\nEnd-User: jason\r\nCookie: a=1; session=xyz\r\n", false, []*routev3.Route{
			fwdRoute("exact", headerRoute("End-User", &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "bob"}}), toCluster("c")),
			fwdRoute("regex", headerRoute("End-User", &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "j.*n"}}}), toCluster("c")),
		}, ""},
		{"sidecar with Istio metrics", "X-Request-Id: 4bf92f35-77b3-4da6-a3ce-929d0e0e4736\r\n", false, nil, "metrics"},
		{"sidecar with an access log", "X-Request-Id: 4bf92f35-77b3-4da6-a3ce-929d0e0e4736\r\n", false, nil, "access log"},
		{"sidecar inbound over mTLS", "X-Request-Id: 4bf92f35-77b3-4da6-a3ce-929d0e0e4736\r\n", false, nil, "mtls"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cluster := "c"
			if tc.with == "metrics" {
				cluster = "outbound|80||api.shop.svc.cluster.local" // the labels name the service
			}
			routes := tc.routes
			if routes == nil {
				routes = []*routev3.Route{fwdRoute("r", pfx("/"), toCluster(cluster))}
			}
			hcm := inlineHCM(oneVhost(routes...))
			hcm.UseRemoteAddress = wrapperspb.Bool(tc.edge)
			var opts Options
			switch tc.with {
			case "metrics":
				opts.Stats = stats.NewStore()
				opts.Telemetry = telemetry.New(telemetry.Options{Local: telemetryLocal, Stats: opts.Stats})
			case "access log":
				opts.AccessLogFiles = accesslog.NewFiles(accesslog.FilesOptions{QueueLines: 1 << 16,
					Open: func(string) (io.WriteCloser, error) { return discard{}, nil }})
				hcm.AccessLog = []*accesslogv3.AccessLog{fileAccessLog(t, "/discard", accesslog.IstioTextFormat)}
			case "mtls":
				hcm.ForwardClientCertDetails = hcmv3.HttpConnectionManager_APPEND_FORWARD
				hcm.SetCurrentClientCertDetails = &hcmv3.HttpConnectionManager_SetCurrentClientCertDetails{
					Subject: wrapperspb.Bool(true), Uri: true, Dns: true}
			}
			h, err := New(hcm, &testEnv{clusters: map[string]Upstream{cluster: staticCluster(t, cluster, up, false)}}, opts)
			if err != nil {
				t.Fatal(err)
			}
			head := "POST /echo HTTP/1.1\r\nHost: svc.test\r\nUser-Agent: alloc-test\r\n" + tc.fields + "Content-Length: 1024\r\n\r\n"
			req := append([]byte(head), bytes.Repeat([]byte("x"), 1024)...)
			if tc.with != "mtls" {
				checkNoAllocs(t, serveConns(t, h, loopbackInfo), req, nil, 0)
				return
			}
			srv, cert := selfSigned(t)
			srv.ClientAuth = tls.RequireAnyClientCert
			t.Cleanup(func() { h.Close() })
			addr := acceptLoop(t, func(c net.Conn) {
				tc := tls.Server(h1.DirectConn(c), srv)
				if tc.Handshake() != nil {
					c.Close()
					return
				}
				info := loopbackInfo(c)
				cs := tc.ConnectionState()
				info.TLS, info.PeerCertificates, info.LocalCertificate = true, cs.PeerCertificates, cert
				h.ServeConn(tc, info)
			})
			client, _ := selfSigned(t)
			pool := x509.NewCertPool()
			pool.AddCert(cert)
			// crypto/tls allocates one small object per record it reads (Conn.readFromUntil's
			// atLeastReader escapes): one for the proxy reading the request, one for this
			// client reading the response.
			checkNoAllocs(t, addr, req, &tls.Config{RootCAs: pool, ServerName: "proxy.test", Certificates: client.Certificates}, 2)
		})
	}
}

// headerRoute matches requests whose header name matches m.
func headerRoute(name string, m *matcherv3.StringMatcher) *routev3.RouteMatch {
	r := pfx("/")
	r.Headers = []*routev3.HeaderMatcher{{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: m}}}
	return r
}

// checkNoAllocs sends req over keep-alive connections to addr (over TLS with tc when not nil),
// and fails when the requests after the warm-up allocate more than known per request.
func checkNoAllocs(t *testing.T, addr string, req []byte, tc *tls.Config, known float64) {
	const conns = 4
	cs := make([]net.Conn, conns)
	for i := range cs {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if tc != nil {
			c = tls.Client(c, tc)
		}
		cs[i] = c
	}
	buf := make([]byte, 64<<10)
	roundTrip := func(c net.Conn) {
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		if err := readRawResponse(c, buf); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 400; i++ {
		roundTrip(cs[i%conns])
	}
	const n = 2000
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := 0; i < n; i++ {
		roundTrip(cs[i%conns])
	}
	runtime.ReadMemStats(&after)
	per := float64(after.Mallocs-before.Mallocs) / n
	t.Logf("%.3f allocations per request", per)
	if per > known+0.5 {
		t.Errorf("%.2f allocations per request (%d over %d requests), want %.0f", per, after.Mallocs-before.Mallocs, n, known)
	}
}

// fixedUpstream answers each HTTP/1.1 request (a head, then a body of its Content-Length) with
// a fixed 200 "ok", from fixed buffers: it allocates nothing per request.
func fixedUpstream(t *testing.T) string {
	t.Helper()
	const resp = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
	return acceptLoop(t, func(c net.Conn) {
		defer c.Close()
		buf := make([]byte, 64<<10)
		out := []byte(resp)
		n := 0
		for {
			end := bytes.Index(buf[:n], []byte("\r\n\r\n"))
			if end < 0 {
				if n == len(buf) {
					return
				}
				m, err := c.Read(buf[n:])
				if err != nil {
					return
				}
				n += m
				continue
			}
			need := end + 4 + contentLength(buf[:end])
			for n < need {
				m, err := c.Read(buf[n:])
				if err != nil {
					return
				}
				n += m
			}
			if _, err := c.Write(out); err != nil {
				return
			}
			n = copy(buf, buf[need:n])
		}
	})
}

// contentLength returns the Content-Length of a message head (0 when it has none); it
// allocates nothing.
func contentLength(head []byte) int {
	for len(head) > 0 {
		line := head
		if i := bytes.Index(head, []byte("\r\n")); i >= 0 {
			line, head = head[:i], head[i+2:]
		} else {
			head = nil
		}
		name, v, ok := bytes.Cut(line, []byte(":"))
		if !ok || !bytes.EqualFold(name, []byte("content-length")) {
			continue
		}
		n := 0
		for _, b := range bytes.TrimSpace(v) {
			n = n*10 + int(b-'0')
		}
		return n
	}
	return 0
}

// readRawResponse reads one response with a Content-Length body from c into buf.
func readRawResponse(c net.Conn, buf []byte) error {
	n := 0
	for {
		m, err := c.Read(buf[n:])
		if err != nil {
			return err
		}
		n += m
		end := bytes.Index(buf[:n], []byte("\r\n\r\n"))
		if end < 0 {
			if n == len(buf) {
				return io.ErrShortBuffer
			}
			continue
		}
		if n >= end+4+contentLength(buf[:end]) {
			return nil
		}
	}
}
