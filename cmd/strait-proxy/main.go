// Command strait-proxy is Strait's data plane: it connects to the control plane over ADS and
// serves traffic with Envoy's semantics. See package proxy.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/strait-mesh/strait/internal/appprobe"
	"github.com/strait-mesh/strait/internal/node"
	"github.com/strait-mesh/strait/internal/version"
	"github.com/strait-mesh/strait/internal/vocab"
	"github.com/strait-mesh/strait/proxy"
	"github.com/strait-mesh/strait/proxy/overload"
	"github.com/strait-mesh/strait/proxy/xdsclient"
)

// env returns the first set environment variable of names, or def.
func env(def string, names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return def
}

// metaFromEnv returns node metadata from ISTIO_META_* and STRAIT_META_* variables, as Istio's
// agent does (ISTIO_META_CLUSTER_ID=x becomes metadata CLUSTER_ID: x).
func metaFromEnv(environ []string) map[string]string {
	out := map[string]string{}
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		for _, prefix := range []string{"ISTIO_META_", "STRAIT_META_"} {
			if name, ok := strings.CutPrefix(k, prefix); ok && name != "" {
				out[name] = v
			}
		}
	}
	return out
}

func main() {
	var o proxy.Options
	var mode, labels, ips, logLevel, appProbers string
	var thresholds string
	var xdsTLS proxy.XDSTLS
	var xdsPlaintext bool
	var gc gcSettings
	var ag agentFlags
	cmd := &cobra.Command{
		Use:           "strait-proxy",
		Version:       version.Get().String(),
		Short:         "Strait data plane: Envoy xDS in, traffic out",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := gc.apply(cmd.Flags().Changed("gogc"), cmd.Flags().Changed("memory-limit")); err != nil {
				return err
			}
			o.MemoryLimit = gc.applyMemoryLimits(cmd.Flags().Changed("memory-limit"))
			th, err := overload.ParseThresholds(thresholds)
			if err != nil {
				return fmt.Errorf("--overload-thresholds: %w", err)
			}
			o.OverloadThresholds = th
			level := new(slog.LevelVar)
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			o.LogLevel = level
			o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			o.Node.Type = node.Type(mode)
			l, err := xdsclient.ParseLabels(labels)
			if err != nil {
				return fmt.Errorf("--labels: %w", err)
			}
			o.Node.Labels = l
			if o.AppProbers, err = appprobe.Parse(appProbers); err != nil {
				return fmt.Errorf("--app-probers: %w", err)
			}
			if ips != "" {
				o.Node.IPs = strings.Split(ips, ",")
			}
			o.Node.Extra = metaFromEnv(os.Environ())
			// A workload that asks for on-demand configuration (STRAIT_META_ON_DEMAND=true or
			// ISTIO_META_ON_DEMAND=true) must be able to demand: that turns --on-demand on
			// unless it is given.
			if !cmd.Flags().Changed("on-demand") {
				o.OnDemand = strings.EqualFold(o.Node.Extra[node.MetaOnDemand], "true")
			}
			o.Node.Version = version.Get().String() // ISTIO_VERSION and the node's user agent version
			// The default DNS address is best effort (another sidecar on the same host may hold
			// it); one given explicitly must bind.
			o.DNSBestEffort = !cmd.Flags().Changed("dns-address")
			if xdsTLS.RootCA != "" {
				o.XDSTLS = &xdsTLS
			}
			if o.Agent, err = ag.options(o.Node.Namespace, o.Node.ServiceAccount); err != nil {
				return err
			}
			// With an identity, xDS goes to straitd's mesh port over mutual TLS as that identity
			// (Istio's 15012), by default at the CA's address; plaintext is for development.
			switch {
			case o.Agent != nil && o.XDSTLS == nil && !xdsPlaintext:
				o.XDSAgentTLS = true
				if o.XDSAddress == "" {
					o.XDSAddress = o.Agent.CAAddress
				}
			case o.XDSAddress == "":
				o.XDSAddress = "127.0.0.1:15010"
			}
			if o.Agent != nil {
				// A proxy with a mesh identity terminates mesh mTLS: say so as Istio's injector
				// does, so that auto-registered endpoints get automatic mTLS and straitd gives
				// the inbound side mTLS chains. An explicit value from --labels stands.
				if o.Node.Labels == nil {
					o.Node.Labels = map[string]string{}
				}
				if _, set := o.Node.Labels[vocab.LabelTLSMode]; !set {
					o.Node.Labels[vocab.LabelTLSMode] = vocab.TLSModeIstio
				}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return proxy.Run(ctx, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.XDSAddress, "xds-address", env("", "XDS_ADDRESS", "PILOT_ADDRESS"), "control plane ADS address (default: with --ca-address, that address over mutual TLS as the workload's identity; else 127.0.0.1:15010 in plaintext)")
	f.BoolVar(&o.KeepTextPages, "keep-text-pages", false, "do not release the executable's read-only pages and the Go heap's free pages once configuration has settled (by default they are released 5 s after the first configuration and after updates, at most once a minute; a page used again maps back from the page cache)")
	f.BoolVar(&xdsPlaintext, "xds-plaintext", false, "with --ca-address, still speak plaintext xDS (to straitd's development port, --xds-listen): unauthenticated, no auto-registration")
	f.StringVar(&mode, "mode", env("sidecar", "PROXY_MODE"), "proxy type: sidecar or router")
	f.StringVar(&o.Node.Name, "workload-name", env("", "POD_NAME", "WORKLOAD_NAME"), "pod or workload name")
	f.StringVar(&o.Node.Namespace, "namespace", env("default", "POD_NAMESPACE"), "workload namespace")
	f.StringVar(&o.Node.IP, "ip", env("127.0.0.1", "INSTANCE_IP"), "workload IP")
	f.StringVar(&ips, "ips", env("", "INSTANCE_IPS"), "all workload IPs, comma-separated")
	f.StringVar(&labels, "labels", env("", "WORKLOAD_LABELS"), "workload labels, k=v comma-separated")
	f.StringVar(&o.Node.ServiceAccount, "service-account", env("default", "SERVICE_ACCOUNT"), "workload service account")
	f.StringVar(&o.Node.WorkloadGroup, "workload-group", env("", "WORKLOAD_GROUP"), "WorkloadGroup to auto-register into")
	f.StringVar(&o.Node.Cluster, "service-cluster", env("", "SERVICE_CLUSTER"), "xDS node cluster (default name.namespace)")
	f.StringVar(&o.Node.ClusterID, "cluster-id", env("", "CLUSTER_ID"), "cluster ID metadata")
	f.StringVar(&o.Node.Network, "network", env("", "NETWORK"), "network metadata")
	f.StringVar(&o.Node.InterceptMode, "interception-mode", env("REDIRECT", "INTERCEPTION_MODE"), "REDIRECT or NONE (explicit mode)")
	f.StringVar(&xdsTLS.RootCA, "xds-root-ca", env("", "XDS_ROOT_CA"), "PEM CA file: connect to the control plane over TLS")
	f.StringVar(&xdsTLS.CertChain, "xds-cert", env("", "XDS_CERT"), "PEM client certificate for mutual TLS to the control plane")
	f.StringVar(&xdsTLS.Key, "xds-key", env("", "XDS_KEY"), "PEM private key of --xds-cert")
	f.StringVar(&xdsTLS.ServerName, "xds-server-name", env("", "XDS_SERVER_NAME"), "name verified in the control plane's certificate (default: the address host)")
	f.StringVar(&o.StatusAddress, "status-address", "-", "TCP address of Istio's status port (15020): merged /stats/prometheus and /healthz/ready; - disables it")
	f.StringVar(&o.HealthAddress, "health-address", "-", "TCP address of Istio's health port (15021): /healthz/ready; - disables it")
	f.StringVar(&o.PrometheusAddress, "prometheus-address", "-", "TCP address of Istio's Prometheus port (15090): the proxy's /stats/prometheus; - disables it")
	f.StringVar(&o.AppMetricsURL, "app-metrics-url", "", "the application's Prometheus endpoint (Istio's prometheus.io/port and /path annotations), merged into --status-address's /stats/prometheus")
	f.StringVar(&appProbers, "app-probers", env("", "ISTIO_KUBE_APP_PROBERS"), "the application's probes rewritten to --status-address's /app-health/ paths (Istio's ISTIO_KUBE_APP_PROBERS JSON, written by the injector)")
	f.StringVar(&o.AdminAddress, "admin-address", "127.0.0.1:15000", "TCP address of the read-only admin endpoints (/stats, /ready, /config_dump, ...); - disables the admin interface unless --admin-socket is given")
	f.StringVar(&o.AdminSocket, "admin-socket", env("", "STRAIT_ADMIN_SOCKET"), "Unix socket (mode 0600, the proxy's user and root only) serving every admin endpoint, including /quitquitquit, /drain_listeners, /logging and /debug/pprof/; - disables it "+
		"(default: NAMESPACE.WORKLOAD@HOST_PORT.sock of --admin-address in $XDG_RUNTIME_DIR/strait, else /var/run/strait for root, else $TMPDIR/strait-UID)")
	f.DurationVar(&o.DrainDuration, "drain-duration", 5e9, "how long open connections may finish on shutdown or listener removal")
	f.BoolVar(&o.ForceSotW, "sotw", false, "use state-of-the-world ADS only")
	f.BoolVar(&o.OnDemand, "on-demand", false, "demand virtual hosts and clusters from the control plane the first time a request or connection needs them, holding it meanwhile (up to 5s), and announce it (io.strait.on-demand), so that the control plane may send only those (straitd --on-demand, or metadata ON_DEMAND); default: true when STRAIT_META_ON_DEMAND or ISTIO_META_ON_DEMAND is true")
	f.StringVar(&o.DNSAddress, "dns-address", env("127.0.0.1:15053", "DNS_ADDRESS"), "sidecar DNS proxy address, UDP and TCP (mesh names from the control plane, the rest forwarded); empty disables it")
	f.StringVar(&o.ResolvConf, "resolv-conf", "/etc/resolv.conf", "resolv.conf naming the DNS proxy's upstream resolvers and search suffixes")
	f.DurationVar(&o.DNSUpstreamTimeout, "dns-upstream-timeout", 2e9, "timeout of a query forwarded to one upstream resolver")
	f.IntVar(&gc.gogc, "gogc", defaultGOGC, "GC target percentage (default: GOGC, else 100; see docs/performance.md)")
	f.StringVar(&gc.memoryLimit, "memory-limit", "", "soft memory limit for the Go runtime, e.g. 64MiB or off (default: GOMEMLIMIT, else none), and the overload manager's memory limit (the cgroup's, if lower or if none is set; then the Go soft limit is 90% of the cgroup's)")
	f.IntVar(&o.MaxConnections, "max-connections", 0, "global downstream connection limit over all listeners (Envoy's overload.global_downstream_max_connections): connections beyond it are closed at once; 0 picks 50000, or half the file-descriptor limit if lower; -1 unlimited")
	f.IntVar(&o.MaxConnectionsPerListener, "max-connections-per-listener", 0, "each listener's own connection limit; 0 unlimited")
	f.StringVar(&thresholds, "overload-thresholds", "", "memory pressures (fraction of the memory limit) at which overload actions turn on, e.g. stop_accepting_requests=0.85,shrink_heap=off (default "+overload.DefaultThresholds().String()+")")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	ag.register(f)
	cmd.AddCommand(iptablesCmd(), waitCmd())
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "strait-proxy:", err)
		os.Exit(1)
	}
}
