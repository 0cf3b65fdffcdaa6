// Package controlplane wires straitd's components together: config sources, the mesh snapshot
// builder, translation, the xDS server, auto-registration and the monitoring/API HTTP server. It
// holds no logic of its own beyond that wiring.
package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	meshconfig "istio.io/api/mesh/v1alpha1"

	"github.com/strait-mesh/strait/controlplane/buildcache"
	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/config/embedded"
	"github.com/strait-mesh/strait/controlplane/config/file"
	"github.com/strait-mesh/strait/controlplane/config/kube"
	"github.com/strait-mesh/strait/controlplane/config/validationmetrics"
	"github.com/strait-mesh/strait/controlplane/dashboard"
	"github.com/strait-mesh/strait/controlplane/describe"
	"github.com/strait-mesh/strait/controlplane/jwks"
	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/ratelimit"
	"github.com/strait-mesh/strait/controlplane/registry/autoregister"
	kuberegistry "github.com/strait-mesh/strait/controlplane/registry/kube"
	"github.com/strait-mesh/strait/controlplane/topology"
	"github.com/strait-mesh/strait/controlplane/translate"
	"github.com/strait-mesh/strait/controlplane/xds"
	"github.com/strait-mesh/strait/internal/version"
	"github.com/strait-mesh/strait/internal/workloadtable"
)

// Options configure straitd. The zero value of each field means its documented default.
type Options struct {
	ConfigDir      string // watched directory of Istio YAML; "" for none
	DataDir        string // embedded store directory; "" disables `strait apply`
	MeshConfigFile string // MeshConfig YAML; "" for Istio's defaults
	// XDSListen is the plaintext development xDS port (Istio's 15010); "" disables it. Its
	// streams are unauthenticated: they cannot auto-register workloads or take over an
	// authenticated proxy's node ID. Proxies with an identity use the mesh port.
	XDSListen  string
	HTTPListen string // default 127.0.0.1:15014
	// Debounce and MaxDelay tune push batching (defaults 100 ms and 1 s).
	Debounce, MaxDelay time.Duration
	// XDSFlow bounds push work and the memory of xDS responses not yet acknowledged (push
	// throttle, byte caps, ACK timeout; xds.FlowLimits documents the defaults).
	XDSFlow xds.FlowLimits
	// XDSOnDemand serves on-demand configuration to proxies that can demand hosts and whose
	// metadata does not choose (xds.Options.OnDemand; default off).
	XDSOnDemand bool
	// AutoRegisterGrace is how long an auto-registered WorkloadEntry outlives its proxy's
	// disconnection (default 10 s).
	AutoRegisterGrace time.Duration
	// JWKSAllowPrivate lets the control plane fetch RequestAuthentication jwksUri key sets from
	// loopback, link-local and unspecified addresses (refused by default).
	JWKSAllowPrivate bool
	// JWKSRefresh is how often fetched key sets are fetched again (default 20 minutes, Istio's).
	JWKSRefresh time.Duration
	// MeshListen is the TLS mesh port (Istio's 15012) serving the CA's CSR API; "" disables it
	// and the CA (straitd's --mesh-address flag defaults to 127.0.0.1:15012). Without a CA
	// directory (CADir, CACertsDir or DataDir) the mesh port stays off.
	MeshListen string
	// CADir holds the self-signed root (default <DataDir>/ca). CACertsDir selects plug-in
	// certificates in Istio's cacerts layout instead (an intermediate CA); set one, not both.
	CADir, CACertsDir string
	// WorkloadCertTTL is a workload certificate's default lifetime (default 24h) and
	// MaxWorkloadCertTTL the longest one signed (default 2160h).
	WorkloadCertTTL, MaxWorkloadCertTTL time.Duration
	// DashboardScrapeInterval is how often the dashboard scrapes the proxies' statistics while
	// someone looks at it (default topology.DefaultInterval).
	DashboardScrapeInterval time.Duration
	// RateLimitListen is the address of the in-memory rate limit service
	// (envoy.service.ratelimit.v3, plaintext gRPC) that proxies' global rate limit filters
	// call; "" disables it. RateLimitConfig is its configuration file, in the format of
	// Envoy's ratelimit service, reloaded when it changes (controlplane/ratelimit); the
	// RateLimit objects' Global rules add their own limits (domain "strait").
	RateLimitListen, RateLimitConfig string
	// RateLimitAddress is where proxies reach the rate limit service, for the RateLimits' Global
	// rules (host:port; a proxy in a network namespace needs an address it can route to); by
	// default the address RateLimitListen is bound to, unless that is unspecified (0.0.0.0).
	RateLimitAddress string
	// Kubeconfig, when set, adds the Kubernetes config source: Istio's custom resources (and
	// gateway credential Secrets) read through informers from the cluster this kubeconfig file
	// names. KubeInCluster does the same with the pod's own service account (straitd running
	// in the cluster); set one, not both. KubeNamespaces limits the source to these namespaces
	// (default: all). straitd serves its first snapshot only once the source has synced. It
	// writes a status condition on each object it refuses, unless KubeSkipStatus.
	Kubeconfig     string
	KubeInCluster  bool
	KubeNamespaces []string
	KubeSkipStatus bool
	// KubeDomain is the cluster DNS domain of the Kubernetes registry's host names
	// (NAME.NAMESPACE.svc.DOMAIN; default cluster.local). With a Kubernetes configuration the
	// registry serves the cluster's Services, EndpointSlices and Pods beside ServiceEntries.
	KubeDomain string
	// Webhooks are the admission webhooks (sidecar injection, config validation).
	Webhooks WebhookOptions
	// Leader configures the leader election of the singleton work with Kubernetes (Leases in
	// the Webhooks' namespace).
	Leader LeaderOptions
	Logger *slog.Logger
	// Ready, if set, is called once with the bound addresses when straitd serves.
	Ready func(xdsAddr, httpAddr string)
}

// Run starts straitd and blocks until ctx is done or a component fails.
func Run(ctx context.Context, o Options) error {
	if o.HTTPListen == "" {
		o.HTTPListen = "127.0.0.1:15014"
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	meshCfg, err := config.LoadMeshConfig(o.MeshConfigFile)
	if err != nil {
		return fmt.Errorf("loading mesh config: %w", err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	validation, err := validationmetrics.New(reg) // galley_validation_*
	if err != nil {
		return err
	}
	var sources []namedSource
	if o.ConfigDir != "" {
		fs, err := file.New(o.ConfigDir, file.Options{Logger: log, Validation: validation})
		if err != nil {
			return fmt.Errorf("config dir: %w", err)
		}
		reg.MustRegister(fs.Collector())
		sources = append(sources, namedSource{"file", fs})
	}
	var store *embedded.Store
	if o.DataDir != "" {
		if err := os.MkdirAll(o.DataDir, 0o755); err != nil {
			return fmt.Errorf("creating data dir: %w", err)
		}
		if store, err = embedded.Open(filepath.Join(o.DataDir, "config.db")); err != nil {
			return err
		}
		defer store.Close()
		store.SetValidationCounters(validation)
		sources = append(sources, namedSource{"store", store})
	}
	// Singleton work (status, webhook CA bundles, root-cert ConfigMaps) runs under a lease.
	el, err := newElectors(o, log, reg)
	if err != nil {
		return err
	}
	kubeSrc, err := newKubeSource(o, log, validation, el)
	if err != nil {
		return err
	}
	if kubeSrc != nil {
		sources = append(sources, namedSource{kube.Origin, kubeSrc})
	}
	kubeReg, err := newKubeRegistry(o, log)
	if err != nil {
		return err
	}
	if kubeReg != nil {
		sources = append(sources, namedSource{kuberegistry.Origin, kubeReg})
	}

	// The admin token authorises the admin API (apply, delete, bootstrap tokens); it lives beside
	// the store.
	var adminToken string
	if o.DataDir != "" {
		if adminToken, err = loadOrCreateAdminToken(o.DataDir, log); err != nil {
			return err
		}
	}

	b := &builder{mesh: meshCfg, sources: sources, log: log}
	b.problems = newProblems(log)
	var arState string // where the entries survive a restart
	if o.DataDir != "" {
		arState = filepath.Join(o.DataDir, "autoregister.json")
	}
	ar, err := autoregister.New(autoregister.Options{
		Grace:        o.AutoRegisterGrace,
		StateFile:    arState,
		Logger:       log,
		Lookup:       b.workloadGroup,
		ControlPlane: hostname(),
	})
	if err != nil {
		return fmt.Errorf("auto-registration: %w", err)
	}
	b.sources = append(b.sources, namedSource{"autoregister", ar})

	trustDomain := meshCfg.GetTrustDomain()
	if trustDomain == "" {
		trustDomain = "cluster.local"
	}
	// RequestAuthentication key sets: fetched in the background; their arrival rebuilds the
	// snapshot (changed is the builder's rebuild signal).
	changed := make(chan struct{}, 1)
	keySets := jwks.New(jwks.Options{AllowPrivate: o.JWKSAllowPrivate, Refresh: o.JWKSRefresh, Logger: log.With("component", "jwks"),
		OnUpdate: func() {
			select {
			case changed <- struct{}{}:
			default:
			}
		}})
	defer keySets.Close()
	rl, err := newRateLimitPort(o, log)
	if err != nil {
		return err
	}
	rlAddress := ""
	if rl != nil {
		defer rl.ln.Close()
		rlAddress = rl.address
	}
	// The workload table lists the authenticated connected proxies: their comings and goings
	// rebuild the snapshot, coalesced (connectedPeers).
	peers := newConnectedPeers(o.Debounce, log, func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	})
	defer peers.stop()
	caches := buildcache.New() // every cache of built output: the generator's and the xDS server's
	srv, err := xds.New(xds.Options{
		TrustDomain: trustDomain,
		Generator: b.problems.generator(translate.New(translate.Options{Report: b.problems.report, JWKS: keySets.Get,
			RateLimitService: rlAddress, Caches: caches})),
		Caches:       caches,
		Debounce:     o.Debounce,
		MaxDelay:     o.MaxDelay,
		Flow:         o.XDSFlow,
		OnDemand:     o.XDSOnDemand,
		Registerer:   reg,
		Logger:       log,
		ControlPlane: hostname(),
		OnConnect:    func(p *translate.Proxy) { ar.OnConnect(p); peers.changed(p) },
		OnDisconnect: func(p *translate.Proxy) { ar.OnDisconnect(p); b.problems.forget(p); peers.changed(p) },
	})
	if err != nil {
		return fmt.Errorf("starting xDS server: %w", err)
	}
	defer srv.Close()
	peers.list = srv.AuthenticatedProxies
	b.connected = peers.entries
	b.push = srv.Update
	if rl != nil {
		// The service learns the Global rules' limits before the proxies get their filters.
		b.push = func(snap *mesh.Snapshot) {
			if err := rl.svc.SetRateLimits(snap.Configs[config.RateLimit]); err != nil {
				log.Warn("rate limit service: RateLimit rules left out", "error", err)
			}
			srv.Update(snap)
		}
	}
	reg.MustRegister(b.collector())

	var xdsLn net.Listener
	if o.XDSListen != "" {
		if xdsLn, err = net.Listen("tcp", o.XDSListen); err != nil {
			return fmt.Errorf("xds listen: %w", err)
		}
		log.Warn("plaintext xDS port open: its proxies are unauthenticated (development only; proxies with an identity use the mesh port)",
			"address", xdsLn.Addr().String())
	}
	closeXDS := func() {
		if xdsLn != nil {
			xdsLn.Close()
		}
	}
	httpLn, err := net.Listen("tcp", o.HTTPListen)
	if err != nil {
		closeXDS()
		return fmt.Errorf("http listen: %w", err)
	}
	kcfg, err := kubeConfig(o)
	if err != nil {
		closeXDS()
		httpLn.Close()
		return err
	}
	mp, err := newMeshPort(o, meshCfg.GetTrustDomain(), kcfg, reg, log)
	if err != nil {
		closeXDS()
		httpLn.Close()
		return err
	}
	ws, err := newWebhookServer(o.Webhooks, mp, meshCfg, kcfg, log)
	if err != nil {
		closeXDS()
		httpLn.Close()
		return err
	}
	if mp != nil {
		srv.Register(mp.grpc) // xDS over mutual TLS, bound to the proxies' certificates
	} else if xdsLn == nil {
		log.Warn("no xDS port: neither the mesh port (needs a CA) nor --xds-listen is open")
	}

	g := grpc.NewServer(
		grpc.MaxRecvMsgSize(16<<20),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	)
	srv.Register(g)

	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("/debug/syncz", srv.Handler())
	mux.HandleFunc("/debug/configz", b.serveConfigz)
	mux.Handle(describe.Path, describe.Handler(describe.Options{Snapshot: b.current.Load, Proxies: srv.Status})) // strait describe
	scraper := topology.New(topology.Options{Targets: func() []topology.Target { return scrapeTargets(srv.Status()) },
		Interval: o.DashboardScrapeInterval, Logger: log.With("component", "dashboard")})
	mux.Handle(dashboard.Path, dashboard.Handler(dashboard.Options{Graph: scraper.Graph, Snapshot: b.current.Load, Proxies: srv.Status})) // strait dashboard
	mux.HandleFunc("/version", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(version.Get())
	})
	mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) {
		if b.version.Load() == 0 {
			http.Error(w, "no mesh snapshot yet", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	if store != nil {
		mux.Handle("/apis/v1/", store.Handler(adminToken)) // writes need the admin token
	}
	if mp != nil {
		if adminToken != "" {
			mux.Handle("POST "+embedded.BootstrapTokensPath,
				embedded.RequireAdmin(adminToken, embedded.BootstrapTokenHandler(mp.mint)))
		} else {
			log.Warn("bootstrap tokens cannot be minted: the admin API needs --data-dir for its admin token")
		}
	}
	mux.Handle(caRootsPattern, rootsHandler(mp, adminToken)) // root rotation (roots_api.go)
	// `strait get` lists what serves, from every source.
	mux.Handle("GET /apis/v1/objects", embedded.ListHandler(b.objects))
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	goRun := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, grpc.ErrServerStopped) {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	notify := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	for _, s := range b.sources {
		s := s
		goRun("config source "+s.name, func() error { return s.src.Run(ctx, notify) })
	}
	if kubeSrc == nil {
		b.rebuild()
	}
	goRun("dashboard scraper", func() error { return scraper.Run(ctx) })
	goRun("snapshot builder", func() error {
		if kubeSrc != nil {
			// No snapshot before the Kubernetes config is in: proxies wait rather than get a
			// mesh without it.
			if !waitKubeSynced(ctx, log, kubeSrc.Synced(), kubeReg.Synced()) {
				return nil
			}
			b.rebuild()
		}
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-changed:
				b.rebuild()
			}
		}
	})
	xdsAddr := ""
	if xdsLn != nil {
		xdsAddr = xdsLn.Addr().String()
		goRun("xds server", func() error { return g.Serve(xdsLn) })
	}
	goRun("http server", func() error { return hs.Serve(httpLn) })
	meshAddr := ""
	if mp != nil {
		goRun("mesh server", func() error { return mp.grpc.Serve(mp.ln) })
		meshAddr = mp.ln.Addr().String()
		log.Info("mesh CA serving", "address", meshAddr, "mode", mp.authority.Mode(),
			"trustDomain", mp.authority.TrustDomain(), "rootFingerprint", mp.rootFingerprint(),
			"roots", len(mp.authority.TrustBundle()))
		startRootCertWriter(el.revision, kcfg, mp, o.KubeNamespaces, log) // istio-ca-root-cert in every namespace
	}
	if rl != nil {
		goRun("rate limit service", func() error { return rl.grpc.Serve(rl.ln) })
		goRun("rate limit config", func() error { return rl.svc.Watch(ctx, 0) })
		log.Info("rate limit service serving", "address", rl.ln.Addr().String(), "config", o.RateLimitConfig,
			"proxiesReachItAt", rl.address)
	}
	if ws != nil {
		goRun("webhook server", func() error { return ws.srv.Serve(ws.ln) })
		log.Info("admission webhooks serving", "address", ws.ln.Addr().String(), "paths", "/inject /validate")
		if kcfg != nil && (o.Webhooks.InjectorConfig != "" || o.Webhooks.ValidatorConfig != "") {
			bundle := caBundle(mp)
			el.revision.Go("webhook CA bundles", func(ctx context.Context) { patchWebhookConfigs(ctx, o.Webhooks, kcfg, bundle, log) })
		}
	}
	goRun("leader election", func() error { el.run(ctx); return nil })
	log.Info("straitd serving", "xds", xdsAddr, "http", httpLn.Addr().String(), "mesh", meshAddr)
	if o.Ready != nil {
		o.Ready(xdsAddr, httpLn.Addr().String())
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	cancel()
	shutdown, done := context.WithTimeout(context.Background(), 5*time.Second)
	defer done()
	_ = hs.Shutdown(shutdown)
	if ws != nil {
		_ = ws.srv.Shutdown(shutdown)
	}
	stopped := make(chan struct{})
	go func() {
		if mp != nil {
			mp.grpc.GracefulStop()
		}
		g.GracefulStop()
		if rl != nil {
			rl.grpc.GracefulStop()
		}
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-shutdown.Done():
		if mp != nil {
			mp.grpc.Stop()
		}
		g.Stop()
		if rl != nil {
			rl.grpc.Stop()
		}
	}
	wg.Wait()
	return runErr
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "straitd"
	}
	return h
}

// builder turns the sources' objects into mesh snapshots and hands them to push.
type builder struct {
	mesh    *meshconfig.MeshConfig
	sources []namedSource
	log     *slog.Logger
	push    func(*mesh.Snapshot)
	// problems holds translation problems reported while generating for proxies.
	problems *problems
	// connected returns the workload table entries of the connected proxies, attached to each
	// snapshot; nil for none.
	connected func() []workloadtable.Workload

	mu      sync.Mutex // serialises rebuilds
	version atomic.Uint64
	current atomic.Pointer[mesh.Snapshot]
	errs    atomic.Pointer[[]error]
}

// rebuild merges all sources into a new snapshot and pushes it.
func (b *builder) rebuild() {
	b.mu.Lock()
	defer b.mu.Unlock()
	objs, errs := merge(b.sources)
	snap := mesh.New(b.version.Add(1), b.mesh, objs)
	if b.connected != nil {
		translate.AttachConnectedWorkloads(snap, b.connected())
	}
	errs = append(errs, snap.Errors...)
	for _, err := range errs {
		b.log.Warn("config rejected", "error", err)
	}
	b.errs.Store(&errs)
	b.current.Store(snap)
	b.log.Info("mesh snapshot built", "version", snap.Version, "objects", len(objs), "services", len(snap.Services), "errors", len(errs))
	if b.push != nil {
		b.push(snap)
	}
}

// objects returns the objects of the current snapshot.
func (b *builder) objects() []*config.Object {
	snap := b.current.Load()
	if snap == nil {
		return nil
	}
	var out []*config.Object
	for _, list := range snap.Configs {
		out = append(out, list...)
	}
	return out
}

// workloadGroup finds a WorkloadGroup in the current snapshot, for auto-registration.
func (b *builder) workloadGroup(namespace, name string) (*config.Object, bool) {
	snap := b.current.Load()
	if snap == nil {
		return nil, false
	}
	for _, o := range snap.Configs[config.WorkloadGroup] {
		if o.Namespace == namespace && o.Name == name {
			return o, true
		}
	}
	return nil, false
}

// connectedPeers turns the comings and goings of authenticated proxies (the xDS server's
// connection hooks) into snapshot rebuilds for the workload table, coalesced: the first change
// arms a timer of one debounce period, and when it fires the snapshot is rebuilt only if the
// connected proxies' table entries differ from the latest snapshot's. A burst of connections
// thus costs one rebuild, and a proxy reconnecting with the same metadata none.
type connectedPeers struct {
	delay  time.Duration
	log    *slog.Logger
	notify func() // asks for a rebuild; must not block
	// list returns the authenticated connected proxies; set before the first proxy connects.
	list func() []*translate.Proxy

	mu      sync.Mutex
	timer   *time.Timer              // armed while a change waits
	last    []workloadtable.Workload // the entries of the latest snapshot
	stopped bool
}

func newConnectedPeers(delay time.Duration, log *slog.Logger, notify func()) *connectedPeers {
	if delay <= 0 {
		delay = xds.DefaultDebounce
	}
	return &connectedPeers{delay: delay, log: log, notify: notify}
}

// changed is the connection hook: it arms the timer for an authenticated proxy. It returns at
// once (it runs under the xDS server's connection lock).
func (c *connectedPeers) changed(p *translate.Proxy) {
	if p == nil || p.Identity == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.timer == nil && !c.stopped {
		c.timer = time.AfterFunc(c.delay, c.fire)
	}
}

// fire asks for a rebuild when the entries changed since the latest snapshot. A change arriving
// while it runs arms the timer again.
func (c *connectedPeers) fire() {
	c.mu.Lock()
	c.timer = nil
	c.mu.Unlock()
	ws, errs := translate.ConnectedWorkloads(c.list())
	for _, err := range errs {
		c.log.Warn("workload table", "error", err)
	}
	c.mu.Lock()
	same := reflect.DeepEqual(ws, c.last)
	c.mu.Unlock()
	if !same {
		c.notify()
	}
}

// entries returns the connected proxies' table entries for a new snapshot and records them as
// the latest.
func (c *connectedPeers) entries() []workloadtable.Workload {
	if c.list == nil {
		return nil
	}
	ws, _ := translate.ConnectedWorkloads(c.list())
	c.mu.Lock()
	c.last = ws
	c.mu.Unlock()
	return ws
}

// stop disarms the timer.
func (c *connectedPeers) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopped = true
	if c.timer != nil {
		c.timer.Stop()
	}
}

// rateLimitPort is the in-memory rate limit service and its listener.
type rateLimitPort struct {
	svc  *ratelimit.Service
	grpc *grpc.Server
	ln   net.Listener
	// address is where proxies reach it (Options.RateLimitAddress); "" when unknown.
	address string
}

// newRateLimitPort builds the rate limit service of o.RateLimitListen, nil when it is off.
func newRateLimitPort(o Options, log *slog.Logger) (*rateLimitPort, error) {
	if o.RateLimitListen == "" {
		if o.RateLimitConfig != "" {
			return nil, errors.New("--ratelimit-config needs --ratelimit-listen")
		}
		if o.RateLimitAddress != "" {
			return nil, errors.New("--ratelimit-address needs --ratelimit-listen")
		}
		return nil, nil
	}
	svc, err := ratelimit.New(ratelimit.Options{ConfigFile: o.RateLimitConfig, Logger: log.With("component", "ratelimit")})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", o.RateLimitListen)
	if err != nil {
		return nil, fmt.Errorf("rate limit listen: %w", err)
	}
	address := o.RateLimitAddress
	if address == "" {
		if a, ok := ln.Addr().(*net.TCPAddr); ok && !a.IP.IsUnspecified() {
			address = a.String()
		} else {
			log.Warn("rate limit service: listening on an unspecified address, and no --ratelimit-address: RateLimit Global rules are not applied")
		}
	}
	g := grpc.NewServer(grpc.MaxRecvMsgSize(1<<20),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}))
	svc.Register(g)
	return &rateLimitPort{svc: svc, grpc: g, ln: ln, address: address}, nil
}
