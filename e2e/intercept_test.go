package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"

	"github.com/strait-mesh/strait/internal/netns"
	"github.com/strait-mesh/strait/internal/testenv"
)

// appEnv selects a tiny application mode of this test binary (see init): the workloads of the
// interception tests are this binary, unchanged and unaware of the mesh.
const appEnv = "STRAIT_E2E_APP"

func init() {
	mode := os.Getenv(appEnv)
	if mode == "" {
		return
	}
	args := strings.Fields(os.ExpandEnv(mode))
	if err := runApp(args); err != nil {
		fmt.Fprintln(os.Stderr, "app:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// runApp is one of (after $VARIABLE expansion):
//
//	http-server ADDR       answers every request with "served-by NAME" and the request headers
//	h2c-server ADDR        http-server over HTTP/2 without TLS (and HTTP/1.1), naming the protocol
//	h2c-get URL            get with HTTP/2 prior knowledge
//	tcp-echo ADDR...       echoes every connection
//	get URL [HOST]         GETs URL once (with Host HOST), prints "RESULT <status> <body>", then waits for SIGTERM
//	get-via PROXY URL      GETs URL through the HTTP proxy PROXY (absolute-form), as get
//	get-all URL...         GETs each URL, prints "RESULT URL <status> <body>", then waits
//	tcp-send MSG ADDR...   sends MSG to each (retrying a failed send for up to 20 s), prints
//	                       "RESULT ADDR <reply>", then waits for SIGTERM
func runApp(args []string) error {
	wait := func() error {
		ch := make(chan os.Signal, 1)
		signalNotify(ch)
		select {
		case <-ch:
		case <-time.After(5 * time.Minute):
		}
		return nil
	}
	switch args[0] {
	case "http-server":
		return http.ListenAndServe(args[1], http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "served-by %s\n", os.Getenv("STRAIT_WORKLOAD_NAME"))
			r.Header.Write(w)
		}))
	case "h2c-server":
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "served-by %s over %s\n", os.Getenv("STRAIT_WORKLOAD_NAME"), r.Proto)
			r.Header.Write(w)
		})
		return http.ListenAndServe(args[1], h2c.NewHandler(h, &http2.Server{}))
	case "h2c-get":
		tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}}
		resp, err := (&http.Client{Timeout: 10 * time.Second, Transport: tr}).Get(args[1])
		printResult("", resp, err, true)
		return wait()
	case "tcp-echo":
		errc := make(chan error, len(args))
		for _, addr := range args[1:] {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						errc <- err
						return
					}
					go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
				}
			}()
		}
		return <-errc
	case "get":
		req, err := http.NewRequest(http.MethodGet, args[1], nil)
		if err != nil {
			return err
		}
		if len(args) > 2 {
			req.Host = args[2]
		}
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		printResult("", resp, err, false)
		return wait()
	case "get-via":
		proxy, err := url.Parse(args[1])
		if err != nil {
			return err
		}
		hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(proxy)}}
		resp, err := hc.Get(args[2])
		printResult("", resp, err, false)
		return wait()
	case "get-all":
		for _, url := range args[1:] {
			resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(url)
			printResult(url+" ", resp, err, false)
		}
		return wait()
	case "tcp-send":
		// The first connection may come before every proxy on the path has its configuration
		// (the app starts when its own sidecar is ready, not the server's): retry a failed send,
		// bounded, as a client would.
		for _, addr := range args[2:] {
			reply := sendLine(addr, args[1])
			for i := 0; i < 40 && strings.HasPrefix(reply, "error"); i++ {
				time.Sleep(500 * time.Millisecond)
				reply = sendLine(addr, args[1])
			}
			fmt.Printf("RESULT %s %s\n", addr, reply)
		}
		return wait()
	}
	return fmt.Errorf("unknown app %q", args[0])
}

// printResult prints an app's RESULT line for a GET: "RESULT " and label, then the status (and the
// protocol, if proto) and the quoted body, or "error" and the quoted error.
func printResult(label string, resp *http.Response, err error, proto bool) {
	if err != nil {
		fmt.Printf("RESULT %serror %q\n", label, err.Error())
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if proto {
		fmt.Printf("RESULT %s%d %s %q\n", label, resp.StatusCode, resp.Proto, body)
		return
	}
	fmt.Printf("RESULT %s%d %q\n", label, resp.StatusCode, body)
}

// sendLine sends msg and a newline to addr and returns the quoted reply line or the error.
func sendLine(addr, msg string) string {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return fmt.Sprintf("error %q", err.Error())
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(msg + "\n")); err != nil {
		return fmt.Sprintf("error %q", err.Error())
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Sprintf("error %q", err.Error())
	}
	return strconv.Quote(strings.TrimSpace(line))
}

// meshHost is a test's private bridge: its own name and /24 inside 198.18.0.0/15, so that
// tests and a running `strait up` (strait0, 198.18.0.1/15) do not meet.
type meshHost struct {
	bridge, cidr string
	// ns is the mesh namespace of the test's workloads, unique per test process so that their
	// network namespaces (strait-NS-NAME) never meet a real workload's.
	ns string
}

// netnsOf is the network namespace `strait run` creates for workload name.
func (h meshHost) netnsOf(name string) string { return "strait-" + h.ns + "-" + name }

// fqdn is a service's host name in the test's namespace.
func (h meshHost) fqdn(service string) string { return service + "." + h.ns + ".svc.cluster.local" }

func newMeshHost(t *testing.T) meshHost {
	t.Helper()
	if err := netns.Available(); err != nil {
		t.Skipf("skipping: %v (the same scenario runs in explicit mode in TestExplicitHTTPThroughBothSidecars)", err)
	}
	if _, err := exec.LookPath("iptables-restore"); err != nil {
		if _, err := os.Stat("/usr/sbin/iptables-restore"); err != nil {
			t.Skip("skipping: iptables-restore not found (Debian package iptables)")
		}
	}
	n := os.Getpid()%200 + 20
	h := meshHost{bridge: fmt.Sprintf("stt%d", n), cidr: fmt.Sprintf("198.19.%d.1/24", n), ns: fmt.Sprintf("e2e-%d", os.Getpid())}
	t.Cleanup(func() {
		if _, err := netns.DeleteBridgeIfUnused(h.bridge); err != nil {
			t.Error(err)
		}
	})
	return h
}

// runWorkload starts `strait run` with args and the app mode, and stops it (SIGINT, as Ctrl-C)
// at cleanup, checking that its namespace and veth are gone.
func (h meshHost) runWorkload(t *testing.T, sd *testenv.Straitd, name string, app string, args ...string) *testenv.Process {
	t.Helper()
	bin := testenv.Binaries(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	argv := append([]string{filepath.Join(bin, "strait"), "run", "--straitd", sd.HTTP, "--admin-token-file", sd.AdminTokenFile(),
		"--name", name, "--namespace", h.ns, "--bridge", h.bridge, "--bridge-address", h.cidr, "--mode", "netns",
		"--proxy-bin", filepath.Join(bin, "strait-proxy")}, args...)
	argv = append(argv, "--", self, "-test.run=^$")
	p := testenv.Start(t, "strait run "+name, []string{appEnv + "=" + app}, argv...)
	t.Cleanup(func() { h.stopWorkload(t, p, name) })
	p.WaitOutput(t, regexp.MustCompile(`in network namespace `+regexp.QuoteMeta(h.netnsOf(name))), 60*time.Second)
	return p
}

// stopWorkload stops `strait run` with SIGINT (Ctrl-C) and checks that its namespace and host
// veth are gone.
func (h meshHost) stopWorkload(t *testing.T, p *testenv.Process, name string) {
	t.Helper()
	p.Signal(syscall.SIGINT)
	select {
	case <-p.Exited():
	case <-time.After(30 * time.Second):
		t.Errorf("strait run %s did not exit on SIGINT", name)
	}
	nsName := h.netnsOf(name)
	if netns.Exists(nsName) {
		t.Errorf("namespace %s left behind", nsName)
		_, _ = netns.IP("netns", "delete", nsName)
	}
	if out, _ := netns.IP("-o", "link", "show", "type", "veth"); strings.Contains(out, "@if") && strings.Contains(out, vethOf(nsName)) {
		t.Errorf("veth of %s left behind:\n%s", nsName, out)
	}
}

// vethOf mirrors cli.vethName: "st" and the FNV-32a of the namespace name.
func vethOf(nsName string) string {
	h := fnv.New32a()
	h.Write([]byte(nsName))
	return fmt.Sprintf("st%08x", h.Sum32())
}

// workloadEntries lists the names of straitd's WorkloadEntries (auto-registered included).
func workloadEntries(t *testing.T, sd *testenv.Straitd) string {
	t.Helper()
	_, body, err := testenv.Get(t.Context(), "http://"+sd.HTTP+"/apis/v1/objects?kind=WorkloadEntry", http.Header{})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// adminStat reads a counter from the sidecar admin interface inside a workload's namespace.
func (h meshHost) adminStat(t *testing.T, name, stat string) int {
	t.Helper()
	ns := &netns.NS{Name: h.netnsOf(name)}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			err = ns.Do(func() error { c, err = net.Dial(network, addr); return err })
			return c, err
		}}}
	resp, err := hc.Get("http://127.0.0.1:15000/stats")
	if err != nil {
		t.Fatalf("%s admin: %v", name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return statIn(t, name, string(b), stat)
}

// stats reads the counters of workload name's sidecar (adminStat).
func (h meshHost) stats(t *testing.T, name string) func(string) int {
	return func(stat string) int { return h.adminStat(t, name, stat) }
}

// workloadIP waits for the address `strait run` gave its workload on the bridge.
func workloadIP(t *testing.T, workload *testenv.Process) string {
	t.Helper()
	return workload.WaitOutput(t, regexp.MustCompile(`at (198\.19\.\d+\.\d+) `), 5*time.Second)[1]
}

// waitRegistered waits until straitd lists the WorkloadEntry auto-registration makes for workload
// name at podIP, and returns the entry's name.
func waitRegistered(t *testing.T, sd *testenv.Straitd, name, podIP string) string {
	t.Helper()
	entry := name + "-" + strings.ReplaceAll(podIP, ".", "-")
	testenv.Eventually(t, 30*time.Second, func() error {
		if list := workloadEntries(t, sd); !strings.Contains(list, entry) {
			return fmt.Errorf("no auto-registered WorkloadEntry %s in %s", entry, list)
		}
		return nil
	})
	return entry
}

// result waits for a client app's RESULT line for target ("" for its first line) and returns the
// rest of the line.
func result(t *testing.T, client *testenv.Process, target string) string {
	t.Helper()
	re := `RESULT (.*)`
	if target != "" {
		re = `RESULT ` + regexp.QuoteMeta(target) + ` (.*)`
	}
	return client.WaitOutput(t, regexp.MustCompile(re), 30*time.Second)[1]
}

// TestInterceptedHTTPThroughBothSidecars runs reviews-v2 (an HTTP server) and a client workload
// with `strait run` in namespaces with iptables interception: the unmodified client's GET of the
// service address reaches the server through its own sidecar's outbound listener and the
// server's sidecar's inbound listener; each sidecar's upstream connections are made as uid 1337
// and are not captured again (the client sidecar accepted exactly one connection on 15001).
func TestInterceptedHTTPThroughBothSidecars(t *testing.T) {
	h := newMeshHost(t)
	sd := testenv.StartStraitd(t, nil, "--autoregister-grace", "1s")
	server := h.runWorkload(t, sd, "reviews-v2", "http-server 0.0.0.0:9080",
		"--service", "reviews", "--labels", "version=v2", "--port", "9080", "--address", "198.18.255.10")
	podIP := workloadIP(t, server)
	entry := waitRegistered(t, sd, "reviews-v2", podIP)
	client := h.runWorkload(t, sd, "productpage-v1", "get http://198.18.255.10:9080/",
		"--service", "productpage", "--port", "9081", "--labels", "version=v1")
	got := result(t, client, "")
	if !strings.HasPrefix(got, "200 ") || !strings.Contains(got, "served-by reviews-v2") {
		t.Fatalf("client got %s", got)
	}
	t.Logf("client got %s", got)
	// The server saw headers its sidecar's connection manager adds.
	if !strings.Contains(strings.ToLower(got), "x-request-id") {
		t.Errorf("the request did not pass an HTTP sidecar: %s", got)
	}
	statsAtLeast(t, "client sidecar", h.stats(t, "productpage-v1"), map[string]int{"cluster.outbound|9080||" + h.fqdn("reviews") + ".upstream_rq_total": 1})
	statsAtLeast(t, "server sidecar", h.stats(t, "reviews-v2"), map[string]int{"http.inbound_0.0.0.0_9080.downstream_rq_total": 1})
	if n := h.adminStat(t, "productpage-v1", "listener.0.0.0.0_15001.downstream_cx_total"); n != 1 {
		t.Errorf("client sidecar accepted %d connections on 15001, want 1 (the app's): its own upstream connections must not be captured", n)
	}

	// `strait-proxy iptables uninstall` in the workload's namespace leaves no rule of ours.
	out, err := exec.Command("ip", "netns", "exec", h.netnsOf("reviews-v2"),
		filepath.Join(testenv.Binaries(t), "strait-proxy"), "iptables", "uninstall").CombinedOutput()
	if err != nil {
		t.Fatalf("uninstall: %v\n%s", err, out)
	}
	for _, save := range []string{"iptables-save", "ip6tables-save"} {
		out, err := exec.Command("ip", "netns", "exec", h.netnsOf("reviews-v2"), save, "-t", "nat").CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", save, err, out)
		}
		if strings.Contains(string(out), "STRAIT") {
			t.Errorf("%s after uninstall:\n%s", save, out)
		}
	}

	// Ctrl-C: the workload's namespace and veth go, its WorkloadEntry leaves after the grace
	// period, and the bridge goes with the last workload.
	h.stopWorkload(t, server, "reviews-v2")
	testenv.Eventually(t, 30*time.Second, func() error {
		if list := workloadEntries(t, sd); strings.Contains(list, entry) {
			return fmt.Errorf("WorkloadEntry %s still registered", entry)
		}
		return nil
	})
	h.stopWorkload(t, client, "productpage-v1")
	if _, err := netns.IP("link", "show", "dev", h.bridge); err == nil {
		t.Errorf("bridge %s left behind after its last workload exited", h.bridge)
	}
}

// TestInterceptedTCPEcho runs a TCP echo workload and a client that sends a line through
// interception on both sides: to the service address (outbound|9000||echo... to the inbound
// cluster), to the workload's address on a port no service declares (PassthroughCluster, then
// InboundPassthroughCluster from 127.0.0.6 on the server side) and to a server outside the mesh
// on the bridge (PassthroughCluster to its original destination).
func TestInterceptedTCPEcho(t *testing.T) {
	h := newMeshHost(t)
	sd := testenv.StartStraitd(t, nil, "--autoregister-grace", "1s")
	echo := h.runWorkload(t, sd, "echo-v1", "tcp-echo 0.0.0.0:9000 0.0.0.0:9100",
		"--service", "echo", "--protocol", "TCP", "--port", "9000", "--address", "198.18.255.11")
	podIP := workloadIP(t, echo)
	// The bridge's own address in the host namespace: outside the mesh.
	outside := testenv.ServeTCP(t, strings.TrimSuffix(h.cidr, "/24")+":0", func(c net.Conn) { _, _ = io.Copy(c, c) })
	targets := []string{"198.18.255.11:9000", podIP + ":9100", outside}
	client := h.runWorkload(t, sd, "sender-v1", "tcp-send hello-through-the-mesh "+strings.Join(targets, " "),
		"--service", "sender", "--port", "9001")
	for _, target := range targets {
		if got := result(t, client, target); got != `"hello-through-the-mesh"` {
			t.Errorf("%s: client got %s", target, got)
		}
	}
	statsAtLeast(t, "client sidecar", h.stats(t, "sender-v1"), map[string]int{
		"cluster.outbound|9000||" + h.fqdn("echo") + ".upstream_cx_total": 1,
		"cluster.PassthroughCluster.upstream_cx_total":                    2,
		// The service address has a listener of its own (bind_to_port false): 15001 hands the
		// connection to it by original destination, and that listener counts it, as in Envoy.
		"listener.0.0.0.0_15001.downstream_cx_total":      2,
		"listener.198.18.255.11_9000.downstream_cx_total": 1,
	})
	statsAtLeast(t, "server sidecar", h.stats(t, "echo-v1"), map[string]int{
		"cluster.inbound|9000||.upstream_cx_total":            1,
		"cluster.InboundPassthroughCluster.upstream_cx_total": 1,
	})
}

// TestInterceptedEgressHandoff: a Sidecar egress listener with a bind address and the default
// capture mode does not bind its port on a captured proxy; the client's connection, captured at
// 15001, is handed to it by original destination (use_original_dst) and routed to the service.
func TestInterceptedEgressHandoff(t *testing.T) {
	h := newMeshHost(t)
	sd := testenv.StartStraitd(t, map[string]string{"sidecar.yaml": fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: %s}
spec:
  egress:
  - port: {number: 9080, protocol: HTTP, name: http}
    bind: 0.0.0.0
    hosts: ["./*"]
  - hosts: ["./*"]
`, h.ns)}, "--autoregister-grace", "1s")
	server := h.runWorkload(t, sd, "reviews-v2", "http-server 0.0.0.0:9080",
		"--service", "reviews", "--labels", "version=v2", "--port", "9080", "--address", "198.18.255.10")
	waitRegistered(t, sd, "reviews-v2", workloadIP(t, server))
	client := h.runWorkload(t, sd, "productpage-v1", "get http://198.18.255.10:9080/",
		"--service", "productpage", "--port", "9081")
	if got := result(t, client, ""); !strings.HasPrefix(got, "200 ") || !strings.Contains(got, "served-by reviews-v2") {
		t.Fatalf("client got %s", got)
	}
	// The 0.0.0.0_9080 listener served the connection, and routed the request.
	statsAtLeast(t, "client sidecar", h.stats(t, "productpage-v1"), map[string]int{
		"listener.0.0.0.0_9080.downstream_cx_total":                          1,
		"cluster.outbound|9080||" + h.fqdn("reviews") + ".upstream_rq_total": 1,
	})
}

// TestInterceptedHTTPPassthrough: HTTP on a mesh port to addresses no virtual host names — the
// server workload's own address, and a plain server outside the mesh on the bridge — leaves the
// client sidecar through PassthroughCluster (ORIGINAL_DST) to the original destination; the
// server workload's sidecar still receives the first one.
func TestInterceptedHTTPPassthrough(t *testing.T) {
	h := newMeshHost(t)
	sd := testenv.StartStraitd(t, nil, "--autoregister-grace", "1s")
	server := h.runWorkload(t, sd, "reviews-v2", "http-server 0.0.0.0:9080",
		"--service", "reviews", "--labels", "version=v2", "--port", "9080")
	podIP := workloadIP(t, server)
	outside := testenv.ServeHTTP(t, testenv.Listen(t, strings.TrimSuffix(h.cidr, "/24")+":9080"), &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "served-by outside") })})
	urls := []string{"http://" + podIP + ":9080/", "http://" + outside + "/"}
	client := h.runWorkload(t, sd, "productpage-v1", "get-all "+strings.Join(urls, " "),
		"--service", "productpage", "--port", "9081")
	for i, want := range []string{"served-by reviews-v2", "served-by outside"} {
		if got := result(t, client, urls[i]); !strings.HasPrefix(got, "200 ") || !strings.Contains(got, want) {
			t.Errorf("%s: client got %s", urls[i], got)
		}
	}
	statsAtLeast(t, "client sidecar", h.stats(t, "productpage-v1"), map[string]int{"cluster.PassthroughCluster.upstream_rq_total": 2})
	statsAtLeast(t, "server sidecar", h.stats(t, "reviews-v2"), map[string]int{"http.inbound_0.0.0.0_9080.downstream_rq_total": 1})
}

// TestInterceptedStaleWorkload: a `strait run` killed without cleaning up leaves its namespace;
// its sidecar and app die with it (parent-death signal), and the next `strait run` of the same
// workload removes the leftovers and starts.
func TestInterceptedStaleWorkload(t *testing.T) {
	h := newMeshHost(t)
	sd := testenv.StartStraitd(t, nil, "--autoregister-grace", "1s")
	first := h.runWorkload(t, sd, "reviews-v2", "http-server 0.0.0.0:9080",
		"--service", "reviews", "--port", "9080")
	first.Signal(syscall.SIGKILL)
	<-first.Exited()
	nsName := h.netnsOf("reviews-v2")
	if !netns.Exists(nsName) {
		t.Fatalf("namespace %s is gone although strait run was killed", nsName)
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		pids, err := netns.IP("netns", "pids", nsName)
		if err == nil && strings.TrimSpace(pids) != "" {
			err = fmt.Errorf("processes still in %s: %s", nsName, pids)
		}
		return err
	})
	second := h.runWorkload(t, sd, "reviews-v2", "http-server 0.0.0.0:9080",
		"--service", "reviews", "--port", "9080")
	podIP := workloadIP(t, second)
	// From the host namespace (outside the mesh): the new sidecar serves the port inbound.
	testenv.Eventually(t, 30*time.Second, func() error {
		code, body, err := testenv.Get(t.Context(), "http://"+podIP+":9080/", http.Header{})
		if err == nil && (code != http.StatusOK || !strings.Contains(body, "served-by reviews-v2") || !strings.Contains(strings.ToLower(body), "x-request-id")) {
			err = fmt.Errorf("%d %s", code, body)
		}
		return err
	})
}

// TestInterceptedAutoProtocol: ports without a declared protocol are detected per connection on
// both sidecars: an HTTP request is routed as HTTP (the server sees x-request-id), a TCP line is
// proxied as TCP.
func TestInterceptedAutoProtocol(t *testing.T) {
	h := newMeshHost(t)
	sd := testenv.StartStraitd(t, nil, "--autoregister-grace", "1s")
	h.runWorkload(t, sd, "web-v1", "http-server 0.0.0.0:9080",
		"--service", "web", "--protocol", "auto", "--port", "9080", "--address", "198.18.255.21")
	h.runWorkload(t, sd, "echo-v1", "tcp-echo 0.0.0.0:7000",
		"--service", "echo", "--protocol", "auto", "--port", "7000", "--address", "198.18.255.20")
	httpClient := h.runWorkload(t, sd, "client-v1", "get http://198.18.255.21:9080/",
		"--service", "client", "--port", "9081")
	if got := result(t, httpClient, ""); !strings.HasPrefix(got, "200 ") || !strings.Contains(got, "served-by web-v1") || !strings.Contains(strings.ToLower(got), "x-request-id") {
		t.Errorf("HTTP on a detected port: client got %s", got)
	}
	tcpClient := h.runWorkload(t, sd, "sender-v1", "tcp-send hello-detected 198.18.255.20:7000",
		"--service", "sender", "--port", "9082")
	if got := result(t, tcpClient, "198.18.255.20:7000"); got != `"hello-detected"` {
		t.Errorf("TCP on a detected port: client got %s", got)
	}
	statsAtLeast(t, "client sidecar", h.stats(t, "client-v1"), map[string]int{"cluster.outbound|9080||" + h.fqdn("web") + ".upstream_rq_total": 1})
	statsAtLeast(t, "sender sidecar", h.stats(t, "sender-v1"), map[string]int{"cluster.outbound|7000||" + h.fqdn("echo") + ".upstream_cx_total": 1})
}

// TestInterceptedHTTP2: an h2c (HTTP/2 prior knowledge) client reaches a GRPC-protocol port
// through both sidecars, and the server application is reached over HTTP/2 too.
func TestInterceptedHTTP2(t *testing.T) {
	h := newMeshHost(t)
	sd := testenv.StartStraitd(t, nil, "--autoregister-grace", "1s")
	h.runWorkload(t, sd, "grpc-v1", "h2c-server 0.0.0.0:9090",
		"--service", "grpcsvc", "--protocol", "GRPC", "--port", "9090", "--address", "198.18.255.30")
	client := h.runWorkload(t, sd, "client-v1", "h2c-get http://198.18.255.30:9090/",
		"--service", "client", "--port", "9081")
	if got := result(t, client, ""); !strings.HasPrefix(got, "200 HTTP/2.0 ") || !strings.Contains(got, "served-by grpc-v1 over HTTP/2.0") || !strings.Contains(strings.ToLower(got), "x-request-id") {
		t.Errorf("client got %s", got)
	}
	statsAtLeast(t, "server sidecar", h.stats(t, "grpc-v1"), map[string]int{"http.inbound_0.0.0.0_9090.downstream_rq_total": 1})
}
