package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"

	"github.com/strait-mesh/strait/controlplane/xds"
	"github.com/strait-mesh/strait/internal/node"
	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/xdsclient"
)

// simProxy is one of many in-process Delta ADS clients (strait-proxy's own xdsclient, with its
// backoff) standing in for a sidecar: it accepts everything and keeps the versions it holds.
type simProxy struct {
	client *xdsclient.Client

	mu   sync.Mutex
	held map[string]map[string]string // type → name → version
}

// Apply implements xdsclient.Handler: it subscribes to the endpoints of every EDS cluster, as
// strait-proxy does, and records what it holds.
func (p *simProxy) Apply(typeURL string, set map[string]*xdsclient.Resource) error {
	versions := make(map[string]string, len(set))
	var eds []string
	for name, r := range set {
		versions[name] = r.Version
		if c, ok := r.Message.(*clusterv3.Cluster); ok && c.GetType() == clusterv3.Cluster_EDS {
			eds = append(eds, name)
		}
	}
	if typeURL == xdsclient.ClusterType {
		p.client.SetNames(xdsclient.EndpointType, eds)
	}
	p.mu.Lock()
	p.held[typeURL] = versions
	p.mu.Unlock()
	return nil
}

// holding returns a copy of what the proxy holds.
func (p *simProxy) holding() map[string]map[string]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]map[string]string, len(p.held))
	for t, m := range p.held {
		out[t] = maps.Clone(m)
	}
	return out
}

// startSimProxies connects n simulated sidecars of namespace e2e to xds until the test ends.
func startSimProxies(t *testing.T, xds string, n int) []*simProxy {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	out := make([]*simProxy, n)
	for i := range out {
		nd, err := xdsclient.NodeInfo{Type: node.Sidecar, IP: "127.0.0.106", Name: fmt.Sprintf("sim-%d", i),
			Namespace: "e2e", Labels: map[string]string{"app": "sim"}, InterceptMode: "NONE"}.Node()
		if err != nil {
			t.Fatal(err)
		}
		p := &simProxy{held: map[string]map[string]string{}}
		p.client, err = xdsclient.New(xdsclient.Options{Address: xds, Node: nd, Handler: p, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		out[i] = p
		wg.Add(1)
		go func() { defer wg.Done(); _ = p.client.Run(ctx) }()
	}
	return out
}

// syncedProxies counts the proxies straitd reports with clusters SYNCED and no type STALE
// (sent and not yet ACKed, or NACKed).
func syncedProxies(sd *testenv.Straitd) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, body, err := testenv.Get(ctx, "http://"+sd.HTTP+"/debug/syncz", nil)
	if err != nil {
		return 0, err
	}
	var list []xds.ProxyStatus
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		return 0, fmt.Errorf("decoding /debug/syncz: %w", err)
	}
	n := 0
	for _, ps := range list {
		synced := ps.Types["CDS"].Status == xds.Synced
		for _, ts := range ps.Types {
			synced = synced && ts.Status != xds.Stale
		}
		if synced {
			n++
		}
	}
	return n, nil
}

// TestStraitdRestartUnderManyProxies restarts straitd (SIGKILL, then a new process on the same
// port with the same config) under 200 connected Delta proxies and a real gateway proxy that
// serves a bounded load throughout: no request fails, every proxy reconnects (admitted at a
// bounded rate: some wait their turn or are told to come back later) and ends holding the same
// resources at the same versions, and the restarted straitd sent them nothing they already had.
// STRAIT_E2E_RESTART_PROXIES sets another number of simulated proxies (issue 13 asks for 1,000;
// CI runs 200 to keep the suite short).
func TestStraitdRestartUnderManyProxies(t *testing.T) {
	skipShort(t)
	sims := 200
	if v := os.Getenv("STRAIT_E2E_RESTART_PROXIES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 5000 {
			t.Fatalf("STRAIT_E2E_RESTART_PROXIES=%q: want a number of proxies from 1 to 5000", v)
		}
		sims = n
	}
	backend := startBackend(t, "127.0.0.105", "web-v1", backendOptions{})
	gw := testenv.FreePort(t)
	files := map[string]string{
		"gateway.yaml": gatewayYAML(gw),
		"web.yaml":     serviceEntryYAML("web.e2e.svc.cluster.local", 80, "HTTP", backend.Endpoint()),
		"vs.yaml": edgeVS("web", "e2e", `["*"]`, `  http:
  - route: [{destination: {host: web.e2e.svc.cluster.local, port: {number: 80}}}]
`),
	}
	xdsAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	// A slow admission rate, so that 201 proxies reconnecting together exceed it.
	flags := []string{"--xds-listen", xdsAddr, "--xds-stream-rate", "40", "--xds-stream-burst", "20", "--xds-stream-wait", "500ms"}
	sd := testenv.StartStraitd(t, files, flags...)
	px := testenv.StartProxy(t, xdsAddr, testenv.ProxyOptions{Mode: "router", Name: "edge-1", Namespace: "e2e",
		Labels: map[string]string{"app": "edge"}})
	px.WaitReady(t, 30*time.Second)
	url := fmt.Sprintf("http://127.0.0.1:%d/", gw)
	waitBackend(t, 30*time.Second, h1Client, request{URL: url}, "web-v1")

	proxies := startSimProxies(t, xdsAddr, sims)
	// At the admission rate below (40 a second), 1,000 proxies take 25 s to connect.
	admitTime := time.Duration(sims/40) * time.Second
	testenv.Eventually(t, 90*time.Second+admitTime, func() error {
		if n, err := syncedProxies(sd); err != nil || n < sims+1 {
			return fmt.Errorf("%d of %d proxies synced (%v)", n, sims+1, err)
		}
		return nil
	})
	before := make([]map[string]map[string]string, sims)
	connects := make([]uint64, sims)
	for i, p := range proxies {
		before[i] = p.holding()
		connects[i] = p.client.Stats().Connects.Load()
		if len(before[i][xdsclient.ClusterType]) == 0 || len(before[i][xdsclient.ListenerType]) == 0 {
			t.Fatalf("simulated proxy %d holds %v", i, before[i])
		}
	}

	// A bounded load through the gateway for the whole restart: at most 20,000 requests, one
	// every 5 ms or slower (100 s at least).
	stop := make(chan struct{})
	type result struct {
		sent, failed int
		first        string
	}
	res := make(chan result, 1)
	go func() {
		client := &http.Client{Timeout: 5 * time.Second}
		var r result
		defer func() { res <- r }()
		for r.sent < 20000 {
			select {
			case <-stop:
				return
			default:
			}
			time.Sleep(5 * time.Millisecond)
			r.sent++
			name, err := backendName(client, request{URL: url})
			if err == nil && name != "web-v1" {
				err = fmt.Errorf("answered by %q", name)
			}
			if err != nil {
				if r.failed++; r.first == "" {
					r.first = err.Error()
				}
			}
		}
	}()

	killed := time.Now()
	sd.Signal(syscall.SIGKILL)
	select {
	case <-sd.Exited():
	case <-time.After(10 * time.Second):
		t.Fatal("straitd did not exit on SIGKILL")
	}
	restarted := testenv.StartStraitd(t, files, flags...)
	testenv.Eventually(t, 120*time.Second+admitTime, func() error {
		for i, p := range proxies {
			if p.client.Stats().Connects.Load() <= connects[i] || !p.client.Connected() {
				return fmt.Errorf("simulated proxy %d has not reconnected", i)
			}
		}
		if n, err := syncedProxies(restarted); err != nil || n < sims+1 {
			return fmt.Errorf("%d of %d proxies synced on the restarted straitd (%v)", n, sims+1, err)
		}
		return nil
	})
	resynced := time.Since(killed)
	time.Sleep(time.Second) // serve a little longer on the restarted control plane
	close(stop)
	r := <-res
	if r.sent >= 20000 {
		t.Errorf("the load loop reached its bound before the proxies resynced: traffic did not run throughout")
	}
	if r.failed != 0 || r.sent < 10 {
		t.Errorf("through straitd's restart: %d of %d requests failed, the first: %s", r.failed, r.sent, r.first)
	}
	for i, p := range proxies {
		if now := p.holding(); !equalHeld(now, before[i]) {
			t.Errorf("simulated proxy %d holds other resources or versions after the restart", i)
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, metrics, err := testenv.Get(ctx, "http://"+restarted.HTTP+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	admissions := map[string]float64{}
	for _, line := range strings.Split(metrics, "\n") {
		var result string
		var v float64
		if _, err := fmt.Sscanf(line, "strait_xds_stream_admissions_total{result=%q} %g", &result, &v); err == nil {
			admissions[result] = v
		}
	}
	if admissions["deferred"]+admissions["refused"] == 0 {
		t.Errorf("stream admissions on the restarted straitd %v: no stream waited or was refused at 40 a second", admissions)
	}
	resent, sums := 0, 0
	for _, line := range strings.Split(metrics, "\n") {
		var typ string
		var v float64
		// Bytes of the resources sent: Delta initial versions let the restarted server skip what
		// the proxies had (the config is the same), so only what differs may be sent.
		if _, err := fmt.Sscanf(line, "pilot_xds_config_size_bytes_sum{type=%q} %g", &typ, &v); err == nil {
			resent += int(v)
			sums++
		}
	}
	if sums == 0 {
		t.Errorf("no pilot_xds_config_size_bytes_sum in the restarted straitd's /metrics")
	}
	t.Logf("straitd restarted under %d proxies: all resynced %s after the SIGKILL; %d requests through the gateway, %d failed; admissions %v; resource bytes sent after the restart %d",
		sims+1, resynced.Round(time.Millisecond), r.sent, r.failed, admissions, resent)
	if resent > 64<<10 {
		t.Errorf("the restarted straitd sent %d bytes of resources to proxies that had them all", resent)
	}
}

// equalHeld compares two views of held resources.
func equalHeld(a, b map[string]map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for t, m := range a {
		if !maps.Equal(m, b[t]) {
			return false
		}
	}
	return true
}
