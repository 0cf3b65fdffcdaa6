package inject

import (
	"strconv"

	corev1 "k8s.io/api/core/v1"
)

// AnnotationAppDrain is Strait's pod annotation for how long, in whole seconds, the application
// containers keep running after the pod's deletion before they get SIGTERM (a preStop sleep
// hook); "0" turns it off. Istio has no equivalent: its sidecar drains, but an application that
// exits on SIGTERM at once still refuses the requests that reach it while the proxies learn that
// its endpoint is terminating, which fails them (the rolling-update 503s Istio's users know).
const AnnotationAppDrain = "strait.io/app-drain-seconds"

// DefaultAppDrain is the preStop sleep injected by default: longer than an endpoint change
// takes to reach every proxy (p99 under 1 s at 1,000 proxies, docs/performance.md) with room for
// the requests in flight.
const DefaultAppDrain = 5

// addAppDrain gives each application container without a preStop hook of its own a preStop
// sleep of the annotation's seconds (default DefaultAppDrain), kept under the pod's termination
// grace period so that SIGTERM still comes before SIGKILL. The kubelet starts the grace period
// and the hooks at deletion, when the endpoint already turns terminating, so the application
// stops only after the proxies stopped sending it requests.
func addAppDrain(pod *corev1.Pod) error {
	secs := int64(DefaultAppDrain)
	if v, ok := pod.Annotations[AnnotationAppDrain]; ok {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 0 {
			return &annotationError{AnnotationAppDrain, "want a whole number of seconds (0 turns it off), got " + strconv.Quote(v)}
		}
		secs = n
	}
	grace := int64(corev1.DefaultTerminationGracePeriodSeconds)
	if g := pod.Spec.TerminationGracePeriodSeconds; g != nil {
		grace = *g
	}
	secs = min(secs, grace-1)
	if secs <= 0 {
		return nil
	}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
			continue
		}
		if c.Lifecycle == nil {
			c.Lifecycle = &corev1.Lifecycle{}
		}
		c.Lifecycle.PreStop = &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: secs}}
	}
	return nil
}
