package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/strait-mesh/strait/internal/testenv"
)

// proxyBin is the strait-proxy binary built once by TestMain; straitdBin is the control plane,
// empty when it does not build (its tests then skip).
var proxyBin, straitdBin, straitdBuildErr string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "strait-proxy-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	proxyBin = filepath.Join(dir, "strait-proxy")
	args := []string{"build", "-o", proxyBin}
	if os.Getenv("STRAIT_E2E_RACE") != "" {
		args = append(args, "-race") // run the proxy under the race detector
	}
	build := exec.Command("go", append(args, "github.com/strait-mesh/strait/cmd/strait-proxy")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building strait-proxy:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	straitdBin = filepath.Join(dir, "straitd")
	if out, err := exec.Command("go", "build", "-o", straitdBin, "github.com/strait-mesh/strait/cmd/straitd").CombinedOutput(); err != nil {
		straitdBin, straitdBuildErr = "", fmt.Sprintf("%v: %s", err, out)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const nodeID = "sidecar~127.0.0.1~e2e.default~default.svc.cluster.local"

// adsServer is testenv's ADS server on loopback, with a version counter for Push.
type adsServer struct {
	*testenv.ADS
	t *testing.T

	mu      sync.Mutex
	version int
}

func newADS(t *testing.T) *adsServer { return newADSServer(t, false) }

// newADSServer starts an ADS server; sotwOnly serves state-of-the-world ADS only (Delta answers
// Unimplemented).
func newADSServer(t *testing.T, sotwOnly bool) *adsServer {
	return &adsServer{ADS: testenv.StartADS(t, testenv.ADSOptions{SotWOnly: sotwOnly}), t: t}
}

// Push sets a new snapshot for the proxy's node.
func (a *adsServer) Push(cfg *config) {
	a.t.Helper()
	a.mu.Lock()
	a.version++
	v := fmt.Sprint(a.version)
	a.mu.Unlock()
	snap, err := cachev3.NewSnapshot(v, cfg.resources())
	if err != nil {
		a.t.Fatalf("snapshot: %v", err)
	}
	if err := a.Cache.SetSnapshot(context.Background(), nodeID, snap); err != nil {
		a.t.Fatalf("set snapshot: %v", err)
	}
}

// config is a hand-written set of Envoy resources.
type config struct {
	listeners []*listenerv3.Listener
	routes    []*routev3.RouteConfiguration
	clusters  []*clusterv3.Cluster
	endpoints []*endpointv3.ClusterLoadAssignment
	secrets   []*tlsv3.Secret
}

func (c *config) resources() map[resource.Type][]types.Resource {
	out := map[resource.Type][]types.Resource{}
	for _, l := range c.listeners {
		out[resource.ListenerType] = append(out[resource.ListenerType], l)
	}
	for _, r := range c.routes {
		out[resource.RouteType] = append(out[resource.RouteType], r)
	}
	for _, cl := range c.clusters {
		out[resource.ClusterType] = append(out[resource.ClusterType], cl)
	}
	for _, e := range c.endpoints {
		out[resource.EndpointType] = append(out[resource.EndpointType], e)
	}
	for _, s := range c.secrets {
		out[resource.SecretType] = append(out[resource.SecretType], s)
	}
	return out
}

// httpListener is a listener on addr whose http_connection_manager takes routes from RDS.
func httpListener(t *testing.T, name, addr, rds, statPrefix string, extraFilters ...*hcmv3.HttpFilter) *listenerv3.Listener {
	filters := append(extraFilters, &hcmv3.HttpFilter{
		Name:       "envoy.filters.http.router",
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: testenv.MustAny(t, &routerv3.Router{})},
	})
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: statPrefix,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			RouteConfigName: rds,
			ConfigSource:    &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}, ResourceApiVersion: corev3.ApiVersion_V3},
		}},
		HttpFilters: filters,
	}
	return &listenerv3.Listener{
		Name:    name,
		Address: testenv.SocketAddr(addr),
		FilterChains: []*listenerv3.FilterChain{{
			Filters: []*listenerv3.Filter{{
				Name:       "envoy.filters.network.http_connection_manager",
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: testenv.MustAny(t, hcm)},
			}},
		}},
	}
}

// tcpListener is a listener on addr that proxies TCP to cluster.
func tcpListener(t *testing.T, name, addr, cluster string) *listenerv3.Listener {
	tp := &tcpv3.TcpProxy{StatPrefix: name, ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: cluster}}
	return &listenerv3.Listener{
		Name:    name,
		Address: testenv.SocketAddr(addr),
		FilterChains: []*listenerv3.FilterChain{{
			Filters: []*listenerv3.Filter{{
				Name:       "envoy.filters.network.tcp_proxy",
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: testenv.MustAny(t, tp)},
			}},
		}},
	}
}

// routeConfig routes every host: prefix → cluster, in order; the last prefix should be "/".
func routeConfig(name string, pairs ...string) *routev3.RouteConfiguration {
	var routes []*routev3.Route
	for i := 0; i+1 < len(pairs); i += 2 {
		routes = append(routes, &routev3.Route{
			Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: pairs[i]}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{
				ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: pairs[i+1]},
			}},
		})
	}
	return &routev3.RouteConfiguration{
		Name:         name,
		VirtualHosts: []*routev3.VirtualHost{{Name: "all", Domains: []string{"*"}, Routes: routes}},
	}
}

// clusterTimeout is the connect timeout of the clusters the tests configure.
const clusterTimeout = 2 * time.Second

func edsCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ConnectTimeout:       durationpb.New(clusterTimeout),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{EdsConfig: &corev3.ConfigSource{
			ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}, ResourceApiVersion: corev3.ApiVersion_V3,
		}},
	}
}

func cla(name string, addrs ...string) *endpointv3.ClusterLoadAssignment {
	return &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: testenv.LbEndpoints(addrs...)}
}

// handedOut are the ports freeAddr returned in this test process: the kernel may hand a closed
// port out again for the next ":0", and two listeners of one test must not get the same one (CI
// once saw "address already used by listener" that way).
var handedOut = struct {
	sync.Mutex
	ports map[string]bool
}{ports: map[string]bool{}}

// freeAddr returns a loopback address with a port that was free a moment ago and that no earlier
// call returned.
func freeAddr(t *testing.T) string {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	for i := 0; i < 100; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		if !handedOut.ports[addr] {
			handedOut.ports[addr] = true
			return addr
		}
	}
	t.Fatal("no new free loopback port after 100 tries")
	return ""
}

// backend is a real HTTP server on loopback that answers with its name; /slow waits until
// release is closed (bounded by 30s).
type backend struct {
	name    string
	addr    string
	release chan struct{}
	started chan struct{}
}

func newBackend(t *testing.T, name string) *backend {
	t.Helper()
	b := &backend{name: name, release: make(chan struct{}), started: make(chan struct{}, 16)}
	b.addr = testenv.HTTPBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			b.started <- struct{}{}
			select {
			case <-b.release:
			case <-time.After(30 * time.Second):
			}
		}
		io.Copy(io.Discard, r.Body)
		w.Header().Set("x-backend", name)
		fmt.Fprintf(w, "%s %s", name, r.URL.Path)
	})
	return b
}

// proxyProc is a running strait-proxy binary.
type proxyProc struct {
	t     *testing.T
	cmd   *exec.Cmd
	admin string
	logs  *testenv.SyncBuffer
	// exited is closed when the process has exited; waitErr is then its exit status.
	exited  chan struct{}
	waitErr error
}

// startProxy starts strait-proxy against ads for the workload e2e.default on 127.0.0.1, with
// extra flags.
func startProxy(t *testing.T, ads *adsServer, drain time.Duration, extra ...string) *proxyProc {
	t.Helper()
	return startProxyArgs(t, ads.Addr(), drain, append([]string{"--workload-name", "e2e", "--namespace", "default", "--ip", "127.0.0.1"}, extra...)...)
}

// startProxyArgs starts strait-proxy against xdsAddr with extra flags.
func startProxyArgs(t *testing.T, xdsAddr string, drain time.Duration, extra ...string) *proxyProc {
	t.Helper()
	p := &proxyProc{t: t, admin: freeAddr(t), logs: &testenv.SyncBuffer{}, exited: make(chan struct{})}
	args := append([]string{
		"--xds-address", xdsAddr,
		"--admin-address", p.admin,
		"--drain-duration", drain.String(),
		"--log-level", "debug",
	}, extra...)
	p.cmd = exec.Command(proxyBin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.waitErr = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		if t.Failed() {
			// A goroutine dump in the log helps explain a hang.
			p.cmd.Process.Signal(syscall.SIGQUIT)
			select {
			case <-p.exited:
			case <-time.After(5 * time.Second):
			}
		}
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.exited
		if strings.Contains(p.logs.String(), "WARNING: DATA RACE") {
			t.Errorf("the race detector found a data race in strait-proxy")
		}
		if t.Failed() {
			f := filepath.Join(os.TempDir(), "strait-e2e-"+strings.ReplaceAll(t.Name(), "/", "_")+".log")
			os.WriteFile(f, []byte(p.logs.String()), 0o644)
			t.Logf("strait-proxy logs (full log in %s):\n%s", f, lastLines(p.logs.String(), 40))
		}
	})
	return p
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// adminGet fetches an admin path.
func (p *proxyProc) adminGet(path string) (int, string, error) {
	resp, err := http.Get("http://" + p.admin + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	return resp.StatusCode, string(b), err
}

// waitReady waits for /ready to answer 200.
func (p *proxyProc) waitReady() {
	p.t.Helper()
	eventually(p.t, "proxy ready", func() bool {
		code, _, err := p.adminGet("/ready")
		return err == nil && code == 200
	})
}

// quit asks the proxy to exit (POST /quitquitquit on the admin socket) and waits up to 20 s for it
// to exit.
func (p *proxyProc) quit() {
	p.t.Helper()
	if code, _, err := p.adminPost("/quitquitquit"); err != nil || code != 200 {
		p.t.Fatalf("/quitquitquit on the admin socket: %d %v", code, err)
	}
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		p.t.Fatal("proxy did not exit after /quitquitquit")
	}
}

// accepts reports whether a TCP connection to addr succeeds within a second.
func accepts(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// eventuallyRefused waits until addr refuses connections: its listener is closed.
func eventuallyRefused(t *testing.T, what, addr string) {
	t.Helper()
	eventually(t, what, func() bool { return !accepts(addr) })
}

// eventually polls cond until it holds or 20s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, what, 20*time.Second, cond)
}

// get sends one GET through addr with a fresh connection and returns status and body.
func get(addr, path string) (int, string, error) {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b), err
}

// expectBody waits until GET path through addr answers 200 with body.
func expectBody(t *testing.T, addr, path, body string) {
	t.Helper()
	var last string
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, got, err := get(addr, path)
		if err == nil && code == 200 && got == body {
			return
		}
		last = fmt.Sprintf("code %d body %q err %v", code, got, err)
		if time.Now().After(deadline) {
			t.Fatalf("GET %s%s: want 200 %q, last %s", addr, path, body, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// echoOnce writes msg through a TCP connection to addr and reads it back.
func echoOnce(addr, msg string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSuffix(line, "\n"), err
}
