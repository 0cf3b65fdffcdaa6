package inject

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// maxReview bounds an AdmissionReview's body. The API server limits objects to about 3 MiB
// (etcd's request limit), and a review carries the object once.
const maxReview = 4 << 20

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
	log := wh.Logger
	if log == nil {
		log = slog.Default()
	}
	if r.Method != http.MethodPost {
		http.Error(w, "POST an AdmissionReview", http.StatusMethodNotAllowed)
		return
	}
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		http.Error(w, "Content-Type must be application/json", http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxReview+1))
	if err != nil {
		http.Error(w, "reading the request: "+err.Error(), http.StatusBadRequest)
		return
	}
	if len(body) > maxReview {
		http.Error(w, fmt.Sprintf("AdmissionReview larger than %d bytes", maxReview), http.StatusRequestEntityTooLarge)
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil || review.Request == nil {
		http.Error(w, "not an AdmissionReview with a request", http.StatusBadRequest)
		return
	}
	resp := wh.Review(r.Context(), review.Request)
	if !resp.Allowed {
		log.Info("sidecar injection refused a pod", "namespace", review.Request.Namespace, "name", review.Request.Name, "reason", resp.Result.Message)
	}
	out := admissionv1.AdmissionReview{TypeMeta: review.TypeMeta, Response: resp}
	if out.APIVersion == "" {
		out.APIVersion, out.Kind = "admission.k8s.io/v1", "AdmissionReview"
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(&out)
}

// Review decides one admission request.
func (wh *Webhook) Review(ctx context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	allow := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	deny := func(msg string) *admissionv1.AdmissionResponse {
		return &admissionv1.AdmissionResponse{UID: req.UID, Result: &metav1.Status{Status: metav1.StatusFailure, Message: "strait sidecar injection: " + msg, Reason: metav1.StatusReasonBadRequest, Code: http.StatusBadRequest}}
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
