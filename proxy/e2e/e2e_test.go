package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	luav3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/lua/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"golang.org/x/net/http2"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/strait-mesh/strait/internal/testenv"
)

// world is the standard setup: two HTTP backends (a behind a STATIC cluster, b behind an EDS
// cluster), a TCP echo server, an HTTP listener with RDS and a TCP listener.
type world struct {
	ads              *adsServer
	a, b             *backend
	echo             string
	httpAddr, tcpAdr string
}

func newWorld(t *testing.T) *world {
	return &world{
		ads:      newADS(t),
		a:        newBackend(t, "a"),
		b:        newBackend(t, "b"),
		echo:     testenv.TCPEcho(t, ""),
		httpAddr: freeAddr(t),
		tcpAdr:   freeAddr(t),
	}
}

// config returns the standard resources; routes maps prefixes to clusters in order.
func (w *world) config(t *testing.T, statPrefix string, routes ...string) *config {
	if len(routes) == 0 {
		routes = []string{"/b", "backend-b", "/", "backend-a"}
	}
	return &config{
		listeners: []*listenerv3.Listener{
			httpListener(t, "http", w.httpAddr, "route-http", statPrefix),
			tcpListener(t, "tcp", w.tcpAdr, "tcp-echo"),
		},
		routes:    []*routev3.RouteConfiguration{routeConfig("route-http", routes...)},
		clusters:  []*clusterv3.Cluster{testenv.StaticCluster("backend-a", clusterTimeout, w.a.addr), edsCluster("backend-b"), testenv.StaticCluster("tcp-echo", clusterTimeout, w.echo)},
		endpoints: []*endpointv3.ClusterLoadAssignment{cla("backend-b", w.b.addr)},
	}
}

// start pushes the standard config (stat prefix "ingress"), starts a proxy with drain and extra
// flags, and waits until it is ready.
func (w *world) start(t *testing.T, drain time.Duration, extra ...string) *proxyProc {
	t.Helper()
	w.ads.Push(w.config(t, "ingress"))
	p := startProxy(t, w.ads, drain, extra...)
	p.waitReady()
	return p
}

func TestRoutedEndToEnd(t *testing.T) {
	w := newWorld(t)
	w.start(t, 2*time.Second)

	expectBody(t, w.httpAddr, "/hello", "a /hello") // STATIC cluster
	expectBody(t, w.httpAddr, "/b/x", "b /b/x")     // EDS cluster
	got, err := echoOnce(w.tcpAdr, "ping over tcp") // tcp_proxy
	if err != nil || got != "ping over tcp" {
		t.Fatalf("tcp echo = %q, %v", got, err)
	}

	// A route change applies without a restart.
	w.ads.Push(w.config(t, "ingress", "/", "backend-b"))
	expectBody(t, w.httpAddr, "/hello", "b /hello")
	// An EDS change moves traffic to the new endpoint.
	c := w.config(t, "ingress", "/", "backend-b")
	c.endpoints = []*endpointv3.ClusterLoadAssignment{cla("backend-b", w.a.addr)}
	w.ads.Push(c)
	expectBody(t, w.httpAddr, "/hello", "a /hello")

	// An unknown path on a route table without a catch-all is a 404 from the proxy.
	w.ads.Push(w.config(t, "ingress", "/only", "backend-a"))
	eventually(t, "404 NR", func() bool {
		code, _, err := get(w.httpAddr, "/elsewhere")
		return err == nil && code == http.StatusNotFound
	})
}

func TestServesThroughControlPlaneOutage(t *testing.T) {
	w := newWorld(t)
	p := w.start(t, 2*time.Second)
	expectBody(t, w.httpAddr, "/x", "a /x")

	w.ads.Stop()
	// The proxy notices the outage (its stream ends) and keeps serving the last accepted config.
	eventually(t, "xds disconnect logged", func() bool { return strings.Contains(p.logs.String(), "xds stream ended") })
	for i := 0; i < 20; i++ {
		code, body, err := get(w.httpAddr, "/during-outage")
		if err != nil || code != 200 || body != "a /during-outage" {
			t.Fatalf("request %d during outage: %d %q %v", i, code, body, err)
		}
		if got, err := echoOnce(w.tcpAdr, "still here"); err != nil || got != "still here" {
			t.Fatalf("tcp during outage: %q %v", got, err)
		}
	}

	// The control plane comes back with new config (a changed route, the tcp listener gone):
	// the proxy reconnects, resyncs and applies both.
	c := w.config(t, "ingress", "/", "backend-b")
	c.listeners = c.listeners[:1]
	w.ads.Push(c)
	w.ads.Start()
	expectBody(t, w.httpAddr, "/after", "b /after")
	eventuallyRefused(t, "tcp listener removed after resync", w.tcpAdr)
}

func TestNackUnsupportedFilterKeepsServing(t *testing.T) {
	w := newWorld(t)
	p := w.start(t, 2*time.Second)
	expectBody(t, w.httpAddr, "/x", "a /x")

	bad := w.config(t, "ingress-with-lua", "/", "backend-b")
	lua := &hcmv3.HttpFilter{
		Name:       "envoy.filters.http.lua",
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: testenv.MustAny(t, &luav3.Lua{})},
	}
	bad.listeners[0] = httpListener(t, "http", w.httpAddr, "route-http", "ingress-with-lua", lua)
	bad.routes = w.config(t, "ingress").routes // routes unchanged: only the listener is new
	w.ads.Push(bad)

	eventually(t, "NACK naming the lua filter", func() bool {
		for _, n := range w.ads.Nacks() {
			if strings.Contains(n, "envoy.filters.http.lua") || strings.Contains(n, "envoy.extensions.filters.http.lua.v3.Lua") {
				return true
			}
		}
		return false
	})
	t.Logf("NACK details: %q", w.ads.Nacks())
	for i := 0; i < 10; i++ {
		expectBody(t, w.httpAddr, "/still", "a /still")
	}
	_, dump, err := p.adminGet("/config_dump?resource=dynamic_listeners")
	if err != nil || strings.Contains(dump, "lua") {
		t.Fatalf("rejected listener is in the config dump (err %v)", err)
	}
}

// TestFiftyConfigChangesZeroFailures pushes 50 config changes (routes flipping between clusters,
// endpoints moving, clusters recompiled every seventh push, the listener itself changing every
// tenth) while clients send requests through the proxy; every request must succeed.
func TestFiftyConfigChangesZeroFailures(t *testing.T) {
	w := newWorld(t)
	// A short drain period retires replaced clusters and listeners while the load runs.
	w.start(t, 500*time.Millisecond)
	expectBody(t, w.httpAddr, "/x", "a /x")

	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for worker := 0; worker < 5; worker++ {
		wg.Add(1)
		go func(worker int) {
			defer wg.Done()
			// Workers 0-3: HTTP/1.1, half reusing keep-alive connections, half opening one per
			// request. Worker 4: HTTP/2 with prior knowledge (h2c), multiplexed on one connection
			// that a listener change ends with GOAWAY.
			var c *http.Client
			if worker == 4 {
				tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
					return (&net.Dialer{}).DialContext(ctx, network, addr)
				}}
				defer tr.CloseIdleConnections()
				c = &http.Client{Transport: tr, Timeout: 10 * time.Second}
			} else {
				tr := &http.Transport{DisableKeepAlives: worker%2 == 1}
				defer tr.CloseIdleConnections()
				c = &http.Client{Transport: tr, Timeout: 10 * time.Second}
			}
			deadline := time.Now().Add(60 * time.Second)
			for i := 0; i < 5000 && time.Now().Before(deadline); i++ {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Get(fmt.Sprintf("http://%s/w%d/%d", w.httpAddr, worker, i))
				if err == nil {
					var body [64]byte
					n, _ := resp.Body.Read(body[:])
					resp.Body.Close()
					if resp.StatusCode != 200 || !(strings.HasPrefix(string(body[:n]), "a ") || strings.HasPrefix(string(body[:n]), "b ")) {
						err = fmt.Errorf("status %d body %q", resp.StatusCode, body[:n])
					}
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				ok.Add(1)
			}
		}(worker)
	}
	for i := 0; i < 50; i++ {
		var c *config
		prefix := "ingress"
		if i%10 == 9 {
			prefix = fmt.Sprintf("ingress-%d", i) // the listener changes: old one drains, new one serves
		}
		if i%2 == 0 {
			c = w.config(t, prefix, "/", "backend-b")
		} else {
			c = w.config(t, prefix, "/", "backend-a")
		}
		if i%3 == 0 {
			c.endpoints = []*endpointv3.ClusterLoadAssignment{cla("backend-b", w.a.addr)}
		}
		if i%7 == 3 {
			// The clusters themselves change: they are recompiled and the old ones retired.
			for _, cl := range c.clusters {
				cl.ConnectTimeout = durationpb.New(2*time.Second + time.Duration(i)*time.Millisecond)
			}
		}
		w.ads.Push(c)
		before := ok.Load()
		eventually(t, "requests progress", func() bool { return ok.Load() > before+5 || failed.Load() > 0 })
	}
	close(stop)
	wg.Wait()
	t.Logf("requests: %d ok, %d failed", ok.Load(), failed.Load())
	if failed.Load() != 0 {
		t.Fatalf("%d requests failed during config changes; first: %v", failed.Load(), firstErr.Load())
	}
	if ok.Load() < 100 {
		t.Fatalf("only %d requests ran", ok.Load())
	}
}

func TestListenerDrainOnRemoval(t *testing.T) {
	w := newWorld(t)
	w.start(t, 20*time.Second)
	expectBody(t, w.httpAddr, "/x", "a /x")

	// A slow request is in flight when the listener is removed.
	type result struct {
		code int
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		code, body, err := get(w.httpAddr, "/slow")
		res <- result{code, body, err}
	}()
	select {
	case <-w.a.started:
	case <-time.After(20 * time.Second):
		t.Fatal("slow request did not reach the backend")
	}
	c := w.config(t, "ingress")
	c.listeners = c.listeners[1:] // only tcp remains
	w.ads.Push(c)

	// New connections are refused once the listener stopped accepting...
	eventuallyRefused(t, "listener stops accepting", w.httpAddr)
	// ...while the request that began before the removal finishes normally.
	close(w.a.release)
	r := <-res
	if r.err != nil || r.code != 200 || r.body != "a /slow" {
		t.Fatalf("in-flight request: %d %q %v", r.code, r.body, r.err)
	}
	if got, err := echoOnce(w.tcpAdr, "tcp unaffected"); err != nil || got != "tcp unaffected" {
		t.Fatalf("tcp listener after http removal: %q %v", got, err)
	}
}

func TestAdminConfigDumpAndStats(t *testing.T) {
	w := newWorld(t)
	p := w.start(t, 2*time.Second)
	for i := 0; i < 5; i++ {
		expectBody(t, w.httpAddr, "/x", "a /x")
	}

	code, body, err := p.adminGet("/config_dump")
	if err != nil || code != 200 {
		t.Fatalf("config_dump: %d %v", code, err)
	}
	var dump adminv3.ConfigDump
	if err := protojson.Unmarshal([]byte(body), &dump); err != nil {
		t.Fatalf("config_dump is not an Envoy ConfigDump: %v", err)
	}
	var kinds []string
	for _, c := range dump.GetConfigs() {
		kinds = append(kinds, c.GetTypeUrl()[strings.LastIndexByte(c.GetTypeUrl(), '.')+1:])
	}
	if strings.Join(kinds, ",") != "BootstrapConfigDump,ClustersConfigDump,ListenersConfigDump,RoutesConfigDump,EndpointsConfigDump,SecretsConfigDump" {
		t.Fatalf("config dump sections: %v", kinds)
	}
	var cds adminv3.ClustersConfigDump
	if err := dump.GetConfigs()[1].UnmarshalTo(&cds); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range cds.GetDynamicActiveClusters() {
		var cl clusterv3.Cluster
		if err := c.GetCluster().UnmarshalTo(&cl); err != nil {
			t.Fatal(err)
		}
		names = append(names, cl.GetName())
	}
	if strings.Join(names, ",") != "backend-a,backend-b,tcp-echo" {
		t.Fatalf("dumped clusters: %v", names)
	}
	// The generic JSON shape istioctl-like tools read.
	var generic struct {
		Configs []map[string]any `json:"configs"`
	}
	if err := json.Unmarshal([]byte(body), &generic); err != nil || generic.Configs[2]["dynamic_listeners"] == nil {
		t.Fatalf("listeners section not found in JSON: %v", err)
	}

	_, stats, _ := p.adminGet("/stats")
	listenerStat := "listener." + strings.ReplaceAll(w.httpAddr, ":", "_") + ".downstream_cx_total"
	for _, want := range []string{"cluster.backend-a.upstream_rq_total: 5", "http.ingress.downstream_rq_2xx: 5", listenerStat,
		"cluster_manager.cds.update_success: 1", "listener_manager.lds.update_success: 1", "control_plane.connected_state: 1",
		"listener_manager.total_listeners_active: 2", "cluster_manager.active_clusters: 3"} {
		if !strings.Contains(stats, want) {
			t.Errorf("/stats lacks %s", want)
		}
	}
	_, prom, _ := p.adminGet("/stats/prometheus")
	if !strings.Contains(prom, "# TYPE ") {
		t.Errorf("/stats/prometheus is not exposition format:\n%s", lastLines(prom, 10))
	}
	_, clusters, _ := p.adminGet("/clusters")
	if !strings.Contains(clusters, "backend-a::"+w.a.addr+"::health_flags::healthy") {
		t.Errorf("/clusters:\n%s", clusters)
	}
	if code, _, _ := p.adminGet("/healthz"); code != 200 {
		t.Errorf("/healthz = %d", code)
	}
	if code, _, err := p.adminPost("/logging?level=warning"); err != nil || code != 200 {
		t.Fatalf("/logging on the admin socket: %d %v", code, err)
	}
}

func TestSIGTERMDrainsThenExits(t *testing.T) {
	w := newWorld(t)
	p := w.start(t, 30*time.Second)
	expectBody(t, w.httpAddr, "/x", "a /x")

	res := make(chan error, 1)
	go func() {
		code, body, err := get(w.httpAddr, "/slow")
		if err == nil && (code != 200 || body != "a /slow") {
			err = fmt.Errorf("status %d body %q", code, body)
		}
		res <- err
	}()
	<-w.a.started
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	eventually(t, "draining state", func() bool {
		code, body, err := p.adminGet("/ready")
		return err == nil && code == 503 && strings.Contains(body, "DRAINING")
	})
	eventuallyRefused(t, "listener stops accepting", w.httpAddr)
	select {
	case <-p.exited:
		t.Fatal("proxy exited while a request was in flight")
	default:
	}
	close(w.a.release)
	if err := <-res; err != nil {
		t.Fatalf("in-flight request during drain: %v", err)
	}
	// With nothing left open the proxy exits before the 30s drain period ends.
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	select {
	case <-p.exited:
	case <-ctx.Done():
		t.Fatal("proxy did not exit after its connections finished")
	}
	if p.waitErr != nil {
		t.Fatalf("exit status: %v", p.waitErr)
	}
}

// TestListenerWarmsUntilRoutesArrive: a listener whose RDS route configuration has not arrived
// does not serve (and the proxy is not ready) until it does, as Envoy's listener warming.
func TestListenerWarmsUntilRoutesArrive(t *testing.T) {
	w := newWorld(t)
	c := w.config(t, "ingress")
	c.listeners[0] = httpListener(t, "http", w.httpAddr, "route-late", "ingress")
	w.ads.Push(c)
	p := startProxy(t, w.ads, 2*time.Second)
	eventually(t, "listener warming", func() bool { return strings.Contains(p.logs.String(), `msg="listener warming" listener=http`) })
	if code, body, err := p.adminGet("/ready"); err != nil || code != 503 || !strings.Contains(body, "PRE_INITIALIZING") {
		t.Fatalf("/ready while warming: %d %q %v", code, body, err)
	}
	// The warming log line is written while the update is applied; /config_dump shows the
	// update once it is published.
	var dump string
	eventually(t, "warming listener shown as warming in /config_dump", func() bool {
		_, dump, _ = p.adminGet("/config_dump?resource=dynamic_listeners")
		return strings.Contains(dump, "warming_state")
	})
	c.routes = append(c.routes, routeConfig("route-late", "/", "backend-b"))
	w.ads.Push(c)
	p.waitReady()
	expectBody(t, w.httpAddr, "/warm", "b /warm")
}

// TestAdminDrainListenersAndQuit: POST /drain_listeners stops accepting (tcp and http) while
// the admin stays up; /quitquitquit then ends the process.
func TestAdminDrainListenersAndQuit(t *testing.T) {
	w := newWorld(t)
	p := w.start(t, 2*time.Second)
	expectBody(t, w.httpAddr, "/x", "a /x")
	// State-changing endpoints are served only on the admin socket (adminauth_test.go).
	if resp, err := http.Post("http://"+p.admin+"/drain_listeners", "", nil); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("POST /drain_listeners over TCP must be refused: %v", err)
	}
	if code, _, err := p.adminPost("/drain_listeners"); err != nil || code != 200 {
		t.Fatalf("/drain_listeners: %d %v", code, err)
	}
	for _, addr := range []string{w.httpAddr, w.tcpAdr} {
		eventuallyRefused(t, "listener "+addr+" closed", addr)
	}
	if code, body, _ := p.adminGet("/ready"); code != 503 || !strings.Contains(body, "DRAINING") {
		t.Fatalf("/ready after drain: %d %q", code, body)
	}
	// A config push does not reopen drained listeners.
	w.ads.Push(w.config(t, "ingress-2"))
	eventually(t, "lds applied", func() bool {
		_, stats, _ := p.adminGet("/stats?filter=listener_manager.lds.update_success")
		return strings.Contains(stats, "update_success: 2")
	})
	if accepts(w.httpAddr) {
		t.Fatal("a drained listener reopened after an LDS update")
	}
	p.quit()
}

// TestSotWFallback: against a server without Delta ADS the proxy falls back to
// state-of-the-world, serves, follows changes and reports the GRPC (SotW) API in its bootstrap.
func TestSotWFallback(t *testing.T) {
	w := newWorld(t)
	w.ads.Stop()
	w.ads = newADSServer(t, true)
	p := w.start(t, 2*time.Second)
	expectBody(t, w.httpAddr, "/sotw", "a /sotw")
	w.ads.Push(w.config(t, "ingress", "/", "backend-b"))
	expectBody(t, w.httpAddr, "/sotw", "b /sotw")
	if delta, sotw := w.ads.Requests(); delta != 0 || sotw == 0 {
		t.Fatalf("requests: delta %d sotw %d", delta, sotw)
	}
	_, dump, _ := p.adminGet("/config_dump?resource=bootstrap")
	if !strings.Contains(strings.ReplaceAll(dump, " ", ""), `"api_type":"GRPC"`) {
		t.Fatalf("bootstrap does not report SotW:\n%s", lastLines(dump, 30))
	}
}

// TestInFlightRequestKeepsItsConfig: a request that began before a route change finishes on
// the route it matched, while new requests take the new route.
func TestInFlightRequestKeepsItsConfig(t *testing.T) {
	w := newWorld(t)
	w.ads.Push(w.config(t, "ingress", "/", "backend-a"))
	p := startProxy(t, w.ads, 5*time.Second)
	p.waitReady()
	expectBody(t, w.httpAddr, "/x", "a /x")
	res := make(chan string, 1)
	go func() {
		_, body, err := get(w.httpAddr, "/slow")
		if err != nil {
			body = err.Error()
		}
		res <- body
	}()
	<-w.a.started
	w.ads.Push(w.config(t, "ingress-2", "/", "backend-b")) // route and listener both change
	expectBody(t, w.httpAddr, "/new", "b /new")
	close(w.a.release)
	if got := <-res; got != "a /slow" {
		t.Fatalf("in-flight request = %q, want it finished on backend a", got)
	}
}
