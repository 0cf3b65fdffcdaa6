package controlplane

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/strait-mesh/strait/internal/testenv"
)

// TestWebhooksOnKubernetes runs straitd's admission webhooks behind a real kube-apiserver: the
// API server calls them over TLS with the CA bundle straitd writes into the webhook
// configurations. A pod created in a namespace labelled istio-injection=enabled is stored with
// the sidecar; one in an unlabelled namespace is not; `kubectl apply` of an invalid
// VirtualService is refused naming the field, a valid one is stored.
func TestWebhooksOnKubernetes(t *testing.T) {
	c, ctx := kubeWithCRDs(t)
	port := testenv.FreePort(t)
	ready := make(chan struct{}, 1)
	o := Options{Kubeconfig: c.Kubeconfig, HTTPListen: "127.0.0.1:0", MeshListen: "127.0.0.1:0", CADir: t.TempDir(),
		Webhooks: WebhookOptions{Listen: fmt.Sprintf("127.0.0.1:%d", port), ProxyImage: "strait/proxy:test",
			InjectorConfig: "strait-test-injector", ValidatorConfig: "strait-test-validator"},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Ready:  func(string, string) { ready <- struct{}{} }}
	r := testenv.Go(t, "straitd", 10*time.Second, func(ctx context.Context) error { return Run(ctx, o) })
	select {
	case <-ready:
	case <-r.Done():
		t.Fatalf("Run: %v", r.Err())
	case <-ctx.Done():
		t.Fatal("straitd did not start")
	}

	// The webhook configurations as `strait install` writes them, but with URLs (no Service
	// routing here) and no CA bundle: straitd fills it in.
	objs := c.Objects(t)
	base := fmt.Sprintf("https://127.0.0.1:%d", port)
	if _, err := objs.Create(ctx, `apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {name: strait-test-injector}
webhooks:
- name: namespace.sidecar-injector.istio.io
  clientConfig: {url: "`+base+`/inject"}
  rules: [{operations: [CREATE], apiGroups: [""], apiVersions: [v1], resources: [pods]}]
  namespaceSelector: {matchLabels: {istio-injection: enabled}}
  failurePolicy: Fail
  sideEffects: None
  admissionReviewVersions: [v1]
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: strait-test-validator}
webhooks:
- name: rev.validation.istio.io
  clientConfig: {url: "`+base+`/validate"}
  rules: [{operations: [CREATE, UPDATE], apiGroups: [networking.istio.io], apiVersions: ["*"], resources: ["*"]}]
  failurePolicy: Ignore
  sideEffects: None
  admissionReviewVersions: [v1]
`); err != nil {
		t.Fatal(err)
	}
	client := kubernetes.NewForConfigOrDie(c.Config)
	eventually(t, "the CA bundles and the validator's failure policy", func() bool {
		m, err1 := client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "strait-test-injector", metav1.GetOptions{})
		v, err2 := client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, "strait-test-validator", metav1.GetOptions{})
		return err1 == nil && err2 == nil && len(m.Webhooks[0].ClientConfig.CABundle) > 0 && len(v.Webhooks[0].ClientConfig.CABundle) > 0 &&
			v.Webhooks[0].FailurePolicy != nil && *v.Webhooks[0].FailurePolicy == "Fail"
	})

	pod := func(ns string) string {
		return `apiVersion: v1
kind: ServiceAccount
metadata: {name: default, namespace: ` + ns + `}
---
apiVersion: v1
kind: Pod
metadata: {name: reviews, namespace: ` + ns + `, labels: {app: reviews, version: v1}}
spec:
  containers:
  - name: reviews
    image: strait/bookstore:latest
    ports: [{name: http, containerPort: 9080}]
    readinessProbe: {httpGet: {path: /health, port: http}}
`
	}
	if _, err := objs.Create(ctx, `apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
`); err != nil {
		t.Fatal(err)
	}
	// The webhook configuration may take a moment to reach the API server's admission chain.
	var created string
	eventually(t, "an injected pod", func() bool {
		out, err := objs.Create(ctx, pod("shop"))
		if err != nil {
			t.Logf("creating the pod: %v", err)
			return false
		}
		p := out[len(out)-1]
		names := []string{}
		inits, _, _ := unstructuredSlice(p.Object, "spec", "initContainers")
		for _, c := range inits {
			names = append(names, c["name"].(string))
		}
		created = strings.Join(names, ",")
		if created != "istio-init,istio-proxy" {
			_ = objs.Delete(ctx, pod("shop"))
		}
		return created == "istio-init,istio-proxy"
	})
	got, err := client.CoreV1().Pods("shop").Get(ctx, "reviews", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p := got.Spec.Containers[0].ReadinessProbe.HTTPGet; p == nil || p.Path != "/app-health/reviews/readyz" || p.Port.IntValue() != 15020 {
		t.Errorf("the stored pod's readiness probe is not rewritten: %+v", got.Spec.Containers[0].ReadinessProbe)
	}
	if got.Annotations["sidecar.istio.io/status"] == "" || got.Labels["security.istio.io/tlsMode"] != "istio" {
		t.Errorf("the stored pod lacks the injection's annotations and labels: %v %v", got.Annotations, got.Labels)
	}

	// A namespace without the label: no sidecar.
	out, err := objs.Create(ctx, pod("plain"))
	if err != nil {
		t.Fatal(err)
	}
	if inits, _, _ := unstructuredSlice(out[len(out)-1].Object, "spec", "initContainers"); len(inits) != 0 {
		t.Errorf("a pod in an unlabelled namespace got init containers: %v", inits)
	}

	// Validation: an invalid VirtualService is refused at the API server with the field path.
	vs := func(spec string) string {
		return "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews, namespace: shop}\nspec: " + spec + "\n"
	}
	// (A regex RE2 cannot compile: the CRD's own schema lets it through, Strait's validation does not.)
	_, err = objs.Create(ctx, vs(`{hosts: [reviews], http: [{match: [{uri: {regex: "("}}], route: [{destination: {host: reviews}}]}]}`))
	if err == nil || !strings.Contains(err.Error(), "spec.http[0].match[0].uri.regex") || !strings.Contains(err.Error(), "denied the request") {
		t.Errorf("an invalid VirtualService: %v, want a refusal by the webhook naming spec.http[0].match[0].uri.regex", err)
	}
	if _, err := objs.Create(ctx, vs(`{hosts: [reviews], http: [{timeout: 2s, route: [{destination: {host: reviews}}]}]}`)); err != nil {
		t.Errorf("a valid VirtualService was refused: %v", err)
	}
}

// unstructuredSlice reads a list of objects at path.
func unstructuredSlice(obj map[string]any, path ...string) ([]map[string]any, bool, error) {
	cur := any(obj)
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false, nil
		}
		cur = m[p]
	}
	list, ok := cur.([]any)
	if !ok {
		return nil, false, nil
	}
	out := make([]map[string]any, 0, len(list))
	for _, e := range list {
		if m, ok := e.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out, true, nil
}
