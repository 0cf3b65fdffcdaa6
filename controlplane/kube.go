package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/strait-mesh/strait/controlplane/config/kube"
	"github.com/strait-mesh/strait/controlplane/config/validationmetrics"
	"github.com/strait-mesh/strait/controlplane/leader"
	"github.com/strait-mesh/strait/controlplane/mesh"
	kuberegistry "github.com/strait-mesh/strait/controlplane/registry/kube"
	"github.com/strait-mesh/strait/internal/version"
)

// kubeConfig is the Kubernetes client configuration the options ask for, or nil for none.
func kubeConfig(o Options) (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	switch {
	case o.Kubeconfig != "" && o.KubeInCluster:
		return nil, errors.New("kubernetes: set a kubeconfig or in-cluster configuration, not both")
	case o.Kubeconfig != "":
		if cfg, err = clientcmd.BuildConfigFromFlags("", o.Kubeconfig); err != nil {
			return nil, fmt.Errorf("kubernetes: reading kubeconfig %s: %w", o.Kubeconfig, err)
		}
	case o.KubeInCluster:
		if cfg, err = rest.InClusterConfig(); err != nil {
			return nil, fmt.Errorf("kubernetes: in-cluster configuration: %w", err)
		}
	default:
		if len(o.KubeNamespaces) > 0 {
			return nil, errors.New("kubernetes: namespaces given without a kubeconfig or in-cluster configuration")
		}
		return nil, nil
	}
	cfg.UserAgent = "straitd/" + version.Get().Version
	return cfg, nil
}

// LeaderOptions configure the leader election of straitd's singleton work on Kubernetes.
type LeaderOptions struct {
	// Disabled runs the singleton work in this replica without a lease: for one replica only.
	Disabled bool
	// Identity names this replica in the leases (default leader.Identity(): the pod's name).
	Identity string
	// Timings of the leases (default leader.DefaultLeaseDuration and so on).
	leader.Timings
}

// electors run straitd's singleton work: revision's holder keeps the revision's webhook CA
// bundles and the istio-ca-root-cert ConfigMaps current, status's holder writes the status
// conditions (a lease all revisions share). Without Kubernetes, or with the election disabled,
// both run their work unconditionally.
type electors struct {
	revision, status *leader.Elector
}

// newElectors returns the electors the options ask for.
func newElectors(o Options, log *slog.Logger, reg prometheus.Registerer) (*electors, error) {
	cfg, err := kubeConfig(o)
	if err != nil {
		return nil, err
	}
	if cfg == nil || o.Leader.Disabled {
		if cfg != nil {
			log.Warn("leader election disabled: this replica does the singleton work (webhook CA bundles, status, root-cert ConfigMaps); run one replica only")
		}
		return &electors{revision: leader.Always(log), status: leader.Always(log)}, nil
	}
	metrics, err := leader.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	identity := o.Leader.Identity
	if identity == "" {
		identity = leader.Identity()
	}
	el := &electors{}
	for _, e := range []struct {
		name string
		to   **leader.Elector
	}{{leader.RevisionLease(o.Webhooks.Revision), &el.revision}, {leader.StatusLease, &el.status}} {
		if *e.to, err = leader.New(cfg, leader.Options{Namespace: o.Webhooks.namespace(), Name: e.name, Identity: identity,
			Timings: o.Leader.Timings, Logger: log, Metrics: metrics}); err != nil {
			return nil, err
		}
	}
	return el, nil
}

// run takes part in both elections until ctx ends.
func (el *electors) run(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		el.status.Run(ctx)
	}()
	el.revision.Run(ctx)
	<-done
}

// newKubeSource returns the Kubernetes config source the options ask for, or nil for none. Its
// status writes run under the status lease.
func newKubeSource(o Options, log *slog.Logger, validation *validationmetrics.Counters, el *electors) (*kube.Source, error) {
	cfg, err := kubeConfig(o)
	if err != nil || cfg == nil {
		return nil, err
	}
	src, err := kube.New(cfg, kube.Options{Logger: log, Namespaces: o.KubeNamespaces, Validation: validation,
		WriteStatus: !o.KubeSkipStatus, StatusRunner: el.status.Go})
	if err != nil {
		return nil, fmt.Errorf("kubernetes: %w", err)
	}
	return src, nil
}

// newKubeRegistry returns the Kubernetes service registry the options ask for (with the config
// source: same cluster, same namespaces), or nil for none.
func newKubeRegistry(o Options, log *slog.Logger) (*kuberegistry.Registry, error) {
	cfg, err := kubeConfig(o)
	if err != nil || cfg == nil {
		if err == nil && o.KubeDomain != "" {
			err = errors.New("kubernetes: a domain given without a kubeconfig or in-cluster configuration")
		}
		return nil, err
	}
	if o.KubeDomain != "" && o.KubeDomain != mesh.DefaultDomainSuffix {
		log.Warn("kubernetes: services are named NAME.NAMESPACE.svc."+o.KubeDomain+
			", but short host names in Istio config still expand with "+mesh.DefaultDomainSuffix+": write full host names",
			"domain", o.KubeDomain)
	}
	reg, err := kuberegistry.New(cfg, kuberegistry.Options{Logger: log, Namespaces: o.KubeNamespaces, Domain: o.KubeDomain,
		SystemNamespace: o.Webhooks.namespace()})
	if err != nil {
		return nil, fmt.Errorf("kubernetes: %w", err)
	}
	return reg, nil
}

// waitKubeSynced waits until the Kubernetes config source and registry have synced (every
// channel closed), logging while it waits; false when ctx ends first.
func waitKubeSynced(ctx context.Context, log *slog.Logger, synced ...<-chan struct{}) bool {
	start := time.Now()
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for _, ch := range synced {
		for waiting := true; waiting; {
			select {
			case <-ch:
				waiting = false
			case <-ctx.Done():
				return false
			case <-tick.C:
				log.Warn("waiting for the Kubernetes config and services to sync before serving a first snapshot", "waited", time.Since(start).Round(time.Second))
			}
		}
	}
	return true
}
