// Package admission serves Kubernetes admission webhooks for straitd: the AdmissionReview v1
// exchange over HTTP (bounded, strict), and the validating webhook that refuses invalid Istio
// objects at `kubectl apply` with the same messages as `strait apply` (Istio's
// istio-validator). The sidecar injector's mutating webhook (package inject) uses the same
// exchange.
package admission

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MaxReview bounds an AdmissionReview's body. The API server limits objects to about 3 MiB
// (etcd's request limit), and a review carries the object, and on update the old one too.
const MaxReview = 8 << 20

// ReviewFunc decides one admission request.
type ReviewFunc func(ctx context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse

// Handler serves AdmissionReview v1 requests with review: POST, application/json, at most
// MaxReview bytes. The response carries the request's UID whatever review returns.
func Handler(review ReviewFunc, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.Default()
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST an AdmissionReview", http.StatusMethodNotAllowed)
			return
		}
		if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
			http.Error(w, "Content-Type must be application/json", http.StatusUnsupportedMediaType)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, MaxReview+1))
		if err != nil {
			http.Error(w, "reading the request: "+err.Error(), http.StatusBadRequest)
			return
		}
		if len(body) > MaxReview {
			http.Error(w, fmt.Sprintf("AdmissionReview larger than %d bytes", MaxReview), http.StatusRequestEntityTooLarge)
			return
		}
		var in admissionv1.AdmissionReview
		if err := json.Unmarshal(body, &in); err != nil || in.Request == nil {
			http.Error(w, "not an AdmissionReview with a request", http.StatusBadRequest)
			return
		}
		resp := review(r.Context(), in.Request)
		resp.UID = in.Request.UID
		if !resp.Allowed && resp.Result != nil {
			log.Info("admission refused", "kind", in.Request.Kind.Kind, "namespace", in.Request.Namespace, "name", in.Request.Name, "reason", resp.Result.Message)
		}
		out := admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, Response: resp}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(&out)
	})
}

// Allow is a response that admits the request unchanged.
func Allow(req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
}

// Deny is a response that refuses the request with msg (HTTP 400 in the status, as a validation
// failure).
func Deny(req *admissionv1.AdmissionRequest, msg string) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{UID: req.UID, Result: &metav1.Status{Status: metav1.StatusFailure, Message: msg,
		Reason: metav1.StatusReasonBadRequest, Code: http.StatusBadRequest}}
}
