package l7

import (
	"bytes"
	"github.com/strait-mesh/strait/proxy/httpmsg"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/strait-mesh/strait/proxy/balance"
	"github.com/strait-mesh/strait/proxy/httppath"
	"github.com/strait-mesh/strait/proxy/route"
)

// cannedUpstream answers every request at once with its request line echoed, reading the body.
type cannedUpstream struct{ unlimitedRetries }

func (cannedUpstream) RoundTrip(req *http.Request, _ balance.Context) (*http.Response, error) {
	if req.Body != nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(req.Body, 1<<20))
	}
	body := req.Method + " " + req.URL.RequestURI()
	return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)), ProtoMajor: 1, ProtoMinor: 1}, nil
}

// FuzzServeHTTP1 feeds raw bytes to a connection served by the handler (path normalization and
// merge_slashes on, use_remote_address on): whatever net/http lets through must be handled
// without panics, and the connection must finish.
func FuzzServeHTTP1(f *testing.F) {
	f.Add([]byte("GET /a/../b//c?x=1 HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.2.3.4, bogus\r\n\r\n"))
	f.Add([]byte("POST /%2F/x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"))
	f.Add([]byte("GET http://other/abs?q HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, x\r\nUpgrade: websocket\r\n\r\n"))
	f.Add([]byte("OPTIONS * HTTP/1.1\r\nHost: h\r\nOrigin: x\r\n\r\n"))
	f.Add([]byte("GET / HTTP/1.0\r\n\r\n"))
	f.Add([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
	rc := oneVhost(fwdRoute("r", pfx("/"), toCluster("c")))
	hcm := inlineHCM(rc)
	hcm.NormalizePath = boolPB(true)
	hcm.MergeSlashes = true
	hcm.UseRemoteAddress = boolPB(true)
	h, err := New(hcm, &testEnv{clusters: map[string]Upstream{"c": cannedUpstream{}}}, Options{})
	if err != nil {
		f.Fatal(err)
	}
	addr := serveConns(f, h, func(net.Conn) ConnInfo {
		return ConnInfo{Source: netip.MustParseAddrPort("198.18.0.1:1234"), OriginalDst: netip.MustParseAddrPort("127.0.0.1:80")}
	})
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Skip(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write(raw)
		c.(*net.TCPConn).CloseWrite()
		// The server must answer what it can and close: reading to EOF must not hit the deadline
		// (an h2 preface without frames legitimately waits for SETTINGS, so it is exempt).
		_, err = io.Copy(io.Discard, c)
		if ne, ok := err.(net.Error); ok && ne.Timeout() && !bytes.HasPrefix(raw, []byte("PRI * HTTP/2.0")) {
			t.Fatalf("connection still open after the client finished: %q", raw)
		}
	})
}

// FuzzPathAndHeaders checks the helpers that parse request-controlled strings.
func FuzzPathAndHeaders(f *testing.F) {
	f.Add("/a/./b/../../c/", "10.0.0.1, 2001:db8::1", "100m")
	f.Add("/..", "", "99999999H")
	f.Add("", ",,, ,", "1x")
	f.Fuzz(func(t *testing.T, path, xff, grpcTimeout string) {
		if n, err := httppath.Canonicalize(path); err == nil {
			// Whatever the normalizer produces must be a request URI the router can set.
			var s Stream
			if err := s.SetPath(n); err != nil {
				t.Fatalf("SetPath(%q) from %q: %v", n, path, err)
			}
		}
		var hdr httpmsg.Header
		hdr.Add("X-Forwarded-For", xff)
		for i := 0; i < 3; i++ {
			a, n, ok := xffAddr(&hdr, i)
			ra, rn, rok := refXFFAddr([]string{xff}, i)
			if a != ra || n != rn || ok != rok {
				t.Fatalf("xffAddr(%q, %d) = %v %d %v, the list split and parsed says %v %d %v", xff, i, a, n, ok, ra, rn, rok)
			}
		}
		if d, ok := route.ParseGRPCTimeout(grpcTimeout); ok && d < 0 {
			t.Fatalf("negative grpc-timeout %v", d)
		}
		if !bytes.Equal([]byte(grpcEncode(xff)), []byte(grpcEncode(xff))) {
			t.Fatal("unstable")
		}
	})
}

func boolPB(v bool) *wrapperspb.BoolValue { return wrapperspb.Bool(v) }
