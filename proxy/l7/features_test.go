package l7

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/websocket"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/route"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
	faultcommonv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/common/fault/v3"
	corsv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/cors/v3"
	faultv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/fault/v3"
	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/matcher/v3"
	typev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/v3"
)

func TestWebSocketEcho(t *testing.T) {
	up := startUpstream(t, websocket.Handler(func(ws *websocket.Conn) { io.Copy(ws, ws) }), false)
	env := &testEnv{clusters: map[string]Upstream{"ws": newTestUpstream(up, false)}}
	p := startProxy(t, inlineHCM(oneVhost(fwdRoute("ws", pfx("/"), toCluster("ws")))), env, false)
	ws, err := websocket.Dial("ws://"+p.addr+"/echo", "", "http://client.test")
	if err != nil {
		t.Fatal(err)
	}
	testenv.WebSocketEcho(t, ws, "frame 0", "frame 1", "frame 2")
	ws.Close()
	if ri := p.nextInfo(t); ri.Status != 101 {
		t.Errorf("info %+v", ri)
	}

	// Upgrades not enabled on the connection manager are refused.
	hcm := inlineHCM(oneVhost(fwdRoute("ws", pfx("/"), toCluster("ws"))))
	hcm.UpgradeConfigs = nil
	p2 := startProxy(t, hcm, env, false)
	if _, err := websocket.Dial("ws://"+p2.addr+"/echo", "", "http://client.test"); err == nil {
		t.Error("upgrade allowed without upgrade_configs")
	}
}

func TestExpect100Continue(t *testing.T) {
	up := startUpstream(t, echoHandler(), false)
	env := &testEnv{clusters: map[string]Upstream{"backend": newTestUpstream(up, false)}}
	p := startProxy(t, inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("backend")))), env, false)
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100 Continue") {
		t.Fatalf("interim response %q, %v", line, err)
	}
	if blank, _ := br.ReadString('\n'); blank != "\r\n" {
		t.Fatalf("after 100: %q", blank)
	}
	io.WriteString(c, "hello")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s := decodeSeen(t, resp); resp.StatusCode != 200 || s.Body != "hello" || s.Header.Get("Expect") != "" {
		t.Errorf("status %d, upstream saw %+v", resp.StatusCode, s)
	}
}

func TestFaultInjection(t *testing.T) {
	up := startUpstream(t, echoHandler(), false)
	env := &testEnv{clusters: map[string]Upstream{"backend": newTestUpstream(up, false)}}
	all := &typev3.FractionalPercent{Numerator: 100}
	abort := testenv.MustAny(t, &faultv3.HTTPFault{Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_HttpStatus{HttpStatus: 503}, Percentage: all}})
	delay := testenv.MustAny(t, &faultv3.HTTPFault{Delay: &faultcommonv3.FaultDelay{
		FaultDelaySecifier: &faultcommonv3.FaultDelay_FixedDelay{FixedDelay: durationpb.New(20 * time.Millisecond)}, Percentage: all}})
	never := testenv.MustAny(t, &faultv3.HTTPFault{Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_HttpStatus{HttpStatus: 500},
		Percentage: &typev3.FractionalPercent{Numerator: 0}}})
	withFault := func(path string, cfg *anypb.Any) *routev3.Route {
		r := fwdRoute(path, pfx(path), toCluster("backend"))
		r.TypedPerFilterConfig = map[string]*anypb.Any{route.FaultFilterName: cfg}
		return r
	}
	rc := oneVhost(withFault("/abort", abort), withFault("/delay", delay), withFault("/never", never), fwdRoute("plain", pfx("/"), toCluster("backend")))
	faultFilter := &hcmv3.HttpFilter{Name: route.FaultFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: testenv.MustAny(t, &faultv3.HTTPFault{})}}
	p := startProxy(t, inlineHCM(rc, faultFilter), env, false)
	c := h1Client()
	cases := []struct {
		path   string
		status int
		flags  string
	}{{"/abort", 503, "FI"}, {"/delay", 200, "DI"}, {"/never", 200, "-"}, {"/plain", 200, "-"}}
	for _, tc := range cases {
		resp, err := c.Get(p.url(tc.path))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		ri := p.nextInfo(t)
		if resp.StatusCode != tc.status || ri.Flags.String() != tc.flags {
			t.Errorf("%s: status %d flags %s body %q", tc.path, resp.StatusCode, ri.Flags, b)
		}
	}
	if p.counter("http.test.fault.aborts_injected") != 1 || p.counter("http.test.fault.delays_injected") != 1 {
		t.Error("fault stats")
	}
}

func TestRetries(t *testing.T) {
	var calls, resets atomic.Int32
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		body, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/flaky":
			if n%2 == 1 {
				w.WriteHeader(503)
				return
			}
		case "/reset":
			if resets.Add(1) == 1 {
				c, _, _ := http.NewResponseController(w).Hijack()
				c.Close()
				return
			}
		case "/always503":
			w.WriteHeader(503)
			return
		}
		fmt.Fprintf(w, "ok:%s:%s", body, r.Header.Get("X-Envoy-Attempt-Count"))
	}), false)
	env := &testEnv{clusters: map[string]Upstream{"backend": newTestUpstream(up, false)}}
	retry := func(on string, n uint32) *routev3.RouteAction {
		a := toCluster("backend")
		a.RetryPolicy = &routev3.RetryPolicy{RetryOn: on, NumRetries: wrapperspb.UInt32(n),
			RetryBackOff: &routev3.RetryPolicy_RetryBackOff{BaseInterval: durationpb.New(time.Millisecond)}}
		return a
	}
	rc := oneVhost(
		fwdRoute("flaky", pfx("/flaky"), retry("5xx", 2)),
		fwdRoute("reset", pfx("/reset"), retry("reset", 2)),
		fwdRoute("always", pfx("/always503"), retry("gateway-error", 1)),
	)
	rc.VirtualHosts[0].IncludeRequestAttemptCount = true
	p := startProxy(t, inlineHCM(rc), env, false)
	c := h1Client()
	post := func(path, body string) (int, string) {
		resp, err := c.Post(p.url(path), "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	if st, body := post("/flaky", "payload"); st != 200 || body != "ok:payload:2" {
		t.Errorf("flaky: %d %q", st, body)
	}
	if ri := p.nextInfo(t); ri.Attempts != 2 || ri.Flags != 0 {
		t.Errorf("flaky info %+v", ri)
	}
	if st, body := post("/reset", "again"); st != 200 || body != "ok:again:2" {
		t.Errorf("reset: %d %q", st, body)
	}
	p.nextInfo(t)
	if st, _ := post("/always503", "x"); st != 503 {
		t.Errorf("always503: %d", st)
	}
	if ri := p.nextInfo(t); ri.Attempts != 2 || ri.Flags != FlagUpstreamRetryLimitExceed {
		t.Errorf("always503 info %+v flags %s", ri, ri.Flags)
	}
	if got := p.counter("cluster.backend.upstream_rq_retry"); got != 3 {
		t.Errorf("upstream_rq_retry = %d", got)
	}
	// A body larger than the replay buffer is not retried once it has gone upstream.
	big := strings.Repeat("b", MaxReplayBytes+1)
	calls.Store(0)
	if st, _ := post("/flaky", big); st != 503 {
		t.Errorf("big body retried: %d", st)
	}
}

func TestMirroring(t *testing.T) {
	type shadowReq struct{ host, body string }
	got := make(chan shadowReq, 4)
	shadow := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- shadowReq{r.Host, string(b)}
	}), false)
	main := startUpstream(t, echoHandler(), false)
	env := &testEnv{clusters: map[string]Upstream{"main": newTestUpstream(main, false), "shadow": newTestUpstream(shadow, false)}}
	a := toCluster("main")
	a.RequestMirrorPolicies = []*routev3.RouteAction_RequestMirrorPolicy{{Cluster: "shadow"}}
	p := startProxy(t, inlineHCM(oneVhost(fwdRoute("m", pfx("/"), a))), env, false)
	req, _ := http.NewRequest("POST", p.url("/m"), strings.NewReader("copy me"))
	req.Host = "svc.test:8080"
	resp, err := h1Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if s := decodeSeen(t, resp); s.Host != "svc.test:8080" || s.Body != "copy me" {
		t.Errorf("main saw %+v", s)
	}
	select {
	case sr := <-got:
		if sr.host != "svc.test-shadow:8080" || sr.body != "copy me" {
			t.Errorf("shadow saw %+v", sr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("shadow request never arrived")
	}
}

func TestCORS(t *testing.T) {
	var hits atomic.Int32
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }), false)
	env := &testEnv{clusters: map[string]Upstream{"backend": newTestUpstream(up, false)}}
	policy := testenv.MustAny(t, &corsv3.CorsPolicy{
		AllowOriginStringMatch: []*matcherv3.StringMatcher{{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "https://app.test"}}},
		AllowMethods:           "GET,POST", AllowHeaders: "x-token", ExposeHeaders: "x-out", MaxAge: "600",
		AllowCredentials: wrapperspb.Bool(true)})
	r := fwdRoute("r", pfx("/"), toCluster("backend"))
	r.TypedPerFilterConfig = map[string]*anypb.Any{route.CORSFilterName: policy}
	cors := &hcmv3.HttpFilter{Name: route.CORSFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: testenv.MustAny(t, &corsv3.Cors{})}}
	p := startProxy(t, inlineHCM(oneVhost(r), cors), env, false)
	c := h1Client()

	req, _ := http.NewRequest("OPTIONS", p.url("/api"), nil)
	req.Header.Set("Origin", "https://app.test")
	req.Header.Set("Access-Control-Request-Method", "POST")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	h := resp.Header
	if resp.StatusCode != 200 || h.Get("Access-Control-Allow-Origin") != "https://app.test" || h.Get("Access-Control-Allow-Methods") != "GET,POST" ||
		h.Get("Access-Control-Allow-Headers") != "x-token" || h.Get("Access-Control-Max-Age") != "600" || h.Get("Access-Control-Allow-Credentials") != "true" {
		t.Errorf("preflight: %d %v", resp.StatusCode, h)
	}
	if hits.Load() != 0 {
		t.Error("preflight reached the upstream")
	}
	req, _ = http.NewRequest("GET", p.url("/api"), nil)
	req.Header.Set("Origin", "https://app.test")
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("Access-Control-Allow-Origin") != "https://app.test" || resp.Header.Get("Access-Control-Expose-Headers") != "x-out" {
		t.Errorf("simple request headers %v", resp.Header)
	}
	req, _ = http.NewRequest("GET", p.url("/api"), nil)
	req.Header.Set("Origin", "https://evil.test")
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Error("disallowed origin got CORS headers")
	}
}

func TestRouteTimeout504(t *testing.T) {
	up := testenv.HangingHTTPBackend(t)
	env := &testEnv{clusters: map[string]Upstream{"slow": newTestUpstream(up, false)}}
	a := toCluster("slow")
	a.Timeout = durationpb.New(50 * time.Millisecond)
	hcm := inlineHCM(oneVhost(fwdRoute("slow", pfx("/"), a)))
	// Loopback clients are internal only because the config says so (Envoy trusts no address
	// by default).
	hcm.UseRemoteAddress = wrapperspb.Bool(true)
	hcm.InternalAddressConfig = &hcmv3.HttpConnectionManager_InternalAddressConfig{
		CidrRanges: []*corev3.CidrRange{{AddressPrefix: "127.0.0.0", PrefixLen: wrapperspb.UInt32(8)}}}
	p := startProxy(t, hcm, env, false)
	resp, err := h1Client().Get(p.url("/slow"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	ri := p.nextInfo(t)
	if resp.StatusCode != 504 || string(b) != "upstream request timeout" || ri.Flags != FlagUpstreamRequestTimeout {
		t.Errorf("status %d body %q flags %s", resp.StatusCode, b, ri.Flags)
	}
	if p.counter("http.test.downstream_rq_timeout") != 1 {
		t.Error("downstream_rq_timeout not counted")
	}
	// An internal client may ask for 204 instead of 504.
	req, _ := http.NewRequest("GET", p.url("/slow"), nil)
	req.Header.Set("X-Envoy-Upstream-Rq-Timeout-Alt-Response", "204")
	resp, err = h1Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 {
		t.Errorf("alt response: %d", resp.StatusCode)
	}
}

func TestResponseStreamsWithoutBuffering(t *testing.T) {
	next := make(chan struct{})
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-next:
		case <-time.After(10 * time.Second):
			return
		}
		io.WriteString(w, "data: second\n\n")
	}), false)
	env := &testEnv{clusters: map[string]Upstream{"sse": newTestUpstream(up, false)}}
	p := startProxy(t, inlineHCM(oneVhost(fwdRoute("sse", pfx("/"), toCluster("sse")))), env, false)
	for _, c := range []*http.Client{h1Client(), h2cClient()} {
		resp, err := c.Get(p.url("/events"))
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(resp.Body)
		line, err := br.ReadString('\n')
		if err != nil || line != "data: first\n" {
			t.Fatalf("first event %q %v", line, err)
		}
		next <- struct{}{} // the upstream only continues once the first event got through
		rest, _ := io.ReadAll(br)
		resp.Body.Close()
		if string(rest) != "\ndata: second\n\n" {
			t.Errorf("rest %q", rest)
		}
	}
}

// TestWebSocketIdleTimeout closes a tunnel in which nothing moves for the route's idle timeout.
func TestWebSocketIdleTimeout(t *testing.T) {
	up := startUpstream(t, websocket.Handler(func(ws *websocket.Conn) { io.Copy(io.Discard, ws) }), false)
	env := &testEnv{clusters: map[string]Upstream{"ws": newTestUpstream(up, false)}}
	a := toCluster("ws")
	a.IdleTimeout = durationpb.New(50 * time.Millisecond)
	p := startProxy(t, inlineHCM(oneVhost(fwdRoute("ws", pfx("/"), a))), env, false)
	ws, err := websocket.Dial("ws://"+p.addr+"/quiet", "", "http://client.test")
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	ws.SetDeadline(time.Now().Add(10 * time.Second))
	var msg string
	if err := websocket.Message.Receive(ws, &msg); err == nil {
		t.Fatal("received a message from a silent upstream")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("tunnel not closed by the idle timeout")
	}
	if ri := p.nextInfo(t); ri.Flags != FlagStreamIdleTimeout {
		t.Errorf("flags %s", ri.Flags)
	}
}

// TestFaultInertOverride: a route's fault config that injects nothing (route.Fault.Inert)
// replaces the filter's own, which aborts every request, and the request goes through.
func TestFaultInertOverride(t *testing.T) {
	up := startUpstream(t, echoHandler(), false)
	env := &testEnv{clusters: map[string]Upstream{"backend": newTestUpstream(up, false)}}
	all := &typev3.FractionalPercent{Numerator: 100}
	abort := testenv.MustAny(t, &faultv3.HTTPFault{Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_HttpStatus{HttpStatus: 503}, Percentage: all}})
	inert := fwdRoute("inert", pfx("/inert"), toCluster("backend"))
	inert.TypedPerFilterConfig = map[string]*anypb.Any{route.FaultFilterName: testenv.MustAny(t, &faultv3.HTTPFault{MaxActiveFaults: wrapperspb.UInt32(1)})}
	rc := oneVhost(inert, fwdRoute("plain", pfx("/"), toCluster("backend")))
	faultFilter := &hcmv3.HttpFilter{Name: route.FaultFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: abort}}
	p := startProxy(t, inlineHCM(rc, faultFilter), env, false)
	c := h1Client()
	for _, tc := range []struct {
		path   string
		status int
		flags  string
	}{{"/inert", 200, "-"}, {"/plain", 503, "FI"}} {
		resp, err := c.Get(p.url(tc.path))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if ri := p.nextInfo(t); resp.StatusCode != tc.status || ri.Flags.String() != tc.flags {
			t.Errorf("%s: status %d flags %s", tc.path, resp.StatusCode, ri.Flags)
		}
	}
}
