package l7

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// waitingUpstream is an upstream whose requests wait for their context to end; it reports each
// request's arrival on started and its end on ended.
func waitingUpstream(t *testing.T) (addr string, started, ended <-chan struct{}) {
	st, en := make(chan struct{}, 4), make(chan struct{}, 4)
	addr = startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st <- struct{}{}
		select {
		case <-r.Context().Done():
			en <- struct{}{}
		case <-time.After(10 * time.Second):
		}
	}), false)
	return addr, st, en
}

// clientGone sends a GET over c, waits for it to reach the upstream, and closes c.
func clientGone(t *testing.T, c net.Conn, started, ended <-chan struct{}) {
	t.Helper()
	if _, err := io.WriteString(c, "GET /wait HTTP/1.1\r\nHost: web\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the request did not reach the upstream")
	}
	c.Close()
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream request was not reset when the client went away")
	}
}

// TestH1ClientGoneWhileUpstreamWaits: an HTTP/1.1 client that closes its connection while the
// proxy waits for the upstream resets the upstream request, and the access log says DC with
// code 0 and downstream_remote_disconnect, as Envoy's.
func TestH1ClientGoneWhileUpstreamWaits(t *testing.T) {
	up, started, ended := waitingUpstream(t)
	env := &testEnv{clusters: map[string]Upstream{"outbound|80||web": staticCluster(t, "outbound|80||web", up, false)}}
	p, next := logProxy(t, inlineHCM(oneVhost(fwdRoute("web-route", pfx("/"), toCluster("outbound|80||web")))), env)
	clientGone(t, dial(t, p.addr), started, ended)
	line := next()
	if !strings.Contains(line, `"GET /wait HTTP/1.1" 0 DC downstream_remote_disconnect `) {
		t.Errorf("access log line %q: want code 0, DC, downstream_remote_disconnect", line)
	}
}

// TestH1ClientGoneTLS is TestH1ClientGoneWhileUpstreamWaits over TLS.
func TestH1ClientGoneTLS(t *testing.T) {
	up, started, ended := waitingUpstream(t)
	env := &testEnv{clusters: map[string]Upstream{"outbound|80||web": staticCluster(t, "outbound|80||web", up, false)}}
	p := startProxy(t, inlineHCM(oneVhost(fwdRoute("web-route", pfx("/"), toCluster("outbound|80||web")))), env, true)
	c := tls.Client(dial(t, p.addr), &tls.Config{InsecureSkipVerify: true})
	clientGone(t, c, started, ended)
	ri := p.nextInfo(t)
	if ri.Status != 0 || ri.Flags&FlagDownstreamConnTerminated == 0 || ri.Details != "downstream_remote_disconnect" {
		t.Errorf("status %d flags %v details %q: want 0, DC, downstream_remote_disconnect", ri.Status, ri.Flags, ri.Details)
	}
}
