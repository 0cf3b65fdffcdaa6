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
	"github.com/strait-mesh/strait/internal/version"
)

// newKubeSource returns the Kubernetes config source the options ask for, or nil for none.
func newKubeSource(o Options, log *slog.Logger, validation *validationmetrics.Counters) (*kube.Source, error) {
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
	src, err := kube.New(cfg, kube.Options{Logger: log, Namespaces: o.KubeNamespaces, Validation: validation,
		WriteStatus: !o.KubeSkipStatus})
	if err != nil {
		return nil, fmt.Errorf("kubernetes: %w", err)
	}
	return src, nil
}

// waitKubeSynced waits until the Kubernetes source has synced, logging while it waits; false when
// ctx ends first.
func waitKubeSynced(ctx context.Context, src *kube.Source, log *slog.Logger) bool {
	start := time.Now()
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-src.Synced():
			return true
		case <-ctx.Done():
			return false
		case <-tick.C:
			log.Warn("waiting for the Kubernetes config to sync before serving a first snapshot", "waited", time.Since(start).Round(time.Second))
		}
	}
}
