package l7

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/balance"
	"github.com/strait-mesh/strait/proxy/upstream"
	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
)

// scriptedUpstream answers each attempt as its script says: "before" resets before the request
// went upstream, "after" resets after its headers were written, "connect" fails to connect,
// "ok" answers 200. It reports writing the headers the way net/http's transports do, through
// the request's httptrace.ClientTrace.
type scriptedUpstream struct {
	unlimitedRetries
	mu     sync.Mutex
	script []string
	calls  int
}

func (u *scriptedUpstream) RoundTrip(req *http.Request, _ balance.Context) (*http.Response, error) {
	u.mu.Lock()
	step := "ok"
	if u.calls < len(u.script) {
		step = u.script[u.calls]
	}
	u.calls++
	u.mu.Unlock()
	reset := &upstream.Error{Flag: upstream.FlagConnectionTerminate, Err: errors.New("connection reset by peer")}
	switch step {
	case "connect":
		return nil, &upstream.Error{Flag: upstream.FlagConnectFailure, Err: errors.New("connection refused")}
	case "before":
		return nil, reset
	case "after":
		if tr := httptrace.ContextClientTrace(req.Context()); tr != nil && tr.WroteHeaders != nil {
			tr.WroteHeaders()
		}
		return nil, reset
	}
	if tr := httptrace.ContextClientTrace(req.Context()); tr != nil && tr.WroteHeaders != nil {
		tr.WroteHeaders()
	}
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("ok"))}, nil
}

// postRetrying serves a route to up retrying on retryOn (numRetries times, 1 ms back-off) and
// POSTs a body through it: reset-before-request is what makes retrying a POST safe. It returns
// the proxy and the response status.
func postRetrying(t *testing.T, up Upstream, retryOn string, numRetries uint32) (*proxy, int) {
	t.Helper()
	env := &testEnv{clusters: map[string]Upstream{"c": up}}
	a := toCluster("c")
	a.RetryPolicy = &routev3.RetryPolicy{RetryOn: retryOn, NumRetries: wrapperspb.UInt32(numRetries),
		RetryBackOff: &routev3.RetryPolicy_RetryBackOff{BaseInterval: durationpb.New(time.Millisecond)}}
	px := startProxy(t, inlineHCM(oneVhost(fwdRoute("r", pfx("/"), a))), env, false)
	resp, err := h1Client().Post(px.url("/"), "text/plain", strings.NewReader("body"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return px, resp.StatusCode
}

// TestRetryOnResetBeforeRequest checks Envoy's reset-before-request: a connect failure or a reset
// before any of the request went upstream is retried, a reset after the request went upstream is
// not (unless reset is set too); connect-failure alone does not cover a reset.
func TestRetryOnResetBeforeRequest(t *testing.T) {
	for _, tc := range []struct {
		name       string
		retryOn    string
		script     []string
		wantStatus int
		wantCalls  int
	}{
		{"reset-before-request/before", "reset-before-request", []string{"before", "ok"}, 200, 2},
		{"reset-before-request/connect", "reset-before-request", []string{"connect", "ok"}, 200, 2},
		{"reset-before-request/after", "reset-before-request", []string{"after", "ok"}, 503, 1},
		{"reset-before-request/before-then-after", "reset-before-request", []string{"before", "after", "ok"}, 503, 2},
		{"reset/after", "reset", []string{"after", "ok"}, 200, 2},
		{"reset,reset-before-request/after", "reset,reset-before-request", []string{"after", "ok"}, 200, 2},
		{"connect-failure/before", "connect-failure", []string{"before", "ok"}, 503, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := &scriptedUpstream{script: tc.script}
			if _, status := postRetrying(t, up, tc.retryOn, 2); status != tc.wantStatus {
				t.Errorf("status %d, want %d", status, tc.wantStatus)
			}
			up.mu.Lock()
			calls := up.calls
			up.mu.Unlock()
			if calls != tc.wantCalls {
				t.Errorf("upstream saw %d attempts, want %d", calls, tc.wantCalls)
			}
		})
	}
}

// TestResetBeforeRequestRealCluster runs reset-before-request through the real upstream package:
// an upstream that reads a request and then closes the connection has been sent the request,
// so reset-before-request does not retry it while reset does; a refused connection is retried.
func TestResetBeforeRequestRealCluster(t *testing.T) {
	var mu sync.Mutex
	requests := 0
	// An upstream that reads a request and hangs up without answering.
	closing := testenv.ServeTCP(t, "127.0.0.1:0", func(c net.Conn) {
		if _, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
			mu.Lock()
			requests++
			mu.Unlock()
		}
	})
	// A port with nothing listening: connections to it are refused.
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()

	for _, tc := range []struct {
		name, retryOn, addr string
		wantRequests        int
		wantAttempts        int
	}{
		{"reset-before-request/sent", "reset-before-request", closing, 1, 1},
		{"reset/sent", "reset", closing, 2, 2},
		{"reset-before-request/refused", "reset-before-request", deadAddr, 0, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			requests = 0
			mu.Unlock()
			px, status := postRetrying(t, staticCluster(t, "c", tc.addr, false), tc.retryOn, 1)
			if status != http.StatusServiceUnavailable {
				t.Errorf("status %d, want 503", status)
			}
			if ri := px.nextInfo(t); ri.Attempts != tc.wantAttempts {
				t.Errorf("attempts %d, want %d", ri.Attempts, tc.wantAttempts)
			}
			mu.Lock()
			got := requests
			mu.Unlock()
			if got != tc.wantRequests {
				t.Errorf("upstream read %d requests, want %d", got, tc.wantRequests)
			}
		})
	}
}

// budgetedUpstream is a scriptedUpstream with a retry budget of its own.
type budgetedUpstream struct {
	scriptedUpstream
	budget        int // retries admitted
	held, maxHeld int
}

func (u *budgetedUpstream) AcquireRetry() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.budget == 0 {
		return false
	}
	u.budget--
	u.held++
	u.maxHeld = max(u.maxHeld, u.held)
	return true
}

func (u *budgetedUpstream) ReleaseRetry() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.held--
}

// TestRetryBudgetDecides checks that the router asks every upstream's retry budget before a
// retry (it is part of the Upstream interface): a budget of one admits one retry of three, and
// the slot is given back when the retry's attempt returns.
func TestRetryBudgetDecides(t *testing.T) {
	up := &budgetedUpstream{scriptedUpstream: scriptedUpstream{script: []string{"after", "after", "after", "ok"}}, budget: 1}
	px, status := postRetrying(t, up, "reset", 3)
	if status != http.StatusServiceUnavailable {
		t.Errorf("status %d, want 503", status)
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	if up.calls != 2 || up.held != 0 || up.maxHeld != 1 {
		t.Errorf("%d attempts, %d slots still held (at most %d); want 2 attempts, every slot given back", up.calls, up.held, up.maxHeld)
	}
	if ri := px.nextInfo(t); ri.Flags&FlagUpstreamRetryLimitExceed == 0 {
		t.Errorf("flags %s, want URX", ri.Flags)
	}
}
