// Package install builds the Kubernetes manifests of a Strait control plane, as `istioctl
// install` does for Istio: the istio-system namespace, the CRDs, straitd (named istiod, so that
// Istio's well-known addresses keep working) with its Services, RBAC of least privilege, the
// sidecar injector and config validation webhooks, and an ingress gateway. `strait install`
// applies them, or prints them with --dry-run.
//
// A revision (`--revision canary`) suffixes every name that two control planes side by side
// would otherwise share and selects pods by istio.io/rev, for canary upgrades of the control
// plane.
package install

import (
	"fmt"
	"regexp"

	"google.golang.org/protobuf/encoding/protojson"
	meshconfig "istio.io/api/mesh/v1alpha1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/strait-mesh/strait/controlplane/inject"
	"github.com/strait-mesh/strait/controlplane/leader"
)

// Options choose what is installed.
type Options struct {
	// Namespace of the control plane (default istio-system).
	Namespace string
	// Revision, when set, installs a control plane that only serves namespaces and pods
	// labelled istio.io/rev=REVISION, beside the default one.
	Revision string
	// ControlPlaneImage and ProxyImage are the straitd and strait-proxy images.
	ControlPlaneImage, ProxyImage string
	// Replicas of straitd (default 2).
	Replicas int32
	// Mesh is the mesh configuration stored in the istio ConfigMap (default: Istio's defaults).
	Mesh *meshconfig.MeshConfig
	// IngressGateway adds istio-ingressgateway (a Deployment and a LoadBalancer Service).
	IngressGateway bool
	// CRDs are the CustomResourceDefinitions to install, as YAML documents.
	CRDs [][]byte
}

var revisionRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// Manifests returns the objects to apply, in order (namespace and CRDs first, workloads last).
func Manifests(o Options) ([]runtime.Object, error) {
	var err error
	if o.Namespace, o.Revision, err = placement(o.Namespace, o.Revision); err != nil {
		return nil, err
	}
	if o.ControlPlaneImage == "" || o.ProxyImage == "" {
		return nil, fmt.Errorf("install: the straitd and strait-proxy images are required")
	}
	if o.Replicas == 0 {
		o.Replicas = 2
	}
	b := builder{o: o}
	var objs []runtime.Object
	if o.Revision == "" {
		objs = append(objs, &corev1.Namespace{TypeMeta: tm("v1", "Namespace"), ObjectMeta: metav1.ObjectMeta{Name: o.Namespace}})
	}
	for i, doc := range o.CRDs {
		u, err := crd(doc)
		if err != nil {
			return nil, fmt.Errorf("CRD document %d: %w", i, err)
		}
		objs = append(objs, u)
	}
	mesh, err := b.meshConfigMap()
	if err != nil {
		return nil, err
	}
	objs = append(objs, b.serviceAccount(b.name("istiod")), mesh)
	objs = append(objs, b.rbac()...)
	objs = append(objs, b.service(), b.deployment(), b.pdb(), b.injectorWebhook(), b.validationWebhook())
	if o.IngressGateway {
		objs = append(objs, b.gateway()...)
	}
	return objs, nil
}

// placement returns the namespace (default istio-system) and revision ("" for the default one)
// of a control plane, or an error for a revision that is no DNS label.
func placement(namespace, revision string) (string, string, error) {
	if namespace == "" {
		namespace = "istio-system"
	}
	if revision == "default" {
		revision = ""
	}
	if revision != "" && !revisionRE.MatchString(revision) {
		return "", "", fmt.Errorf("revision %q: want a DNS label (lowercase letters, digits, '-')", revision)
	}
	return namespace, revision, nil
}

// YAML renders objects as one multi-document YAML stream.
func YAML(objs []runtime.Object) ([]byte, error) {
	var out []byte
	for i, obj := range objs {
		y, err := yaml.Marshal(obj)
		if err != nil {
			return nil, fmt.Errorf("rendering object %d: %w", i, err)
		}
		out = append(out, "---\n"...)
		out = append(out, y...)
	}
	return out, nil
}

type builder struct{ o Options }

func tm(apiVersion, kind string) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: apiVersion, Kind: kind}
}

// name suffixes a per-revision name.
func (b builder) name(n string) string {
	if b.o.Revision == "" {
		return n
	}
	return n + "-" + b.o.Revision
}

func (b builder) rev() string {
	if b.o.Revision == "" {
		return "default"
	}
	return b.o.Revision
}

func (b builder) meta(name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: b.o.Namespace, Labels: b.labels()}
}

func (b builder) labels() map[string]string {
	return map[string]string{PartOfLabel: PartOf, "istio.io/rev": b.rev()}
}

func (b builder) serviceAccount(name string) *corev1.ServiceAccount {
	return &corev1.ServiceAccount{TypeMeta: tm("v1", "ServiceAccount"), ObjectMeta: b.meta(name)}
}

func (b builder) meshConfigMap() (*corev1.ConfigMap, error) {
	mesh := "{}"
	if b.o.Mesh != nil {
		js, err := protojson.Marshal(b.o.Mesh)
		if err != nil {
			return nil, fmt.Errorf("encoding the mesh config: %w", err)
		}
		y, err := yaml.JSONToYAML(js)
		if err != nil {
			return nil, fmt.Errorf("encoding the mesh config: %w", err)
		}
		mesh = string(y)
	}
	return &corev1.ConfigMap{TypeMeta: tm("v1", "ConfigMap"), ObjectMeta: b.meta(b.name("istio")), Data: map[string]string{"mesh": mesh}}, nil
}

// istioGroups are the API groups of the config straitd reads.
var istioGroups = []string{"networking.istio.io", "security.istio.io", "telemetry.istio.io", "extensions.istio.io", "extensions.strait.io"}

// rbac is least privilege: read the config and registry kinds, write only status, the root
// certificate ConfigMaps, the webhooks' CA bundles, and — in its own namespace — its leases
// (client-go's Lease lock gets, creates and updates them; nothing lists, watches or deletes
// them). straitd never writes Secrets: the CA (Secret cacerts) is created by `strait install`
// and mounted by the kubelet.
func (b builder) rbac() []runtime.Object {
	cr := b.name("istiod-clusterrole-" + b.o.Namespace)
	role := b.name("istiod")
	sa := rbacv1.Subject{Kind: "ServiceAccount", Name: b.name("istiod"), Namespace: b.o.Namespace}
	read := []string{"get", "list", "watch"}
	cluster := &rbacv1.ClusterRole{TypeMeta: tm("rbac.authorization.k8s.io/v1", "ClusterRole"),
		ObjectMeta: metav1.ObjectMeta{Name: cr, Labels: b.labels()},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: istioGroups, Resources: []string{"*"}, Verbs: read},
			{APIGroups: istioGroups, Resources: []string{"*/status"}, Verbs: []string{"get", "update", "patch"}},
			{APIGroups: []string{"gateway.networking.k8s.io"}, Resources: []string{"*"}, Verbs: read},
			{APIGroups: []string{"gateway.networking.k8s.io"}, Resources: []string{"*/status"}, Verbs: []string{"get", "update", "patch"}},
			{APIGroups: []string{""}, Resources: []string{"pods", "nodes", "services", "namespaces", "endpoints"}, Verbs: read},
			{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: read},
			// Gateway credentials (Istio's credentialName) are secrets in the gateways' namespaces.
			{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: read},
			// istio-ca-root-cert in every namespace.
			{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch"}},
			{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}},
			{APIGroups: []string{"authorization.k8s.io"}, Resources: []string{"subjectaccessreviews"}, Verbs: []string{"create"}},
			{APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"mutatingwebhookconfigurations", "validatingwebhookconfigurations"},
				Verbs: []string{"get", "list", "watch", "update", "patch"}},
			{APIGroups: []string{"apiextensions.k8s.io"}, Resources: []string{"customresourcedefinitions"}, Verbs: read},
		}}
	binding := &rbacv1.ClusterRoleBinding{TypeMeta: tm("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
		ObjectMeta: metav1.ObjectMeta{Name: cr, Labels: b.labels()},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: cr},
		Subjects:   []rbacv1.Subject{sa}}
	r := &rbacv1.Role{TypeMeta: tm("rbac.authorization.k8s.io/v1", "Role"), ObjectMeta: b.meta(role),
		Rules: []rbacv1.PolicyRule{
			// Leader election of the singleton work (controlplane/leader): its two leases only
			// (create cannot be limited by name).
			{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "update"},
				ResourceNames: []string{leader.RevisionLease(b.o.Revision), leader.StatusLease}},
			{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"create"}},
		}}
	rb := &rbacv1.RoleBinding{TypeMeta: tm("rbac.authorization.k8s.io/v1", "RoleBinding"), ObjectMeta: b.meta(role),
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: role},
		Subjects: []rbacv1.Subject{sa}}
	return []runtime.Object{cluster, binding, r, rb}
}

// Ports of straitd, as istiod's.
const (
	portXDS     = 15010 // plaintext xDS
	portMesh    = 15012 // CA and xDS over mutual TLS
	portMonitor = 15014 // /metrics, /debug, the config API
	portWebhook = 15017 // admission webhooks, behind the Service's 443
)

func (b builder) selector() map[string]string {
	return map[string]string{"app": "istiod", "istio.io/rev": b.rev()}
}

func (b builder) service() *corev1.Service {
	return &corev1.Service{TypeMeta: tm("v1", "Service"), ObjectMeta: b.meta(b.name("istiod")),
		Spec: corev1.ServiceSpec{Selector: b.selector(), Ports: []corev1.ServicePort{
			{Name: "grpc-xds", Port: portXDS, TargetPort: intstr.FromInt32(portXDS), Protocol: corev1.ProtocolTCP},
			{Name: "https-dns", Port: portMesh, TargetPort: intstr.FromInt32(portMesh), Protocol: corev1.ProtocolTCP},
			{Name: "https-webhook", Port: 443, TargetPort: intstr.FromInt32(portWebhook), Protocol: corev1.ProtocolTCP},
			{Name: "http-monitoring", Port: portMonitor, TargetPort: intstr.FromInt32(portMonitor), Protocol: corev1.ProtocolTCP},
		}}}
}

func (b builder) deployment() *appsv1.Deployment {
	labels := b.selector()
	for k, v := range b.labels() {
		labels[k] = v
	}
	args := []string{
		"--kube-in-cluster",
		"--namespace=" + b.o.Namespace,
		"--mesh-config=/etc/istio/config/mesh",
		"--cacerts-dir=/etc/cacerts",
		"--mesh-address=0.0.0.0:15012",
		"--xds-listen=0.0.0.0:15010",
		"--http-listen=0.0.0.0:15014",
		"--webhook-listen=0.0.0.0:15017",
		"--injector-webhook-config=" + b.name("istio-sidecar-injector"),
		"--validator-webhook-config=" + b.name("istio-validator-"+b.o.Namespace),
		"--proxy-image=" + b.o.ProxyImage,
	}
	if b.o.Revision != "" {
		args = append(args, "--revision="+b.o.Revision)
	}
	no, yes, uid := false, true, int64(1337)
	fieldEnv := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: path}}}
	}
	return &appsv1.Deployment{TypeMeta: tm("apps/v1", "Deployment"), ObjectMeta: b.meta(b.name("istiod")),
		Spec: appsv1.DeploymentSpec{
			Replicas: &b.o.Replicas,
			Selector: &metav1.LabelSelector{MatchLabels: b.selector()},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType, RollingUpdate: &appsv1.RollingUpdateDeployment{
				MaxUnavailable: ptr(intstr.FromInt32(0)), MaxSurge: ptr(intstr.FromString("100%"))}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{inject.LabelInject: "false"}},
				Spec: corev1.PodSpec{
					ServiceAccountName: b.name("istiod"),
					Affinity: &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{
						Weight: 100, PodAffinityTerm: corev1.PodAffinityTerm{TopologyKey: "kubernetes.io/hostname", LabelSelector: &metav1.LabelSelector{MatchLabels: b.selector()}}}}}},
					Containers: []corev1.Container{{
						Name:    "discovery",
						Image:   b.o.ControlPlaneImage,
						Command: []string{"straitd"},
						Args:    args,
						Env:     []corev1.EnvVar{fieldEnv("POD_NAME", "metadata.name"), fieldEnv("POD_NAMESPACE", "metadata.namespace")},
						Ports: []corev1.ContainerPort{
							{Name: "grpc-xds", ContainerPort: portXDS}, {Name: "https-dns", ContainerPort: portMesh},
							{Name: "https-webhook", ContainerPort: portWebhook}, {Name: "http-monitoring", ContainerPort: portMonitor},
						},
						ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(portMonitor)}},
							PeriodSeconds: 3, TimeoutSeconds: 5},
						Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
							corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("2Gi")}},
						SecurityContext: &corev1.SecurityContext{RunAsUser: &uid, RunAsGroup: &uid, RunAsNonRoot: &yes, ReadOnlyRootFilesystem: &yes,
							AllowPrivilegeEscalation: &no, Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
						VolumeMounts: []corev1.VolumeMount{
							{Name: "config-volume", MountPath: "/etc/istio/config", ReadOnly: true},
							{Name: "cacerts", MountPath: "/etc/cacerts", ReadOnly: true},
						},
					}},
					Volumes: []corev1.Volume{
						{Name: "config-volume", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
							LocalObjectReference: corev1.LocalObjectReference{Name: b.name("istio")}}}},
						// The CA every replica signs with (Istio's plug-in CA layout), created by
						// `strait install` when missing.
						{Name: "cacerts", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: CACertsSecret}}},
					},
				},
			},
		}}
}

func ptr[T any](v T) *T { return &v }

func (b builder) pdb() *policyv1.PodDisruptionBudget {
	return &policyv1.PodDisruptionBudget{TypeMeta: tm("policy/v1", "PodDisruptionBudget"), ObjectMeta: b.meta(b.name("istiod")),
		Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: ptr(intstr.FromInt32(1)), Selector: &metav1.LabelSelector{MatchLabels: b.selector()}}}
}

// injectorWebhook is Istio's istio-sidecar-injector: pods in namespaces labelled
// istio-injection=enabled (default revision) or istio.io/rev=REVISION, and pods labelled
// sidecar.istio.io/inject=true or istio.io/rev=REVISION elsewhere. The webhook's own policy
// (inject.Decide) then has the final word. straitd fills in the CA bundle.
func (b builder) injectorWebhook() *admissionregistrationv1.MutatingWebhookConfiguration {
	path := "/inject"
	fail := admissionregistrationv1.Fail
	none := admissionregistrationv1.SideEffectClassNone
	never := admissionregistrationv1.NeverReinvocationPolicy
	timeout := int32(10)
	svc := &admissionregistrationv1.ServiceReference{Namespace: b.o.Namespace, Name: b.name("istiod"), Path: &path, Port: ptr(int32(443))}
	rules := []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
		Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}}
	hook := func(name string, ns, obj *metav1.LabelSelector) admissionregistrationv1.MutatingWebhook {
		return admissionregistrationv1.MutatingWebhook{Name: name, ClientConfig: admissionregistrationv1.WebhookClientConfig{Service: svc},
			Rules: rules, FailurePolicy: &fail, SideEffects: &none, ReinvocationPolicy: &never, TimeoutSeconds: &timeout,
			AdmissionReviewVersions: []string{"v1"}, NamespaceSelector: ns, ObjectSelector: obj}
	}
	req := func(key string, op metav1.LabelSelectorOperator, values ...string) metav1.LabelSelectorRequirement {
		return metav1.LabelSelectorRequirement{Key: key, Operator: op, Values: values}
	}
	notFalse := req(inject.LabelInject, metav1.LabelSelectorOpNotIn, "false")
	var hooks []admissionregistrationv1.MutatingWebhook
	if b.o.Revision == "" {
		hooks = []admissionregistrationv1.MutatingWebhook{
			hook("namespace.sidecar-injector.istio.io",
				&metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{req(inject.LabelNamespaceInjection, metav1.LabelSelectorOpIn, "enabled")}},
				&metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{notFalse}}),
			hook("object.sidecar-injector.istio.io",
				&metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
					req(inject.LabelNamespaceInjection, metav1.LabelSelectorOpDoesNotExist), req(inject.LabelRevision, metav1.LabelSelectorOpDoesNotExist)}},
				&metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
					req(inject.LabelInject, metav1.LabelSelectorOpIn, "true"), req(inject.LabelRevision, metav1.LabelSelectorOpDoesNotExist)}}),
		}
	} else {
		hooks = []admissionregistrationv1.MutatingWebhook{
			hook("rev.namespace.sidecar-injector.istio.io",
				&metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
					req(inject.LabelRevision, metav1.LabelSelectorOpIn, b.o.Revision), req(inject.LabelNamespaceInjection, metav1.LabelSelectorOpDoesNotExist)}},
				&metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{notFalse}}),
			hook("rev.object.sidecar-injector.istio.io",
				&metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{req(inject.LabelNamespaceInjection, metav1.LabelSelectorOpDoesNotExist)}},
				&metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
					notFalse, req(inject.LabelRevision, metav1.LabelSelectorOpIn, b.o.Revision)}}),
		}
	}
	return &admissionregistrationv1.MutatingWebhookConfiguration{TypeMeta: tm("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"),
		ObjectMeta: metav1.ObjectMeta{Name: b.name("istio-sidecar-injector"), Labels: b.labels()}, Webhooks: hooks}
}

// validationWebhook refuses invalid Istio objects at `kubectl apply` with the messages of
// `strait apply`. It starts with failurePolicy Ignore, as Istio's does, so that installing does
// not block on straitd being up; straitd sets Fail once it serves the webhook.
func (b builder) validationWebhook() *admissionregistrationv1.ValidatingWebhookConfiguration {
	path := "/validate"
	ignore := admissionregistrationv1.Ignore
	none := admissionregistrationv1.SideEffectClassNone
	timeout := int32(10)
	var ns *metav1.LabelSelector
	if b.o.Revision != "" {
		ns = &metav1.LabelSelector{MatchLabels: map[string]string{inject.LabelRevision: b.o.Revision}}
	}
	return &admissionregistrationv1.ValidatingWebhookConfiguration{TypeMeta: tm("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"),
		ObjectMeta: metav1.ObjectMeta{Name: b.name("istio-validator-" + b.o.Namespace), Labels: b.labels()},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name: "rev.validation.istio.io",
			ClientConfig: admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{
				Namespace: b.o.Namespace, Name: b.name("istiod"), Path: &path, Port: ptr(int32(443))}},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
				Rule:       admissionregistrationv1.Rule{APIGroups: istioGroups, APIVersions: []string{"*"}, Resources: []string{"*"}}}},
			FailurePolicy: &ignore, SideEffects: &none, TimeoutSeconds: &timeout, AdmissionReviewVersions: []string{"v1"},
			NamespaceSelector: ns,
		}}}
}

// gateway is istio-ingressgateway: strait-proxy in router mode behind a LoadBalancer Service
// (80 → 8080, 443 → 8443, and the status port 15021 for load balancers' health checks).
func (b builder) gateway() []runtime.Object {
	name := b.name("istio-ingressgateway")
	sa := name + "-service-account"
	sel := map[string]string{"app": "istio-ingressgateway", "istio": "ingressgateway"}
	labels := map[string]string{inject.LabelRevision: b.rev(), "service.istio.io/canonical-name": "istio-ingressgateway"}
	for k, v := range sel {
		labels[k] = v
	}
	fieldEnv := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: path}}}
	}
	no, yes, uid := false, true, int64(1337)
	expiry := int64(43200)
	dep := &appsv1.Deployment{TypeMeta: tm("apps/v1", "Deployment"), ObjectMeta: b.meta(name),
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(int32(1)),
			Selector: &metav1.LabelSelector{MatchLabels: sel},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{inject.LabelInject: "false",
					"prometheus.io/scrape": "true", "prometheus.io/port": "15020", "prometheus.io/path": "/stats/prometheus"}},
				Spec: corev1.PodSpec{
					ServiceAccountName: sa,
					Containers: []corev1.Container{{
						Name:    inject.ProxyContainer,
						Image:   b.o.ProxyImage,
						Command: []string{"strait-proxy"},
						Args: []string{"--mode=router", "--namespace=$(POD_NAMESPACE)", "--workload-name=$(POD_NAME)", "--ip=$(INSTANCE_IP)",
							"--service-account=$(SERVICE_ACCOUNT)", "--labels=app=istio-ingressgateway,istio=ingressgateway",
							"--ca-address=" + b.name("istiod") + "." + b.o.Namespace + ".svc:15012",
							"--ca-root-cert=/var/run/secrets/istio/root-cert.pem", "--bootstrap-token-file=/var/run/secrets/tokens/istio-token",
							"--status-address=0.0.0.0:15020", "--health-address=0.0.0.0:15021", "--prometheus-address=0.0.0.0:15090",
							"--admin-socket=/etc/istio/proxy/admin/admin.sock", "--dns-address="},
						Env: []corev1.EnvVar{fieldEnv("POD_NAME", "metadata.name"), fieldEnv("POD_NAMESPACE", "metadata.namespace"),
							fieldEnv("INSTANCE_IP", "status.podIP"), fieldEnv("SERVICE_ACCOUNT", "spec.serviceAccountName")},
						Ports: []corev1.ContainerPort{{Name: "http2", ContainerPort: 8080}, {Name: "https", ContainerPort: 8443},
							{Name: "status-port", ContainerPort: 15021}, {Name: "http-envoy-prom", ContainerPort: 15090}},
						ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz/ready", Port: intstr.FromInt32(15021)}},
							PeriodSeconds: 2, FailureThreshold: 30},
						SecurityContext: &corev1.SecurityContext{RunAsUser: &uid, RunAsGroup: &uid, RunAsNonRoot: &yes, ReadOnlyRootFilesystem: &yes,
							AllowPrivilegeEscalation: &no, Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
						VolumeMounts: []corev1.VolumeMount{{Name: "istio-envoy", MountPath: "/etc/istio/proxy"},
							{Name: "istiod-ca-cert", MountPath: "/var/run/secrets/istio", ReadOnly: true},
							{Name: "istio-token", MountPath: "/var/run/secrets/tokens", ReadOnly: true}},
					}},
					Volumes: []corev1.Volume{
						{Name: "istio-envoy", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}},
						{Name: "istiod-ca-cert", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
							LocalObjectReference: corev1.LocalObjectReference{Name: inject.RootCertConfigMap}}}},
						{Name: "istio-token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{{
							ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Audience: inject.TokenAudience, ExpirationSeconds: &expiry, Path: "istio-token"}}}}}},
					},
				},
			},
		}}
	svc := &corev1.Service{TypeMeta: tm("v1", "Service"), ObjectMeta: b.meta(name),
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: sel, Ports: []corev1.ServicePort{
			{Name: "status-port", Port: 15021, TargetPort: intstr.FromInt32(15021), Protocol: corev1.ProtocolTCP},
			{Name: "http2", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP},
			{Name: "https", Port: 443, TargetPort: intstr.FromInt32(8443), Protocol: corev1.ProtocolTCP},
		}}}
	return []runtime.Object{b.serviceAccount(sa), dep, svc}
}

// crd decodes one CustomResourceDefinition document.
func crd(doc []byte) (*unstructured.Unstructured, error) {
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(js); err != nil {
		return nil, err
	}
	if u.GetKind() != "CustomResourceDefinition" || u.GetAPIVersion() != "apiextensions.k8s.io/v1" {
		return nil, fmt.Errorf("%s %s is not an apiextensions.k8s.io/v1 CustomResourceDefinition", u.GetAPIVersion(), u.GetKind())
	}
	return u, nil
}
