package l7

import (
	"bytes"
	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
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
	up := fixedUpstream(t)
	for _, tc := range []struct {
		name, fields string
		edge         bool
		routes       []*routev3.Route
	}{
		{"edge", "", true, nil},
		{"edge, client's request id and forwarded-for", "X-Request-Id: 4bf92f35-77b3-4da6-a3ce-929d0e0e4736\r\nX-Forwarded-For: 198.18.0.1\r\n", true, nil},
		{"sidecar inbound", "X-Request-Id: 4bf92f35-77b3-4da6-a3ce-929d0e0e4736\r\n", false, nil},
		{"sidecar, Connection and TE", "Connection: keep-alive\r\nTE: trailers\r\n", false, nil},
		{"edge, nominated field", "Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nTE: gzip, trailers\r\n", true, nil},
		{"header routes", "Content-Type: application/json\r\nEnd-User: jason\r\nCookie: a=1; session=xyz\r\n", false, []*routev3.Route{
			fwdRoute("exact", headerRoute("End-User", &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "bob"}}), toCluster("c")),
			fwdRoute("regex", headerRoute("End-User", &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "j.*n"}}}), toCluster("c")),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			routes := tc.routes
			if routes == nil {
				routes = []*routev3.Route{fwdRoute("r", pfx("/"), toCluster("c"))}
			}
			hcm := inlineHCM(oneVhost(routes...))
			hcm.UseRemoteAddress = wrapperspb.Bool(tc.edge)
			h, err := New(hcm, &testEnv{clusters: map[string]Upstream{"c": staticCluster(t, "c", up, false)}}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			head := "POST /echo HTTP/1.1\r\nHost: svc.test\r\nUser-Agent: alloc-test\r\n" + tc.fields + "Content-Length: 1024\r\n\r\n"
			checkNoAllocs(t, serveConns(t, h, loopbackInfo), append([]byte(head), bytes.Repeat([]byte("x"), 1024)...))
		})
	}
}

// headerRoute matches requests whose header name matches m.
func headerRoute(name string, m *matcherv3.StringMatcher) *routev3.RouteMatch {
	r := pfx("/")
	r.Headers = []*routev3.HeaderMatcher{{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: m}}}
	return r
}

// checkNoAllocs sends req over keep-alive connections to addr, and fails when the requests
// after the warm-up allocate.
func checkNoAllocs(t *testing.T, addr string, req []byte) {

	const conns = 4
	cs := make([]net.Conn, conns)
	for i := range cs {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
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
	if per > 0.5 {
		t.Errorf("%.2f allocations per request (%d over %d requests), want none", per, after.Mallocs-before.Mallocs, n)
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
