package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unique"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/strait-mesh/strait/controlplane/xds"
	"github.com/strait-mesh/strait/internal/node"
	"github.com/strait-mesh/strait/proxy/xdsclient"
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
	child, err := startChild(ctx, cfg, cfg.listen)
	if err != nil {
		return err
	}
	defer func() { child.stop() }()
	xdsAddr, ctl := child.xds, child.ctl

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
	if cfg.ondemand > 0 {
		protocol += fmt.Sprintf(", on-demand, each demanding %d services", cfg.ondemand)
	}
	fmt.Printf("server: %d services × %d ports, %d VirtualServices, generator %s, debounce %s; proxies: %s\n",
		cfg.services, cfg.ports, cfg.vs, cfg.generator, cfg.debounce, protocol)
	fmt.Printf("baseline: heap in use %.1f MiB, stacks %.1f MiB, %d goroutines\n",
		mib(base.HeapInuse), mib(base.StackInuse), base.Goroutines)

	// Ramp up: first one proxy per namespace (the translation all proxies of a namespace share
	// is then built, and the heap is measured), then the rest.
	start := time.Now()
	proxies := make([]*simProxy, cfg.proxies)
	sem := make(chan struct{}, cfg.parallel)
	first := min(cfg.proxies, simNamespaces)
	var warm memStats
	for _, phase := range [][2]int{{0, first}, {first, cfg.proxies}} {
		for i := phase[0]; i < phase[1]; i++ {
			p := newSimProxy(i, cfg.vhds, cfg.restart)
			p.sotw = cfg.sotw
			p.demandServices(cfg.ondemand, cfg.services)
			proxies[i] = p
			sem <- struct{}{}
			go p.run(ctx, xdsAddr, cfg.restart)
			go func() {
				select {
				case <-p.ready:
				case <-ctx.Done():
				}
				<-sem
			}()
		}
		for _, p := range proxies[phase[0]:phase[1]] {
			select {
			case <-p.ready:
			case err := <-p.failed:
				return fmt.Errorf("proxy %d: %w", p.n, err)
			case <-ctx.Done():
				return fmt.Errorf("ramp-up: %w", ctx.Err())
			}
		}
		if phase[0] == 0 {
			if warm, err = getJSON[memStats](ctx, ctl+"/mem"); err != nil {
				return err
			}
		}
	}
	ramp := time.Since(start)
	proxies[0].mu.Lock()
	fmt.Printf("each proxy holds: %d clusters, %d endpoint sets, %d listeners, %d route configurations, %d virtual hosts (VHDS)\n",
		len(proxies[0].names[resource.ClusterType]), len(proxies[0].names[resource.EndpointType]),
		len(proxies[0].names[resource.ListenerType]), len(proxies[0].names[resource.RouteType]),
		len(proxies[0].names[resource.VirtualHostType]))
	proxies[0].mu.Unlock()
	initial := receivedBytes(proxies)
	var initialTotal float64
	var initialParts []string
	for _, t := range slices.Sorted(maps.Keys(initial)) {
		per := float64(initial[t]) / float64(len(proxies))
		initialTotal += per
		initialParts = append(initialParts, fmt.Sprintf("%s %.1f KiB", metricName(t), per/1024))
	}
	fmt.Printf("initial configuration received per proxy: %.1f KiB (%s)\n", initialTotal/1024, strings.Join(initialParts, ", "))
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
	if rest := cfg.proxies - first; rest > 0 {
		// What each further proxy costs once its namespace's shared translation exists.
		per := (float64(loaded.HeapInuse+loaded.StackInuse) - float64(warm.HeapInuse+warm.StackInuse)) / float64(rest)
		fmt.Printf("memory per proxy beyond the first of each namespace: %.3f MiB (heap and stacks: %.1f MiB with %d proxies, %.1f MiB with %d)\n",
			per/(1<<20), mib(loaded.HeapInuse+loaded.StackInuse), cfg.proxies, mib(warm.HeapInuse+warm.StackInuse), first)
	}

	if cfg.client && !cfg.sotw {
		if err := measureClient(ctx, cfg, xdsAddr); err != nil {
			return err
		}
	}
	if cfg.heapProf != "" {
		if err := fetchToFile(ctx, ctl+"/debug/pprof/heap?gc=1", cfg.heapProf); err != nil {
			return err
		}
	}
	if cfg.restart {
		if child, err = restartServer(ctx, cfg, child, proxies); err != nil {
			return err
		}
		ctl = child.ctl
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
	if cfg.profile != "" && !cfg.restart { // with -restart the profile is of the resync
		go func() { profDone <- fetchToFile(ctx, ctl+"/debug/pprof/profile?seconds=30", cfg.profile) }()
	} else {
		profDone <- nil
	}
	var queuedPeak float64 // strait_xds_queued_bytes, sampled after each update
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
		if cfg.stuck > 0 {
			m, err := serverMetrics(ctx, ctl)
			if err != nil {
				return err
			}
			queuedPeak = max(queuedPeak, m["strait_xds_queued_bytes"])
		}
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
	if cfg.stuck > 0 {
		fmt.Printf("queued bytes (responses built, not ACKed) with %d proxies not reading: up to %.1f MiB sampled after the updates, cap %d MiB\n",
			cfg.stuck, queuedPeak/(1<<20), xds.DefaultMaxQueuedBytes>>20)
	}
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

// fetch sends a GET; the caller closes the body.
func fetch(ctx context.Context, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	return resp, nil
}

// fetchToFile saves the body of a GET.
func fetchToFile(ctx context.Context, url, path string) error {
	resp, err := fetch(ctx, url)
	if err != nil {
		return err
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
	resp, err := fetch(ctx, url)
	if err != nil {
		return v, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&v); err != nil {
		return v, fmt.Errorf("GET %s: %w", url, err)
	}
	return v, nil
}

// getText returns the body of a GET (at most 16 MiB).
func getText(ctx context.Context, url string) (string, error) {
	resp, err := fetch(ctx, url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return "", fmt.Errorf("GET %s: %w", url, err)
	}
	return string(b), nil
}

// simNamespaces is the number of namespaces the simulated proxies are spread over (proxy n is in
// ns-<n mod simNamespaces>), as the mesh model's services are.
const simNamespaces = 20

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
	// demanded are the on-demand names the proxy subscribes (-ondemand); answers counts those
	// answered with a virtual host. The proxy is ready once all are.
	demanded []string
	answers  atomic.Int64

	// syncs counts the streams on which every subscribed type got a response, syncedAt is when
	// the latest did (unix nanos): a reconnected proxy has resynced when syncs moves.
	syncs    atomic.Int64
	syncedAt atomic.Int64
	// held is what a Delta proxy holds per type (name → version), for the initial resource
	// versions of its next stream; nil unless it reconnects (-restart). Strings are interned:
	// the proxies hold mostly the same names and versions.
	held map[string]map[string]string

	mu      sync.Mutex
	names   map[string]map[string]bool // resources held per type; tracked for proxy 0 only
	got     map[string]int             // responses per type
	bytes   map[string]int64           // response bytes received per type
	lastAck map[string]int64           // unix nanos of the last ACK sent, per type
}

func newSimProxy(n int, vhds, track bool) *simProxy {
	ip := fmt.Sprintf("127.%d.%d.%d", 1+n/62500, n/250%250, n%250+1)
	ns := fmt.Sprintf("ns-%d", n%simNamespaces)
	var names map[string]map[string]bool
	if n == 0 {
		names = map[string]map[string]bool{}
	}
	var features []string
	if vhds {
		features = []string{node.FeatureVHDS}
	}
	var held map[string]map[string]string
	if track {
		held = map[string]map[string]string{}
	}
	return &simProxy{
		held:  held,
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

// run keeps the proxy's stream up until ctx ends. Without reconnect a stream error fails the
// proxy; with it the proxy reconnects on strait-proxy's schedule (full jitter, the server's
// retry delay honoured).
func (p *simProxy) run(ctx context.Context, addr string, reconnect bool) {
	backoff := xdsclient.Backoff{Base: 200 * time.Millisecond, Max: 15 * time.Second}
	for {
		got, err := p.stream(ctx, addr)
		if ctx.Err() != nil {
			return
		}
		if !reconnect {
			if err != nil {
				p.failed <- err
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff.Next(err, got)):
		}
	}
}

// stream runs one ADS stream until it fails; got reports whether it received a response.
func (p *simProxy) stream(ctx context.Context, addr string) (got bool, err error) {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return false, fmt.Errorf("dialing: %w", err)
	}
	defer cc.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := openStream(ctx, discovery.NewAggregatedDiscoveryServiceClient(cc), p.sotw)
	if err != nil {
		return false, fmt.Errorf("opening stream: %w", err)
	}
	for i, t := range p.types {
		var n *corev3.Node
		if i == 0 {
			n = p.node
		}
		var demanded []string
		if t == resource.VirtualHostType {
			demanded = p.demanded
		}
		if err := st.subscribe(t, n, p.initial(t), demanded); err != nil {
			return false, fmt.Errorf("subscribing: %w", err)
		}
	}
	answered := map[string]bool{} // types with a response on this stream
	for {
		select {
		case <-p.stop: // stuck: hold the stream open without reading it
			<-ctx.Done()
			return got, nil
		default:
		}
		resp, err := st.recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return got, nil
			}
			return got, fmt.Errorf("receiving: %w", err)
		}
		got = true
		p.answers.Add(int64(resp.aliases))
		if err := st.send(resp.typ, nil, resp.version, resp.nonce); err != nil {
			return got, fmt.Errorf("acking: %w", err)
		}
		var names []string
		if p.names != nil || p.held != nil { // proxy 0 reports what it holds; -restart tracks it
			if names, err = resp.names(); err != nil {
				return got, err
			}
		}
		p.record(resp.typ, p.sotw, names, resp.removed, resp.size)
		p.hold(resp.typ, names, resp.versions, resp.removed)
		if !answered[resp.typ] {
			if answered[resp.typ] = true; len(answered) == len(p.types) {
				p.syncedAt.Store(time.Now().UnixNano())
				p.syncs.Add(1)
			}
		}
	}
}

// demandServices makes the proxy demand the HTTP port (route configuration "80") of n of the
// services, by their full names, spread over the mesh by the proxy's number.
func (p *simProxy) demandServices(n, services int) {
	if n == 0 {
		return
	}
	p.node.ClientFeatures = append(p.node.ClientFeatures, node.FeatureOnDemand)
	p.node.Metadata.Fields[node.MetaOnDemand] = structpb.NewStringValue("true")
	seen := map[int]bool{}
	for k := 0; len(p.demanded) < n; k++ {
		i := (p.n*37 + k*101) % services
		for seen[i] { // n ≤ services: an unseen one exists
			i = (i + 1) % services
		}
		seen[i] = true
		p.demanded = append(p.demanded, fmt.Sprintf("80/svc-%d.ns-%d.svc.cluster.local", i, i%20))
	}
}

// initial returns the versions the proxy holds of typeURL (Delta initial_resource_versions).
func (p *simProxy) initial(typeURL string) map[string]string {
	if p.held == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.held[typeURL])
}

// hold records a Delta response in what the proxy holds (-restart only).
func (p *simProxy) hold(typeURL string, names, versions, removed []string) {
	if p.held == nil || len(versions) != len(names) {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	set := p.held[typeURL]
	if set == nil {
		set = map[string]string{}
		p.held[typeURL] = set
	}
	for i, n := range names {
		set[unique.Make(n).Value()] = unique.Make(versions[i]).Value()
	}
	for _, n := range removed {
		delete(set, n)
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
	all := len(p.got) == len(p.types) && p.answers.Load() >= int64(len(p.demanded))
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
