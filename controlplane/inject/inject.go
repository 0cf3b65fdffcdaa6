package inject

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	meshconfig "istio.io/api/mesh/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Ports and paths of the injected sidecar (Istio's).
const (
	StatusPort     = 15020 // merged metrics, /app-health/ probes, /healthz/ready
	HealthPort     = 15021 // /healthz/ready
	PrometheusPort = 15090 // the proxy's own metrics
	ProxyUID       = 1337  // the sidecar's uid and gid: its own traffic is not intercepted

	proxyConfigDir = "/etc/istio/proxy" // emptyDir: the admin socket's directory
	// adminSocket is in a directory of its own that strait-proxy creates (0700, its uid): the
	// kubelet makes an emptyDir world-writable (0777), which the proxy refuses for its socket.
	adminSocket = proxyConfigDir + "/admin/admin.sock"
	caCertDir   = "/var/run/secrets/istio"
	tokenDir    = "/var/run/secrets/tokens"
	// TokenAudience is the audience of the projected service-account token the sidecar
	// presents to the CA (Istio's).
	TokenAudience = "istio-ca"
	// RootCertConfigMap is the ConfigMap in every namespace holding the mesh's root
	// certificates (Istio's istio-ca-root-cert, key root-cert.pem).
	RootCertConfigMap = "istio-ca-root-cert"
)

// Config is what the injector needs to know about the mesh.
type Config struct {
	// Image is strait-proxy's container image; the pod annotation sidecar.istio.io/proxyImage
	// overrides it.
	Image string
	// Revision is the control-plane revision this injector serves ("" is "default").
	Revision string
	// CAAddress is straitd's mesh port as pods reach it (e.g. istiod.istio-system.svc:15012):
	// the CA and, over mutual TLS, xDS.
	CAAddress string
	// CAServerName is the name verified in its certificate (default: the host of CAAddress).
	CAServerName string
	// TrustDomain, ClusterID and Network are the mesh's (node metadata of every sidecar).
	TrustDomain, ClusterID, Network string
	// Mesh is the mesh configuration; its defaultConfig is each sidecar's ProxyConfig before
	// the pod's proxy.istio.io/config annotation.
	Mesh *meshconfig.MeshConfig
	// NativeSidecars, the default, injects strait-proxy as a Kubernetes native sidecar (an init
	// container with restartPolicy Always): it starts, and is ready, before the application
	// and stops after it, and Jobs complete. The pod annotation sidecar.istio.io/nativeSidecar
	// overrides it.
	NativeSidecars bool
	// Resources are the sidecar's default requests and limits (Istio's: 100m CPU and 128Mi
	// requested, 2 CPUs and 1Gi limit); the sidecar.istio.io/proxy* annotations override them.
	Resources corev1.ResourceRequirements
}

// DefaultResources are Istio's default sidecar resources.
func DefaultResources() corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("1Gi")},
	}
}

// Status is the value of the sidecar.istio.io/status annotation (Istio's shape).
type Status struct {
	InitContainers   []string `json:"initContainers"`
	Containers       []string `json:"containers"`
	Volumes          []string `json:"volumes"`
	ImagePullSecrets []string `json:"imagePullSecrets"`
	Revision         string   `json:"revision"`
}

// annotationError names the annotation a pod got wrong.
type annotationError struct{ key, msg string }

func (e *annotationError) Error() string { return "annotation " + e.key + ": " + e.msg }

// supportedAnnotations are the sidecar.istio.io/*, traffic.sidecar.istio.io/*,
// proxy.istio.io/* and status.sidecar.istio.io/* annotations the injector implements. Any other
// annotation of those prefixes refuses the pod: Istio would act on it and Strait would not.
var supportedAnnotations = map[string]bool{
	LabelInject:                                        true,
	AnnotationStatus:                                   true,
	"sidecar.istio.io/proxyImage":                      true,
	"sidecar.istio.io/proxyCPU":                        true,
	"sidecar.istio.io/proxyMemory":                     true,
	"sidecar.istio.io/proxyCPULimit":                   true,
	"sidecar.istio.io/proxyMemoryLimit":                true,
	"sidecar.istio.io/rewriteAppHTTPProbers":           true,
	"sidecar.istio.io/nativeSidecar":                   true,
	"sidecar.istio.io/interceptionMode":                true,
	"sidecar.istio.io/logLevel":                        true,
	"sidecar.istio.io/agentLogLevel":                   true,
	"traffic.sidecar.istio.io/includeOutboundIPRanges": true,
	"traffic.sidecar.istio.io/excludeOutboundIPRanges": true,
	"traffic.sidecar.istio.io/includeInboundPorts":     true,
	"traffic.sidecar.istio.io/excludeInboundPorts":     true,
	"traffic.sidecar.istio.io/excludeOutboundPorts":    true,
	"proxy.istio.io/config":                            true,
	"prometheus.istio.io/merge-metrics":                true,
}

var annotationPrefixes = []string{"sidecar.istio.io/", "traffic.sidecar.istio.io/", "proxy.istio.io/", "status.sidecar.istio.io/"}

// Inject returns a copy of pod, in namespace, with the sidecar added. The pod is not changed.
// An annotation that is invalid or that Strait does not implement is an error naming it.
func Inject(pod *corev1.Pod, namespace string, c Config) (*corev1.Pod, error) {
	if c.Image == "" {
		return nil, errors.New("inject: no sidecar image configured")
	}
	out := pod.DeepCopy()
	ann := out.Annotations
	for k := range ann {
		for _, p := range annotationPrefixes {
			if strings.HasPrefix(k, p) && !supportedAnnotations[k] {
				return nil, &annotationError{k, "not supported by Strait yet"}
			}
		}
	}
	if len(out.Spec.Containers) == 0 {
		return nil, errors.New("inject: the pod has no containers")
	}
	pc, err := proxyConfig(c.Mesh, ann["proxy.istio.io/config"])
	if err != nil {
		return nil, err
	}
	iptArgs, err := interceptionArgs(ann)
	if err != nil {
		return nil, err
	}
	native, err := boolAnnotation(ann, "sidecar.istio.io/nativeSidecar", c.NativeSidecars)
	if err != nil {
		return nil, err
	}
	rewrite, err := boolAnnotation(ann, "sidecar.istio.io/rewriteAppHTTPProbers", true)
	if err != nil {
		return nil, err
	}
	res, err := resources(ann, c.Resources)
	if err != nil {
		return nil, err
	}
	image := c.Image
	if v := ann["sidecar.istio.io/proxyImage"]; v != "" {
		image = v
	}
	logLevel := "info"
	for _, k := range []string{"sidecar.istio.io/logLevel", "sidecar.istio.io/agentLogLevel"} {
		if v, ok := ann[k]; ok {
			lv, err := proxyLogLevel(k, v)
			if err != nil {
				return nil, err
			}
			logLevel = lv
		}
	}

	// Before the proxy joins the containers: it is not an application container.
	if err := addAppDrain(out); err != nil {
		return nil, err
	}
	probers := rewriteProbes(out, rewrite)
	metricsURL, err := mergeMetrics(out)
	if err != nil {
		return nil, err
	}

	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	out.Labels["security.istio.io/tlsMode"] = "istio"
	out.Labels["service.istio.io/canonical-name"] = canonicalName(out)
	out.Labels["service.istio.io/canonical-revision"] = canonicalRevision(out)

	proxy := proxyContainer(c, out, namespace, image, logLevel, res, pc, probers, metricsURL)
	initC := initContainer(image, iptArgs)
	if native {
		always := corev1.ContainerRestartPolicyAlways
		proxy.RestartPolicy = &always
		proxy.StartupProbe = &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz/ready", Port: intOrString(HealthPort)}},
			PeriodSeconds:    1,
			TimeoutSeconds:   3,
			FailureThreshold: 600,
		}
		out.Spec.InitContainers = append([]corev1.Container{initC, proxy}, out.Spec.InitContainers...)
	} else {
		out.Spec.InitContainers = append([]corev1.Container{initC}, out.Spec.InitContainers...)
		if pc.GetHoldApplicationUntilProxyStarts().GetValue() {
			// The kubelet starts containers in order and waits for a postStart hook: the
			// application starts once the proxy is ready.
			proxy.Lifecycle = &corev1.Lifecycle{PostStart: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{
				Command: []string{"strait-proxy", "wait", "--url", "http://127.0.0.1:" + strconv.Itoa(HealthPort) + "/healthz/ready"}}}}
			out.Spec.Containers = append([]corev1.Container{proxy}, out.Spec.Containers...)
		} else {
			out.Spec.Containers = append(out.Spec.Containers, proxy)
		}
	}
	vols := volumes()
	out.Spec.Volumes = append(out.Spec.Volumes, vols...)

	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}
	first := pod.Spec.Containers[0].Name
	if _, ok := out.Annotations["kubectl.kubernetes.io/default-container"]; !ok {
		out.Annotations["kubectl.kubernetes.io/default-container"] = first
	}
	if _, ok := out.Annotations["kubectl.kubernetes.io/default-logs-container"]; !ok {
		out.Annotations["kubectl.kubernetes.io/default-logs-container"] = first
	}
	rev := c.Revision
	if rev == "" {
		rev = "default"
	}
	st := Status{InitContainers: []string{InitContainer}, Revision: rev}
	if native {
		st.InitContainers = append(st.InitContainers, ProxyContainer)
	} else {
		st.Containers = []string{ProxyContainer}
	}
	for _, v := range vols {
		st.Volumes = append(st.Volumes, v.Name)
	}
	b, _ := json.Marshal(st)
	out.Annotations[AnnotationStatus] = string(b)
	out.Annotations[LabelRevision] = rev
	return out, nil
}

func intOrString(p int) intstr.IntOrString { return intstr.FromInt32(int32(p)) }

func boolAnnotation(ann map[string]string, key string, def bool) (bool, error) {
	v, ok := ann[key]
	if !ok {
		return def, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, &annotationError{key, fmt.Sprintf("%q is not true or false", v)}
	}
	return b, nil
}

// proxyLogLevel maps Istio's (Envoy's) log levels to strait-proxy's.
func proxyLogLevel(key, v string) (string, error) {
	switch strings.ToLower(v) {
	case "trace", "debug":
		return "debug", nil
	case "info":
		return "info", nil
	case "warning", "warn":
		return "warn", nil
	case "error", "critical", "off":
		return "error", nil
	}
	return "", &annotationError{key, fmt.Sprintf("%q is not a log level (trace, debug, info, warning, error, critical, off)", v)}
}

func resources(ann map[string]string, def corev1.ResourceRequirements) (corev1.ResourceRequirements, error) {
	r := *def.DeepCopy()
	set := func(key string, list *corev1.ResourceList, name corev1.ResourceName) error {
		v, ok := ann[key]
		if !ok {
			return nil
		}
		q, err := resource.ParseQuantity(v)
		if err != nil {
			return &annotationError{key, fmt.Sprintf("%q is not a quantity: %v", v, err)}
		}
		if *list == nil {
			*list = corev1.ResourceList{}
		}
		(*list)[name] = q
		return nil
	}
	for _, s := range []struct {
		key  string
		list *corev1.ResourceList
		name corev1.ResourceName
	}{
		{"sidecar.istio.io/proxyCPU", &r.Requests, corev1.ResourceCPU},
		{"sidecar.istio.io/proxyMemory", &r.Requests, corev1.ResourceMemory},
		{"sidecar.istio.io/proxyCPULimit", &r.Limits, corev1.ResourceCPU},
		{"sidecar.istio.io/proxyMemoryLimit", &r.Limits, corev1.ResourceMemory},
	} {
		if err := set(s.key, s.list, s.name); err != nil {
			return r, err
		}
	}
	// A request above its limit would be refused by the API server; lower the default limit
	// instead, as a request given alone asks for at least that much.
	for name, req := range r.Requests {
		if lim, ok := r.Limits[name]; ok && req.Cmp(lim) > 0 {
			if _, userLimit := ann[limitAnnotation(name)]; userLimit {
				return r, &annotationError{limitAnnotation(name), fmt.Sprintf("limit %s is below the request %s", lim.String(), req.String())}
			}
			r.Limits[name] = req
		}
	}
	return r, nil
}

func limitAnnotation(name corev1.ResourceName) string {
	if name == corev1.ResourceCPU {
		return "sidecar.istio.io/proxyCPULimit"
	}
	return "sidecar.istio.io/proxyMemoryLimit"
}

var portList = regexp.MustCompile(`^(\*|[0-9]+(\s*,\s*[0-9]+)*)$`)

// interceptionArgs maps the traffic.sidecar.istio.io/* annotations to `strait-proxy iptables
// install` flags, validating each.
func interceptionArgs(ann map[string]string) ([]string, error) {
	if m, ok := ann["sidecar.istio.io/interceptionMode"]; ok && m != "REDIRECT" {
		return nil, &annotationError{"sidecar.istio.io/interceptionMode", fmt.Sprintf("%q: only REDIRECT is supported", m)}
	}
	args := []string{"iptables", "install", "--proxy-uid", strconv.Itoa(ProxyUID), "--proxy-gid", strconv.Itoa(ProxyUID)}
	ports := func(key, flag string, star bool) error {
		v, ok := ann[key]
		if !ok {
			return nil
		}
		v = strings.TrimSpace(v)
		if v == "" {
			args = append(args, flag+"=")
			return nil
		}
		if !portList.MatchString(v) || (!star && v == "*") {
			return &annotationError{key, fmt.Sprintf("%q is not a comma-separated list of ports", v)}
		}
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "*" {
				if n, _ := strconv.Atoi(p); n < 1 || n > 65535 {
					return &annotationError{key, fmt.Sprintf("port %s out of range", p)}
				}
			}
		}
		args = append(args, flag+"="+strings.ReplaceAll(v, " ", ""))
		return nil
	}
	cidrs := func(key, flag string) error {
		v, ok := ann[key]
		if !ok {
			return nil
		}
		v = strings.ReplaceAll(strings.TrimSpace(v), " ", "")
		if v != "*" && v != "" {
			for _, c := range strings.Split(v, ",") {
				if _, err := netip.ParsePrefix(c); err != nil {
					return &annotationError{key, fmt.Sprintf("%q is not a CIDR", c)}
				}
			}
		}
		args = append(args, flag+"="+v)
		return nil
	}
	for _, f := range []func() error{
		func() error {
			return ports("traffic.sidecar.istio.io/includeInboundPorts", "--include-inbound-ports", true)
		},
		func() error {
			return ports("traffic.sidecar.istio.io/excludeInboundPorts", "--exclude-inbound-ports", false)
		},
		func() error {
			return ports("traffic.sidecar.istio.io/excludeOutboundPorts", "--exclude-outbound-ports", false)
		},
		func() error {
			return cidrs("traffic.sidecar.istio.io/includeOutboundIPRanges", "--include-outbound-cidrs")
		},
		func() error {
			return cidrs("traffic.sidecar.istio.io/excludeOutboundIPRanges", "--exclude-outbound-cidrs")
		},
	} {
		if err := f(); err != nil {
			return nil, err
		}
	}
	return args, nil
}

// canonicalName is Istio's canonical service of a pod: its service.istio.io/canonical-name
// label, else app.kubernetes.io/name, else app, else the workload name.
func canonicalName(pod *corev1.Pod) string {
	for _, k := range []string{"service.istio.io/canonical-name", "app.kubernetes.io/name", "app"} {
		if v := pod.Labels[k]; v != "" {
			return v
		}
	}
	return workloadName(pod)
}

// canonicalRevision is Istio's: service.istio.io/canonical-revision, app.kubernetes.io/version,
// version, else "latest".
func canonicalRevision(pod *corev1.Pod) string {
	for _, k := range []string{"service.istio.io/canonical-revision", "app.kubernetes.io/version", "version"} {
		if v := pod.Labels[k]; v != "" {
			return v
		}
	}
	return "latest"
}

// workloadName is the pod's controller's name as far as the pod shows it: a Deployment's pod
// is named DEPLOYMENT-RSHASH-xxxxx, generated from DEPLOYMENT-RSHASH-.
func workloadName(pod *corev1.Pod) string {
	name := pod.GenerateName
	if name == "" {
		return pod.Name
	}
	name = strings.TrimSuffix(name, "-")
	if h := pod.Labels["pod-template-hash"]; h != "" {
		name = strings.TrimSuffix(name, "-"+h)
	}
	return name
}

// proxyContainer is strait-proxy's container.
func proxyContainer(c Config, pod *corev1.Pod, namespace, image, logLevel string, res corev1.ResourceRequirements,
	pc *meshconfig.ProxyConfig, probers, metricsURL string) corev1.Container {
	drain := 5 * time.Second
	if d := pc.GetTerminationDrainDuration(); d != nil {
		drain = d.AsDuration()
	}
	labels := make([]string, 0, len(pod.Labels))
	for k, v := range pod.Labels {
		labels = append(labels, k+"="+v)
	}
	sort.Strings(labels)
	args := []string{
		"--mode=sidecar",
		"--namespace=$(POD_NAMESPACE)",
		"--workload-name=$(POD_NAME)",
		"--ip=$(INSTANCE_IP)",
		"--service-account=$(SERVICE_ACCOUNT)",
		"--labels=" + strings.Join(labels, ","),
		"--status-address=0.0.0.0:" + strconv.Itoa(StatusPort),
		"--health-address=0.0.0.0:" + strconv.Itoa(HealthPort),
		"--prometheus-address=0.0.0.0:" + strconv.Itoa(PrometheusPort),
		"--admin-socket=" + adminSocket,
		"--drain-duration=" + drain.String(),
		"--log-level=" + logLevel,
	}
	if c.CAAddress != "" {
		args = append(args, "--ca-address="+c.CAAddress,
			"--ca-root-cert="+caCertDir+"/root-cert.pem",
			"--bootstrap-token-file="+tokenDir+"/istio-token")
		if c.CAServerName != "" {
			args = append(args, "--ca-server-name="+c.CAServerName)
		}
	}
	if c.TrustDomain != "" {
		args = append(args, "--trust-domain="+c.TrustDomain)
	}
	if c.ClusterID != "" {
		args = append(args, "--cluster-id="+c.ClusterID)
	}
	if c.Network != "" {
		args = append(args, "--network="+c.Network)
	}
	if probers != "" {
		args = append(args, "--app-probers=$(ISTIO_KUBE_APP_PROBERS)")
	}
	if metricsURL != "" {
		args = append(args, "--app-metrics-url="+metricsURL)
	}
	fieldEnv := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: path}}}
	}
	env := []corev1.EnvVar{
		fieldEnv("POD_NAME", "metadata.name"),
		fieldEnv("POD_NAMESPACE", "metadata.namespace"),
		fieldEnv("INSTANCE_IP", "status.podIP"),
		fieldEnv("SERVICE_ACCOUNT", "spec.serviceAccountName"),
	}
	if probers != "" {
		env = append(env, corev1.EnvVar{Name: "ISTIO_KUBE_APP_PROBERS", Value: probers})
	}
	if n := pc.GetConcurrency(); n != nil && n.GetValue() > 0 {
		env = append(env, corev1.EnvVar{Name: "GOMAXPROCS", Value: strconv.Itoa(int(n.GetValue()))})
	}
	meta := make([]string, 0, len(pc.GetProxyMetadata()))
	for k := range pc.GetProxyMetadata() {
		meta = append(meta, k)
	}
	sort.Strings(meta)
	for _, k := range meta {
		env = append(env, corev1.EnvVar{Name: k, Value: pc.GetProxyMetadata()[k]})
	}
	uid, no, yes := int64(ProxyUID), false, true
	return corev1.Container{
		Name:    ProxyContainer,
		Image:   image,
		Command: []string{"strait-proxy"},
		Args:    args,
		Env:     env,
		Ports: []corev1.ContainerPort{
			{Name: "http-envoy-prom", ContainerPort: PrometheusPort, Protocol: corev1.ProtocolTCP},
		},
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz/ready", Port: intOrString(HealthPort)}},
			PeriodSeconds:    15,
			TimeoutSeconds:   3,
			FailureThreshold: 4,
		},
		Resources: res,
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                &uid,
			RunAsGroup:               &uid,
			RunAsNonRoot:             &yes,
			ReadOnlyRootFilesystem:   &yes,
			AllowPrivilegeEscalation: &no,
			Privileged:               &no,
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
		VolumeMounts: []corev1.VolumeMount{
			{Name: "istio-envoy", MountPath: proxyConfigDir},
			{Name: "istiod-ca-cert", MountPath: caCertDir, ReadOnly: true},
			{Name: "istio-token", MountPath: tokenDir, ReadOnly: true},
		},
	}
}

// initContainer installs the pod's traffic interception (Istio's istio-init).
func initContainer(image string, args []string) corev1.Container {
	root, no := int64(0), false
	return corev1.Container{
		Name:    InitContainer,
		Image:   image,
		Command: []string{"strait-proxy"},
		Args:    args,
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("40Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("1Gi")},
		},
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                &root,
			RunAsGroup:               &root,
			RunAsNonRoot:             &no,
			ReadOnlyRootFilesystem:   &no,
			AllowPrivilegeEscalation: &no,
			Privileged:               &no,
			Capabilities:             &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN", "NET_RAW"}, Drop: []corev1.Capability{"ALL"}},
		},
	}
}

// volumes are the sidecar's: a memory emptyDir for its admin socket, the mesh's root
// certificates, and a service-account token for the CA with Istio's audience.
func volumes() []corev1.Volume {
	expiry := int64(43200)
	return []corev1.Volume{
		{Name: "istio-envoy", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}},
		{Name: "istiod-ca-cert", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: RootCertConfigMap}}}},
		{Name: "istio-token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{{
			ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Audience: TokenAudience, ExpirationSeconds: &expiry, Path: "istio-token"}}}}}},
	}
}
