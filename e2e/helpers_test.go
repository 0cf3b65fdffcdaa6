package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"

	"github.com/strait-mesh/strait/internal/testenv"
)

// skipShort skips an end-to-end test in -short mode: these tests build and run real processes.
func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test runs real straitd and strait-proxy processes")
	}
}

// echo is what an echoBackend answers: who answered and what it received.
type echo struct {
	Backend string            `json:"backend"`
	Method  string            `json:"method"`
	Path    string            `json:"path"`
	Query   string            `json:"query"`
	Host    string            `json:"host"`
	Proto   string            `json:"proto"`
	Headers map[string]string `json:"headers"` // lower-case name → values joined by ","
}

// echoBackend is a loopback HTTP server that answers every request with an echo naming itself,
// and a response header x-backend (its name) and x-backend-secret (for response header removal).
//
// Query parameters change its behaviour, so one backend serves every test:
//   - sleep=DURATION delays the answer (ends early if the request is canceled);
//   - failonce=KEY answers 503 to the first request carrying KEY and 200 afterwards;
//   - slowonce=KEY holds the first request carrying KEY for 5 s (or until it is canceled);
//   - hold=1 blocks until Release when the backend was started with holding enabled.
type echoBackend struct {
	Name string
	IP   string
	Port int

	hits     atomic.Int64
	active   atomic.Int64
	holding  bool
	failing  bool
	release  chan struct{}
	relOnce  sync.Once
	mu       sync.Mutex
	attempts map[string]int
}

// backendOptions select an echoBackend's transport and behaviour.
type backendOptions struct {
	h2c  bool // serve HTTP/2 with prior knowledge (and HTTP/1.1) instead of HTTP/1.1 only
	hold bool // honour hold=1
	fail bool // answer every request with 503
}

// startBackend starts an echoBackend named name on ip (a 127.0.0.0/8 address) and a free port.
func startBackend(t *testing.T, ip, name string, o backendOptions) *echoBackend {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	b := &echoBackend{Name: name, IP: ip, Port: ln.Addr().(*net.TCPAddr).Port, holding: o.hold, failing: o.fail,
		release: make(chan struct{}), attempts: map[string]int{}}
	var h http.Handler = b
	if o.h2c {
		h = h2c.NewHandler(b, &http2.Server{})
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	if !o.h2c {
		// Plain net/http would also speak h2c prior knowledge when asked; refuse it so a test
		// sees which protocol the proxy chose.
		srv.Protocols = new(http.Protocols)
		srv.Protocols.SetHTTP1(true)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		b.Release()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if srv.Shutdown(ctx) != nil {
			srv.Close()
		}
	})
	return b
}

// Addr is the backend's ip:port.
func (b *echoBackend) Addr() string { return net.JoinHostPort(b.IP, fmt.Sprint(b.Port)) }

// Hits is the number of requests the backend received.
func (b *echoBackend) Hits() int64 { return b.hits.Load() }

// Active is the number of requests the backend is answering right now.
func (b *echoBackend) Active() int64 { return b.active.Load() }

// Release lets held requests finish.
func (b *echoBackend) Release() { b.relOnce.Do(func() { close(b.release) }) }

// ServeHTTP implements http.Handler.
func (b *echoBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.hits.Add(1)
	b.active.Add(1)
	defer b.active.Add(-1)
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
	q := r.URL.Query()
	if d, err := time.ParseDuration(q.Get("sleep")); err == nil {
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
	}
	if b.holding && q.Get("hold") == "1" {
		select {
		case <-b.release:
		case <-r.Context().Done():
			return
		}
	}
	if key := q.Get("slowonce"); key != "" && b.attempt(key) == 1 {
		select {
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
			return
		}
	}
	w.Header().Set("x-backend", b.Name)
	w.Header().Set("x-backend-secret", "s3cret")
	if b.failing {
		http.Error(w, b.Name+" is broken", http.StatusServiceUnavailable)
		return
	}
	if key := q.Get("failonce"); key != "" {
		if b.attempt(key) == 1 {
			w.Header().Set("x-attempt", "1")
			http.Error(w, b.Name+" failing once", http.StatusServiceUnavailable)
			return
		}
	}
	e := echo{Backend: b.Name, Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Host: r.Host,
		Proto: r.Proto, Headers: map[string]string{}}
	for k, v := range r.Header {
		e.Headers[strings.ToLower(k)] = strings.Join(v, ",")
	}
	w.Header().Set("content-type", "application/json")
	_ = json.NewEncoder(w).Encode(e)
}

// attempt counts a request carrying key and returns how many did so far.
func (b *echoBackend) attempt(key string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.attempts[key]++
	return b.attempts[key]
}

// Attempts returns how many requests carried failonce=key or slowonce=key.
func (b *echoBackend) Attempts(key string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.attempts[key]
}

// reply is a response read in full.
type reply struct {
	Code   int
	Header http.Header
	Body   string
	Proto  string
	Echo   *echo // nil unless an echoBackend answered
}

// request describes one client request.
type request struct {
	Method string
	URL    string
	Host   string // overrides the Host header (authority)
	Header http.Header
	Body   string
}

// h1Client is an HTTP/1.1 client that does not follow redirects.
var h1Client = &http.Client{
	Timeout:       15 * time.Second,
	Transport:     &http.Transport{MaxIdleConnsPerHost: 16, DisableCompression: true},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// h2cClient speaks HTTP/2 with prior knowledge over cleartext.
var h2cClient = &http.Client{
	Timeout: 15 * time.Second,
	Transport: &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// do sends r with c and reads the response in full.
func do(c *http.Client, r request) (*reply, error) {
	if r.Method == "" {
		r.Method = http.MethodGet
	}
	var body io.Reader
	if r.Body != "" {
		body = strings.NewReader(r.Body)
	}
	req, err := http.NewRequest(r.Method, r.URL, body)
	if err != nil {
		return nil, err
	}
	for k, v := range r.Header {
		req.Header[k] = v
	}
	if r.Host != "" {
		req.Host = r.Host
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("reading body of %s %s: %w", r.Method, r.URL, err)
	}
	out := &reply{Code: resp.StatusCode, Header: resp.Header, Body: string(b), Proto: resp.Proto}
	var e echo
	if strings.HasPrefix(resp.Header.Get("content-type"), "application/json") && json.Unmarshal(b, &e) == nil && e.Backend != "" {
		out.Echo = &e
	}
	return out, nil
}

// mustDo is do that fails the test on a transport error.
func mustDo(t *testing.T, c *http.Client, r request) *reply {
	t.Helper()
	rep, err := do(c, r)
	if err != nil {
		t.Fatalf("%s %s: %v", r.Method, r.URL, err)
	}
	return rep
}

// backendName returns which echoBackend answered, or an error for any other answer.
func backendName(c *http.Client, r request) (string, error) {
	rep, err := do(c, r)
	if err != nil {
		return "", err
	}
	if rep.Code != http.StatusOK || rep.Echo == nil {
		return "", fmt.Errorf("%s: status %d: %.200s", r.URL, rep.Code, rep.Body)
	}
	return rep.Echo.Backend, nil
}

// waitBackend waits until r is answered by the backend named want.
func waitBackend(t *testing.T, timeout time.Duration, c *http.Client, r request, want string) {
	t.Helper()
	testenv.Eventually(t, timeout, func() error {
		got, err := backendName(c, r)
		if err == nil && got != want {
			err = fmt.Errorf("%s answered by %q, want %q", r.URL, got, want)
		}
		return err
	})
}

// tally sends n requests built by mk and counts the answering backends. Any other answer fails.
func tally(t *testing.T, c *http.Client, n int, mk func(i int) request) map[string]int {
	t.Helper()
	counts := map[string]int{}
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; i < n && time.Now().Before(deadline); i++ {
		r := mk(i)
		name, err := backendName(c, r)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		counts[name]++
	}
	return counts
}

// fmtCounts prints counts in a stable order.
func fmtCounts(m map[string]int) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(&b, "%s=%d ", k, m[k])
	}
	return strings.TrimSpace(b.String())
}

// edge starts straitd with files and one router proxy for the Gateway "edge" (namespace e2e,
// selector app=edge), and returns both.
func edge(t *testing.T, files map[string]string) (*testenv.Straitd, *testenv.Proxy) {
	var extra []string
	if os.Getenv("E2E_DEBUG") != "" {
		extra = []string{"--log-level", "debug"}
	}
	t.Helper()
	sd := testenv.StartStraitd(t, files)
	px := testenv.StartProxy(t, sd.XDS, testenv.ProxyOptions{Mode: "router", Name: "edge-1", Namespace: "e2e",
		Labels: map[string]string{"app": "edge"}, Extra: extra})
	return sd, px
}

// startSidecar starts the sidecar name of namespace e2e in explicit mode (--interception-mode
// NONE: it listens only where the workload's Sidecar resource binds, on ip) with labels and the
// identity of service account sa from straitd's CA, so its hops are mutual TLS; extra are more
// strait-proxy flags.
func startSidecar(t *testing.T, sd *testenv.Straitd, name, ip string, labels map[string]string, sa string, extra ...string) *testenv.Proxy {
	t.Helper()
	return testenv.StartProxy(t, sd.XDS, testenv.ProxyOptions{Mode: "sidecar", Name: name, Namespace: "e2e", IP: ip, Labels: labels,
		Extra: append(append([]string{"--interception-mode", "NONE"}, extra...), sd.Identity(t, "e2e", sa)...)})
}

// appLabels are the labels of a workload of application app.
func appLabels(app string) map[string]string { return map[string]string{"app": app} }

// sidecarPort is the port of a Sidecar listener (a YAML port object), named after its protocol.
func sidecarPort(number int, protocol string) string {
	return fmt.Sprintf("{number: %d, protocol: %s, name: %s}", number, protocol, strings.ToLower(protocol))
}

// httpPort is the port of the explicit Sidecar listeners of most tests: HTTP on 9080.
var httpPort = sidecarPort(9080, "HTTP")

// explicitSidecarYAML is a Sidecar resource for the workloads labelled app=<app> in namespace e2e
// with one listener of kind ("egress" or "ingress") for HTTP on port 9080 in capture mode NONE,
// and the listener's further fields.
func explicitSidecarYAML(app, kind string, fields ...string) string {
	return sidecarResourceYAML(app, "app: "+app, "  "+kind+":\n"+explicitListener(httpPort, fields...))
}

// sidecarResourceYAML is a Sidecar resource name in namespace e2e for the workloads with labels
// (the content of a YAML flow mapping: "app: reviews, version: v1"), with the rest of its spec
// (indented by two spaces).
func sidecarResourceYAML(name, labels, spec string) string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: %s, namespace: e2e}
spec:
  workloadSelector: {labels: {%s}}
%s`, name, labels, spec)
}

// explicitListener is an item of a Sidecar's ingress or egress list: a listener on port (a YAML
// port object) in capture mode NONE, with its further fields (bind, defaultEndpoint, hosts).
func explicitListener(port string, fields ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  - port: %s\n    captureMode: NONE\n", port)
	for _, f := range fields {
		fmt.Fprintf(&b, "    %s\n", f)
	}
	return b.String()
}

// workloadEntryYAML is a WorkloadEntry name in namespace e2e at address running as service
// account sa with labels (the content of a YAML flow mapping) and the label of a workload with a
// sidecar (security.istio.io/tlsMode: istio).
func workloadEntryYAML(name, address, sa, labels string) string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: %s, namespace: e2e}
spec:
  address: %s
  serviceAccount: %s
  labels: {%s, security.istio.io/tlsMode: istio}
`, name, address, sa, labels)
}

// gatewayYAML is a Gateway "edge" in namespace e2e with an HTTP server on port.
func gatewayYAML(port int) string { return gatewayYAMLIn("e2e", port) }

// gatewayYAMLIn is a Gateway "edge" in namespace ns, for the router proxies labelled app=edge,
// with an HTTP server on port.
func gatewayYAMLIn(ns string, port int) string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge, namespace: %s}
spec:
  selector: {app: edge}
  servers: [{port: {number: %d, name: http, protocol: HTTP}, hosts: ["*"]}]
`, ns, port)
}

// edgeVS is a VirtualService name in namespace ns bound to the Gateway edge, for hosts (a YAML
// list: ["*"] for every host); routes is the rest of its spec (http, tcp or tls routes,
// indented by two spaces).
func edgeVS(name, ns, hosts, routes string) string {
	return virtualServiceYAML(name, ns, "  hosts: "+hosts+"\n  gateways: [edge]\n"+routes)
}

// endpoint is a server a ServiceEntry lists: its name (the version label) and address.
type endpoint struct {
	Name string
	IP   string
	Port int
}

// Endpoint returns the backend as a ServiceEntry endpoint.
func (b *echoBackend) Endpoint() endpoint { return endpoint{b.Name, b.IP, b.Port} }

// endpoints returns the backends as ServiceEntry endpoints.
func endpoints(bs ...*echoBackend) []endpoint {
	out := make([]endpoint, len(bs))
	for i, b := range bs {
		out[i] = b.Endpoint()
	}
	return out
}

// The Istio YAML builders of testenv, by the names these tests use.
var (
	staticServiceYAML   = testenv.StaticServiceYAML
	destinationRuleYAML = testenv.DestinationRuleYAML
	virtualServiceYAML  = testenv.VirtualServiceYAML
)

// serviceEntryYAML registers host (as staticServiceYAML does) with one port named p and a STATIC
// endpoint per entry of eps, labelled version=<endpoint name>.
func serviceEntryYAML(host string, port int, protocol string, eps ...endpoint) string {
	list := make([]string, len(eps))
	for i, e := range eps {
		list[i] = fmt.Sprintf("{address: %s, ports: {p: %d}, labels: {version: %s}}", e.IP, e.Port, e.Name)
	}
	return staticServiceYAML(host, port, "p", protocol, list...)
}

// subsetsYAML is a DestinationRule for host with one subset per version, selecting the endpoints
// labelled version=<subset name>, as serviceEntryYAML labels them.
func subsetsYAML(host string, versions ...string) string {
	var list strings.Builder
	for _, v := range versions {
		fmt.Fprintf(&list, "  - {name: %[1]s, labels: {version: %[1]s}}\n", v)
	}
	return destinationRuleYAML(host, "  subsets:\n"+list.String())
}

// trafficPolicyYAML is a DestinationRule for host with the traffic policy policy (YAML indented
// by four spaces).
func trafficPolicyYAML(host, policy string) string {
	return destinationRuleYAML(host, "  trafficPolicy:\n"+policy)
}

// reviewsPolicyYAML is a security.istio.io/v1 object of kind (AuthorizationPolicy,
// RequestAuthentication, PeerAuthentication) name in namespace e2e for the workloads labelled
// app=reviews; spec is the rest of its spec (indented by two spaces).
func reviewsPolicyYAML(kind, name, spec string) string {
	return fmt.Sprintf(`apiVersion: security.istio.io/v1
kind: %s
metadata: {name: %s, namespace: e2e}
spec:
  selector: {matchLabels: {app: reviews}}
%s`, kind, name, spec)
}

// statIn returns the counter stat from body, the /stats page of the proxy admin at where; it
// fails the test when body has no such counter.
func statIn(t *testing.T, where, body, stat string) int {
	t.Helper()
	for _, line := range strings.Split(body, "\n") {
		if k, v, ok := strings.Cut(line, ": "); ok && k == stat {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	t.Fatalf("%s: no stat %s in:\n%s", where, stat, body)
	return 0
}

// statsAtLeast fails the test (t.Errorf) for each counter of min that stat, which reads one from
// a proxy, finds below its minimum; who names the proxy in the failures.
func statsAtLeast(t *testing.T, who string, stat func(string) int, min map[string]int) {
	t.Helper()
	for name, want := range min {
		if n := stat(name); n < want {
			t.Errorf("%s: %s = %d, want at least %d", who, name, n, want)
		}
	}
}

// strait runs the strait CLI against sd and returns its combined output.
func strait(t *testing.T, sd *testenv.Straitd, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(testenv.Binaries(t), "strait"), append([]string{"--straitd", sd.HTTP, "--admin-token-file", sd.AdminTokenFile()}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// isTimeout reports whether err is a client timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}
