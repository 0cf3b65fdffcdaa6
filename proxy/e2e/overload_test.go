package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

// listenerStatName renders a listener address as Envoy's stat names do ("127.0.0.1_15001").
func listenerStatName(addr string) string {
	ap := netip.MustParseAddrPort(addr)
	return ap.Addr().String() + "_" + strconv.Itoa(int(ap.Port()))
}

// statInt returns the value of one /stats line ("name: value"), or -1 when absent.
func (p *proxyProc) statInt(t *testing.T, name string) int64 {
	t.Helper()
	_, body, err := p.adminGet("/stats?filter=" + name)
	if err != nil {
		t.Fatalf("/stats: %v", err)
	}
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+": "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("/stats %s: %q", name, v)
			}
			return n
		}
	}
	return -1
}

// statWant is what a test expects of one /stats value.
type statWant struct {
	name string
	ok   func(n int64) bool
	want string // ok in words, for the failure
}

func statAtLeast(name string, min int64) statWant {
	return statWant{name, func(n int64) bool { return n >= min }, fmt.Sprintf(">= %d", min)}
}

func statIs(name string, v int64) statWant {
	return statWant{name, func(n int64) bool { return n == v }, fmt.Sprint(v)}
}

// checkStats fails the test (t.Errorf) for each value that is not as wanted.
func (p *proxyProc) checkStats(t *testing.T, wants ...statWant) {
	t.Helper()
	for _, w := range wants {
		if n := p.statInt(t, w.name); !w.ok(n) {
			t.Errorf("%s = %d, want %s", w.name, n, w.want)
		}
	}
}

// oneConnClient is an HTTP/1.1 client that keeps one connection open.
func oneConnClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}}
}

// getOnConn sends GET path with c; it returns the status, the body and whether the request went
// over an already open connection.
func getOnConn(t *testing.T, c *http.Client, addr, path string) (int, string, bool) {
	t.Helper()
	var reused bool
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused },
	}))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), reused
}

// closedUnanswered dials addr, sends an HTTP request and reports whether the proxy closed the
// connection without answering.
func closedUnanswered(t *testing.T, addr string) bool {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return true // refused outright counts too
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
	line, err := bufio.NewReader(c).ReadString('\n')
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("connection over the limit neither answered nor closed")
	}
	return line == ""
}

// TestOverloadConnectionLimit: with --max-connections 2, a third connection (to any listener) is
// closed at once while the two open ones keep working; the refusal and the state are in /stats.
func TestOverloadConnectionLimit(t *testing.T) {
	w := newWorld(t)
	p := w.start(t, 2*time.Second, "--max-connections", "2", "--memory-limit", "1GiB")
	expectBody(t, w.httpAddr, "/hello", "a /hello") // one connection at a time: under the limit
	// The proxy may still count expectBody's connections for a moment after they closed.
	eventually(t, "earlier connections released", func() bool { return p.statInt(t, "server.total_connections") == 0 })

	c1, c2 := oneConnClient(), oneConnClient()
	defer c1.CloseIdleConnections()
	defer c2.CloseIdleConnections()
	for i, c := range []*http.Client{c1, c2} {
		if code, body, _ := getOnConn(t, c, w.httpAddr, "/hello"); code != 200 || body != "a /hello" {
			t.Fatalf("client %d: %d %q", i+1, code, body)
		}
	}
	eventually(t, "two connections counted", func() bool { return p.statInt(t, "server.total_connections") == 2 })

	if !closedUnanswered(t, w.httpAddr) {
		t.Fatal("a third HTTP connection was served over --max-connections 2")
	}
	if got, err := echoOnce(w.tcpAdr, "over the limit"); err == nil && got != "" {
		t.Fatalf("a third (TCP) connection was served over --max-connections 2: %q", got)
	}
	// The open connections keep working, on the same connections.
	for i, c := range []*http.Client{c1, c2} {
		if code, body, reused := getOnConn(t, c, w.httpAddr, "/b/x"); code != 200 || body != "b /b/x" || !reused {
			t.Fatalf("client %d after the refusals: %d %q reused %v", i+1, code, body, reused)
		}
	}
	p.checkStats(t,
		statAtLeast("listener."+listenerStatName(w.httpAddr)+".downstream_global_cx_overflow", 1),
		statAtLeast("listener."+listenerStatName(w.tcpAdr)+".downstream_global_cx_overflow", 1),
		statIs("overload.global_downstream_max_connections", 2),
		// The memory monitor runs (1 GiB is far away) and every action is off.
		statWant{"overload.envoy.resource_monitors.fixed_heap.pressure", func(n int64) bool { return n >= 0 && n < 80 }, "0 to 79 (%) with a 1 GiB limit"},
	)
	for _, a := range []string{"disable_http_keepalive", "stop_accepting_requests", "stop_accepting_connections", "shrink_heap"} {
		p.checkStats(t, statIs("overload.envoy.overload_actions."+a+".active", 0))
	}

	// A closed connection frees its slot.
	c1.CloseIdleConnections()
	eventually(t, "slot released", func() bool { return p.statInt(t, "server.total_connections") == 1 })
	expectBody(t, w.httpAddr, "/hello", "a /hello")
}

// TestOverloadMemoryPressure: with a --memory-limit far below what the process holds, the memory
// actions fire: requests get 503 "envoy overloaded" with Connection: close, and /stats and
// /stats/prometheus show it. stop_accepting_connections is turned off so requests get through.
func TestOverloadMemoryPressure(t *testing.T) {
	w := newWorld(t)
	p := w.start(t, 2*time.Second, "--memory-limit", "2MiB", "--overload-thresholds", "stop_accepting_connections=off,shrink_heap=off")
	eventually(t, "stop_accepting_requests active", func() bool {
		return p.statInt(t, "overload.envoy.overload_actions.stop_accepting_requests.active") == 1
	})

	resp, err := http.Get("http://" + w.httpAddr + "/hello")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || string(body) != "envoy overloaded" {
		t.Fatalf("overloaded proxy answered %d %q", resp.StatusCode, body)
	}
	if !resp.Close {
		t.Error("no Connection: close while disable_http_keepalive is active")
	}
	p.checkStats(t,
		statAtLeast("http.ingress.downstream_rq_overload_close", 1),
		statAtLeast("http.ingress.downstream_rq_response_flags.OM", 1),
		statAtLeast("overload.envoy.resource_monitors.fixed_heap.pressure", 90),
		statIs("overload.envoy.overload_actions.disable_http_keepalive.active", 1),
		statIs("overload.envoy.overload_actions.stop_accepting_connections.active", 0), // turned off
	)
	_, prom, err := p.adminGet("/stats/prometheus")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"envoy_overload_envoy_overload_actions_stop_accepting_requests_active 1",
		"envoy_overload_envoy_overload_actions_stop_accepting_requests_scale_percent 100",
		"envoy_overload_envoy_resource_monitors_fixed_heap_pressure ",
	} {
		if !strings.Contains(prom, want) {
			t.Errorf("/stats/prometheus lacks %q", want)
		}
	}
}

// TestOverloadStopAcceptingConnections: with the default thresholds and a --memory-limit far
// below what the process holds, new connections are closed at once and counted.
func TestOverloadStopAcceptingConnections(t *testing.T) {
	w := newWorld(t)
	p := w.start(t, 2*time.Second, "--memory-limit", "2MiB")
	eventually(t, "stop_accepting_connections active", func() bool {
		return p.statInt(t, "overload.envoy.overload_actions.stop_accepting_connections.active") == 1
	})
	if !closedUnanswered(t, w.httpAddr) {
		t.Fatal("a new connection was served while stop_accepting_connections is active")
	}
	p.checkStats(t,
		statAtLeast("listener."+listenerStatName(w.httpAddr)+".downstream_cx_overload_reject", 1),
		statAtLeast("overload.envoy.overload_actions.shrink_heap.shrink_count", 1),
	)
}
