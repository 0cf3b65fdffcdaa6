package proxy

import (
	"errors"
	"log/slog"
	"time"

	"github.com/strait-mesh/strait/proxy/xdsclient"
)

// Options configures a Proxy. The zero value of each optional field selects the default noted.
type Options struct {
	// XDSAddress is the control plane's ADS address (host:port). Required.
	XDSAddress string
	// XDSTLS, when set, connects to the control plane over TLS (mutual with a client
	// certificate); nil is plaintext.
	XDSTLS *XDSTLS
	// Node identifies the workload to the control plane.
	Node xdsclient.NodeInfo
	// AdminAddress is the admin interface address (default 127.0.0.1:15000; "-" disables it).
	AdminAddress string
	// DrainDuration bounds how long open connections may finish after SIGTERM,
	// /quitquitquit, or a listener's removal (default 5s, as Istio's terminationDrainDuration).
	DrainDuration time.Duration
	// ForceSotW skips the Delta ADS attempt.
	ForceSotW bool
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
	return nil
}
