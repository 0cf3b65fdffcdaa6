package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/testenv"
)

// promServer is a real Prometheus (Debian's package prometheus) started by a test, scraping
// the proxies' Istio status ports (15020, /stats/prometheus) every second.
type promServer struct {
	addr string
	log  *lockedBuffer
}

// lockedBuffer is a bytes.Buffer safe for a process's output and the test reading it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// needTool skips the test when the program is not installed, or fails it when the environment
// says every tool must be there (.ci/run sets STRAIT_E2E_REQUIRE_TOOLS and installs them).
func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("STRAIT_E2E_REQUIRE_TOOLS") != "" {
		t.Fatalf("%s not found: install Debian's package %s (.ci/run does)", name, pkg)
	}
	t.Skipf("skipping: %s not found (Debian's package %s; .ci/run installs it)", name, pkg)
	return ""
}

// startPrometheus runs Prometheus on listen, scraping each target's /stats/prometheus every
// second as job "strait", until the test ends.
func startPrometheus(t *testing.T, listen string, targets []string) *promServer {
	t.Helper()
	bin := needTool(t, "prometheus", "prometheus")
	dir := t.TempDir()
	quoted := make([]string, len(targets))
	for i, tg := range targets {
		quoted[i] = strconv.Quote(tg)
	}
	cfg := fmt.Sprintf(`global: {scrape_interval: 1s, scrape_timeout: 900ms, evaluation_interval: 1s}
scrape_configs:
- job_name: strait
  metrics_path: /stats/prometheus
  static_configs:
  - targets: [%s]
`, strings.Join(quoted, ", "))
	cfgFile := filepath.Join(dir, "prometheus.yml")
	writeFile(t, cfgFile, cfg)
	p := &promServer{addr: listen, log: &lockedBuffer{}}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "--config.file="+cfgFile, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+listen, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("starting prometheus: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("prometheus output:\n%s", p.log.String())
		}
	})
	testenv.Eventually(t, 30*time.Second, func() error {
		select {
		case <-done:
			t.Fatalf("prometheus exited:\n%s", p.log.String())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		code, _, err := testenv.Get(ctx, "http://"+listen+"/-/ready", nil)
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("prometheus not ready: %d %v", code, err)
		}
		return nil
	})
	return p
}

// promSample is one series of an instant query's result.
type promSample struct {
	Metric map[string]string
	Value  float64
}

// query runs an instant PromQL query and returns its vector, sorted by labels.
func (p *promServer) query(q string) ([]promSample, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	code, body, err := testenv.Get(ctx, "http://"+p.addr+"/api/v1/query?query="+url.QueryEscape(q), nil)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("query %s: %d %s", q, code, body)
	}
	var rep struct {
		Status string
		Data   struct {
			ResultType string
			Result     []struct {
				Metric map[string]string
				Value  [2]any
			}
		}
	}
	if err := json.Unmarshal([]byte(body), &rep); err != nil {
		return nil, fmt.Errorf("query %s: %w", q, err)
	}
	if rep.Status != "success" || rep.Data.ResultType != "vector" {
		return nil, fmt.Errorf("query %s: status %q, result type %q", q, rep.Status, rep.Data.ResultType)
	}
	out := make([]promSample, 0, len(rep.Data.Result))
	for _, r := range rep.Data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("query %s: value %q: %w", q, s, err)
		}
		out = append(out, promSample{Metric: r.Metric, Value: v})
	}
	sort.Slice(out, func(i, j int) bool { return fmt.Sprint(out[i].Metric) < fmt.Sprint(out[j].Metric) })
	return out, nil
}

// scalar runs a query whose result is one series (or none: 0).
func (p *promServer) scalar(q string) (float64, error) {
	r, err := p.query(q)
	if err != nil {
		return 0, err
	}
	switch len(r) {
	case 0:
		return 0, nil
	case 1:
		return r[0].Value, nil
	}
	return 0, fmt.Errorf("query %s: %d series, want one", q, len(r))
}

// waitTargetsUp waits until Prometheus has scraped every target successfully.
func (p *promServer) waitTargetsUp(t *testing.T, n int) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func() error {
		up, err := p.scalar(`count(up == 1)`)
		if err != nil {
			return err
		}
		if int(up) != n {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, targets, _ := testenv.Get(ctx, "http://"+p.addr+"/api/v1/targets?state=active", nil)
			return fmt.Errorf("%v of %d targets up: %s", up, n, targets)
		}
		return nil
	})
}

// stable returns the queries' values once two reads two scrapes apart agree (no traffic is
// still being counted).
func (p *promServer) stable(t *testing.T, queries []string) []float64 {
	t.Helper()
	var prev []float64
	var out []float64
	testenv.Eventually(t, 30*time.Second, func() error {
		cur := make([]float64, len(queries))
		for i, q := range queries {
			v, err := p.scalar(q)
			if err != nil {
				return err
			}
			cur[i] = v
		}
		same := prev != nil
		for i := range cur {
			same = same && cur[i] == prev[i]
		}
		prev = cur
		if !same {
			time.Sleep(2500 * time.Millisecond)
			return fmt.Errorf("still changing: %v", cur)
		}
		out = cur
		return nil
	})
	return out
}

// seriesBy maps each result series to its value by the given label (the series must have it).
func seriesBy(r []promSample, label string) map[string]float64 {
	m := map[string]float64{}
	for _, s := range r {
		m[s.Metric[label]] = s.Value
	}
	return m
}

// upListens finds a `strait run` workload's address in its log (explicit mode).
var upListens = regexp.MustCompile(`explicit mode \(.*\): \S+ listens on ([0-9.]+):`)

// upProxyIPs returns, for the ingress and every bookstore workload of a `strait up` mesh in
// explicit mode, the address its proxy listens on (from the workload's log).
func upProxyIPs(t *testing.T, dir string) map[string]string {
	t.Helper()
	ips := map[string]string{"ingress": "127.0.0.1"}
	for _, wl := range []string{"details-v1", "ratings-v1", "reviews-v1", "reviews-v2", "reviews-v3", "web-v1"} {
		b, _ := os.ReadFile(filepath.Join(dir, "logs", wl+".log"))
		m := upListens.FindSubmatch(b)
		if m == nil {
			t.Errorf("%s: no workload address in its log:\n%s", wl, b)
			continue
		}
		ips[wl] = string(m[1])
	}
	return ips
}

// prometheusOnLiveMesh runs Debian's Prometheus against a live `strait up` bookstore, scraping
// every proxy's status port (15020) as a Kubernetes Prometheus scrapes Istio's pods, sends a
// known number of pages through the ingress, and asks the questions of Istio's standard Grafana
// dashboards: the request counts of both reporters agree with what was sent, and request volume
// by destination, success rate, latency quantiles and byte rates come back for every hop.
func prometheusOnLiveMesh(t *testing.T, dir string) {
	t.Helper()
	var targets []string
	for _, ip := range upProxyIPs(t, dir) {
		targets = append(targets, net.JoinHostPort(ip, "15020"))
	}
	sort.Strings(targets)
	p := startPrometheus(t, net.JoinHostPort("127.0.0.191", "9090"), targets)
	p.waitTargetsUp(t, len(targets))

	// The hops every page makes: ingress → web, web → details. Both reporters count each.
	counts := []string{
		`sum(istio_requests_total{reporter="source",source_workload="ingress",destination_service_name="web",response_code="200"})`,
		`sum(istio_requests_total{reporter="destination",destination_service_name="web",response_code="200"})`,
		`sum(istio_requests_total{reporter="source",source_workload="web-v1",destination_service="details.default.svc.cluster.local",response_code="200"})`,
		`sum(istio_requests_total{reporter="destination",destination_service_name="details",destination_service_namespace="default",response_code="200"})`,
	}
	before := p.stable(t, counts)
	const pages = 150
	client := &http.Client{Timeout: 10 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; i < pages; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("sent only %d of %d pages in time", i, pages)
		}
		resp, err := client.Get("http://127.0.0.1:8080/api/book/0")
		if err != nil {
			t.Fatalf("page %d: %v", i, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("page %d: %d", i, resp.StatusCode)
		}
	}
	after := p.stable(t, counts)
	for i, q := range counts {
		if got := after[i] - before[i]; got != pages {
			t.Errorf("%s grew by %v, want %d (the pages sent)", q, got, pages)
		}
	}

	// Istio's Grafana dashboards' questions over the last minute.
	services := []string{"web.default.svc.cluster.local", "details.default.svc.cluster.local",
		"reviews.default.svc.cluster.local", "ratings.default.svc.cluster.local"}
	for _, reporter := range []string{"source", "destination"} {
		vol, err := p.query(`sum(rate(istio_requests_total{reporter="` + reporter + `"}[1m])) by (destination_service)`)
		if err != nil {
			t.Fatal(err)
		}
		byService := seriesBy(vol, "destination_service")
		for _, s := range services {
			if byService[s] <= 0 {
				t.Errorf("request volume (reporter %s): no rate for %s: %v", reporter, s, vol)
			}
		}
	}
	success, err := p.query(`sum(rate(istio_requests_total{reporter="destination",response_code!~"5.."}[1m])) by (destination_service)` +
		` / sum(rate(istio_requests_total{reporter="destination"}[1m])) by (destination_service)`)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range services {
		if v, ok := seriesBy(success, "destination_service")[s]; !ok || v != 1 {
			t.Errorf("success rate of %s: %v (present %v), want 1: %v", s, v, ok, success)
		}
	}
	for _, q := range []string{"0.50", "0.90", "0.99"} {
		lat, err := p.query(`histogram_quantile(` + q + `, sum(rate(istio_request_duration_milliseconds_bucket{reporter="destination"}[1m])) by (le, destination_service))`)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range services {
			if v, ok := seriesBy(lat, "destination_service")[s]; !ok || math.IsNaN(v) || v < 0 || v > 10000 {
				t.Errorf("p%s latency of %s: %v (present %v)", strings.TrimPrefix(q, "0."), s, v, ok)
			}
		}
	}
	for _, metric := range []string{"istio_request_bytes_sum", "istio_response_bytes_sum"} {
		b, err := p.query(`sum(rate(` + metric + `{reporter="destination"}[1m])) by (destination_service)`)
		if err != nil {
			t.Fatal(err)
		}
		if v := seriesBy(b, "destination_service")["web.default.svc.cluster.local"]; metric == "istio_response_bytes_sum" && v <= 0 {
			t.Errorf("%s rate of web: %v", metric, v)
		}
	}
	// Every hop is mutual TLS (the demo's STRICT policy): the destination reporter says so.
	plain, err := p.query(`sum(istio_requests_total{reporter="destination",connection_security_policy!="mutual_tls"}) by (destination_service)`)
	if err != nil {
		t.Fatal(err)
	}
	if len(plain) != 0 {
		t.Errorf("requests not over mutual TLS: %v", plain)
	}
}

// TestPrometheusTCP runs a TCP service between two sidecars over mutual TLS with a real
// Prometheus scraping both proxies' status ports: Istio's TCP dashboard queries (connections
// opened and closed, bytes sent and received, by destination service) return both reporters'
// series, and the counts agree with the connections and bytes the test sent.
func TestPrometheusTCP(t *testing.T) {
	skipShort(t)
	needTool(t, "prometheus", "prometheus")
	const clientIP, serverIP = "127.0.0.192", "127.0.0.193"
	echoPort := startTCPEcho(t, "127.0.0.1", "echo")
	port := sidecarPort(9000, "TCP")
	cfg := staticServiceYAML("echo.e2e.svc.cluster.local", 9000, "tcp", "TCP",
		"{address: "+serverIP+", serviceAccount: echo, labels: {app: echo, security.istio.io/tlsMode: istio}}") + "---\n" +
		sidecarResourceYAML("client", "app: client", "  egress:\n"+explicitListener(port, "bind: "+clientIP, `hosts: ["e2e/*"]`)) + "---\n" +
		sidecarResourceYAML("echo", "app: echo", "  ingress:\n"+explicitListener(port, "bind: "+serverIP, fmt.Sprintf("defaultEndpoint: 127.0.0.1:%d", echoPort)))
	sd := testenv.StartStraitd(t, map[string]string{"mesh.yaml": cfg})
	startSidecar(t, sd, "echo-1", serverIP, appLabels("echo"), "echo", "--status-address", net.JoinHostPort(serverIP, "15020"))
	startSidecar(t, sd, "client-1", clientIP, appLabels("client"), "client", "--status-address", net.JoinHostPort(clientIP, "15020"))

	// One line per connection: "ping-N\n" (7 bytes) out, "echo: ping-N\n" (13 bytes) back.
	exchange := func(i int) error {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(clientIP, "9000"), 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		line := fmt.Sprintf("ping-%d\n", i%10)
		if _, err := c.Write([]byte(line)); err != nil {
			return err
		}
		got, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return err
		}
		if got != "echo: "+line {
			return fmt.Errorf("echo answered %q", got)
		}
		return nil
	}
	testenv.Eventually(t, 30*time.Second, func() error { return exchange(0) })

	p := startPrometheus(t, net.JoinHostPort("127.0.0.194", "9090"),
		[]string{net.JoinHostPort(clientIP, "15020"), net.JoinHostPort(serverIP, "15020")})
	p.waitTargetsUp(t, 2)
	const svc = `destination_service="echo.e2e.svc.cluster.local"`
	var counts []string
	for _, reporter := range []string{"source", "destination"} {
		for _, m := range []string{"istio_tcp_connections_opened_total", "istio_tcp_connections_closed_total",
			"istio_tcp_sent_bytes_total", "istio_tcp_received_bytes_total"} {
			counts = append(counts, `sum(`+m+`{reporter="`+reporter+`",`+svc+`})`)
		}
	}
	before := p.stable(t, counts)
	// Spread over about 4 s (several scrapes): a series that appears and takes all its
	// connections between two scrapes has no rate (its first sample is already its last), which
	// happens when the peer's labels change (the workload table arrives after the warm-up).
	const conns = 40
	for i := 0; i < conns; i++ {
		if err := exchange(i); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	after := p.stable(t, counts)
	// Per connection: opened 1, closed 1, the proxy sent 13 bytes downstream... Envoy's
	// istio_tcp_sent_bytes_total counts bytes sent to the downstream (the response), received
	// the bytes received from it (the request).
	want := []float64{conns, conns, conns * 13, conns * 7}
	for i, q := range counts {
		if got := after[i] - before[i]; got != want[i%4] {
			t.Errorf("%s grew by %v, want %v", q, got, want[i%4])
		}
	}
	// The TCP panel of Istio's service dashboard: bytes per second by destination service.
	for _, reporter := range []string{"source", "destination"} {
		r, err := p.query(`sum(rate(istio_tcp_received_bytes_total{reporter="` + reporter + `"}[1m])) by (destination_service)`)
		if err != nil {
			t.Fatal(err)
		}
		if seriesBy(r, "destination_service")["echo.e2e.svc.cluster.local"] <= 0 {
			t.Errorf("TCP received bytes rate (reporter %s): %v", reporter, r)
		}
	}
}
