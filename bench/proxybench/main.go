// Command proxybench compares, in one run, the latency, CPU and memory of the request path
// direct vs through one strait-proxy vs through a strait-proxy pair, and the same path through
// nginx and HAProxy configured as equivalent reverse proxies, over HTTP/1.1 and HTTP/2 (h2c), with
// 1 KiB request and response bodies, at a fixed 1,000 rps and at maximum throughput. It writes a
// Markdown table into docs/performance.md between proxybench markers.
//
// It also measures a client sidecar → server sidecar pair (explicit mode on loopback addresses)
// twice: in plaintext, and with identities from straitd's CA so that automatic mTLS makes the hop
// mutual TLS (sidecar.go; the run fails if either hop is not what its name says), and adds a
// table of the mTLS overhead in CPU per request and latency.
//
// The feature paths (features.go: telemetry-off, -metrics, -accesslog, -tracing, -full,
// ratelimit-none, ratelimit-local, ratelimit-global) measure the same plaintext sidecar pair at
// 1,000 rps once per configuration, for the telemetry (issue 8) and rate limit (issue 16)
// targets; -rounds N measures the telemetry paths N times, interleaved (telemetry.go).
//
// -instructions instead counts the instructions each telemetry feature adds per request through
// a sidecar's connection manager under valgrind (instructions.go): a measure that the machine's
// other work does not move.
//
// Every proxy gets one core (GOMAXPROCS=1, one nginx worker, one HAProxy thread) pinned to CPU 1;
// the load generator (fortio) and the backend (fortio's echo server) share CPU 0. All traffic is on
// loopback; every run is bounded by -duration.
//
// fortio's connections send in phase by default: at 1,000 rps over 16 connections a burst of 16
// requests every 16 ms, which the two proxies of a pair, sharing CPU 1, queue; -uniform spreads
// the requests over time instead (docs/performance.md, "The sidecar pair's added latency").
//
//	make build && go run ./bench/proxybench -duration 10s
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

func main() {
	duration := flag.Duration("duration", 10*time.Second, "length of each load run")
	binDir := flag.String("bin", "bin", "directory with straitd and strait-proxy")
	out := flag.String("out", "docs/performance.md", "Markdown file to update (between proxybench markers); empty prints only")
	only := flag.String("only", "", "comma-separated path names to run (default all)")
	rounds := flag.Int("rounds", 1, "measure the compared paths (telemetry, the hop over HTTP/2) this many times, interleaved (off, metrics, access log, tracing, full, then back), and add a table of medians per comparison")
	instructions := flag.Bool("instructions", false, "count the instructions per request of each telemetry feature under valgrind (instructions.go) instead of the load runs")
	l7Test := flag.String("l7-test", "", "with -instructions: a proxy/l7 test binary built beforehand (go test -c), e.g. of an older commit; default: built from this tree")
	uniform := flag.Bool("uniform", false, "spread the load generator's connections' requests uniformly over time (fortio -uniform) instead of fortio's default, where the -c connections send in phase: at 1,000 rps over 16 connections a burst of 16 requests every 16 ms (docs/performance.md, \"The sidecar pair's added latency\")")
	flag.Parse()
	if *instructions {
		if err := runInstructions(*out, *l7Test); err != nil {
			log.Fatal(err)
		}
		return
	}
	if *rounds < 1 {
		log.Fatal("-rounds must be at least 1")
	}
	if err := run(*duration, *binDir, *out, *only, *rounds, *uniform); err != nil {
		log.Fatal(err)
	}
}

// target is one request path under test.
type target struct {
	name    string
	url     string
	host    string // Host header, when not the URL's
	h2      bool
	proxies []*proc     // whose CPU and memory are measured
	pair    sidecarPair // for the sidecar pairs: whose client's upstream connections are counted
	rates   []int       // target rps to measure (0 = maximum); empty: 1,000 and maximum
	uniform bool        // fortio -uniform: the connections' requests spread over time, not in phase
}

func run(duration time.Duration, binDir, out, only string, rounds int, uniform bool) (err error) {
	ctx := context.Background()
	work, err := os.MkdirTemp("", "proxybench-")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil { // the error names logs in work
			log.Printf("logs kept in %s", work)
			return
		}
		os.RemoveAll(work)
	}()
	fortio, err := findFortio(work)
	if err != nil {
		return err
	}
	var procs []*proc
	defer func() {
		for i := len(procs) - 1; i >= 0; i-- {
			procs[i].stop()
		}
	}()
	must := func(p *proc, err error) *proc {
		if err != nil {
			log.Fatal(err)
		}
		procs = append(procs, p)
		return p
	}

	must(start(work, "backend", 0, nil, fortio, "server", "-http-port", fmt.Sprintf("127.0.0.1:%d", portBackend),
		"-grpc-port", "disabled", "-redirect-port", "disabled", "-ui-path", "", "-logger-json=false"))
	if err := waitTCP(fmt.Sprintf("127.0.0.1:%d", portBackend), 10*time.Second); err != nil {
		return err
	}

	var targets []target
	targets = append(targets,
		target{name: "direct", url: fmt.Sprintf("http://127.0.0.1:%d/echo", portBackend)},
		target{name: "direct", url: fmt.Sprintf("http://127.0.0.1:%d/echo", portBackend), h2: true})

	// Strait: straitd with the bench config, three router proxies, the sidecar pairs.
	var full *otlpCollector
	var accessLog string
	if only == "" || strings.Contains(only, "strait") || wantsFeatures(only) {
		if full, accessLog, err = startStrait(ctx, work, binDir, only, &targets, must); err != nil {
			return err
		}
	}
	if err := finish(ctx, fortio, work, only, out, duration, rounds, uniform, targets, must); err != nil {
		return err
	}
	reportFull(full, accessLog)
	return nil
}

// startStrait starts straitd, the router proxies and the sidecar pairs, and with -only naming
// a feature pair (or empty) the feature pairs (features.go); it returns the telemetry-full
// pair's trace collector and access log file (nil and "" without it).
func startStrait(ctx context.Context, work, binDir, only string, targets *[]target, must func(*proc, error) *proc) (*otlpCollector, string, error) {
	cfgDir := filepath.Join(work, "config")
	if err := os.MkdirAll(cfgDir, 0o755); err != nil {
		return nil, "", err
	}
	if err := os.WriteFile(filepath.Join(cfgDir, "bench.yaml"), []byte(meshConfig()), 0o644); err != nil {
		return nil, "", err
	}
	features := wantsFeatures(only)
	if features {
		if err := os.WriteFile(filepath.Join(cfgDir, "features.yaml"), []byte(featureConfig()), 0o644); err != nil {
			return nil, "", err
		}
	}
	// The data dir gives straitd its CA, the mesh port (a free one) its TLS xDS and CSR API for
	// the proxies with an identity; the router proxies and the plaintext sidecars speak plaintext xDS.
	dataDir := filepath.Join(work, "data")
	must(start(work, "straitd", 0, nil, filepath.Join(binDir, "straitd"), "--config-dir", cfgDir,
		"--data-dir", dataDir, "--mesh-address", "127.0.0.1:0",
		"--xds-listen", fmt.Sprintf("127.0.0.1:%d", portXDS), "--http-listen", fmt.Sprintf("127.0.0.1:%d", portStraitd),
		"--ratelimit-listen", fmt.Sprintf("127.0.0.1:%d", portRateLimit)))
	proxy := func(name, label string, admin int) *proc {
		return must(start(work, name, 1, []string{"GOMAXPROCS=1"}, filepath.Join(binDir, "strait-proxy"),
			"--xds-address", fmt.Sprintf("127.0.0.1:%d", portXDS), "--mode", "router", "--namespace", "bench",
			"--workload-name", name, "--labels", "bench="+label, "--admin-address", fmt.Sprintf("127.0.0.1:%d", admin)))
	}
	single := proxy("strait-single", "single", 18101)
	front := proxy("strait-front", "client", 18102)
	back := proxy("strait-back", "server", 18103)
	for _, a := range []int{18101, 18102, 18103} {
		if err := waitHTTP(ctx, fmt.Sprintf("http://127.0.0.1:%d/ready", a), 200, 30*time.Second); err != nil {
			return nil, "", fmt.Errorf("strait-proxy not ready (see %s/*.log): %w", work, err)
		}
	}
	straitdHTTP := fmt.Sprintf("127.0.0.1:%d", portStraitd)
	sidecars, err := startSidecars(ctx, work, binDir, straitdHTTP, dataDir, []sidecarPair{plainPair, mtlsPair}, must)
	if err != nil {
		return nil, "", err
	}
	var col *otlpCollector
	var accessLog string
	var featureTargets []target
	if features {
		if col, accessLog, err = featureStraitd(work, binDir, must); err != nil {
			return nil, "", err
		}
		pairs := append(slices.Clone(mainFeaturePairs), secondFeaturePairs...)
		if featureTargets, err = startSidecars(ctx, work, binDir, straitdHTTP, dataDir, pairs, must); err != nil {
			return nil, "", err
		}
		for _, p := range pairs {
			if err := checkFeature(ctx, p); err != nil {
				return nil, "", fmt.Errorf("%w (logs: %s)", err, work)
			}
		}
		for i := range featureTargets {
			featureTargets[i].rates = []int{1000}
		}
	}
	// A proxy releases what start-up touched 5 s after its configuration settles
	// (proxy/memtrim): a collection, the heap's free pages and the executable's pages, which the
	// next requests fault back in. Measuring before that would count the one-off in whichever
	// target comes first (with -only, a proxy's own first window).
	time.Sleep(memtrimSettle)
	for _, h2 := range []bool{false, true} {
		*targets = append(*targets,
			target{name: "strait-proxy", url: fmt.Sprintf("http://127.0.0.1:%d/echo", portSingle), h2: h2, proxies: []*proc{single}},
			target{name: "strait-proxy pair", url: fmt.Sprintf("http://127.0.0.1:%d/echo", portPairFront), h2: h2, proxies: []*proc{front, back}})
		for _, t := range sidecars {
			if t.h2 == h2 {
				*targets = append(*targets, t)
			}
		}
		for _, t := range featureTargets {
			if t.h2 == h2 {
				*targets = append(*targets, t)
			}
		}
	}
	return col, accessLog, nil
}

func finish(ctx context.Context, fortio, work, only, out string, duration time.Duration, rounds int, uniform bool, targets []target, must func(*proc, error) *proc) error {

	// nginx and HAProxy, when installed.
	if nginx, err := exec.LookPath("nginx"); err == nil {
		conf := filepath.Join(work, "nginx.conf")
		if err := os.WriteFile(conf, []byte(nginxConfig(work)), 0o644); err != nil {
			return err
		}
		p := must(start(work, "nginx", 1, nil, nginx, "-c", conf, "-g", "daemon off;"))
		if err := waitTCP(fmt.Sprintf("127.0.0.1:%d", portNginx), 10*time.Second); err != nil {
			return err
		}
		targets = append(targets,
			target{name: "nginx", url: fmt.Sprintf("http://127.0.0.1:%d/echo", portNginx), proxies: []*proc{p}},
			target{name: "nginx", url: fmt.Sprintf("http://127.0.0.1:%d/echo", portNginxH2), h2: true, proxies: []*proc{p}})
	} else {
		log.Printf("nginx not installed (apt-get install nginx-light): skipped")
	}
	if haproxy, err := exec.LookPath("haproxy"); err == nil {
		conf := filepath.Join(work, "haproxy.cfg")
		if err := os.WriteFile(conf, []byte(haproxyConfig()), 0o644); err != nil {
			return err
		}
		p := must(start(work, "haproxy", 1, nil, haproxy, "-db", "-f", conf))
		if err := waitTCP(fmt.Sprintf("127.0.0.1:%d", portHAProxy), 10*time.Second); err != nil {
			return err
		}
		targets = append(targets,
			target{name: "HAProxy", url: fmt.Sprintf("http://127.0.0.1:%d/echo", portHAProxy), proxies: []*proc{p}},
			target{name: "HAProxy", url: fmt.Sprintf("http://127.0.0.1:%d/echo", portHAProxyH2), h2: true, proxies: []*proc{p}})
	} else {
		log.Printf("haproxy not installed (apt-get install haproxy): skipped")
	}

	for i := range targets {
		targets[i].uniform = uniform
	}
	for i := range targets {
		targets[i].uniform = uniform
	}
	selected := func(t target) bool { return only == "" || strings.Contains(","+only+",", ","+t.name+",") }
	// The mTLS sidecar pair is measured right after the plaintext pair at the same protocol and
	// rate, so that the two runs compared in the overhead table see the same load on the machine.
	twin := map[bool]target{}
	for _, t := range targets {
		if t.name == mtlsPair.name && selected(t) {
			twin[t.h2] = t
		}
	}
	var rows []row
	for _, t := range targets {
		_, paired := twin[t.h2]
		if !selected(t) || (t.name == mtlsPair.name && selected(target{name: plainPair.name})) || isCompared(t.name) {
			continue
		}
		rates := t.rates
		if len(rates) == 0 {
			rates = []int{1000, 0}
		}
		for _, qps := range rates {
			runs := []target{t}
			if t.name == plainPair.name && paired {
				runs = append(runs, twin[t.h2])
			}
			for _, t := range runs {
				r, err := measure(ctx, fortio, work, t, qps, duration)
				if err != nil {
					return fmt.Errorf("%s: %w", t.name, err)
				}
				log.Printf("%s", r)
				rows = append(rows, r)
			}
		}
	}
	tele, err := measureCompared(ctx, fortio, work, duration, rounds, targets, selected)
	if err != nil {
		return err
	}
	rows = append(rows, tele...)
	table := renderTable(rows, duration, uniform)
	fmt.Print(table)
	if out == "" {
		return nil
	}
	return updateDoc(out, table)
}

func httpStatus(ctx context.Context, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	c := &http.Client{Timeout: time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// memtrimSettle is how long startStrait waits once every proxy is up: past proxy/memtrim's
// start-up release (5 s after the configuration settles), with a margin.
const memtrimSettle = 7 * time.Second

// findFortio builds fortio (a tool in go.mod) into dir.
func findFortio(dir string) (string, error) {
	bin := filepath.Join(dir, "fortio")
	cmd := exec.Command("go", "build", "-o", bin, "fortio.org/fortio")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building fortio: %w", err)
	}
	return bin, nil
}
