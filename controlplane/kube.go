package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/strait-mesh/strait/controlplane/config/kube"
	"github.com/strait-mesh/strait/controlplane/config/validationmetrics"
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

// newKubeSource returns the Kubernetes config source the options ask for, or nil for none.
func newKubeSource(o Options, log *slog.Logger, validation *validationmetrics.Counters) (*kube.Source, error) {
	cfg, err := kubeConfig(o)
	if err != nil || cfg == nil {
		return nil, err
	}
	src, err := kube.New(cfg, kube.Options{Logger: log, Namespaces: o.KubeNamespaces, Validation: validation,
		WriteStatus: !o.KubeSkipStatus})
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
	reg, err := kuberegistry.New(cfg, kuberegistry.Options{Logger: log, Namespaces: o.KubeNamespaces, Domain: o.KubeDomain})
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
