package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/strait-mesh/strait/internal/testenv"
)

// Slow clients against a real strait-proxy: the timeouts end them (request_headers_timeout,
// request_timeout, stream_idle_timeout, idle_timeout, max_connection_duration), their memory
// stays bounded, and a well-behaved client is served throughout.

const (
	slowAttackConns = 3000
	slowRSSLimitKiB = 64 << 10 // the proxy's whole RSS under attack
	slowShort       = 2 * time.Second
	slowBigResponse = 64 << 20
)

// slowListeners are the proxy's listeners for TestSlowClient, each with its own
// http_connection_manager settings (and stat prefix).
type slowListeners struct {
	hdr, hdrDefault, body, nonReader, h2idle, maxDur string
}

// withHCM rewrites l's http_connection_manager with tweak.
func withHCM(t *testing.T, l *listenerv3.Listener, tweak func(*hcmv3.HttpConnectionManager)) *listenerv3.Listener {
	t.Helper()
	f := l.FilterChains[0].Filters[0]
	var hcm hcmv3.HttpConnectionManager
	if err := f.GetTypedConfig().UnmarshalTo(&hcm); err != nil {
		t.Fatal(err)
	}
	tweak(&hcm)
	f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: testenv.MustAny(t, &hcm)}
	return l
}

// slowBackend answers /big with slowBigResponse bytes (counting what it managed to write) and
// anything else with a short body, after reading the request body.
type slowBackend struct {
	addr       string
	bigWritten atomic.Int64
}

func newSlowBackend(t *testing.T) *slowBackend {
	t.Helper()
	b := &slowBackend{}
	chunk := bytes.Repeat([]byte("x"), 32<<10)
	b.addr = testenv.HTTPBackend(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Path != "/big" {
			io.WriteString(w, "ok")
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(slowBigResponse))
		for n := 0; n < slowBigResponse; n += len(chunk) {
			k, err := w.Write(chunk)
			b.bigWritten.Add(int64(k))
			if err != nil {
				return
			}
		}
	})
	return b
}

// raiseNoFile makes room for n more descriptors in this process (and so in the proxy it
// starts, which inherits the limit and takes half of it as its default connection limit).
func raiseNoFile(t *testing.T, n uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("getrlimit: %v", err)
	}
	if lim.Cur >= n {
		return
	}
	if lim.Max < n {
		t.Skipf("RLIMIT_NOFILE hard limit %d is below the %d this test needs", lim.Max, n)
	}
	lim.Cur = n
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("setrlimit: %v", err)
	}
}

// goodClient sends GETs through addr until stopped (on a keep-alive connection, a new one every
// 50th request) and records their latencies; every request must succeed.
type goodClient struct {
	mu      sync.Mutex
	lat     []time.Duration
	failed  int
	lastErr error
	stop    chan struct{}
	done    chan struct{}
}

func startGoodClient(addr string) *goodClient {
	g := &goodClient{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(g.done)
		tr := &http.Transport{MaxIdleConnsPerHost: 1}
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		for i := 0; ; i++ {
			select {
			case <-g.stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			if i%50 == 0 {
				tr.CloseIdleConnections()
			}
			start := time.Now()
			resp, err := c.Get("http://" + addr + "/good")
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode != 200 {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			g.mu.Lock()
			if err != nil {
				g.failed++
				g.lastErr = err
			} else {
				g.lat = append(g.lat, time.Since(start))
			}
			g.mu.Unlock()
		}
	}()
	return g
}

// finish stops the client, logs its latency percentiles and fails the test on any failed
// request. Latency is reported, not asserted (tests do not fail on timings).
func (g *goodClient) finish(t *testing.T, what string) {
	t.Helper()
	close(g.stop)
	<-g.done
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.failed > 0 {
		t.Errorf("%s: well-behaved client: %d requests failed, last: %v", what, g.failed, g.lastErr)
	}
	if len(g.lat) == 0 {
		t.Errorf("%s: well-behaved client sent no request", what)
		return
	}
	sort.Slice(g.lat, func(i, j int) bool { return g.lat[i] < g.lat[j] })
	pct := func(p float64) time.Duration { return g.lat[min(len(g.lat)-1, int(p*float64(len(g.lat))))] }
	t.Logf("%s: well-behaved client: %d requests, p50 %v, p99 %v, max %v", what, len(g.lat),
		pct(0.50).Round(time.Microsecond), pct(0.99).Round(time.Microsecond), g.lat[len(g.lat)-1].Round(time.Microsecond))
}

// halfOpen opens n connections to addr that each send half a request head and then wait. It
// returns when all are open; ended receives each connection's lifetime as the proxy closes it.
func halfOpen(t *testing.T, addr string, n int) (ended chan time.Duration, closeAll func()) {
	t.Helper()
	ended = make(chan time.Duration, n)
	conns := make([]net.Conn, 0, n)
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
		start := time.Now()
		if _, err := io.WriteString(c, "GET /half HTTP/1.1\r\nHost: slow\r\nX-Half: "); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		go func() {
			// Held for up to 60 s; the proxy should end it long before.
			c.SetReadDeadline(start.Add(60 * time.Second))
			io.Copy(io.Discard, c)
			ended <- time.Since(start)
		}()
	}
	return ended, func() {
		for _, c := range conns {
			c.Close()
		}
	}
}

// waitEnded waits for n connection lifetimes on ended, for at most within, and returns the
// longest.
func waitEnded(t *testing.T, ended chan time.Duration, n int, within time.Duration) time.Duration {
	t.Helper()
	var longest time.Duration
	deadline := time.After(within)
	for i := 0; i < n; i++ {
		select {
		case d := <-ended:
			longest = max(longest, d)
		case <-deadline:
			t.Fatalf("%d of %d connections still open after %v", n-i, n, within)
		}
	}
	return longest
}

// readToEnd reads c until it is closed, for at most within; it returns the bytes read and
// fails the test if c is still open.
func readToEnd(t *testing.T, c net.Conn, within time.Duration) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(within))
	var b bytes.Buffer
	_, err := io.Copy(&b, c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("connection still open after %v", within)
	}
	return b.Bytes()
}

func TestSlowClient(t *testing.T) {
	raiseNoFile(t, 2*slowAttackConns+2000)
	w := newWorld(t)
	be := newSlowBackend(t)
	ls := slowListeners{hdr: freeAddr(t), hdrDefault: freeAddr(t), body: freeAddr(t), nonReader: freeAddr(t),
		h2idle: freeAddr(t), maxDur: freeAddr(t)}
	short := durationpb.New(slowShort)
	cfg := &config{
		listeners: []*listenerv3.Listener{
			withHCM(t, httpListener(t, "slow-hdr", ls.hdr, "route-slow", "hdr"), func(h *hcmv3.HttpConnectionManager) {
				h.RequestHeadersTimeout = short
			}),
			withHCM(t, httpListener(t, "slow-body", ls.body, "route-slow", "body"), func(h *hcmv3.HttpConnectionManager) {
				h.RequestTimeout = short
			}),
			withHCM(t, httpListener(t, "slow-nonreader", ls.nonReader, "route-slow", "nonreader"), func(h *hcmv3.HttpConnectionManager) {
				h.StreamIdleTimeout = short
			}),
			withHCM(t, httpListener(t, "slow-h2idle", ls.h2idle, "route-slow", "h2idle"), func(h *hcmv3.HttpConnectionManager) {
				h.RequestHeadersTimeout = short
				h.CommonHttpProtocolOptions = &corev3.HttpProtocolOptions{IdleTimeout: short}
			}),
			withHCM(t, httpListener(t, "slow-maxdur", ls.maxDur, "route-slow", "maxdur"), func(h *hcmv3.HttpConnectionManager) {
				h.CommonHttpProtocolOptions = &corev3.HttpProtocolOptions{MaxConnectionDuration: short}
			}),
		},
		routes:   []*routev3.RouteConfiguration{routeConfig("route-slow", "/", "slow-backend")},
		clusters: []*clusterv3.Cluster{testenv.StaticCluster("slow-backend", clusterTimeout, be.addr)},
	}
	w.ads.Push(cfg)
	p := startProxy(t, w.ads, time.Second)
	// The default request_headers_timeout is measured on a proxy of its own, so that neither
	// wave of half-open connections sees memory the other left behind (the Go runtime returns
	// freed memory to the system only gradually).
	adsDefault := newADS(t)
	adsDefault.Push(&config{
		listeners: []*listenerv3.Listener{httpListener(t, "slow-hdr-default", ls.hdrDefault, "route-slow", "hdrdefault")},
		routes:    cfg.routes,
		clusters:  cfg.clusters,
	})
	pDefault := startProxy(t, adsDefault, time.Second)
	p.waitReady()
	pDefault.waitReady()
	for _, a := range []string{ls.hdr, ls.hdrDefault, ls.body, ls.nonReader, ls.h2idle, ls.maxDur} {
		expectBody(t, a, "/ready-check", "ok")
	}
	pid := p.cmd.Process.Pid
	t.Logf("proxy RSS before the attacks: %d KiB (the second proxy: %d KiB)", procRSS(t, pid), procRSS(t, pDefault.cmd.Process.Pid))

	t.Run("a/half-open heads", func(t *testing.T) {
		for _, tc := range []struct {
			name, addr, prefix string
			timeout            time.Duration
			p                  *proxyProc
		}{
			{"request_headers_timeout 2s", ls.hdr, "hdr", slowShort, p},
			{"default request_headers_timeout", ls.hdrDefault, "hdrdefault", 10 * time.Second, pDefault},
		} {
			t.Run(tc.name, func(t *testing.T) {
				rss := &rssPeak{pid: tc.p.cmd.Process.Pid}
				stopRSS := rss.watch(t)
				good := startGoodClient(tc.addr)
				start := time.Now()
				ended, closeAll := halfOpen(t, tc.addr, slowAttackConns)
				defer closeAll()
				t.Logf("%d half-open connections opened in %v", slowAttackConns, time.Since(start).Round(time.Millisecond))
				longest := waitEnded(t, ended, slowAttackConns, tc.timeout+15*time.Second)
				stopRSS()
				good.finish(t, tc.name)
				t.Logf("all closed by the proxy; longest lived %v; proxy RSS %d KiB before, peak %d KiB",
					longest.Round(time.Millisecond), rss.first, rss.max)
				if longest < tc.timeout-time.Second {
					t.Errorf("a connection was closed after %v, before request_headers_timeout %v", longest, tc.timeout)
				}
				if rssBounds() && rss.max > slowRSSLimitKiB {
					t.Errorf("proxy RSS peaked at %d KiB, want under %d KiB", rss.max, slowRSSLimitKiB)
				}
				if n := tc.p.statInt(t, "http."+tc.prefix+".downstream_rq_header_timeout"); n < slowAttackConns {
					t.Errorf("http.%s.downstream_rq_header_timeout = %d, want at least %d", tc.prefix, n, slowAttackConns)
				}
			})
		}
	})

	t.Run("b/keep-alive slowloris", func(t *testing.T) {
		const n = 50
		var wg sync.WaitGroup
		lifetimes := make(chan time.Duration, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := net.DialTimeout("tcp", ls.hdr, 5*time.Second)
				if err != nil {
					t.Error(err)
					return
				}
				defer c.Close()
				br := bufio.NewReader(c)
				io.WriteString(c, "GET /first HTTP/1.1\r\nHost: slow\r\n\r\n")
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				// The second head trickles in, a byte every 100 ms.
				start := time.Now()
				go func() {
					for _, b := range []byte("GET /second HTTP/1.1\r\nHost: slow\r\nX-Slowloris: 1234567890123456789012345678901234567890\r\n") {
						if _, err := c.Write([]byte{b}); err != nil {
							return
						}
						time.Sleep(100 * time.Millisecond)
					}
				}()
				c.SetReadDeadline(time.Now().Add(slowShort + 10*time.Second))
				if _, err := br.ReadByte(); err == nil {
					t.Error("the proxy answered a head that never finished")
					return
				} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Error("the trickled keep-alive head held the connection")
					return
				}
				lifetimes <- time.Since(start)
			}()
		}
		wg.Wait()
		close(lifetimes)
		var shortest, longest time.Duration = time.Hour, 0
		for d := range lifetimes {
			shortest, longest = min(shortest, d), max(longest, d)
		}
		t.Logf("trickled second heads ended after %v to %v", shortest.Round(time.Millisecond), longest.Round(time.Millisecond))
		if shortest < slowShort-500*time.Millisecond {
			t.Errorf("a trickled head was cut after %v, before request_headers_timeout", shortest)
		}
	})

	// c and d: request bodies that trickle in end at request_timeout with 408, and cost the
	// proxy no memory beyond its per-connection buffers.
	for _, tc := range []struct {
		name, head string
		chunk      []byte
	}{
		{"c/byte-a-second body", "POST /upload HTTP/1.1\r\nHost: slow\r\nContent-Length: 1048576\r\n\r\n", []byte("a")},
		{"d/1-byte chunks", "POST /upload HTTP/1.1\r\nHost: slow\r\nTransfer-Encoding: chunked\r\n\r\n", []byte("1\r\na\r\n")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 300
			rss := &rssPeak{pid: pid}
			stopRSS := rss.watch(t)
			good := startGoodClient(ls.body)
			var wg sync.WaitGroup
			var answered408 atomic.Int64
			var longest atomic.Int64
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c, err := net.DialTimeout("tcp", ls.body, 5*time.Second)
					if err != nil {
						t.Error(err)
						return
					}
					defer c.Close()
					start := time.Now()
					io.WriteString(c, tc.head)
					go func() {
						for k := 0; k < 300; k++ { // one byte every 100 ms, for at most 30 s
							if _, err := c.Write(tc.chunk); err != nil {
								return
							}
							time.Sleep(100 * time.Millisecond)
						}
					}()
					got := readToEnd(t, c, slowShort+10*time.Second)
					if d := int64(time.Since(start)); d > longest.Load() {
						longest.Store(d)
					}
					if resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(got)), nil); err == nil && resp.StatusCode == 408 {
						answered408.Add(1)
					}
				}()
			}
			wg.Wait()
			stopRSS()
			good.finish(t, tc.name)
			t.Logf("%d trickled bodies ended (%d answered 408) within %v; proxy RSS %d KiB before, peak %d KiB",
				n, answered408.Load(), time.Duration(longest.Load()).Round(time.Millisecond), rss.first, rss.max)
			if answered408.Load() < n*9/10 {
				t.Errorf("only %d of %d trickled requests were answered 408", answered408.Load(), n)
			}
			// Each slow request holds fixed state (its connection, its stream, its upstream
			// request: goroutines and copy buffers), nothing that grows with the body.
			grow := rss.max - rss.first
			t.Logf("%d KiB per slow request", grow/n)
			if rssBounds() && grow > n*192 {
				t.Errorf("proxy RSS grew by %d KiB for %d slow requests, want under 192 KiB each", grow, n)
			}
		})
	}

	t.Run("e/response never read", func(t *testing.T) {
		const n = 20
		rss := &rssPeak{pid: pid}
		stopRSS := rss.watch(t)
		good := startGoodClient(ls.nonReader)
		conns := make([]net.Conn, n)
		for i := range conns {
			c, err := net.DialTimeout("tcp", ls.nonReader, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.(*net.TCPConn).SetReadBuffer(4096)
			io.WriteString(c, "GET /big HTTP/1.1\r\nHost: slow\r\n\r\n")
			conns[i] = c
		}
		// Read nothing: the proxy must give up on them once a write of each makes no progress
		// for stream_idle_timeout.
		start := time.Now()
		time.Sleep(slowShort)
		good.finish(t, "e")
		if p.statInt(t, "http.nonreader.downstream_cx_active") < 0 {
			t.Fatal("no http.nonreader.downstream_cx_active in /stats")
		}
		for p.statInt(t, "http.nonreader.downstream_cx_active") > 0 {
			if time.Since(start) > slowShort+20*time.Second {
				t.Fatalf("%d connections that read nothing still open after %v", p.statInt(t, "http.nonreader.downstream_cx_active"), time.Since(start))
			}
			time.Sleep(100 * time.Millisecond)
		}
		closedAfter := time.Since(start)
		stopRSS()
		// What reached each client: the kernel's socket buffers still hold some of it (a
		// closed socket keeps sending them, at the pace of TCP's window probes), never all.
		var most atomic.Int64
		var wg sync.WaitGroup
		for _, c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
				n, _ := io.Copy(io.Discard, c)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
			}()
		}
		wg.Wait()
		t.Logf("%d clients that never read a %d MiB response: all closed by the proxy after %v; at most %d KiB reached a client; the backend wrote %d MiB in all; proxy RSS %d KiB before, peak %d KiB",
			n, slowBigResponse>>20, closedAfter.Round(time.Millisecond), most.Load()>>10, be.bigWritten.Load()>>20, rss.first, rss.max)
		if most.Load() >= slowBigResponse {
			t.Error("a client that did not read got the whole response")
		}
		// The proxy stops reading the upstream when the client stops reading: what it holds
		// per connection is its copy buffers, not the response.
		if grow := rss.max - rss.first; rssBounds() && grow > n*1024 {
			t.Errorf("proxy RSS grew by %d KiB for %d clients that do not read, want under 1 MiB each", grow, n)
		}
	})

	t.Run("f/h2 preface byte by byte", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", ls.h2idle, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		go func() {
			for _, b := range []byte(http2.ClientPreface) {
				if _, err := c.Write([]byte{b}); err != nil {
					return
				}
				time.Sleep(200 * time.Millisecond)
			}
		}()
		readToEnd(t, c, slowShort+5*time.Second)
		d := time.Since(start)
		t.Logf("closed after %v", d.Round(time.Millisecond))
		if d < slowShort-500*time.Millisecond {
			t.Errorf("closed after %v, before request_headers_timeout", d)
		}
	})

	t.Run("f/h2 idle after SETTINGS", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", ls.h2idle, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		fr := http2.NewFramer(c, c)
		io.WriteString(c, http2.ClientPreface)
		fr.WriteSettings()
		goaway := false
		c.SetReadDeadline(time.Now().Add(slowShort + 10*time.Second))
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Fatal("idle HTTP/2 connection still open")
				}
				break
			}
			if f.Header().Type == http2.FrameGoAway {
				goaway = true
			}
		}
		d := time.Since(start)
		t.Logf("GOAWAY %v, closed after %v", goaway, d.Round(time.Millisecond))
		if !goaway || d < slowShort-500*time.Millisecond {
			t.Errorf("GOAWAY %v, closed after %v; want GOAWAY and close at idle_timeout %v", goaway, d, slowShort)
		}
	})

	t.Run("g/max_connection_duration HTTP/1.1", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", ls.maxDur, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		br := bufio.NewReader(c)
		start := time.Now()
		requests := 0
		for {
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(c, "GET /busy HTTP/1.1\r\nHost: slow\r\n\r\n"); err != nil {
				t.Fatalf("request %d: %v", requests, err)
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("request %d after %v: %v", requests, time.Since(start), err)
			}
			io.Copy(io.Discard, resp.Body)
			requests++
			if resp.Close {
				break
			}
			if time.Since(start) > slowShort+10*time.Second {
				t.Fatal("no Connection: close")
			}
			time.Sleep(20 * time.Millisecond)
		}
		d := time.Since(start)
		if _, err := br.ReadByte(); err == nil {
			t.Error("the connection stayed open after Connection: close")
		}
		t.Logf("%d requests; the response after %v carried Connection: close and the connection closed", requests, d.Round(time.Millisecond))
		if d < slowShort-100*time.Millisecond { // the proxy counts from accept
			t.Errorf("closed after %v, before max_connection_duration", d)
		}
	})

	t.Run("g/max_connection_duration HTTP/2", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", ls.maxDur, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fr := http2.NewFramer(c, c)
		fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
		var hbuf bytes.Buffer
		enc := hpack.NewEncoder(&hbuf)
		io.WriteString(c, http2.ClientPreface)
		fr.WriteSettings()
		start := time.Now()
		var goawayAt time.Duration
		completed := 0
		c.SetDeadline(time.Now().Add(slowShort + 15*time.Second))
		for id := uint32(1); goawayAt == 0; id += 2 {
			hbuf.Reset()
			for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "slow"}, {":path", "/busy"}} {
				enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
			}
			if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hbuf.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
				t.Fatalf("stream %d: %v", id, err)
			}
			for done := false; !done; {
				f, err := fr.ReadFrame()
				if err != nil {
					t.Fatalf("stream %d after %v: %v (no GOAWAY)", id, time.Since(start), err)
				}
				switch f := f.(type) {
				case *http2.GoAwayFrame:
					goawayAt = time.Since(start)
					if f.ErrCode != http2.ErrCodeNo {
						t.Errorf("GOAWAY %v", f.ErrCode)
					}
				case *http2.DataFrame:
					done = f.StreamID == id && f.StreamEnded()
				case *http2.MetaHeadersFrame:
					done = f.StreamID == id && f.StreamEnded()
				}
				if done {
					completed++
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		// After GOAWAY and the last stream, the proxy closes the connection.
		for {
			if _, err := fr.ReadFrame(); err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Fatal("connection still open after GOAWAY")
				}
				break
			}
		}
		t.Logf("%d streams answered; GOAWAY after %v, then closed after %v", completed, goawayAt.Round(time.Millisecond),
			time.Since(start).Round(time.Millisecond))
		// The proxy counts from accept, a moment before this test's clock started.
		if goawayAt < slowShort-100*time.Millisecond {
			t.Errorf("GOAWAY after %v, before max_connection_duration", goawayAt)
		}
	})

	stats := []string{"hdr.downstream_rq_header_timeout", "body.downstream_rq_timeout",
		"body.downstream_rq_response_before_rq_complete", "nonreader.downstream_cx_write_stall_timeout", "maxdur.downstream_cx_max_duration_reached"}
	var b strings.Builder
	for _, s := range stats {
		fmt.Fprintf(&b, " %s=%d", s, p.statInt(t, "http."+s))
	}
	t.Logf("stats:%s; proxy RSS at the end %d KiB", b.String(), procRSS(t, pid))
}
