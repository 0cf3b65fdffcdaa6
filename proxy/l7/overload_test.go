package l7

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/strait-mesh/strait/proxy/stats"
)

// fakeOverload is a hand-set overload state.
type fakeOverload struct{ stopRequests, keepaliveOff atomic.Bool }

func (f *fakeOverload) StopAcceptingRequests() bool { return f.stopRequests.Load() }
func (f *fakeOverload) DisableHTTPKeepalive() bool  { return f.keepaliveOff.Load() }

var _ Overload = (*fakeOverload)(nil)

// startOverloadProxy serves a handler that forwards everything to an "ok" upstream, subject to o.
func startOverloadProxy(t *testing.T, o Overload) *proxy {
	t.Helper()
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }), false)
	env := &testEnv{clusters: map[string]Upstream{"up": newTestUpstream(up, false)}}
	p := &proxy{st: stats.NewStore(), infos: make(chan *RequestInfo, 64)}
	h, err := New(inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("up")))), env, Options{Stats: p.st, Overload: o,
		OnComplete: func(ri *RequestInfo) {
			c := *ri
			select {
			case p.infos <- &c:
			default:
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	p.h = h
	p.addr = serveConns(t, h, loopbackInfo)
	return p
}

// getTraced sends GET / with c and reports the status, body, the response's Close and whether
// the connection was reused.
func getTraced(t *testing.T, c *http.Client, url string) (code int, body string, closed, reused bool) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused },
	}))
	resp, b := roundTrip(t, c, req)
	return resp.StatusCode, b, resp.Close, reused
}

func TestOverloadStopAcceptingRequests(t *testing.T) {
	o := &fakeOverload{}
	p := startOverloadProxy(t, o)
	c := h1Client()
	if code, body, _, _ := getTraced(t, c, p.url("/")); code != 200 || body != "ok" {
		t.Fatalf("before overload: %d %q", code, body)
	}
	p.nextInfo(t)

	o.stopRequests.Store(true)
	code, body, _, _ := getTraced(t, c, p.url("/"))
	if code != http.StatusServiceUnavailable || body != "envoy overloaded" {
		t.Fatalf("overloaded: %d %q, want 503 \"envoy overloaded\"", code, body)
	}
	ri := p.nextInfo(t)
	if ri.Flags != FlagOverloadManager || ri.Flags.String() != "OM" || ri.Details != "overload" {
		t.Errorf("flags %s details %q, want OM overload", ri.Flags, ri.Details)
	}
	if n := p.counter("http.test.downstream_rq_overload_close"); n != 1 {
		t.Errorf("downstream_rq_overload_close = %d", n)
	}
	if n := p.counter("http.test.downstream_rq_response_flags.OM"); n != 1 {
		t.Errorf("downstream_rq_response_flags.OM = %d", n)
	}

	// HTTP/2 requests are refused the same way.
	code, body, _, _ = getTraced(t, h2cClient(), p.url("/"))
	if code != http.StatusServiceUnavailable || body != "envoy overloaded" {
		t.Fatalf("h2c overloaded: %d %q", code, body)
	}

	o.stopRequests.Store(false)
	if code, body, _, _ := getTraced(t, c, p.url("/")); code != 200 || body != "ok" {
		t.Fatalf("after overload: %d %q", code, body)
	}
}

func TestOverloadDisableKeepaliveHTTP1(t *testing.T) {
	o := &fakeOverload{}
	p := startOverloadProxy(t, o)
	c := h1Client()
	getTraced(t, c, p.url("/"))
	if _, _, closed, reused := getTraced(t, c, p.url("/")); closed || !reused {
		t.Fatalf("keep-alive on: closed %v reused %v", closed, reused)
	}

	o.keepaliveOff.Store(true)
	code, body, closed, _ := getTraced(t, c, p.url("/"))
	if code != 200 || body != "ok" || !closed {
		t.Fatalf("keep-alive off: %d %q, Connection: close %v", code, body, closed)
	}
	if _, _, closed, reused := getTraced(t, c, p.url("/")); !closed || reused {
		t.Fatalf("keep-alive still off: closed %v, reused %v (want a new connection each time)", closed, reused)
	}
	if n := p.counter("http.test.downstream_cx_overload_disable_keepalive"); n != 2 {
		t.Errorf("downstream_cx_overload_disable_keepalive = %d, want 2", n)
	}

	// A raw look at the header on the wire.
	conn, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	raw, _ := io.ReadAll(conn) // the server closes after the response
	if !bytes.Contains(raw, []byte("\r\nConnection: close\r\n")) {
		t.Errorf("response lacks Connection: close:\n%s", raw)
	}

	o.keepaliveOff.Store(false)
	getTraced(t, c, p.url("/")) // switches keep-alive back on; this response may still close
	if _, _, closed, reused := getTraced(t, c, p.url("/")); closed {
		t.Fatalf("keep-alive back on: closed %v reused %v", closed, reused)
	}
	if _, _, closed, reused := getTraced(t, c, p.url("/")); closed || !reused {
		t.Fatalf("keep-alive back on: closed %v reused %v", closed, reused)
	}
}

func TestOverloadDisableKeepaliveHTTP2GoAway(t *testing.T) {
	o := &fakeOverload{}
	o.keepaliveOff.Store(true)
	p := startOverloadProxy(t, o)
	conn, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(conn, http2.ClientPreface)
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "x"}, {":path", "/"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	var sawResponse bool
	for i := 0; i < 100; i++ {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading frames: %v (response seen: %v)", err, sawResponse)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.HeadersFrame:
			sawResponse = f.StreamID == 1
		case *http2.GoAwayFrame:
			if !sawResponse {
				t.Fatal("GOAWAY before the response")
			}
			if f.LastStreamID != 1 || f.ErrCode != http2.ErrCodeNo {
				t.Errorf("GOAWAY last stream %d code %v, want 1 NO_ERROR", f.LastStreamID, f.ErrCode)
			}
			return
		}
	}
	t.Fatal("no GOAWAY after the response while keep-alive is disabled")
}
