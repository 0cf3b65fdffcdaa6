package proxy

import (
	"errors"
	"log/slog"
	"time"

	"github.com/strait-mesh/strait/internal/appprobe"
	"github.com/strait-mesh/strait/proxy/agent"
	"github.com/strait-mesh/strait/proxy/overload"
	"github.com/strait-mesh/strait/proxy/xdsclient"
)

// Options configures a Proxy. The zero value of each optional field selects the default noted.
type Options struct {
	// XDSAddress is the control plane's ADS address (host:port). Required.
	XDSAddress string
	// XDSTLS, when set, connects to the control plane over TLS (mutual with a client
	// certificate); nil is plaintext.
	XDSTLS *XDSTLS
	// XDSAgentTLS connects to the control plane over mutual TLS with the identity agent's
	// workload certificate and trust bundle (needs Agent; excludes XDSTLS): xDS on straitd's mesh
	// port, which binds the stream to the certificate's identity.
	XDSAgentTLS bool
	// Node identifies the workload to the control plane.
	Node xdsclient.NodeInfo
	// AdminAddress is the TCP address of the admin interface's read-only endpoints (default
	// 127.0.0.1:15000). "-" disables it, and with it the default AdminSocket.
	AdminAddress string
	// AdminSocket is the path of the admin socket: a Unix socket (mode 0600) that serves every
	// admin endpoint, including /quitquitquit, /drain_listeners, /logging and /debug/pprof/, to
	// the proxy's user and root only (see package admin). Default, unless AdminAddress is "-":
	// admin.DefaultSocketPath(Node.Namespace, Node.Name, AdminAddress), and a default path that
	// cannot be bound is only a warning; "-" disables the socket.
	AdminSocket string
	// StatusAddress serves Istio's 15020 (merged /stats/prometheus with AppMetricsURL's metrics,
	// /healthz/ready); PrometheusAddress Istio's 15090 (/stats/prometheus). "" or "-": off.
	StatusAddress, PrometheusAddress string
	// HealthAddress serves Istio's 15021 (/healthz/ready). "" or "-": off.
	HealthAddress string
	// AppMetricsURL is the application's Prometheus endpoint merged into StatusAddress's.
	AppMetricsURL string
	// AppProbers are the application's probes served on StatusAddress's /app-health/ paths.
	AppProbers appprobe.Probers
	// DrainDuration bounds how long open connections may finish after SIGTERM,
	// /quitquitquit, or a listener's removal (default 5s, as Istio's terminationDrainDuration).
	DrainDuration time.Duration
	// ForceSotW skips the Delta ADS attempt.
	ForceSotW bool
	// OnDemand turns on on-demand configuration (Envoy's on-demand VHDS and CDS): the proxy
	// announces node.FeatureOnDemand, and its HTTP router and TCP proxy demand the virtual host
	// or cluster a request or connection needs when they do not hold it, holding it meanwhile
	// (at most l7.DefaultDemandTimeout). Whether the control plane then sends only what was
	// demanded is its choice (straitd --on-demand, or node metadata ON_DEMAND). Default off.
	OnDemand bool
	// Logger receives the proxy's logs (default slog.Default()).
	Logger *slog.Logger
	// LogLevel is the level the admin /logging endpoint changes; it should be the level of
	// Logger's handler (default: a new LevelVar, which then only records the setting).
	LogLevel *slog.LevelVar
	// BackoffBase and BackoffMax bound the xDS reconnect delay (defaults 200ms and 15s).
	BackoffBase, BackoffMax time.Duration
	// DNSAddress, for sidecars, is where the DNS proxy listens (UDP and TCP, Istio's
	// 127.0.0.1:15053); empty disables it. With it the proxy asks for its name table (node
	// metadata DNS_CAPTURE=true) and answers mesh names from it.
	DNSAddress string
	// DNSBestEffort makes a failure to bind DNSAddress a logged warning instead of an error
	// (for a default address another process may hold).
	DNSBestEffort bool
	// ResolvConf is the file naming the upstream resolvers and search suffixes of the DNS
	// proxy (default /etc/resolv.conf), read at start.
	ResolvConf string
	// DNSUpstreamTimeout bounds each forwarded query per upstream resolver (default 2s).
	DNSUpstreamTimeout time.Duration
	// MaxConnections is the global downstream connection limit over all listeners (Envoy's
	// overload.global_downstream_max_connections): 0 selects overload.DefaultMaxConnections(),
	// negative is unlimited. Connections beyond it are closed at accept.
	MaxConnections int
	// MaxConnectionsPerListener is each listener's own connection limit (Envoy's runtime key
	// envoy.resource_limits.listener.<name>.connection_limit; default 0: unlimited).
	MaxConnectionsPerListener int
	// MemoryLimit is the overload manager's memory limit in bytes (0: no memory monitor, and no
	// memory-based overload action); see package overload.
	MemoryLimit int64
	// KeepTextPages turns off the release of the executable's read-only pages and the Go
	// heap's free pages once start-up and configuration have settled (package memtrim); by
	// default they are released 5 s after start-up, after the first configuration and after
	// updates, at most once a minute.
	KeepTextPages bool
	// OverloadThresholds are the memory pressures at which the overload actions turn on (zero
	// entries: overload.DefaultThresholds()).
	OverloadThresholds overload.Thresholds
	// Agent, when set, runs the workload-identity agent (package agent) in the proxy: it obtains
	// and renews the workload certificate from straitd's CA and serves the SDS secrets "default"
	// and "ROOTCA", which are then no longer requested over xDS. Its Logger defaults to Logger.
	// nil: no agent, every secret comes from the control plane.
	Agent *agent.Options
	// CertWait bounds how long Run waits for the agent's first certificate before it connects
	// to the control plane anyway (default DefaultCertWait; negative: no wait). The agent keeps
	// retrying after it; see Proxy.startAgent.
	CertWait time.Duration
}

func (o *Options) setDefaults() error {
	if o.XDSAddress == "" {
		return errors.New("no xds address")
	}
	if o.AdminAddress == "" {
		o.AdminAddress = "127.0.0.1:15000"
	}
	if o.DrainDuration <= 0 {
		o.DrainDuration = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.ResolvConf == "" {
		o.ResolvConf = "/etc/resolv.conf"
	}
	if o.LogLevel == nil {
		o.LogLevel = new(slog.LevelVar)
	}
	if o.CertWait == 0 {
		o.CertWait = DefaultCertWait
	}
	return nil
}
