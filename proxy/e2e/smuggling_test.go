package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"

	"github.com/strait-mesh/strait/internal/testenv"
)

// smuggleUpstream is a TCP upstream that parses nothing: it counts the connections it accepts
// and the bytes it receives, answers the first bytes of a connection with a fixed response
// (so that a control request through the proxy succeeds) and closes after a while.
type smuggleUpstream struct {
	addr  string
	conns atomic.Int64
	bytes atomic.Int64
}

const smuggleUpstreamAnswer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"

func newSmuggleUpstream(t *testing.T) *smuggleUpstream {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &smuggleUpstream{addr: l.Addr().String()}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			u.conns.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				buf := make([]byte, 4096)
				answered := false
				for {
					n, err := c.Read(buf)
					u.bytes.Add(int64(n))
					if n > 0 && !answered {
						answered = true
						io.WriteString(c, smuggleUpstreamAnswer)
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return u
}

// received returns the connections and bytes the upstream saw so far.
func (u *smuggleUpstream) received() (conns, bytes int64) { return u.conns.Load(), u.bytes.Load() }

// smugglePush sets cfg as the snapshot of the proxy with node ID id on ads (Push serves only
// the sidecar's node ID).
func smugglePush(t *testing.T, a *adsServer, id string, cfg *config) {
	t.Helper()
	a.mu.Lock()
	a.version++
	v := fmt.Sprint(a.version)
	a.mu.Unlock()
	snap, err := cachev3.NewSnapshot(v, cfg.resources())
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Cache.SetSnapshot(context.Background(), id, snap); err != nil {
		t.Fatal(err)
	}
}

// smuggleExchange writes req on a new connection and reads until the proxy closes it. It
// returns the responses and whether the proxy closed the connection (rather than the read
// timing out).
func smuggleExchange(t *testing.T, addr string, parts ...string) (statuses []int, closed bool, raw string) {
	t.Helper()
	b, err := testenv.Exchange(t, addr, 100*time.Millisecond, parts...)
	closed = err == nil
	if ne, ok := err.(*net.OpError); ok && strings.Contains(ne.Err.Error(), "reset") {
		closed = true // closed with unread bytes: still closed, but the answer may be lost
	}
	raw = string(b)
	br := bufio.NewReader(strings.NewReader(raw))
	for {
		if _, err := br.Peek(1); err != nil {
			break
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("proxy wrote %q: %v", raw, err)
		}
		io.Copy(io.Discard, resp.Body)
		statuses = append(statuses, resp.StatusCode)
	}
	return statuses, closed, raw
}

const smuggledRequest = "GET /smuggled HTTP/1.1\r\nHost: victim\r\n\r\n"

// smugglingCases are request smuggling and parser leniency attacks, each followed by a
// request smuggled after it; the status is Envoy's answer.
var smugglingCases = []struct {
	name   string
	req    string
	status int
}{
	// CL.TE and TE.CL: both framing headers.
	{"cl.te", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG", 400},
	{"te.cl", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\nGPOST / HTTP/1.1\r\n\r\n0\r\n\r\n", 400},
	{"cl.te with xchunked", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400},
	// TE.TE: obfuscated Transfer-Encoding.
	{"te space before colon", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400},
	{"te tab before colon", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding\t: chunked\r\n\r\n0\r\n\r\n", 400},
	{"te xchunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 501},
	{"te chunked identity", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", 501},
	{"te identity chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n", 501},
	{"te chunked parameter", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked;q=1\r\n\r\n0\r\n\r\n", 501},
	{"te quoted", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \"chunked\"\r\n\r\n0\r\n\r\n", 501},
	{"te vertical tab", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n", 400},
	{"te leading tab line", "POST / HTTP/1.1\r\n\tTransfer-Encoding: chunked\r\nHost: x\r\n\r\n0\r\n\r\n", 400},
	{"te obs-fold value", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n", 400},
	{"te obs-fold header", "POST / HTTP/1.1\r\nHost: x\r\nX-A: b\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
	{"te duplicate", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501},
	{"te duplicate differing", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-encoding: cow\r\n\r\n0\r\n\r\n", 501},
	{"te http/1.0", "POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n29\r\n" + smuggledRequest + "\r\n0\r\n\r\n", 400},
	// Content-Length.
	{"cl duplicate same", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400},
	{"cl duplicate differing", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 40\r\n\r\nhello", 400},
	{"cl list", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello", 400},
	{"cl plus", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello", 400},
	{"cl minus", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400},
	{"cl inner space", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1 0\r\n\r\nhello", 400},
	{"cl space before colon", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\nhello", 400},
	{"cl overflow", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551621\r\n\r\nhello", 400},
	// Chunked bodies.
	{"chunk size overflow", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nhello\r\n0\r\n\r\n", 400},
	{"chunk size space", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n", 400},
	{"chunk bare lf", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n", 400},
	{"chunk data too long", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n", 400},
	{"chunk extension ctl", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\"\x01\"\r\nhello\r\n0\r\n\r\n", 400},
	// Line endings and characters.
	{"bare lf request line", "GET / HTTP/1.1\nHost: x\r\n\r\n", 400},
	{"bare lf header", "GET / HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n", 400},
	{"bare lf end", "GET / HTTP/1.1\r\nHost: x\n\n", 400},
	{"bare cr", "GET / HTTP/1.1\r\nHost: x\rX-A: b\r\n\r\n", 400},
	{"nul in value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400},
	{"cr in value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", 400},
	{"duplicate host", "GET / HTTP/1.1\r\nHost: x\r\nHost: victim\r\n\r\n", 400},
}

// TestSmuggling sends request smuggling attempts as raw bytes through a strait-proxy in
// sidecar and in router mode: each is answered with Envoy's status (400, or 501 for an
// unsupported transfer coding), the connection is closed, and the upstream — a TCP server
// that parses nothing — receives nothing at all.
func TestSmuggling(t *testing.T) {
	modes := []struct {
		name string
		id   string
		args []string
	}{
		{"sidecar", nodeID, nil},
		{"router", "router~127.0.0.1~e2e.default~default.svc.cluster.local", []string{"--mode", "router", "--interception-mode", "NONE"}},
	}
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			up := newSmuggleUpstream(t)
			ads := newADS(t)
			addr := freeAddr(t)
			smugglePush(t, ads, mode.id, &config{
				listeners: []*listenerv3.Listener{httpListener(t, "http", addr, "route-http", "smuggling")},
				routes:    []*routev3.RouteConfiguration{routeConfig("route-http", "/", "raw")},
				clusters:  []*clusterv3.Cluster{testenv.StaticCluster("raw", clusterTimeout, up.addr)},
			})
			args := append([]string{"--workload-name", "e2e", "--namespace", "default", "--ip", "127.0.0.1"}, mode.args...)
			p := startProxyArgs(t, ads.Addr(), time.Second, args...)
			p.waitReady()

			// Control: a valid request reaches the upstream, so "received nothing" means something.
			eventually(t, "a request through the proxy", func() bool {
				code, body, err := get(addr, "/control")
				return err == nil && code == 200 && body == "ok"
			})
			if conns, _ := up.received(); conns == 0 {
				t.Fatal("the control request did not reach the upstream")
			}

			check := func(t *testing.T, status int, parts ...string) {
				t.Helper()
				conns0, bytes0 := up.received()
				statuses, closed, raw := smuggleExchange(t, addr, parts...)
				if len(statuses) != 1 || statuses[0] != status {
					t.Errorf("responses %v, want one %d (proxy wrote %q)", statuses, status, raw)
				}
				if !closed {
					t.Errorf("the proxy did not close the connection")
				}
				time.Sleep(50 * time.Millisecond) // anything forwarded would have arrived
				if conns, bytes := up.received(); conns != conns0 || bytes != bytes0 {
					t.Errorf("the upstream received %d connections and %d bytes", conns-conns0, bytes-bytes0)
				}
			}
			for _, tc := range smugglingCases {
				t.Run(tc.name, func(t *testing.T) {
					// The attack and a request smuggled after it, in one write.
					check(t, tc.status, tc.req+smuggledRequest)
				})
			}
			// Pipelining after an error: the smuggled request arrives in a later write.
			t.Run("smuggled after error", func(t *testing.T) {
				check(t, 400, smugglingCases[0].req, smuggledRequest, smuggledRequest)
			})
			// A slow client: the head first, its framing violation later.
			t.Run("slow cl.te", func(t *testing.T) {
				check(t, 400, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n", "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nG"+smuggledRequest)
			})
		})
	}
}
