package inject

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/strait-mesh/strait/internal/appprobe"
)

// rewriteProbes points the HTTP, TCP and gRPC liveness, readiness and startup probes of the
// pod's application containers at the sidecar's status port, /app-health/CONTAINER/livez,
// readyz or startupz, so that they keep working when the sidecar requires mutual TLS, and
// returns the original probes as the sidecar's table (Istio's ISTIO_KUBE_APP_PROBERS), ""
// when there is none. Exec probes are left alone; so is a probe whose named port the container
// does not declare.
func rewriteProbes(pod *corev1.Pod, rewrite bool) string {
	if !rewrite {
		return ""
	}
	table := appprobe.Probers{}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		for _, pr := range []struct {
			probe **corev1.Probe
			kind  string
		}{{&c.LivenessProbe, "livez"}, {&c.ReadinessProbe, "readyz"}, {&c.StartupProbe, "startupz"}} {
			p := *pr.probe
			if p == nil {
				continue
			}
			orig, ok := OriginalProbe(c, p)
			if !ok {
				continue
			}
			path := appprobe.PathPrefix + c.Name + "/" + pr.kind
			table[path] = orig
			np := p.DeepCopy()
			np.ProbeHandler = corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(StatusPort), Scheme: corev1.URISchemeHTTP}}
			*pr.probe = np
		}
	}
	if len(table) == 0 {
		return ""
	}
	b, _ := json.Marshal(table)
	return string(b)
}

// OriginalProbe converts a container's httpGet, tcpSocket or gRPC probe, its port resolved, to
// the form strait-proxy runs (false for an exec probe or an unknown port). The kubelet stand-in
// of the tests runs probes with it too.
func OriginalProbe(c *corev1.Container, p *corev1.Probe) (*appprobe.Prober, bool) {
	out := &appprobe.Prober{TimeoutSeconds: p.TimeoutSeconds}
	switch {
	case p.HTTPGet != nil:
		port, ok := containerPort(c, p.HTTPGet.Port)
		if !ok {
			return nil, false
		}
		h := &appprobe.HTTPGet{Path: p.HTTPGet.Path, Port: port, Host: p.HTTPGet.Host, Scheme: string(p.HTTPGet.Scheme)}
		for _, hd := range p.HTTPGet.HTTPHeaders {
			h.HTTPHeaders = append(h.HTTPHeaders, appprobe.Header{Name: hd.Name, Value: hd.Value})
		}
		out.HTTPGet = h
	case p.TCPSocket != nil:
		port, ok := containerPort(c, p.TCPSocket.Port)
		if !ok {
			return nil, false
		}
		out.TCPSocket = &appprobe.TCPSocket{Port: port, Host: p.TCPSocket.Host}
	case p.GRPC != nil:
		out.GRPC = &appprobe.GRPC{Port: int(p.GRPC.Port), Service: p.GRPC.Service}
	default:
		return nil, false
	}
	return out, true
}

// containerPort resolves a probe's port, numeric or named after one of the container's ports.
func containerPort(c *corev1.Container, p intstr.IntOrString) (int, bool) {
	if p.Type == intstr.Int {
		return int(p.IntVal), p.IntVal > 0 && p.IntVal < 65536
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), true
		}
	}
	if n, err := strconv.Atoi(p.StrVal); err == nil && n > 0 && n < 65536 {
		return n, true
	}
	return 0, false
}

// mergeMetrics implements Istio's metrics merging: unless the pod opts out
// (prometheus.istio.io/merge-metrics: "false", or prometheus.io/scrape: "false"), the pod's
// prometheus.io/* annotations are pointed at the sidecar's merged endpoint (15020
// /stats/prometheus), and the application's own endpoint they named is returned for the
// sidecar to merge ("" when the pod named none).
func mergeMetrics(pod *corev1.Pod) (string, error) {
	ann := pod.Annotations
	merge, err := boolAnnotation(ann, "prometheus.istio.io/merge-metrics", true)
	if err != nil || !merge {
		return "", err
	}
	if strings.EqualFold(ann["prometheus.io/scrape"], "false") {
		return "", nil
	}
	var app string
	if port, ok := ann["prometheus.io/port"]; ok {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return "", &annotationError{"prometheus.io/port", fmt.Sprintf("%q is not a port", port)}
		}
		path := ann["prometheus.io/path"]
		if path == "" {
			path = "/metrics"
		}
		scheme := strings.ToLower(ann["prometheus.io/scheme"])
		if scheme == "" {
			scheme = "http"
		}
		if scheme != "http" && scheme != "https" {
			return "", &annotationError{"prometheus.io/scheme", fmt.Sprintf("%q is not http or https", scheme)}
		}
		u, err := url.Parse(scheme + "://localhost:" + strconv.Itoa(n) + path)
		if err != nil || u.Path != path || u.RawQuery != "" && !strings.HasPrefix(path, "/") {
			return "", &annotationError{"prometheus.io/path", fmt.Sprintf("%q is not a URL path", path)}
		}
		app = u.String()
	}
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations["prometheus.io/scrape"] = "true"
	pod.Annotations["prometheus.io/port"] = strconv.Itoa(StatusPort)
	pod.Annotations["prometheus.io/path"] = "/stats/prometheus"
	delete(pod.Annotations, "prometheus.io/scheme")
	return app, nil
}
