package admission

import (
	"context"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/strait-mesh/strait/controlplane/config"
)

// maxMessage bounds the refusal message returned to kubectl.
const maxMessage = 4 << 10

// Validate is the validating webhook's review (Istio's /validate): an Istio object created or
// updated through the API server is decoded and validated exactly as `strait apply` and the
// config directory do, and refused with every error, each naming the field. Deletes, and kinds
// outside the Istio groups the webhook is registered for, are admitted.
func Validate(_ context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return Allow(req)
	}
	if len(req.Object.Raw) == 0 {
		return Deny(req, "no object in the admission request")
	}
	// JSON is YAML: the object goes through the strict decoder as one document.
	objs, errs := config.Load("", req.Object.Raw)
	if len(errs) == 0 && len(objs) != 1 {
		return Deny(req, "expected one object")
	}
	if len(errs) == 0 {
		return Allow(req)
	}
	var b strings.Builder
	b.WriteString("strait validation: ")
	for i, e := range errs {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(e.Error())
		if b.Len() > maxMessage {
			break
		}
	}
	msg := b.String()
	if len(msg) > maxMessage {
		msg = msg[:maxMessage] + " …"
	}
	return Deny(req, msg)
}
