package kubelet

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/strait-mesh/strait/controlplane/inject"
)

// probeTiming is a probe's schedule with Kubernetes' defaults, its period capped by maxPeriod.
type probeTiming struct {
	initialDelay, period time.Duration
	success, failure     int
}

func timing(p *corev1.Probe, maxPeriod time.Duration) probeTiming {
	t := probeTiming{initialDelay: time.Duration(p.InitialDelaySeconds) * time.Second, period: 10 * time.Second, success: 1, failure: 3}
	if p.PeriodSeconds > 0 {
		t.period = time.Duration(p.PeriodSeconds) * time.Second
	}
	if maxPeriod > 0 && t.period > maxPeriod {
		t.period = maxPeriod
	}
	if p.SuccessThreshold > 0 {
		t.success = int(p.SuccessThreshold)
	}
	if p.FailureThreshold > 0 {
		t.failure = int(p.FailureThreshold)
	}
	return t
}

// runProbe runs one httpGet, tcpSocket or gRPC probe against the pod IP, as the kubelet does (the
// same code as strait-proxy's /app-health/ probes), and returns nil on success.
func runProbe(ctx context.Context, p *corev1.Probe, podIP string, c corev1.Container) error {
	pr, ok := inject.OriginalProbe(&c, p)
	if !ok {
		return fmt.Errorf("container %s: probe without a usable handler or port", c.Name)
	}
	return pr.Run(ctx, podIP)
}
