package appprobe

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func TestParse(t *testing.T) {
	good := `{"/app-health/web/livez":{"httpGet":{"path":"/healthz","port":8080,"scheme":"HTTP","httpHeaders":[{"name":"X-Probe","value":"1"}]},"timeoutSeconds":3},` +
		`"/app-health/web/readyz":{"tcpSocket":{"port":8080}},"/app-health/grpc/startupz":{"grpc":{"port":7070,"service":"x"}}}`
	p, err := Parse(good)
	if err != nil {
		t.Fatal(err)
	}
	if len(p) != 3 || p["/app-health/web/livez"].HTTPGet.Port != 8080 || p["/app-health/web/livez"].Timeout().Seconds() != 3 {
		t.Errorf("parsed %+v", p)
	}
	if p, err := Parse(""); err != nil || p != nil {
		t.Errorf("empty: %v %v", p, err)
	}
	for _, bad := range []struct{ in, want string }{
		{`{"/other/x":{"tcpSocket":{"port":1}}}`, "must start with /app-health/"},
		{`{"/app-health/a/livez":{"tcpSocket":{"port":0}}}`, "tcpSocket.port 0"},
		{`{"/app-health/a/livez":{"httpGet":{"port":70000}}}`, "httpGet.port 70000"},
		{`{"/app-health/a/livez":{"httpGet":{"port":80,"scheme":"FTP"}}}`, "httpGet.scheme"},
		{`{"/app-health/a/livez":{"httpGet":{"port":80,"path":"x"}}}`, "must start with /"},
		{`{"/app-health/a/livez":{"httpGet":{"port":80,"httpHeaders":[{"name":"A","value":"b\r\nc"}]}}}`, "invalid header"},
		{`{"/app-health/a/livez":{"httpGet":{"port":80},"tcpSocket":{"port":80}}}`, "exactly one"},
		{`{"/app-health/a/livez":{}}`, "exactly one"},
		{`{"/app-health/a/livez":{"exec":{"command":["true"]}}}`, "unknown field"},
		{`{"/app-health/a/livez":{"tcpSocket":{"port":1},"timeoutSeconds":-1}}`, "negative"},
		{`[`, "app probers"},
		{strings.Repeat(" ", maxTableBytes+1) + "{}", "more than"},
	} {
		if _, err := Parse(bad.in); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("Parse(%.60q) = %v, want an error containing %q", bad.in, err, bad.want)
		}
	}
}

func port(t *testing.T, addr string) int {
	t.Helper()
	_, p, _ := net.SplitHostPort(addr)
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRun probes real servers on loopback as the kubelet would: HTTP statuses below 400
// succeed, a refused TCP port fails, gRPC needs SERVING.
func TestRun(t *testing.T) {
	var gotHeader, gotHost string
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotHeader, gotHost = r.Header.Get("X-Probe"), r.Host
		switch r.URL.Path {
		case "/ok":
		case "/redirect":
			http.Redirect(w, r, "http://198.18.0.1/elsewhere", http.StatusFound)
		default:
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	defer web.Close()
	wp := port(t, web.Listener.Addr().String())
	ctx := context.Background()
	ok := &Prober{HTTPGet: &HTTPGet{Path: "/ok", Port: wp, HTTPHeaders: []Header{{"X-Probe", "yes"}, {"Host", "app.local"}}}}
	if err := ok.Run(ctx, "127.0.0.1"); err != nil {
		t.Errorf("HTTP 200: %v", err)
	}
	if gotHeader != "yes" || gotHost != "app.local" {
		t.Errorf("probe headers: X-Probe %q, Host %q", gotHeader, gotHost)
	}
	if err := (&Prober{HTTPGet: &HTTPGet{Path: "/redirect", Port: wp}}).Run(ctx, "127.0.0.1"); err != nil {
		t.Errorf("a redirect is success and is not followed: %v", err)
	}
	if err := (&Prober{HTTPGet: &HTTPGet{Path: "/fail", Port: wp}}).Run(ctx, "127.0.0.1"); err == nil || !strings.Contains(err.Error(), "500") {
		t.Errorf("HTTP 500: %v", err)
	}
	if err := (&Prober{TCPSocket: &TCPSocket{Port: wp}}).Run(ctx, "127.0.0.1"); err != nil {
		t.Errorf("TCP open: %v", err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := port(t, ln.Addr().String())
	ln.Close()
	if err := (&Prober{TCPSocket: &TCPSocket{Port: closed}}).Run(ctx, "127.0.0.1"); err == nil {
		t.Error("TCP probe of a closed port succeeded")
	}

	gp, hs := startHealthServer(t)
	svc := "orders"
	hs.SetServingStatus(svc, healthpb.HealthCheckResponse_NOT_SERVING)
	probe := &Prober{GRPC: &GRPC{Port: gp, Service: &svc}}
	if err := probe.Run(ctx, "127.0.0.1"); err == nil {
		t.Error("gRPC NOT_SERVING succeeded")
	}
	hs.SetServingStatus(svc, healthpb.HealthCheckResponse_SERVING)
	if err := probe.Run(ctx, "127.0.0.1"); err != nil {
		t.Errorf("gRPC SERVING: %v", err)
	}
}
