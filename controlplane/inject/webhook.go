package inject

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/strait-mesh/strait/controlplane/admission"
)

// NamespaceLabels returns a namespace's labels (from an informer's cache, say).
type NamespaceLabels func(ctx context.Context, namespace string) (map[string]string, error)

// Webhook is the mutating admission webhook (Istio's sidecar injector, path /inject): it
// answers AdmissionReview v1 requests for pods with a JSON patch that adds the sidecar, or with
// no patch when the policy says no. A pod the injector cannot inject as asked (an unsupported
// or invalid annotation) is refused with the reason, as Istio's injector refuses it.
type Webhook struct {
	Config     Config
	Namespaces NamespaceLabels
	Logger     *slog.Logger
}

// ServeHTTP implements http.Handler.
func (wh *Webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	admission.Handler(wh.Review, wh.Logger).ServeHTTP(w, r)
}

// Review decides one admission request.
func (wh *Webhook) Review(ctx context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	allow := admission.Allow(req)
	deny := func(msg string) *admissionv1.AdmissionResponse {
		return admission.Deny(req, "strait sidecar injection: "+msg)
	}
	if req.Kind.Kind != "Pod" || req.Kind.Group != "" || req.Operation != admissionv1.Create {
		return allow
	}
	var pod corev1.Pod
	dec := json.NewDecoder(bytes.NewReader(req.Object.Raw))
	if err := dec.Decode(&pod); err != nil {
		return deny("decoding the pod: " + err.Error())
	}
	ns := req.Namespace
	if ns == "" {
		ns = pod.Namespace
	}
	var nsLabels map[string]string
	if wh.Namespaces != nil {
		l, err := wh.Namespaces(ctx, ns)
		if err != nil {
			return deny(fmt.Sprintf("reading namespace %s: %v", ns, err))
		}
		nsLabels = l
	}
	if d := Decide(ns, nsLabels, &pod, wh.Config.Revision); !d.Inject {
		return allow
	}
	injected, err := Inject(&pod, ns, wh.Config)
	if err != nil {
		return deny(err.Error())
	}
	patch, err := Patch(&pod, injected)
	if err != nil {
		return deny(err.Error())
	}
	pt := admissionv1.PatchTypeJSONPatch
	allow.Patch, allow.PatchType = patch, &pt
	return allow
}

// patchOp is one RFC 6902 operation.
type patchOp struct {
	Op    string          `json:"op"`
	Path  string          `json:"path"`
	Value json.RawMessage `json:"value,omitempty"`
}

// Patch is the JSON patch (RFC 6902) from the original pod to the injected one: an "add" — which
// replaces an existing member — of each top-level part of the metadata and spec the injection
// changed. Whole lists are replaced, not spliced, so the patch means the same whatever order the
// API server's other mutating webhooks left the lists in before this one.
func Patch(orig, injected *corev1.Pod) ([]byte, error) {
	var ops []patchOp
	diff := func(path string, a, b any) error {
		ja, err := json.Marshal(a)
		if err != nil {
			return err
		}
		jb, err := json.Marshal(b)
		if err != nil {
			return err
		}
		if !bytes.Equal(ja, jb) {
			ops = append(ops, patchOp{Op: "add", Path: path, Value: jb})
		}
		return nil
	}
	for _, d := range []struct {
		path string
		a, b any
	}{
		{"/metadata/labels", orig.Labels, injected.Labels},
		{"/metadata/annotations", orig.Annotations, injected.Annotations},
		{"/spec/initContainers", orig.Spec.InitContainers, injected.Spec.InitContainers},
		{"/spec/containers", orig.Spec.Containers, injected.Spec.Containers},
		{"/spec/volumes", orig.Spec.Volumes, injected.Spec.Volumes},
		{"/spec/securityContext", orig.Spec.SecurityContext, injected.Spec.SecurityContext},
	} {
		if err := diff(d.path, d.a, d.b); err != nil {
			return nil, fmt.Errorf("building the patch of %s: %w", strings.TrimPrefix(d.path, "/"), err)
		}
	}
	return json.Marshal(ops)
}
