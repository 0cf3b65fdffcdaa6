package l7

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	ghcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/strait-mesh/strait/proxy/route"
	"github.com/strait-mesh/strait/proxy/stats"
	"github.com/strait-mesh/strait/proxy/xdspb"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
)

// Tests of the timeouts for slow clients (timeouts*.go).

// slowProxy serves everything from an upstream that reads the request body and answers with
// respBytes bytes; tweak adjusts the connection manager.
func slowProxy(t *testing.T, respBytes int, tweak func(*hcmv3.HttpConnectionManager)) *proxy {
	t.Helper()
	return slowProxyTLS(t, respBytes, false, tweak)
}

// slowProxyTLS is slowProxy, terminating TLS when withTLS is set (startProxy).
func slowProxyTLS(t *testing.T, respBytes int, withTLS bool, tweak func(*hcmv3.HttpConnectionManager)) *proxy {
	t.Helper()
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if respBytes <= 0 {
			io.WriteString(w, "ok")
			return
		}
		w.Header().Set("Content-Length", itoa(respBytes))
		buf := make([]byte, 32<<10)
		for n := 0; n < respBytes; n += len(buf) {
			if _, err := w.Write(buf[:min(len(buf), respBytes-n)]); err != nil {
				return
			}
		}
	}), true)
	env := &testEnv{clusters: map[string]Upstream{"b": newTestUpstream(up, false)}}
	rc := oneVhost(
		&routev3.Route{Name: "direct", Match: pfx("/direct"), Action: &routev3.Route_DirectResponse{
			DirectResponse: &routev3.DirectResponseAction{Status: 404}}},
		fwdRoute("r", pfx("/"), toCluster("b")))
	hcm := inlineHCM(rc)
	if tweak != nil {
		tweak(hcm)
	}
	return startProxy(t, hcm, env, withTLS)
}

// withDrain serves like slowProxy with a shorter drain period after max_connection_duration.
func withDrain(t *testing.T, hcm *hcmv3.HttpConnectionManager, env Env, drain time.Duration) *proxy {
	t.Helper()
	p := &proxy{st: stats.NewStore(), infos: make(chan *RequestInfo, 1024)}
	h, err := New(hcm, env, Options{Stats: p.st})
	if err != nil {
		t.Fatal(err)
	}
	h.drainTimeout = drain
	p.h = h
	p.addr = serveConns(t, h, func(net.Conn) ConnInfo { return ConnInfo{} })
	return p
}

func (p *proxy) activeConns() int64 {
	return p.st.Gauge("http.test.downstream_cx_active", "").Value()
}

// waitConns waits until the proxy has n open connections.
func waitConns(t *testing.T, p *proxy, n int64, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for p.activeConns() != n {
		if time.Since(start) > within {
			t.Fatalf("%d open connections after %v, want %d", p.activeConns(), within, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// readUntilClosed reads c until it fails and returns what it read and how long that took;
// it fails the test if c is still open after within.
func readUntilClosed(t *testing.T, c net.Conn, within time.Duration) (string, time.Duration) {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(start.Add(within))
	var got bytes.Buffer
	_, err := io.Copy(&got, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %v (read %q)", within, got.String())
	}
	return got.String(), time.Since(start)
}

func ms(d time.Duration) *durationpb.Duration { return durationpb.New(d) }

// rht is headsProxy's request_headers_timeout.
const rht = 300 * time.Millisecond

// headsProxy is a slowProxy with request_headers_timeout rht and an idle_timeout (an hour) that
// does not interfere.
func headsProxy(t *testing.T) *proxy {
	t.Helper()
	return slowProxy(t, 0, func(h *hcmv3.HttpConnectionManager) {
		h.RequestHeadersTimeout = ms(rht)
		h.CommonHttpProtocolOptions = &corev3.HttpProtocolOptions{IdleTimeout: ms(time.Hour)}
	})
}

// TestSlowRequestHeads: request_headers_timeout ends a connection whose request head does not
// arrive in time: the first head (net/http's clock, from accept), a later keep-alive head from
// its first byte (byte by byte, or a few bytes and then nothing), while idle_timeout (one hour
// here) would not.
func TestSlowRequestHeads(t *testing.T) {
	p := headsProxy(t)
	t.Run("first head trickled", func(t *testing.T) {
		c := dial(t, p.addr)
		start := time.Now()
		for _, b := range []byte("GET / HTTP/1.1\r\nHost: x\r\n") {
			if _, err := c.Write([]byte{b}); err != nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		readUntilClosed(t, c, 3*time.Second)
		// net/http's clock starts at accept, a moment before start.
		if d := time.Since(start); d < rht/2 || d > rht+time.Second {
			t.Errorf("closed after %v, want about %v", d, rht)
		}
	})
	for _, tc := range []struct {
		name  string
		write func(c net.Conn)
	}{
		{"second head, 2 bytes", func(c net.Conn) { io.WriteString(c, "GE") }},
		{"second head trickled", func(c net.Conn) {
			for _, b := range []byte("GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ") {
				if _, err := c.Write([]byte{b}); err != nil {
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, p.addr)
			br := bufio.NewReader(c)
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			time.Sleep(2 * rht) // idle: only idle_timeout applies
			before := p.counter("http.test.downstream_rq_header_timeout")
			start := time.Now()
			go tc.write(c)
			readUntilClosed(t, c, 3*time.Second)
			if d := time.Since(start); d < rht-50*time.Millisecond || d > rht+time.Second {
				t.Errorf("closed %v after the head began, want about %v", d, rht)
			}
			waitFor(t, "header timeout counted", func() bool {
				return p.counter("http.test.downstream_rq_header_timeout") == before+1
			})
		})
	}
	t.Run("keep-alive requests in time are served", func(t *testing.T) {
		c := dial(t, p.addr)
		br := bufio.NewReader(c)
		for i := 0; i < 3; i++ {
			// Each head arrives in two parts, together well within the timeout, the
			// connection idling longer than the timeout between requests.
			io.WriteString(c, "GET / HTTP/1.1\r\n")
			time.Sleep(rht / 4)
			io.WriteString(c, "Host: x\r\n\r\n")
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			io.Copy(io.Discard, resp.Body)
			time.Sleep(2 * rht)
		}
	})
}

// h2conn is a raw HTTP/2 client connection.
type h2conn struct {
	t      *testing.T
	c      net.Conn
	fr     *http2.Framer
	frames chan h2frame
	enc    *hpack.Encoder
	hbuf   bytes.Buffer
}

func dialH2(t *testing.T, addr string, settings ...http2.Setting) *h2conn {
	t.Helper()
	c := dial(t, addr)
	h := &h2conn{t: t, c: c, frames: make(chan h2frame, 1024)}
	h.fr = http2.NewFramer(c, c)
	h.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	h.enc = hpack.NewEncoder(&h.hbuf)
	io.WriteString(c, http2.ClientPreface)
	h.fr.WriteSettings(settings...)
	go func() {
		defer close(h.frames)
		for {
			f, err := h.fr.ReadFrame()
			if err != nil {
				return
			}
			// The framer reuses its frames: keep what the tests look at.
			hf := h2frame{FrameHeader: f.Header()}
			switch f := f.(type) {
			case *http2.MetaHeadersFrame:
				hf.status = f.PseudoValue("status")
			case *http2.DataFrame:
				hf.ended = f.StreamEnded()
			case *http2.GoAwayFrame:
				hf.code = f.ErrCode
			case *http2.RSTStreamFrame:
				hf.code = f.ErrCode
			}
			select {
			case h.frames <- hf:
			default:
			}
		}
	}()
	return h
}

// h2frame is what the tests keep of a received frame.
type h2frame struct {
	http2.FrameHeader
	status string        // HEADERS: :status
	ended  bool          // DATA: END_STREAM
	code   http2.ErrCode // GOAWAY, RST_STREAM
}

// headerBlock encodes a GET (or POST with a Content-Length) request head.
func (h *h2conn) headerBlock(method, path string, contentLength int) []byte {
	h.hbuf.Reset()
	h.enc.WriteField(hpack.HeaderField{Name: ":method", Value: method})
	h.enc.WriteField(hpack.HeaderField{Name: ":scheme", Value: "http"})
	h.enc.WriteField(hpack.HeaderField{Name: ":authority", Value: "x"})
	h.enc.WriteField(hpack.HeaderField{Name: ":path", Value: path})
	if contentLength >= 0 {
		h.enc.WriteField(hpack.HeaderField{Name: "content-length", Value: itoa(contentLength)})
	}
	return bytes.Clone(h.hbuf.Bytes())
}

func (h *h2conn) request(stream uint32, method, path string, contentLength int) {
	h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: stream, BlockFragment: h.headerBlock(method, path, contentLength),
		EndStream: contentLength < 0, EndHeaders: true})
}

// waitFrame returns the first frame for which match is true, or nil if the connection ended
// first; it fails the test after within.
func (h *h2conn) waitFrame(within time.Duration, match func(h2frame) bool) *h2frame {
	h.t.Helper()
	deadline := time.After(within)
	for {
		select {
		case f, ok := <-h.frames:
			if !ok {
				return nil
			}
			if match(f) {
				return &f
			}
		case <-deadline:
			h.t.Fatalf("no matching frame within %v", within)
			return nil
		}
	}
}

// closed waits until the connection ends.
func (h *h2conn) closed(within time.Duration) {
	h.t.Helper()
	h.waitFrame(within, func(h2frame) bool { return false })
}

// TestSlowH2Heads: the HTTP/2 preface and every header block must arrive within
// request_headers_timeout; a quiet connection after SETTINGS lives until idle_timeout.
func TestSlowH2Heads(t *testing.T) {
	p := headsProxy(t)
	t.Run("preface byte by byte", func(t *testing.T) {
		c := dial(t, p.addr)
		start := time.Now()
		go func() {
			for _, b := range []byte(http2.ClientPreface) {
				if _, err := c.Write([]byte{b}); err != nil {
					return
				}
				time.Sleep(30 * time.Millisecond)
			}
		}()
		readUntilClosed(t, c, 3*time.Second)
		if d := time.Since(start); d > rht+time.Second {
			t.Errorf("closed after %v", d)
		}
	})
	t.Run("header block trickled in CONTINUATION frames", func(t *testing.T) {
		h := dialH2(t, p.addr)
		h.request(1, "GET", "/", -1)
		h.waitFrame(3*time.Second, func(f h2frame) bool { return f.Type == http2.FrameHeaders })
		before := p.counter("http.test.downstream_rq_header_timeout")
		block := h.headerBlock("GET", "/trickled", -1)
		start := time.Now()
		go func() {
			h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: block[:1], EndStream: true})
			for i := 1; i < len(block); i++ {
				time.Sleep(50 * time.Millisecond)
				if h.fr.WriteContinuation(3, i == len(block)-1, block[i:i+1]) != nil {
					return
				}
			}
		}()
		h.closed(3 * time.Second)
		if d := time.Since(start); d < rht-50*time.Millisecond || d > rht+time.Second {
			t.Errorf("closed %v after the block began, want about %v", d, rht)
		}
		if got := p.counter("http.test.downstream_rq_header_timeout"); got != before+1 {
			t.Errorf("downstream_rq_header_timeout %d, want %d", got, before+1)
		}
	})
	t.Run("HEADERS frame split byte by byte", func(t *testing.T) {
		h := dialH2(t, p.addr)
		var buf bytes.Buffer
		fr := http2.NewFramer(&buf, nil)
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: h.headerBlock("GET", "/", -1), EndStream: true, EndHeaders: true})
		start := time.Now()
		go func() {
			for _, b := range buf.Bytes() {
				if _, err := h.c.Write([]byte{b}); err != nil {
					return
				}
				time.Sleep(40 * time.Millisecond)
			}
		}()
		h.closed(3 * time.Second)
		if d := time.Since(start); d > rht+time.Second {
			t.Errorf("closed after %v", d)
		}
	})
	t.Run("blocks in time are served", func(t *testing.T) {
		h := dialH2(t, p.addr)
		for i := uint32(0); i < 3; i++ {
			block := h.headerBlock("GET", "/", -1)
			h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 2*i + 1, BlockFragment: block[:2], EndStream: true})
			time.Sleep(rht / 3)
			h.fr.WriteContinuation(2*i+1, true, block[2:])
			h.waitFrame(3*time.Second, func(f h2frame) bool {
				return f.Type == http2.FrameHeaders && f.StreamID == 2*i+1
			})
			time.Sleep(2 * rht)
		}
	})
}

// TestSlowH2IdleTimeout: an HTTP/2 connection quiet after SETTINGS gets GOAWAY and is closed at
// idle_timeout.
func TestSlowH2IdleTimeout(t *testing.T) {
	p := slowProxy(t, 0, func(h *hcmv3.HttpConnectionManager) {
		h.CommonHttpProtocolOptions = &corev3.HttpProtocolOptions{IdleTimeout: ms(300 * time.Millisecond)}
	})
	h := dialH2(t, p.addr)
	start := time.Now()
	h.waitFrame(3*time.Second, func(f h2frame) bool { return f.Type == http2.FrameGoAway })
	h.closed(3 * time.Second)
	if d := time.Since(start); d > 2500*time.Millisecond {
		t.Errorf("closed after %v", d)
	}
}

// TestSlowNonReader: a client that never reads a large response does not hold its connection
// past stream_idle_timeout: HTTP/1.1 (the connection write stalls) and HTTP/2 (the stream
// gets no flow-control window: reset, the connection stays).
func TestSlowNonReader(t *testing.T) {
	p := slowProxy(t, 64<<20, func(h *hcmv3.HttpConnectionManager) {
		h.StreamIdleTimeout = ms(300 * time.Millisecond)
	})
	t.Run("HTTP/1.1", func(t *testing.T) {
		// The route's idle_timeout keeps the router's own idle timer out of the way: the
		// connection's write stall alone ends it.
		p := slowProxy(t, 64<<20, func(h *hcmv3.HttpConnectionManager) {
			h.StreamIdleTimeout = ms(300 * time.Millisecond)
			rc := h.GetRouteConfig()
			for _, r := range rc.VirtualHosts[0].Routes {
				if a := r.GetRoute(); a != nil {
					a.IdleTimeout = ms(time.Hour)
				}
			}
		})
		c := dial(t, p.addr)
		c.(*net.TCPConn).SetReadBuffer(4096)
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		waitConns(t, p, 1, 2*time.Second)
		d := waitConns(t, p, 0, 5*time.Second)
		t.Logf("closed after %v", d)
		if p.counter("http.test.downstream_cx_write_stall_timeout") == 0 {
			t.Error("downstream_cx_write_stall_timeout not counted")
		}
	})
	t.Run("HTTP/2 zero window", func(t *testing.T) {
		h := dialH2(t, p.addr, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
		h.request(1, "GET", "/", -1)
		start := time.Now()
		f := h.waitFrame(5*time.Second, func(f h2frame) bool { return f.Type == http2.FrameRSTStream })
		if f == nil {
			t.Fatal("connection closed instead of a stream reset")
		}
		t.Logf("stream reset after %v", time.Since(start))
		ri := p.nextInfo(t)
		for ri.Path != "/" {
			ri = p.nextInfo(t)
		}
		if ri.Flags&FlagStreamIdleTimeout == 0 {
			t.Errorf("flags %s, want SI", ri.Flags)
		}
		// The connection still serves.
		h.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
		h.request(3, "GET", "/direct", -1)
		h.waitFrame(3*time.Second, func(f h2frame) bool {
			return f.Type == http2.FrameHeaders && f.StreamID == 3
		})
	})
}

// TestSlowRequestTimeout: request_timeout ends a request whose body trickles in (one byte at a
// time, Content-Length or 1-byte chunks) with 408 and, on HTTP/1.1, closes the connection; a
// request that arrives in time is untouched.
func TestSlowRequestTimeout(t *testing.T) {
	const rt = 400 * time.Millisecond
	p := slowProxy(t, 0, func(h *hcmv3.HttpConnectionManager) {
		h.RequestTimeout = ms(rt)
	})
	trickle := func(c net.Conn, head string, chunk func(i int) string) {
		io.WriteString(c, head)
		for i := 0; i < 100; i++ {
			if _, err := io.WriteString(c, chunk(i)); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for _, tc := range []struct {
		name, head string
		chunk      func(int) string
	}{
		{"content-length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n", func(int) string { return "a" }},
		{"1-byte chunks", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", func(int) string { return "1\r\na\r\n" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, p.addr)
			start := time.Now()
			go trickle(c, tc.head, tc.chunk)
			got, _ := readUntilClosed(t, c, 5*time.Second)
			if d := time.Since(start); d < rt || d > rt+2*time.Second {
				t.Errorf("ended after %v, want about %v", d, rt)
			}
			resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(got)), nil)
			if err != nil {
				t.Fatalf("reading %q: %v", got, err)
			}
			if resp.StatusCode != 408 || !resp.Close {
				t.Errorf("status %d close %v, want 408 with Connection: close", resp.StatusCode, resp.Close)
			}
			ri := p.nextInfo(t)
			if ri.Status != 408 || ri.Details != "request_overall_timeout" || ri.Flags != 0 {
				t.Errorf("info status %d details %q flags %s", ri.Status, ri.Details, ri.Flags)
			}
		})
	}
	t.Run("HTTP/2", func(t *testing.T) {
		h := dialH2(t, p.addr)
		h.request(1, "POST", "/", 1000)
		f := h.waitFrame(3*time.Second, func(f h2frame) bool { return f.Type == http2.FrameHeaders })
		if st := f.status; st != "408" {
			t.Errorf(":status %s", st)
		}
		p.nextInfo(t)
	})
	t.Run("in time", func(t *testing.T) {
		req, _ := http.NewRequest("POST", p.url("/"), strings.NewReader(strings.Repeat("a", 100<<10)))
		resp, err := h1Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("status %d", resp.StatusCode)
		}
		time.Sleep(2 * rt) // a disarmed timer does not fire later
		if ri := p.nextInfo(t); ri.Status != 200 || ri.Flags != 0 {
			t.Errorf("status %d flags %s", ri.Status, ri.Flags)
		}
	})
}

// TestSlowBodyAfterReply: a response that does not wait for the request body (a local reply,
// or a stream idle timeout on a body that stopped) closes an HTTP/1.1 connection at once
// instead of waiting for the rest of the body.
func TestSlowBodyAfterReply(t *testing.T) {
	p := slowProxy(t, 0, func(h *hcmv3.HttpConnectionManager) {
		h.StreamIdleTimeout = ms(300 * time.Millisecond)
	})
	for _, tc := range []struct {
		path   string
		status int
		within time.Duration
	}{
		{"/direct", 404, time.Second},
		{"/", 408, 2 * time.Second},
	} {
		t.Run(tc.path, func(t *testing.T) {
			c := dial(t, p.addr)
			io.WriteString(c, "POST "+tc.path+" HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\nabc")
			// The rest of the body trickles; the answer must not wait for it.
			go func() {
				for i := 0; i < 100; i++ {
					time.Sleep(500 * time.Millisecond)
					if _, err := io.WriteString(c, "a"); err != nil {
						return
					}
				}
			}()
			got, d := readUntilClosed(t, c, tc.within+time.Second)
			resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(got)), nil)
			if err != nil {
				t.Fatalf("reading %q: %v", got, err)
			}
			if resp.StatusCode != tc.status || !resp.Close {
				t.Errorf("status %d close %v after %v", resp.StatusCode, resp.Close, d)
			}
		})
	}
}

// TestMaxConnectionDuration: past max_connection_duration a connection drains: a busy
// HTTP/1.1 connection closes after its current response (Connection: close), HTTP/2 gets
// GOAWAY, and an idle connection is closed at the end of the drain period.
func TestMaxConnectionDuration(t *testing.T) {
	const mcd, drain = 400 * time.Millisecond, 300 * time.Millisecond
	up := startUpstream(t, echoHandler(), false)
	hcm := inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("b"))))
	hcm.CommonHttpProtocolOptions = &corev3.HttpProtocolOptions{MaxConnectionDuration: ms(mcd)}
	p := withDrain(t, hcm, &testEnv{clusters: map[string]Upstream{"b": newTestUpstream(up, false)}}, drain)
	t.Run("idle HTTP/1.1", func(t *testing.T) {
		start := time.Now() // before the proxy accepts: the connection's age counts from then
		c := dial(t, p.addr)
		br := bufio.NewReader(c)
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.Close {
			t.Fatalf("%v close %v", err, resp.Close)
		}
		io.Copy(io.Discard, resp.Body)
		// Closed (readUntilClosed fails the test if not within 3 s), and not before the
		// connection's duration and drain have passed. No upper bound: the machine may be slow.
		readUntilClosed(t, c, 3*time.Second)
		if d := time.Since(start); d < mcd+drain {
			t.Errorf("closed after %v, before max_connection_duration + drain (%v)", d, mcd+drain)
		}
	})
	t.Run("busy HTTP/1.1", func(t *testing.T) {
		c := dial(t, p.addr)
		br := bufio.NewReader(c)
		start := time.Now()
		for i := 0; ; i++ {
			c.SetDeadline(time.Now().Add(3 * time.Second))
			if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			io.Copy(io.Discard, resp.Body)
			if resp.Close {
				if d := time.Since(start); d < mcd {
					t.Errorf("Connection: close after %v, before max_connection_duration", d)
				}
				break
			}
			if time.Since(start) > 3*time.Second {
				t.Fatal("no Connection: close")
			}
			time.Sleep(10 * time.Millisecond)
		}
		if _, err := br.ReadByte(); err == nil {
			t.Error("the connection stayed open after Connection: close")
		}
	})
	t.Run("HTTP/2 GOAWAY", func(t *testing.T) {
		h := dialH2(t, p.addr)
		start := time.Now()
		var goaway *h2frame
		for id := uint32(1); goaway == nil; id += 2 {
			if time.Since(start) > 3*time.Second {
				t.Fatal("no GOAWAY")
			}
			h.request(id, "GET", "/", -1)
			f := h.waitFrame(3*time.Second, func(f h2frame) bool {
				return f.Type == http2.FrameGoAway || f.Type == http2.FrameData &&
					f.StreamID == id && f.ended
			})
			if f == nil {
				t.Fatal("connection closed without GOAWAY")
			}
			if f.Type == http2.FrameGoAway {
				goaway = f
			}
			time.Sleep(10 * time.Millisecond)
		}
		if d := time.Since(start); d < mcd || goaway.code != http2.ErrCodeNo {
			t.Errorf("GOAWAY %v after %v", goaway.code, d)
		}
		h.closed(3 * time.Second)
		if p.counter("http.test.downstream_cx_max_duration_reached") == 0 {
			t.Error("downstream_cx_max_duration_reached not counted")
		}
	})
	t.Run("HTTP/2 long stream closed after the drain", func(t *testing.T) {
		h := dialH2(t, p.addr)
		h.request(1, "POST", "/", 1000) // its body never comes
		start := time.Now()
		h.closed(mcd + drain + time.Second)
		if d := time.Since(start); d < mcd+drain-50*time.Millisecond {
			t.Errorf("closed after %v, want about %v", d, mcd+drain)
		}
	})
}

// TestTimeoutFields: the implemented timeouts are accepted, drain_timeout is not.
func TestTimeoutFields(t *testing.T) {
	hcm := inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("b"))))
	hcm.RequestTimeout = ms(time.Second)
	hcm.CommonHttpProtocolOptions = &corev3.HttpProtocolOptions{MaxConnectionDuration: ms(time.Minute)}
	h, err := New(hcm, &testEnv{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if h.requestTimeout != time.Second || h.maxConnDuration != time.Minute || h.headersTimeout != defaultHeadersTimeout {
		t.Errorf("request_timeout %v max_connection_duration %v request_headers_timeout %v", h.requestTimeout, h.maxConnDuration, h.headersTimeout)
	}
	g := xdspb.MustFrom[*ghcmv3.HttpConnectionManager](hcm) // drain_timeout: not read by strait-proxy
	g.DrainTimeout = ms(time.Second)
	_, err = New(xdspb.MustFrom[*hcmv3.HttpConnectionManager](g), &testEnv{}, Options{})
	var ue *route.UnsupportedError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "drain_timeout") {
		t.Errorf("drain_timeout: %v", err)
	}
}

// TestSlowKeepAliveBodies: requests whose body the proxy reads to its end keep their
// connection (the stream stage's "Connection: close" is only for responses that begin before
// their request ended).
func TestSlowKeepAliveBodies(t *testing.T) {
	p := slowProxy(t, 0, nil)
	c := dial(t, p.addr)
	br := bufio.NewReader(c)
	big := strings.Repeat("b", 200<<10)
	for i, req := range []string{
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: " + itoa(len(big)) + "\r\n\r\n" + big,
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", // pipelined
	} {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, req)
		for k := 0; k < strings.Count(req, "HTTP/1.1\r\n"); k++ {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			io.Copy(io.Discard, resp.Body)
			if resp.StatusCode != 200 || resp.Close {
				t.Fatalf("request %d: status %d close %v", i, resp.StatusCode, resp.Close)
			}
		}
	}
	if n := p.counter("http.test.downstream_rq_response_before_rq_complete"); n != 0 {
		t.Errorf("downstream_rq_response_before_rq_complete = %d", n)
	}
}

// TestSlowHeadsWithoutHeadersTimeout: with request_headers_timeout disabled, a head still has
// to arrive within stream_idle_timeout, as in Envoy (its stream idle timer starts at a stream's
// first byte).
func TestSlowHeadsWithoutHeadersTimeout(t *testing.T) {
	p := slowProxy(t, 0, func(h *hcmv3.HttpConnectionManager) {
		h.RequestHeadersTimeout = ms(0)
		h.StreamIdleTimeout = ms(300 * time.Millisecond)
	})
	c := dial(t, p.addr)
	start := time.Now()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n")
	readUntilClosed(t, c, 3*time.Second)
	if d := time.Since(start); d > 1300*time.Millisecond {
		t.Errorf("closed after %v", d)
	}
}

// TestSlowDrainClosesWaitingConnections: Drain closes a connection still waiting for its first
// request head at once.
func TestSlowDrainClosesWaitingConnections(t *testing.T) {
	p := slowProxy(t, 0, nil)
	c := dial(t, p.addr)
	io.WriteString(c, "GET / HTTP/1.1\r\n")
	waitConns(t, p, 1, 2*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := p.h.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	readUntilClosed(t, c, 2*time.Second)
	if d := time.Since(start); d > time.Second {
		t.Errorf("closed after %v", d)
	}
}

func TestFirstBytes(t *testing.T) {
	for _, tc := range []struct {
		in       string
		h2, done bool
	}{
		{"", false, false},
		{"PRI * HTTP/2.0\r\n", false, false},
		{http2.ClientPreface, true, true},
		{http2.ClientPreface + "\x00\x00", true, true},
		{"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", false, true}, // a bad preface: the guards refuse it
		{"GET / HTTP/1.1\r\nHost: x\r\n", false, false},
		{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", false, true},
		{"\r\n\r\nGET / HTTP/1.1\r\n", false, false}, // empty lines before the request line
		{"\r\n", false, false},
		{"\r", false, false},
		{"GET / HTTP/1.1\r", false, false},
		{"\x16\x03\x01\x02\x00", false, true}, // TLS on a plaintext port
		{"get / HTTP/1.1\r\n", false, false},
		{"GET / HTTP/1.1\r\nX: a\x00b", false, true},
		{"GET / HTTP/1.1\nX: a", false, true},
		{"GET / HTTP/1.1\rX: a", false, true},
		{"GET / HTTP/1.1\r\nX: a\tb\r\n", false, false},
	} {
		// Whole, and one byte at a time as awaitFirstHead may see it.
		if h2, done := firstBytes([]byte(tc.in), 0); h2 != tc.h2 || done != tc.done {
			t.Errorf("firstBytes(%q) = %v, %v; want %v, %v", tc.in, h2, done, tc.h2, tc.done)
		}
		h2, done := false, false
		for n := 1; n <= len(tc.in) && !done; n++ {
			h2, done = firstBytes([]byte(tc.in[:n]), n-1)
		}
		if len(tc.in) > 0 && (h2 != tc.h2 || done != tc.done) {
			t.Errorf("firstBytes(%q) byte by byte = %v, %v; want %v, %v", tc.in, h2, done, tc.h2, tc.done)
		}
	}
}
