package l7

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/strait-mesh/strait/internal/testenv"
	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
)

// rawUpstream answers each request on a loopback listener with the bytes answer returns for it,
// written as they are, and keeps the connection for the next request; an answer with a 101
// status turns the connection into an echo, and one with "Connection: close" ends it.
func rawUpstream(t *testing.T, answer func(r *http.Request) string) string {
	return testenv.ServeTCP(t, "127.0.0.1:0", func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			r, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, r.Body)
			a := answer(r)
			if _, err := io.WriteString(c, a); err != nil {
				return
			}
			switch {
			case strings.HasPrefix(a, "HTTP/1.1 101 "):
				_, _ = io.Copy(c, br)
				return
			case strings.Contains(a, "Connection: close\r\n"):
				return
			}
		}
	})
}

// upstreamKinds are the two ways a response reaches the router: an upstream.Cluster's
// HTTP/1.1 pool (its codec's head, httpmsg all the way) and an Upstream of net/http's shape
// (converted once, upstream.FromHTTP).
func upstreamKinds(t *testing.T, addr string) map[string]Upstream {
	return map[string]Upstream{"cluster": staticCluster(t, "c", addr, false), "net/http": newTestUpstream(addr, false)}
}

// rawExchange sends request (a whole HTTP/1.1 request) to addr and returns the response's head
// lines as received and the response parsed, its body read (so that Trailer is filled).
func rawExchange(t *testing.T, addr, request string) ([]string, *http.Response, string) {
	t.Helper()
	c := dial(t, addr)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var head []string
	var raw strings.Builder
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the head: %v", err)
		}
		raw.WriteString(line)
		if line = strings.TrimRight(line, "\r\n"); line == "" {
			break
		}
		head = append(head, line)
	}
	req, _ := http.ReadRequest(bufio.NewReader(strings.NewReader(request)))
	resp, err := http.ReadResponse(bufio.NewReader(io.MultiReader(strings.NewReader(raw.String()), br)), req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return head, resp, string(b)
}

// fieldLines returns the head lines of fields named name (any case).
func fieldLines(head []string, name string) []string {
	var out []string
	for _, l := range head {
		if k, _, ok := strings.Cut(l, ":"); ok && strings.EqualFold(k, name) {
			out = append(out, l)
		}
	}
	return out
}

// TestRespondFieldsAndTrailers: an upstream's repeated fields, chunked framing and announced
// trailers (Grpc-Status among them) reach HTTP/1.1 and HTTP/2 clients alike from both kinds of
// upstream: repeated fields in order, Transfer-Encoding not forwarded (the downstream codec
// frames the body itself), trailers announced and sent, and the trailer's Grpc-Status recorded.
func TestRespondFieldsAndTrailers(t *testing.T) {
	const answer = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-multi: a\r\nSet-Cookie: 1\r\nX-MULTI: b\r\n" +
		"set-cookie: 2\r\nTransfer-Encoding: chunked\r\nTrailer: grpc-status, x-t\r\n\r\n" +
		"5\r\nhello\r\n0\r\ngrpc-status: 7\r\nx-t: v\r\n\r\n"
	up := rawUpstream(t, func(*http.Request) string { return answer })
	for kind, u := range upstreamKinds(t, up) {
		p := startProxy(t, inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("c")))),
			&testEnv{clusters: map[string]Upstream{"c": u}}, false)
		check := func(via string, resp *http.Response, body string) {
			t.Helper()
			if resp.StatusCode != 200 || body != "hello" ||
				!reflect.DeepEqual(resp.Header["X-Multi"], []string{"a", "b"}) ||
				!reflect.DeepEqual(resp.Header["Set-Cookie"], []string{"1", "2"}) ||
				resp.Header.Get("Content-Type") != "text/plain" || resp.Header.Get("Content-Length") != "" {
				t.Errorf("%s via %s: %d %q %v", kind, via, resp.StatusCode, body, resp.Header)
			}
			if !reflect.DeepEqual(resp.Trailer, http.Header{"Grpc-Status": {"7"}, "X-T": {"v"}}) {
				t.Errorf("%s via %s: trailers %v", kind, via, resp.Trailer)
			}
			if ri := p.nextInfo(t); ri.GRPCStatus != "7" {
				t.Errorf("%s via %s: recorded grpc-status %q", kind, via, ri.GRPCStatus)
			}
		}

		head, resp, body := rawExchange(t, p.addr, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
		check("HTTP/1.1", resp, body)
		if te := fieldLines(head, "Transfer-Encoding"); len(te) != 1 || !strings.HasSuffix(te[0], " chunked") {
			t.Errorf("%s: Transfer-Encoding lines %q", kind, te)
		}
		var announced []string
		for _, l := range fieldLines(head, "Trailer") {
			_, v, _ := strings.Cut(l, ":")
			announced = append(announced, strings.TrimSpace(v))
		}
		if slices.Sort(announced); !reflect.DeepEqual(announced, []string{"Grpc-Status", "X-T"}) {
			t.Errorf("%s: announced trailers %q", kind, announced)
		}
		// Names go out as the upstream wrote them from the cluster's pool; net/http's map
		// canonicalizes them.
		want := "X-Multi: a"
		if kind == "cluster" {
			want = "x-multi: a"
		}
		if !slices.Contains(head, want) {
			t.Errorf("%s: head %q lacks %q", kind, head, want)
		}

		resp, body = roundTrip(t, h2cClient(), mustRequest(t, "GET", p.url("/")))
		check("HTTP/2", resp, body)
	}
}

// TestRespondLengthRules: Content-Length goes downstream as the upstream sent it, and none is
// made up for HEAD, 204 and 304 responses; a response delimited by the connection's close
// (HTTP/1.0) streams with the downstream codec's framing. Both kinds of upstream.
func TestRespondLengthRules(t *testing.T) {
	up := rawUpstream(t, func(r *http.Request) string {
		switch r.URL.Path {
		case "/204":
			return "HTTP/1.1 204 No Content\r\nx-a: 1\r\n\r\n"
		case "/304":
			return "HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\n\r\n"
		case "/http10":
			return "HTTP/1.0 200 OK\r\nConnection: close\r\n\r\nuntil close"
		}
		if r.Method == http.MethodHead {
			return "HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n"
		}
		return "HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc"
	})
	for kind, u := range upstreamKinds(t, up) {
		p := startProxy(t, inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("c")))),
			&testEnv{clusters: map[string]Upstream{"c": u}}, false)
		for _, tc := range []struct {
			method, path, body string
			status             int
			lengths            []string
		}{
			{"GET", "/len", "abc", 200, []string{"3"}},
			{"HEAD", "/len", "", 200, []string{"3"}},
			{"GET", "/204", "", 204, nil},
			{"GET", "/304", "", 304, nil},
			{"GET", "/http10", "until close", 200, nil},
		} {
			head, resp, body := rawExchange(t, p.addr, tc.method+" "+tc.path+" HTTP/1.1\r\nHost: a.test\r\n\r\n")
			var lengths []string
			for _, l := range fieldLines(head, "Content-Length") {
				_, v, _ := strings.Cut(l, ":")
				lengths = append(lengths, strings.TrimSpace(v))
			}
			if resp.StatusCode != tc.status || body != tc.body || !reflect.DeepEqual(lengths, tc.lengths) {
				t.Errorf("%s %s %s: %d %q, Content-Length %q; head %q", kind, tc.method, tc.path, resp.StatusCode, body, lengths, head)
			}
			p.nextInfo(t)
		}
	}
}

// TestRetryOnResponseFields: the retry decision reads the upstream's status and fields whatever
// their case: a retriable header, a Grpc-Status the policy retries, and x-envoy-ratelimited
// (retried by envoy-ratelimited only). Both kinds of upstream.
func TestRetryOnResponseFields(t *testing.T) {
	for _, tc := range []struct {
		name, retryOn, first string
		status, calls        int
	}{
		{"retriable header", "retriable-headers", "HTTP/1.1 500 Oops\r\nx-upstream-retry: yes\r\ncontent-length: 0\r\n\r\n", 200, 2},
		{"grpc-status", "unavailable", "HTTP/1.1 200 OK\r\ngrpc-status: 14\r\ncontent-length: 0\r\n\r\n", 200, 2},
		{"rate limited", "5xx", "HTTP/1.1 503 Busy\r\nx-envoy-ratelimited: true\r\ncontent-length: 0\r\n\r\n", 503, 1},
	} {
		var calls atomic.Int32
		up := rawUpstream(t, func(*http.Request) string {
			if calls.Add(1) == 1 {
				return tc.first
			}
			return "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
		})
		for kind, u := range upstreamKinds(t, up) {
			calls.Store(0)
			a := toCluster("c")
			a.RetryPolicy = &routev3.RetryPolicy{RetryOn: tc.retryOn, NumRetries: wrapperspb.UInt32(1),
				RetryBackOff: &routev3.RetryPolicy_RetryBackOff{BaseInterval: durationpb.New(time.Millisecond)},
				RetriableHeaders: []*routev3.HeaderMatcher{{Name: "X-Upstream-Retry",
					HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}}}
			p := startProxy(t, inlineHCM(oneVhost(fwdRoute("r", pfx("/"), a))), &testEnv{clusters: map[string]Upstream{"c": u}}, false)
			resp, _ := roundTrip(t, h1Client(), mustRequest(t, "GET", p.url("/")))
			if resp.StatusCode != tc.status || int(calls.Load()) != tc.calls {
				t.Errorf("%s, %s: %d after %d calls, want %d after %d", tc.name, kind, resp.StatusCode, calls.Load(), tc.status, tc.calls)
			}
		}
	}
}

// TestTunnelThroughCluster: a 101 answer from the cluster's HTTP/1.1 pool goes downstream with
// the upstream's fields, and the connection becomes a tunnel both ways.
func TestTunnelThroughCluster(t *testing.T) {
	up := rawUpstream(t, func(*http.Request) string {
		return "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nx-up: 1\r\n\r\n"
	})
	p := startProxy(t, inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("c")))),
		&testEnv{clusters: map[string]Upstream{"c": staticCluster(t, "c", up, false)}}, false)
	c := dial(t, p.addr)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || resp.Header.Get("X-Up") != "1" || resp.Header.Get("Upgrade") != "websocket" {
		t.Fatalf("%d %v", resp.StatusCode, resp.Header)
	}
	if _, err := io.WriteString(c, "ping"); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	if _, err := io.ReadFull(br, b); err != nil || string(b) != "ping" {
		t.Fatalf("echo %q, %v", b, err)
	}
	c.Close()
	if ri := p.nextInfo(t); ri.Status != 101 {
		t.Errorf("info %+v", ri)
	}
}
