// Package xds is Strait's xDS server: Aggregated Discovery Service over gRPC, state-of-the-world and
// incremental (Delta), built on go-control-plane's pkg/server/v3 and its SnapshotCache.
//
// Every connecting proxy is parsed into a translate.Proxy and its resources are produced by the
// configured translate.Generator from the current mesh.Snapshot. Each resource passes Validate()
// before it is served; each type is versioned by a hash of its content, so an unchanged type is
// never re-sent. Snapshot updates are debounced, and a push round regenerates every connected proxy
// concurrently (bounded by GOMAXPROCS workers) but sends only to proxies whose output changed.
// Flow control (flow.go) keeps at most one response per stream and type unacknowledged, caps the
// bytes of responses built and not yet acknowledged, ends streams that do not ACK in time and
// bounds concurrent push work; new streams are admitted at a bounded rate (admission.go). ACKs and NACKs are tracked per proxy and type and served as JSON at
// /debug/syncz.
package xds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/strait-mesh/strait/controlplane/buildcache"
	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/translate"
)

// Defaults for Options.
const (
	DefaultDebounce     = 100 * time.Millisecond
	DefaultMaxDelay     = time.Second
	DefaultWriteTimeout = 5 * time.Second
)

// Options configure a Server. Only Generator is required.
type Options struct {
	// Generator produces each proxy's resources. It is called concurrently. The returned slices
	// and resources are treated as immutable and shared: a resource object (or a whole slice)
	// returned for many proxies is validated, hashed and held once, so generators should reuse
	// objects that do not depend on the proxy.
	Generator translate.Generator
	// Debounce is the quiet period after an Update before a push starts (default 100 ms; a
	// negative value disables debouncing). MaxDelay bounds the wait under a steady stream of
	// updates (default 1 s).
	Debounce time.Duration
	MaxDelay time.Duration
	// WriteTimeout is how long a send to one proxy may take before it is logged and counted in
	// pilot_xds_write_timeout (default 5 s).
	WriteTimeout time.Duration
	// Workers bounds concurrent generations (default GOMAXPROCS); Flow.PushThrottle bounds all
	// push work, generations and sends together.
	Workers int
	// Flow bounds push work and the memory of responses not yet acknowledged (flow.go).
	Flow FlowLimits
	// Registerer receives the server's metrics (and those of Caches); nil means they are not
	// registered anywhere.
	Registerer prometheus.Registerer
	// Caches owns the server's caches of marshaled resources; pass the generator's
	// (translate.Options.Caches) so that one owner holds every cache, with one generation and
	// one set of metrics (strait_build_cache_*). Nil: a new one of the server's own.
	Caches *buildcache.Owner
	// Logger is used for all logs (default slog.Default()).
	Logger *slog.Logger
	// ControlPlane names this control plane instance in /debug/syncz (e.g. the hostname).
	ControlPlane string
	// OnConnect is called when a proxy opens its first stream, OnDisconnect when its last stream
	// closes, in that order for any one node ID. Both are called synchronously from the stream's
	// goroutine with the server's connection lock held: they must return quickly and must not call
	// back into the Server (Update is fine). Either may be nil.
	OnConnect    func(p *translate.Proxy)
	OnDisconnect func(p *translate.Proxy)
	// OnDemand is the default for proxies that can take on-demand configuration
	// (node.FeatureOnDemand) and whose metadata does not choose (node.MetaOnDemand): true serves
	// them the virtual hosts, clusters and endpoints of the hosts they demand only (translate's
	// ondemand.go). Default off (straitd's --on-demand).
	OnDemand bool
	// TrustDomain, when set, is the only trust domain whose client certificates may open xDS
	// streams over TLS (the mesh port).
	TrustDomain string
}

// Server is the xDS server. Create it with New, attach it to a grpc.Server with Register, feed it
// snapshots with Update, mount Handler for /debug/syncz and stop it with Close. All methods are
// safe for concurrent use.
type Server struct {
	opts     Options
	log      *slog.Logger
	metrics  *metrics
	cache    *snapshotCache
	fc       *flowControl
	adm      *admission    // admits new streams at a bounded rate (admission.go)
	sem      chan struct{} // bounds concurrent generations
	push     chan struct{} // push slots: generations and sends (Flow.PushThrottle)
	pushPeak atomic.Int64  // most push slots in use at once, for tests

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	// Latest snapshot, and the one pending a debounced push with the time of the first Update in
	// the burst.
	updates     chan struct{}
	mu          sync.Mutex
	current     *mesh.Snapshot
	pending     *mesh.Snapshot
	pendingFrom time.Time
	rounds      atomic.Int64 // completed push rounds, for tests

	in *interner // shares validated, marshaled resources between proxies

	// Connected proxies by node ID (the cache key) and open streams by stream ID.
	connMu    sync.Mutex
	proxies   map[string]*proxyState
	streams   map[streamKey]*stream
	peers     map[streamKey]peerIdentity // what each open stream's transport proved
	flows     map[streamKey]*streamFlow  // flow-control state of every open RPC
	streamIDs atomic.Int64
	workers   sync.WaitGroup // the pump and the ACK reaper
}

// New builds a Server and starts its push loop. It fails only when the options are unusable
// (no Generator, metrics already registered).
func New(opts Options) (*Server, error) {
	if opts.Generator == nil {
		return nil, errors.New("xds: Options.Generator is required")
	}
	if opts.Debounce == 0 {
		opts.Debounce = DefaultDebounce
	}
	if opts.MaxDelay <= 0 {
		opts.MaxDelay = DefaultMaxDelay
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = DefaultWriteTimeout
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	opts.Flow = opts.Flow.withDefaults()
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	if opts.Caches == nil {
		opts.Caches = buildcache.New()
	}
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(opts.Caches); err != nil {
			return nil, fmt.Errorf("registering the build cache metrics: %w", err)
		}
	}
	s := &Server{
		opts:    opts,
		log:     opts.Logger.With("component", "xds"),
		metrics: m,
		sem:     make(chan struct{}, opts.Workers),
		push:    make(chan struct{}, opts.Flow.PushThrottle),
		fc:      newFlowControl(opts.Flow, m),
		adm:     newAdmission(opts.Flow, m),
		done:    make(chan struct{}),
		updates: make(chan struct{}, 1),
		proxies: make(map[string]*proxyState),
		streams: make(map[streamKey]*stream),
		peers:   make(map[streamKey]peerIdentity),
		flows:   make(map[streamKey]*streamFlow),
	}
	s.in = newInterner(opts.Caches)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.cache = newSnapshotCache(s.fc)
	s.workers.Add(2)
	go func() { defer s.workers.Done(); s.fc.pump(s.ctx) }()
	go func() { defer s.workers.Done(); s.reapUnacked() }()
	go s.loop()
	return s, nil
}

// Register adds the Aggregated Discovery Service (SotW and Delta) to g.
func (s *Server) Register(g *grpc.Server) {
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(g, &adsService{s: s})
}

// Handler serves /debug/syncz: the per-proxy sync status as JSON. Mount it on the monitoring mux,
// e.g. mux.Handle("/debug/syncz", srv.Handler()).
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(s.serveSyncz)
}

// Update hands the server a new mesh snapshot. The push to connected proxies starts after the
// debounce quiet period; proxies that connect in the meantime are generated from snap at once.
// Snapshots older than the current one (by Version) are ignored. Update never blocks on proxies.
func (s *Server) Update(snap *mesh.Snapshot) {
	if snap == nil {
		return
	}
	s.mu.Lock()
	if s.current != nil && snap.Version < s.current.Version {
		s.mu.Unlock()
		s.log.Warn("ignoring an older mesh snapshot", "version", snap.Version, "current", s.current.Version)
		return
	}
	s.current = snap
	s.metrics.snapshot(snap)
	if s.pending == nil {
		s.pendingFrom = time.Now()
	}
	s.pending = snap
	s.mu.Unlock()
	select {
	case s.updates <- struct{}{}:
	default:
	}
}

// Close stops the push loop and ends all streams served by this server. It does not stop the
// grpc.Server.
func (s *Server) Close() {
	s.cancel()
	<-s.done
	s.workers.Wait()
}

// loop debounces updates and runs push rounds until Close.
func (s *Server) loop() {
	defer close(s.done)
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.updates:
		}
		if s.opts.Debounce > 0 && !s.debounce() {
			return
		}
		s.mu.Lock()
		snap, from := s.pending, s.pendingFrom
		s.pending = nil
		s.mu.Unlock()
		if snap != nil {
			s.pushAll(snap, from)
		}
	}
}

// debounce waits until no update arrived for Debounce, or MaxDelay passed since the first. It
// returns false when the server is closing.
func (s *Server) debounce() bool {
	quiet := time.NewTimer(s.opts.Debounce)
	maxDelay := time.NewTimer(s.opts.MaxDelay)
	defer quiet.Stop()
	defer maxDelay.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return false
		case <-s.updates:
			quiet.Reset(s.opts.Debounce)
		case <-quiet.C:
			return true
		case <-maxDelay.C:
			return true
		}
	}
}

// pushAll regenerates every connected proxy from snap with bounded concurrency and sets a new cache
// snapshot only for proxies whose output changed.
func (s *Server) pushAll(snap *mesh.Snapshot, from time.Time) {
	start := time.Now()
	s.connMu.Lock()
	list := make([]*proxyState, 0, len(s.proxies))
	for _, p := range s.proxies {
		list = append(list, p)
	}
	s.connMu.Unlock()

	var wg sync.WaitGroup
	var changed atomic.Int64
	for _, p := range list {
		s.sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-s.sem; wg.Done() }()
			if s.pushProxy(s.ctx, p, snap, from) {
				changed.Add(1)
			}
		}()
	}
	wg.Wait()
	s.rounds.Add(1)
	s.log.Debug("push round done", "meshVersion", snap.Version, "proxies", len(list),
		"changed", changed.Load(), "took", time.Since(start))
}

// pushProxy generates p's resources from snap and hands them to the cache if they changed. It
// reports whether a new cache snapshot was set. A generation error keeps the previous resources.
// It holds a push slot, waiting for one unless ctx ends first.
func (s *Server) pushProxy(ctx context.Context, p *proxyState, snap *mesh.Snapshot, from time.Time) bool {
	release, err := s.acquirePush(ctx)
	if err != nil {
		return false
	}
	defer release()
	p.genMu.Lock()
	defer p.genMu.Unlock()
	if p.generated != nil && snap.Version < p.meshVersion {
		// A generation for new demands (ondemand.go) that read the snapshot before a push round
		// generated the proxy from a newer one: never go back to an older snapshot.
		s.mu.Lock()
		snap = s.current
		s.mu.Unlock()
	}
	if p.closed || (p.generated != nil && p.meshVersion >= snap.Version && p.genDemands == p.demands) {
		return false
	}
	genStart := time.Now()
	sameDemands := p.genDemands == p.demands
	p.genDemands = p.demands
	next, err := s.generate(snap, p.genProxy, p.generated, sameDemands)
	if err != nil {
		s.metrics.internalErrs.Inc()
		s.log.Error("generating xds resources; the proxy keeps its previous resources",
			"proxy", p.key, "meshVersion", snap.Version, "err", err)
		p.meshVersion = snap.Version
		return false
	}
	p.meshVersion = snap.Version
	prev := p.generated.typeVersions()
	changedTypes := changed(prev, next.typeVersions())
	if p.generated != nil && len(changedTypes) == 0 {
		if !maps.EqualFunc(p.generated.answers, next.answers, maps.Equal) {
			// Only the answers to on-demand names changed (a new name for a virtual host the
			// proxy holds): the VirtualHost response built next carries them.
			p.generated = next
			s.cache.SetSnapshot(p.key, next)
		}
		return false
	}
	p.generated = next
	// Convergence is tracked only for types the proxy subscribed to (was sent before): a type it
	// never asks for would never be ACKed.
	sent := s.sentTypes(p)
	for t := range changedTypes {
		if !sent[t] {
			delete(changedTypes, t)
		}
	}
	p.markPushed(changedTypes, from, genStart)
	s.cache.SetSnapshot(p.key, next)
	return true
}

// generate runs the generator for one proxy and validates and interns its output, with the
// answers to the proxy's demands (ondemand.go): those of prev when the demands and the sets they
// are resolved in are the same.
func (s *Server) generate(snap *mesh.Snapshot, p *translate.Proxy, prev *proxySnapshot, sameDemands bool) (*proxySnapshot, error) {
	res, err := s.opts.Generator.Generate(snap, p)
	if err != nil {
		return nil, fmt.Errorf("generator: %w", err)
	}
	ps, err := s.in.snapshot(res)
	if err != nil {
		return nil, err
	}
	if sameDemands && prev != nil && prev.set(resource.VirtualHostType) == ps.set(resource.VirtualHostType) &&
		prev.set(resource.ClusterType) == ps.set(resource.ClusterType) {
		ps.answers = prev.answers
	} else {
		ps.answers = resolveDemands(p, res)
	}
	return ps, nil
}

// sentTypes returns the types sent to the proxy's current stream.
func (s *Server) sentTypes(p *proxyState) map[string]bool {
	s.connMu.Lock()
	st := p.latest
	s.connMu.Unlock()
	out := map[string]bool{}
	if st == nil {
		return out
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	for t := range st.types {
		out[t] = true
	}
	return out
}

// changed lists the type URLs whose version differs between two version maps.
func changed(prev, next map[string]string) map[string]string {
	out := make(map[string]string)
	for t, v := range next {
		if prev[t] != v {
			out[t] = v
		}
	}
	for t := range prev {
		if _, ok := next[t]; !ok {
			out[t] = ""
		}
	}
	return out
}
