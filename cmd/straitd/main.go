// Command straitd is Strait's control plane: it reads Istio configuration, builds the mesh and
// serves it to proxies as Envoy xDS.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/strait-mesh/strait/controlplane"
	"github.com/strait-mesh/strait/controlplane/jwks"
	"github.com/strait-mesh/strait/controlplane/leader"
	"github.com/strait-mesh/strait/controlplane/topology"
	"github.com/strait-mesh/strait/controlplane/xds"
	"github.com/strait-mesh/strait/internal/version"
)

func main() {
	var o controlplane.Options
	var logLevel string
	leaderElect := true
	var queuedMiB, streamQueuedMiB int64
	kubeStatus := true
	cmd := &cobra.Command{
		Use:           "straitd",
		Version:       version.Get().String(),
		Short:         "Strait control plane: Istio config in, Envoy xDS out",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
			if queuedMiB <= 0 || streamQueuedMiB <= 0 || o.XDSFlow.PushThrottle <= 0 {
				return fmt.Errorf("--xds-max-queued-mib, --xds-max-stream-queued-mib and --push-throttle must be positive")
			}
			if o.XDSFlow.StreamRate == 0 || o.XDSFlow.StreamBurst <= 0 {
				return fmt.Errorf("--xds-stream-rate must not be 0 (negative: unlimited) and --xds-stream-burst must be positive")
			}
			o.XDSFlow.MaxQueuedBytes, o.XDSFlow.MaxStreamQueuedBytes = queuedMiB<<20, streamQueuedMiB<<20
			o.KubeSkipStatus = !kubeStatus
			o.Leader.Disabled = !leaderElect
			if err := o.Leader.Timings.Validate(); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return controlplane.Run(ctx, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.ConfigDir, "config-dir", "", "directory of Istio YAML, watched for changes")
	f.StringVar(&o.DataDir, "data-dir", "", "directory of the embedded config store used by `strait apply` (empty disables it)")
	f.StringVar(&o.MeshConfigFile, "mesh-config", "", "MeshConfig YAML file (default: Istio's defaults)")
	f.StringVar(&o.XDSListen, "xds-listen", "", "address of a plaintext ADS (xDS) gRPC server, e.g. 127.0.0.1:15010: for development and proxyless gRPC clients only (unauthenticated: no auto-registration); proxies with an identity use the mesh port")
	f.StringVar(&o.HTTPListen, "http-listen", "127.0.0.1:15014", "address of /metrics, /debug/* and the config API")
	f.DurationVar(&o.Debounce, "debounce", 0, "quiet period before a push (default 100ms)")
	f.DurationVar(&o.MaxDelay, "debounce-max", 0, "longest a push waits under steady changes (default 1s)")
	f.IntVar(&o.XDSFlow.PushThrottle, "push-throttle", xds.DefaultPushThrottle, "pushes (one proxy's generation, or one xDS response's send) running at once, as istiod's PILOT_PUSH_THROTTLE")
	f.Int64Var(&queuedMiB, "xds-max-queued-mib", xds.DefaultMaxQueuedBytes>>20, "cap on the MiB of xDS responses built and not yet acknowledged, all proxies together; responses beyond it wait (the newest state is sent when room frees up)")
	f.Int64Var(&streamQueuedMiB, "xds-max-stream-queued-mib", xds.DefaultMaxStreamQueuedBytes>>20, "the same cap per xDS stream")
	f.DurationVar(&o.XDSFlow.AckTimeout, "xds-ack-timeout", xds.DefaultAckTimeout, "disconnect a proxy that leaves an xDS response unacknowledged (no ACK or NACK) this long; it reconnects and is resynced (negative: never)")
	f.Float64Var(&o.XDSFlow.StreamRate, "xds-stream-rate", xds.DefaultStreamRate, "new xDS streams admitted per second, so that proxies reconnecting together (after a restart) are served in turn (negative: unlimited)")
	f.IntVar(&o.XDSFlow.StreamBurst, "xds-stream-burst", xds.DefaultStreamBurst, "new xDS streams admitted at once before --xds-stream-rate applies")
	f.DurationVar(&o.XDSFlow.StreamWait, "xds-stream-wait", xds.DefaultStreamWait, "longest a new xDS stream waits for its turn; beyond it the stream is refused with UNAVAILABLE and a retry delay, and the proxy reconnects later (negative: refuse at once)")
	f.BoolVar(&o.XDSOnDemand, "on-demand", false, "serve on-demand configuration by default: a sidecar that can demand hosts (strait-proxy's router, on a route miss) and has no Sidecar resource gets the virtual hosts, clusters and endpoints of the hosts it calls only; a workload chooses with STRAIT_META_ON_DEMAND=true|false")
	f.DurationVar(&o.AutoRegisterGrace, "autoregister-grace", 0, "how long an auto-registered WorkloadEntry outlives its proxy (default 10s)")
	f.BoolVar(&o.JWKSAllowPrivate, "jwks-allow-private", false, "let RequestAuthentication jwksUri fetches reach loopback, link-local and unspecified addresses (an issuer on this machine)")
	f.DurationVar(&o.JWKSRefresh, "jwks-refresh", jwks.DefaultRefresh, "how often RequestAuthentication jwksUri key sets are fetched again")
	f.StringVar(&o.MeshListen, "mesh-address", "127.0.0.1:15012", "address of the TLS mesh port: the CA's CSR API and xDS over mutual TLS; empty disables it and the CA")
	f.StringVar(&o.CADir, "ca-dir", "", "directory of the CA's self-signed root, created on first start (default <data-dir>/ca)")
	f.StringVar(&o.CACertsDir, "cacerts-dir", "", "plug-in CA certificates in Istio's cacerts layout (ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem) instead of a self-signed root")
	f.DurationVar(&o.WorkloadCertTTL, "workload-cert-ttl", 24*time.Hour, "lifetime of a workload certificate when the request names none")
	f.DurationVar(&o.MaxWorkloadCertTTL, "max-workload-cert-ttl", 2160*time.Hour, "longest workload certificate lifetime signed")
	f.DurationVar(&o.DashboardScrapeInterval, "dashboard-scrape-interval", topology.DefaultInterval, "how often the dashboard (/dashboard/) scrapes each proxy's /stats/prometheus while someone looks at it")
	f.StringVar(&o.RateLimitListen, "ratelimit-listen", "", "address of the in-memory rate limit service (Envoy's envoy.service.ratelimit.v3 API, plaintext gRPC) for global rate limit filters, e.g. 127.0.0.1:8081; empty disables it")
	f.StringVar(&o.RateLimitConfig, "ratelimit-config", "", "rate limit service configuration in the YAML format of Envoy's ratelimit service (domain, descriptors), reloaded when it changes; needs --ratelimit-listen")
	f.StringVar(&o.RateLimitAddress, "ratelimit-address", "", "host:port at which proxies reach the rate limit service, for RateLimit rules with scope Global (default: the --ratelimit-listen address; needed when that is 0.0.0.0 or proxies run in network namespaces)")
	f.StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig file of a Kubernetes cluster to read Istio's custom resources (and gateway credential Secrets) from; the first snapshot waits for them")
	f.BoolVar(&o.KubeInCluster, "kube-in-cluster", false, "read Istio's custom resources from the Kubernetes cluster straitd runs in, with its pod's service account")
	f.StringSliceVar(&o.KubeNamespaces, "kube-namespaces", nil, "with --kubeconfig or --kube-in-cluster: read only these namespaces (comma-separated; default all)")
	f.StringVar(&o.KubeDomain, "kube-domain", "", "with --kubeconfig or --kube-in-cluster: the cluster DNS domain of Kubernetes Services' host names, NAME.NAMESPACE.svc.DOMAIN (default cluster.local; short host names in Istio config still expand with cluster.local)")
	f.BoolVar(&kubeStatus, "kube-write-status", true, "write a status condition (Accepted=False, naming the fields) on each Istio object straitd refuses, and Accepted=True once it is mended")
	f.StringVar(&o.Webhooks.Listen, "webhook-listen", "", "TLS address of the admission webhooks, Istio's 15017: /inject (sidecar injection) and /validate (config validation); needs the CA; empty disables them")
	f.StringVar(&o.Webhooks.ProxyImage, "proxy-image", "", "the strait-proxy container image the sidecar injector adds")
	f.StringVar(&o.Webhooks.Revision, "revision", "", "control-plane revision the injector serves (istio.io/rev); empty is the default revision")
	f.StringVar(&o.Webhooks.Namespace, "namespace", "istio-system", "straitd's own namespace: its Service istiod[-REVISION] names the webhooks' certificate and the CA address of injected sidecars")
	f.StringVar(&o.Webhooks.CAAddress, "injector-ca-address", "", "CA and xDS address of injected sidecars (default istiod[-REVISION].NAMESPACE.svc:15012)")
	f.StringVar(&o.Webhooks.InjectorConfig, "injector-webhook-config", "", "with Kubernetes: the MutatingWebhookConfiguration whose CA bundle straitd keeps current")
	f.StringVar(&o.Webhooks.ValidatorConfig, "validator-webhook-config", "", "with Kubernetes: the ValidatingWebhookConfiguration whose CA bundle straitd keeps current (and whose failure policy it sets to Fail)")
	f.BoolVar(&leaderElect, "leader-elect", true, "with Kubernetes: run the singleton work (webhook CA bundles, status conditions, istio-ca-root-cert ConfigMaps) only in the replica holding a Lease in --namespace (straitd-leader-REVISION; straitd-status-leader for status); false runs it here without a lease (one replica only)")
	f.StringVar(&o.Leader.Identity, "leader-identity", "", "this replica's name in the leases (default $POD_NAME, else the host name with a random suffix)")
	f.DurationVar(&o.Leader.LeaseDuration, "leader-lease-duration", leader.DefaultLeaseDuration, "how long candidates wait after the lease was last renewed before taking it (a dead leader is replaced within about this plus 4.4 retry periods)")
	f.DurationVar(&o.Leader.RenewDeadline, "leader-renew-deadline", leader.DefaultRenewDeadline, "how long the leader tries to renew the lease before it stops its singleton work (shorter than the lease duration)")
	f.DurationVar(&o.Leader.RetryPeriod, "leader-retry-period", leader.DefaultRetryPeriod, "how often the leader renews the lease and candidates look at it")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "straitd:", err)
		os.Exit(1)
	}
}
