// Package inject adds Strait's sidecar to Kubernetes pods, as Istio's sidecar injector does: the
// policy that decides which pods get one (Istio's labels and annotations), the pod spec
// mutation itself (an init container that installs traffic interception, strait-proxy as a
// native sidecar, probes rewritten through the sidecar's status port), and the mutating
// admission webhook that applies it as a JSON patch.
//
// Names follow Istio's, so that tools and habits built for Istio keep working: the containers
// are istio-init and istio-proxy, the status annotation is sidecar.istio.io/status, and every
// traffic.sidecar.istio.io/* and sidecar.istio.io/* annotation Strait supports means what it
// means in Istio. An annotation Strait does not support refuses the pod with a message naming
// it, never silently changes nothing.
package inject

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Istio's injection labels and annotations.
const (
	// LabelNamespaceInjection is the namespace label istio-injection: enabled or disabled.
	LabelNamespaceInjection = "istio-injection"
	// LabelRevision is istio.io/rev, on a namespace or pod: the control-plane revision that
	// injects it.
	LabelRevision = "istio.io/rev"
	// LabelInject is the pod label (and legacy annotation) sidecar.istio.io/inject: "true" or
	// "false".
	LabelInject = "sidecar.istio.io/inject"
	// AnnotationStatus records what was injected (and marks a pod as injected).
	AnnotationStatus = "sidecar.istio.io/status"
	// ProxyContainer and InitContainer are the injected containers' names.
	ProxyContainer = "istio-proxy"
	InitContainer  = "istio-init"
)

// ignoredNamespaces are never injected, whatever their labels say (Istio's defaults).
var ignoredNamespaces = map[string]bool{"kube-system": true, "kube-public": true, "kube-node-lease": true, "local-path-storage": true}

// Decision is whether a pod gets a sidecar, and why (for logs and `strait` diagnostics).
type Decision struct {
	Inject bool
	Reason string
}

// Decide applies Istio's injection policy to a pod in a namespace with nsLabels, for the
// control plane of revision rev ("" or "default" is the default revision):
//
//  1. pods with hostNetwork, pods already injected and pods in kube-system and its kin are
//     never injected;
//  2. the namespace label istio-injection=disabled, or the pod's sidecar.istio.io/inject
//     "false" (label, or the legacy annotation), turns injection off;
//  3. istio-injection=enabled, a namespace or pod istio.io/rev naming this revision, or the
//     pod's sidecar.istio.io/inject "true" turns it on — istio-injection takes precedence over
//     istio.io/rev, and a revision label naming another revision leaves the pod to that one;
//  4. otherwise the pod is not injected (Istio's enableNamespacesByDefault is off).
func Decide(namespace string, nsLabels map[string]string, pod *corev1.Pod, rev string) Decision {
	if rev == "" {
		rev = "default"
	}
	switch {
	case ignoredNamespaces[namespace]:
		return Decision{false, "namespace " + namespace + " is never injected"}
	case pod.Spec.HostNetwork:
		return Decision{false, "the pod uses the host network"}
	case injected(pod):
		return Decision{false, "the pod already has a sidecar"}
	}
	podInject, podSet := pod.Labels[LabelInject]
	if !podSet {
		podInject, podSet = pod.Annotations[LabelInject]
	}
	podInject = strings.ToLower(podInject)
	nsInject := nsLabels[LabelNamespaceInjection]
	if nsInject == "disabled" {
		return Decision{false, "namespace label istio-injection=disabled"}
	}
	if podSet && podInject == "false" {
		return Decision{false, "pod " + LabelInject + "=false"}
	}
	if nsInject == "enabled" {
		if rev != "default" {
			return Decision{false, "namespace label istio-injection=enabled selects the default revision, not " + rev}
		}
		return Decision{true, "namespace label istio-injection=enabled"}
	}
	// istio.io/rev: the pod's own label wins over the namespace's.
	if r, ok := pod.Labels[LabelRevision]; ok {
		if r == rev {
			return Decision{true, "pod label istio.io/rev=" + r}
		}
		return Decision{false, "pod label istio.io/rev=" + r + " selects another revision"}
	}
	if r, ok := nsLabels[LabelRevision]; ok {
		if r == rev {
			return Decision{true, "namespace label istio.io/rev=" + r}
		}
		return Decision{false, "namespace label istio.io/rev=" + r + " selects another revision"}
	}
	if podSet && podInject == "true" {
		if rev != "default" {
			return Decision{false, "pod " + LabelInject + "=true selects the default revision, not " + rev}
		}
		return Decision{true, "pod " + LabelInject + "=true"}
	}
	return Decision{false, "neither the namespace nor the pod asks for injection"}
}

// injected reports whether the pod already carries a sidecar.
func injected(pod *corev1.Pod) bool {
	if _, ok := pod.Annotations[AnnotationStatus]; ok {
		return true
	}
	for _, c := range pod.Spec.Containers {
		if c.Name == ProxyContainer {
			return true
		}
	}
	for _, c := range pod.Spec.InitContainers {
		if c.Name == ProxyContainer {
			return true
		}
	}
	return false
}
