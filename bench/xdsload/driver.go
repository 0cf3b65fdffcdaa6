package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/strait-mesh/strait/internal/node"
)

// subscribedTypes are the types a simulated proxy subscribes to (wildcard), in Envoy's order;
// with VHDS also virtual hosts.
func subscribedTypes(vhds bool) []string {
	ts := []string{resource.ClusterType, resource.EndpointType, resource.ListenerType, resource.RouteType}
	if vhds {
		ts = append(ts, resource.VirtualHostType)
	}
	return ts
}

// changeKinds maps -change to the types whose update every proxy must ACK before the change
// counts as applied: routes are RDS, or VHDS for proxies that take virtual hosts through it.
var changeKinds = map[string]func(vhds bool) []string{
	"endpoint": func(bool) []string { return []string{resource.EndpointType} },
	"service": func(vhds bool) []string {
		return []string{resource.ClusterType, resource.EndpointType, routesType(vhds)}
	},
	"virtualservice": func(vhds bool) []string { return []string{routesType(vhds)} },
}

func routesType(vhds bool) string {
	if vhds {
		return resource.VirtualHostType
	}
	return resource.RouteType
}

// runDriver starts the server child, ramps up the proxies, measures memory, then times updates.
func runDriver(cfg options) error {
	ctx, cancel := context.WithTimeout(context.Background(), cfg.timeout)
	defer cancel()
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding own executable: %w", err)
	}
	cmd := exec.CommandContext(ctx, exe, "-role=server",
		"-services="+strconv.Itoa(cfg.services), "-ports="+strconv.Itoa(cfg.ports), "-virtualservices="+strconv.Itoa(cfg.vs),
		"-debounce="+cfg.debounce.String(), "-generator="+cfg.generator, "-timeout="+cfg.timeout.String())
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return fmt.Errorf("server stdin: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("server stdout: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting server: %w", err)
	}
	defer func() { _ = stdin.Close(); _ = cmd.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		return fmt.Errorf("reading server address: %w", err)
	}
	var xdsAddr, ctlAddr string
	if _, err := fmt.Sscanf(line, "LISTEN %s %s", &xdsAddr, &ctlAddr); err != nil {
		return fmt.Errorf("server said %q: %w", line, err)
	}
	ctl := "http://" + ctlAddr

	base, err := getJSON[memStats](ctx, ctl+"/mem")
	if err != nil {
		return err
	}
	protocol := "delta"
	switch {
	case cfg.sotw:
		protocol = "sotw"
	case cfg.vhds:
		protocol = "delta+vhds"
	}
	fmt.Printf("server: %d services × %d ports, %d VirtualServices, generator %s, debounce %s; proxies: %s\n",
		cfg.services, cfg.ports, cfg.vs, cfg.generator, cfg.debounce, protocol)
	fmt.Printf("baseline: heap in use %.1f MiB, stacks %.1f MiB, %d goroutines\n",
		mib(base.HeapInuse), mib(base.StackInuse), base.Goroutines)

	// Ramp up.
	start := time.Now()
	proxies := make([]*simProxy, cfg.proxies)
	sem := make(chan struct{}, cfg.parallel)
	for i := range proxies {
		p := newSimProxy(i, cfg.vhds)
		p.sotw = cfg.sotw
		proxies[i] = p
		sem <- struct{}{}
		go p.run(ctx, xdsAddr)
		go func() {
			select {
			case <-p.ready:
			case <-ctx.Done():
			}
			<-sem
		}()
	}
	for _, p := range proxies {
		select {
		case <-p.ready:
		case err := <-p.failed:
			return fmt.Errorf("proxy %d: %w", p.n, err)
		case <-ctx.Done():
			return fmt.Errorf("ramp-up: %w", ctx.Err())
		}
	}
	ramp := time.Since(start)
	proxies[0].mu.Lock()
	fmt.Printf("each proxy holds: %d clusters, %d endpoint sets, %d listeners, %d route configurations, %d virtual hosts (VHDS)\n",
		len(proxies[0].names[resource.ClusterType]), len(proxies[0].names[resource.EndpointType]),
		len(proxies[0].names[resource.ListenerType]), len(proxies[0].names[resource.RouteType]),
		len(proxies[0].names[resource.VirtualHostType]))
	proxies[0].mu.Unlock()
	loaded, err := getJSON[memStats](ctx, ctl+"/mem")
	if err != nil {
		return err
	}
	n := float64(cfg.proxies)
	heapPer := (float64(loaded.HeapInuse) - float64(base.HeapInuse)) / n
	stackPer := (float64(loaded.StackInuse) - float64(base.StackInuse)) / n
	fmt.Printf("connected: %d proxies synced (CDS, EDS, LDS, RDS ACKed) in %s; server sees %d\n",
		cfg.proxies, ramp.Round(time.Millisecond), loaded.Connected)
	fmt.Printf("memory per proxy: heap in use %.3f MiB, + stacks %.3f MiB = %.3f MiB (%d goroutines, sys %.0f MiB)\n",
		heapPer/(1<<20), stackPer/(1<<20), (heapPer+stackPer)/(1<<20), loaded.Goroutines, mib(loaded.Sys))

	if cfg.heapProf != "" {
		if err := fetchToFile(ctx, ctl+"/debug/pprof/heap?gc=1", cfg.heapProf); err != nil {
			return err
		}
	}
	if cfg.stuck > 0 {
		stuck := min(cfg.stuck, len(proxies)-1)
		for _, p := range proxies[len(proxies)-stuck:] {
			close(p.stop)
		}
		proxies = proxies[:len(proxies)-stuck]
		fmt.Printf("%d proxies stopped reading their streams; timing the other %d\n", stuck, len(proxies))
	}

	// Updates.
	expect := changeKinds[cfg.change](cfg.vhds)
	var all, perProxy []time.Duration
	// Bytes received by the timed proxies per type, from the start of the first update to the
	// end of the run: what the changes cost on the wire.
	bytesBefore := receivedBytes(proxies)
	profDone := make(chan error, 1)
	if cfg.profile != "" {
		go func() { profDone <- fetchToFile(ctx, ctl+"/debug/pprof/profile?seconds=30", cfg.profile) }()
	} else {
		profDone <- nil
	}
	for u := range cfg.updates {
		before := make([][]int, len(proxies))
		for i, p := range proxies {
			before[i] = p.counts(expect)
		}
		res, err := getJSON[updateResult](ctx, ctl+"/update?change="+cfg.change)
		if err != nil {
			return err
		}
		deadline := time.Now().Add(60 * time.Second)
		var worst time.Duration
		for i, p := range proxies {
			for {
				if d, ok := p.ackedAfter(expect, before[i], res.UnixNano); ok {
					perProxy = append(perProxy, d)
					worst = max(worst, d)
					break
				}
				if time.Now().After(deadline) || ctx.Err() != nil {
					return fmt.Errorf("update %d: proxy %d did not ACK within 60s", u+1, i)
				}
				time.Sleep(2 * time.Millisecond)
			}
		}
		all = append(all, worst)
	}
	if err := <-profDone; err != nil {
		return err
	}
	time.Sleep(time.Second) // let responses of types not waited for (LDS) arrive
	bytesAfter := receivedBytes(proxies)
	// The mem endpoint collects first, so RSS now is after a GC; the peak is the process's
	// high-water mark over the whole run (ramp and updates).
	end, err := getJSON[memStats](ctx, ctl+"/mem")
	if err != nil {
		return err
	}
	fmt.Printf("server RSS: peak %.0f MiB over the run, %.0f MiB at the end (after a GC)\n", mib(end.PeakRSS), mib(end.RSS))
	if len(all) > 0 {
		fmt.Printf("update → ACK by all %d proxies (%d %s changes): p50 %s  p99 %s  max %s\n",
			len(proxies), cfg.updates, cfg.change, pct(all, 50), pct(all, 99), pct(all, 100))
		fmt.Printf("update → ACK per proxy (%d samples):            p50 %s  p99 %s  max %s\n",
			len(perProxy), pct(perProxy, 50), pct(perProxy, 99), pct(perProxy, 100))
		fmt.Printf("update → ACK by all, in order:")
		for _, d := range all {
			fmt.Printf(" %s", d.Round(time.Millisecond))
		}
		fmt.Println()
		var total float64
		var parts []string
		for _, t := range slices.Sorted(maps.Keys(bytesAfter)) {
			per := float64(bytesAfter[t]-bytesBefore[t]) / float64(len(proxies)) / float64(cfg.updates)
			total += per
			if per > 0 {
				parts = append(parts, fmt.Sprintf("%s %.1f KiB", metricName(t), per/1024))
			}
		}
		fmt.Printf("bytes received per proxy per change: %.1f KiB (%s)\n", total/1024, strings.Join(parts, ", "))
	}
	return nil
}

// receivedBytes sums the response bytes the proxies received, per type.
func receivedBytes(proxies []*simProxy) map[string]int64 {
	out := map[string]int64{}
	for _, p := range proxies {
		p.mu.Lock()
		for t, n := range p.bytes {
			out[t] += n
		}
		p.mu.Unlock()
	}
	return out
}

// metricName is a type URL's message name (Cluster, VirtualHost, ...).
func metricName(typeURL string) string { return typeURL[strings.LastIndexByte(typeURL, '.')+1:] }

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// pct returns the p-th percentile (nearest rank) of ds.
func pct(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	i = min(max(i, 1), len(s))
	return s[i-1].Round(time.Millisecond / 10)
}

// fetchToFile saves the body of a GET.
func fetchToFile(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("creating profile: %w", err)
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("saving profile: %w", err)
	}
	return f.Close()
}

func getJSON[T any](ctx context.Context, url string) (T, error) {
	var v T
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return v, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return v, fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&v); err != nil {
		return v, fmt.Errorf("GET %s: %w", url, err)
	}
	return v, nil
}

// simProxy is a simulated proxy: a Delta (or, with -sotw, state-of-the-world) ADS stream on its
// own gRPC connection that subscribes (wildcard) to CDS, EDS, LDS and RDS and ACKs every
// response at once.
type simProxy struct {
	n         int
	node      *corev3.Node
	sotw      bool // state-of-the-world ADS instead of Delta
	ready     chan struct{}
	readyOnce sync.Once
	stop      chan struct{} // closed: the proxy stops reading its stream (-stuck)
	failed    chan error

	types []string // subscribed types, in order

	mu      sync.Mutex
	names   map[string]map[string]bool // resources held per type; tracked for proxy 0 only
	got     map[string]int             // responses per type
	bytes   map[string]int64           // response bytes received per type
	lastAck map[string]int64           // unix nanos of the last ACK sent, per type
}

func newSimProxy(n int, vhds bool) *simProxy {
	ip := fmt.Sprintf("127.%d.%d.%d", 1+n/62500, n/250%250, n%250+1)
	ns := fmt.Sprintf("ns-%d", n%20)
	var names map[string]map[string]bool
	if n == 0 {
		names = map[string]map[string]bool{}
	}
	var features []string
	if vhds {
		features = []string{node.FeatureVHDS}
	}
	return &simProxy{
		names: names,
		n:     n,
		types: subscribedTypes(vhds),
		node: &corev3.Node{
			ClientFeatures: features,
			Id:             node.NewID(node.Sidecar, ip, fmt.Sprintf("app-%d-7d9f", n), ns).String(),
			Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{
				node.MetaNamespace:   structpb.NewStringValue(ns),
				node.MetaInstanceIPs: structpb.NewStringValue(ip),
				node.MetaLabels: structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
					"app": structpb.NewStringValue(fmt.Sprintf("app-%d", n%50)), "version": structpb.NewStringValue("v1"),
				}}),
			}},
		},
		ready:   make(chan struct{}),
		stop:    make(chan struct{}),
		failed:  make(chan error, 1),
		got:     map[string]int{},
		bytes:   map[string]int64{},
		lastAck: map[string]int64{},
	}
}

func (p *simProxy) run(ctx context.Context, addr string) {
	err := p.stream(ctx, addr)
	if err != nil && ctx.Err() == nil {
		p.failed <- err
	}
}

func (p *simProxy) stream(ctx context.Context, addr string) error {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("dialing: %w", err)
	}
	defer cc.Close()
	st, err := openStream(ctx, discovery.NewAggregatedDiscoveryServiceClient(cc), p.sotw)
	if err != nil {
		return fmt.Errorf("opening stream: %w", err)
	}
	for i, t := range p.types {
		var n *corev3.Node
		if i == 0 {
			n = p.node
		}
		if err := st.send(t, n, "", ""); err != nil {
			return fmt.Errorf("subscribing: %w", err)
		}
	}
	for {
		select {
		case <-p.stop: // stuck: hold the stream open without reading it
			<-ctx.Done()
			return nil
		default:
		}
		resp, err := st.recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("receiving: %w", err)
		}
		if err := st.send(resp.typ, nil, resp.version, resp.nonce); err != nil {
			return fmt.Errorf("acking: %w", err)
		}
		var names []string
		if p.names != nil { // only proxy 0 reports what it holds
			if names, err = resp.names(); err != nil {
				return err
			}
		}
		p.record(resp.typ, p.sotw, names, resp.removed, resp.size)
	}
}

// record notes a response (and its ACK, sent just before): for proxy 0 the resources held
// (full replaces them, as SotW does), and per type the count and time.
func (p *simProxy) record(typeURL string, full bool, names, removed []string, size int) {
	now := time.Now().UnixNano()
	p.mu.Lock()
	if p.names != nil {
		set := p.names[typeURL]
		if set == nil || full {
			set = map[string]bool{}
			p.names[typeURL] = set
		}
		for _, n := range names {
			set[n] = true
		}
		for _, n := range removed {
			delete(set, n)
		}
	}
	p.got[typeURL]++
	p.bytes[typeURL] += int64(size)
	p.lastAck[typeURL] = now
	all := len(p.got) == len(p.types)
	p.mu.Unlock()
	if all {
		p.readyOnce.Do(func() { close(p.ready) })
	}
}

func (p *simProxy) counts(types []string) []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]int, len(types))
	for i, t := range types {
		out[i] = p.got[t]
	}
	return out
}

// ackedAfter reports whether every type got a response since before, and the time from t0 to the
// last of their ACKs.
func (p *simProxy) ackedAfter(types []string, before []int, t0 int64) (time.Duration, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var last int64
	for i, t := range types {
		if p.got[t] <= before[i] {
			return 0, false
		}
		last = max(last, p.lastAck[t])
	}
	return time.Duration(last - t0), true
}
