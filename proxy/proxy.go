// Package proxy is strait-proxy's core: it connects the xDS client to the compilers of the data
// plane packages (one compile step for every type, xdsclient.CompileSet), publishes each compiled
// generation of configuration (a Runtime) through one atomic pointer, hands LDS updates to the
// listener manager (package lds: warming, hand-over, drain), serves the admin interface and
// drains on shutdown.
//
// The Proxy is the glue between packages: it implements the small Env interfaces that l7, l4,
// listener and tlsx declare by reading the current Runtime, so request handling never takes a
// lock of the core.
package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strait-mesh/strait/proxy/admin"
	"github.com/strait-mesh/strait/proxy/agent"
	"github.com/strait-mesh/strait/proxy/lds"
	"github.com/strait-mesh/strait/proxy/memtrim"
	"github.com/strait-mesh/strait/proxy/overload"
	"github.com/strait-mesh/strait/proxy/stats"
	"github.com/strait-mesh/strait/proxy/telemetry"
	"github.com/strait-mesh/strait/proxy/tlsx"
	"github.com/strait-mesh/strait/proxy/upstream"
	"github.com/strait-mesh/strait/proxy/xdsclient"
	clusterv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/cluster/v3"
	tlsv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/transport_sockets/tls/v3"
)

// Server states as reported by /ready and /server_info (Envoy's names).
const (
	StatePreInitializing = "PRE_INITIALIZING"
	StateLive            = "LIVE"
	StateDraining        = "DRAINING"
)

// Proxy is one strait-proxy instance. Create it with New; Run serves until the context ends.
type Proxy struct {
	opts   Options
	log    *slog.Logger
	stats  *stats.Store
	deps   upstream.Deps
	client *xdsclient.Client
	// overload is the overload manager: global connection limit and memory actions.
	overload *overload.Manager
	// agent is the workload-identity agent (nil without Options.Agent).
	agent *agent.Agent
	// telemetry records Istio's standard metrics (package telemetry).
	telemetry *telemetry.Recorder
	// trim releases memory once configuration has settled (package memtrim).
	trim *memtrim.Trimmer

	rt       atomic.Pointer[Runtime]
	applyMu  sync.Mutex                   // serializes Apply (the xDS goroutine) with shutdown
	refCache map[*xdsclient.Resource]refs // guarded by applyMu

	lds *lds.Manager // the listeners: warming, hand-over, drain

	gauges struct {
		connected, activeClusters *stats.Gauge
	}

	gotCDS, gotLDS atomic.Bool
	firstCDS       atomic.Pointer[time.Time]
	drainingAll    atomic.Bool
	quitOnce       sync.Once
	quit           chan struct{}
	done           chan struct{} // closed when Run returns; stops retire timers early
	retiring       sync.WaitGroup
}

// New builds a proxy from options. It does not bind or connect.
func New(opts Options) (*Proxy, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, fmt.Errorf("configuring proxy: %w", err)
	}
	if opts.Node.Name == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("configuring proxy: no workload name and no hostname: %w", err)
		}
		opts.Node.Name = h
	}
	info := opts.withExtensionConfigs(withAddresses(opts.Node, &opts))
	n, err := info.Node()
	if err != nil {
		return nil, fmt.Errorf("configuring proxy: %w", err)
	}
	p := &Proxy{
		opts:     opts,
		log:      opts.Logger,
		stats:    stats.NewStore(),
		refCache: map[*xdsclient.Resource]refs{},
		quit:     make(chan struct{}),
		done:     make(chan struct{}),
		trim:     memtrim.New(5*time.Second, time.Minute),
	}
	p.rt.Store(emptyRuntime())
	p.gauges.connected = p.stats.Gauge("control_plane.connected_state", "envoy_control_plane_connected_state")
	p.gauges.activeClusters = p.stats.Gauge("cluster_manager.active_clusters", "envoy_cluster_manager_active_clusters")
	if err := p.newAgent(); err != nil {
		return nil, fmt.Errorf("configuring proxy: %w", err)
	}
	p.telemetry = p.newTelemetry()
	p.lds = p.newListeners()
	p.overload = overload.New(overload.Config{
		MemoryLimit:    opts.MemoryLimit,
		MaxConnections: opts.MaxConnections,
		Thresholds:     opts.OverloadThresholds,
		Stats:          p.stats,
		Logger:         p.log,
	})
	p.deps = upstream.Deps{
		Stats: p.stats,
		ClientTLS: func(c *tlsv3.UpstreamTlsContext) (*tls.Config, error) {
			return tlsx.Client(c, p)
		},
		Logger: p.log,
	}
	xdsTLS, err := opts.XDSTLS.config()
	if err != nil {
		return nil, fmt.Errorf("configuring proxy: %w", err)
	}
	if opts.XDSAgentTLS {
		if p.agent == nil || opts.XDSTLS != nil {
			return nil, errors.New("configuring proxy: xDS over the agent's mutual TLS needs the agent and no other xDS TLS settings")
		}
		serverName := opts.Agent.CAServerName
		if serverName == "" {
			serverName = agent.DefaultCAServerName
		}
		xdsTLS = agentTLS(p.agent, serverName)
	}
	p.client, err = xdsclient.New(xdsclient.Options{
		Address:     opts.XDSAddress,
		TLS:         xdsTLS,
		Node:        n,
		Handler:     p,
		Logger:      p.log,
		ForceSotW:   opts.ForceSotW,
		OnDemand:    opts.OnDemand,
		BackoffBase: opts.BackoffBase,
		BackoffMax:  opts.BackoffMax,
		OnConnection: func(up bool) {
			if up {
				p.gauges.connected.Set(1)
			} else {
				p.gauges.connected.Set(0)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("configuring proxy: %w", err)
	}
	p.client.SetNames(xdsclient.ExtensionConfigType, opts.extensionConfigNames())
	return p, nil
}

// Run builds a proxy from opts and serves until ctx ends, then drains (see Proxy.Run).
func Run(ctx context.Context, opts Options) error {
	p, err := New(opts)
	if err != nil {
		return err
	}
	return p.Run(ctx)
}

// Stats returns the proxy's metrics store.
func (p *Proxy) Stats() *stats.Store { return p.stats }

// XDS returns the proxy's xDS client (for its connection state and counters).
func (p *Proxy) XDS() *xdsclient.Client { return p.client }

// Run starts the admin interface and the xDS client and serves until ctx ends or /quitquitquit
// is called. Then it drains: listeners stop accepting and open connections get up to
// Options.DrainDuration to finish, after which everything is closed and Run returns.
func (p *Proxy) Run(ctx context.Context) error {
	defer close(p.done)
	octx, stopOverload := context.WithCancel(context.Background())
	defer stopOverload()
	go p.overload.Run(octx)
	st, err := admin.ListenStatus(admin.StatusOptions{Address: p.opts.StatusAddress, PrometheusAddress: p.opts.PrometheusAddress,
		HealthAddress: p.opts.HealthAddress,
		AppMetricsURL: p.opts.AppMetricsURL, AppProbers: p.opts.AppProbers, PodIP: p.opts.Node.IP, Source: adminSource{p}, Stats: p.stats, Logger: p.log})
	if err != nil {
		return fmt.Errorf("starting the status listeners: %w", err)
	}
	defer st.Close()
	var adm *admin.Server
	socket, defaultSocket := p.opts.AdminSocket, false
	if socket == "" && p.opts.AdminAddress != "-" {
		socket, defaultSocket = admin.DefaultSocketPath(p.opts.Node.Namespace, p.opts.Node.Name, p.opts.AdminAddress), true
	}
	if p.opts.AdminAddress != "-" || (socket != "" && socket != "-") {
		var err error
		adm, err = admin.Listen(admin.Options{
			Address:          p.opts.AdminAddress,
			Socket:           socket,
			SocketBestEffort: defaultSocket,
			Source:           adminSource{p},
			Stats:            p.stats,
			Level:            p.opts.LogLevel,
			Logger:           p.log,
		})
		if err != nil {
			return fmt.Errorf("starting admin: %w", err)
		}
		go func() {
			if err := adm.Serve(); err != nil {
				p.log.Error("admin server failed", "error", err)
			}
		}()
		address := "-"
		if a := adm.Addr(); a != nil {
			address = a.String()
		}
		p.log.Info("admin listening", "address", address, "socket", adm.SocketPath())
	}
	if p.opts.dnsEnabled() {
		stopDNS, err := p.startDNS()
		if err != nil {
			if adm != nil {
				adm.Close()
			}
			return err
		}
		defer stopDNS()
	}
	if p.agent != nil {
		stopAgent := p.startAgent(ctx)
		defer stopAgent()
	}
	if !p.opts.KeepTextPages {
		tctx, stopTrim := context.WithCancel(context.Background())
		defer stopTrim()
		p.trim.Trimmed = func(err error) {
			if err != nil {
				p.log.Warn("releasing unused memory", "error", err)
			}
		}
		go p.trim.Run(tctx)
		p.trim.Kick() // start-up's pages, also while no control plane answers
	}
	xctx, stopXDS := context.WithCancel(context.Background())
	xdone := make(chan struct{})
	go func() {
		defer close(xdone)
		if err := p.client.Run(xctx); err != nil && !errors.Is(err, context.Canceled) {
			p.log.Error("xds client stopped", "error", err)
		}
	}()
	select {
	case <-ctx.Done():
		p.log.Info("shutdown requested; draining", "drain_duration", p.opts.DrainDuration)
	case <-p.quit:
		p.log.Info("quitquitquit; draining", "drain_duration", p.opts.DrainDuration)
	}
	p.drainingAll.Store(true)
	p.lds.DrainAll(false)
	p.lds.WaitDrained(p.opts.DrainDuration)
	stopXDS()
	<-xdone
	p.applyMu.Lock()
	p.lds.Close()
	for _, c := range p.rt.Load().Clusters {
		c.Close()
	}
	p.applyMu.Unlock()
	if adm != nil {
		adm.Close()
	}
	p.log.Info("proxy stopped")
	return nil
}

// Quit starts a graceful shutdown, as SIGTERM does.
func (p *Proxy) Quit() { p.quitOnce.Do(func() { close(p.quit) }) }

// publish makes rt the current runtime.
func (p *Proxy) publish(rt *Runtime) {
	p.rt.Store(rt)
}

// retire runs f after the drain period (or at shutdown), for objects in-flight requests may still
// hold.
func (p *Proxy) retire(f func()) {
	p.retiring.Add(1)
	go func() {
		defer p.retiring.Done()
		t := time.NewTimer(p.opts.DrainDuration)
		defer t.Stop()
		select {
		case <-t.C:
		case <-p.done:
		}
		f()
	}()
}

// markReceived records the first accepted CDS and LDS for readiness.
func (p *Proxy) markReceived(typeURL string) {
	switch typeURL {
	case xdsclient.ClusterType:
		if !p.gotCDS.Swap(true) {
			now := time.Now()
			p.firstCDS.Store(&now)
			p.log.Info("first clusters accepted")
		}
	case xdsclient.ListenerType:
		if !p.gotLDS.Swap(true) {
			p.log.Info("first listeners accepted")
		}
	}
}

// State returns the server state: PRE_INITIALIZING until the first CDS and LDS are accepted,
// LIVE, then DRAINING after shutdown began.
func (p *Proxy) State() string {
	switch {
	case p.drainingAll.Load() || p.lds.Drained():
		return StateDraining
	case p.gotCDS.Load() && p.gotLDS.Load() && p.lds.WarmingCount() == 0 && p.endpointsWarm():
		return StateLive
	}
	return StatePreInitializing
}

// endpointsWarm reports whether every EDS cluster has received its endpoints and every DNS
// cluster its first resolution, or the initial
// fetch timeout since the first clusters has passed (as Envoy's cluster warming).
func (p *Proxy) endpointsWarm() bool {
	if t := p.firstCDS.Load(); t != nil && time.Since(*t) > lds.WarmingTimeout {
		return true
	}
	rt := p.rt.Load()
	for _, r := range rt.Resources[xdsclient.ClusterType] {
		if c := r.Message.(*clusterv3.Cluster); isEDS(c) && rt.Resources[xdsclient.EndpointType][edsName(c)] == nil {
			return false
		}
	}
	for _, c := range rt.Clusters {
		select {
		case <-c.Ready(): // DNS clusters: first resolution done
		default:
			return false
		}
	}
	return true
}
