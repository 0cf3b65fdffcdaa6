package admission

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// vs is a VirtualService as the API server hands it to a webhook: JSON, with the metadata the
// server fills in.
func vs(spec string) []byte {
	return []byte(`{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"reviews","namespace":"bookstore",` +
		`"uid":"6f1c","creationTimestamp":"2026-12-06T10:00:00Z","generation":1,"managedFields":[{"manager":"kubectl","operation":"Update"}]},` +
		`"spec":` + spec + `}`)
}

func review(t *testing.T, h http.Handler, op admissionv1.Operation, obj []byte) *admissionv1.AdmissionResponse {
	t.Helper()
	in := admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: "req-1", Operation: op, Namespace: "bookstore", Name: "reviews",
			Kind: metav1.GroupVersionKind{Group: "networking.istio.io", Version: "v1", Kind: "VirtualService"}, Object: runtime.RawExtension{Raw: obj}}}
	body, _ := json.Marshal(in)
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/validate", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil {
		t.Fatalf("response %s: %v", rec.Body, err)
	}
	if out.Response.UID != "req-1" || out.APIVersion != "admission.k8s.io/v1" {
		t.Errorf("response UID %q, apiVersion %q", out.Response.UID, out.APIVersion)
	}
	return out.Response
}

func TestValidate(t *testing.T) {
	h := Handler(Validate, nil)
	good := vs(`{"hosts":["reviews"],"http":[{"route":[{"destination":{"host":"reviews","subset":"v2"}}]}]}`)
	if r := review(t, h, admissionv1.Create, good); !r.Allowed {
		t.Errorf("a valid VirtualService was refused: %v", r.Result)
	}
	for _, c := range []struct{ spec, want string }{
		{`{"hosts":["reviews"],"http":[{"route":[{"destination":{"host":"reviews"},"wieght":10}]}]}`, "spec.http[0].route[0]"},
		{`{"hosts":["reviews"],"http":[{"timeout":"soon","route":[{"destination":{"host":"reviews"}}]}]}`, "spec.http[0].timeout"},
		{`{"hosts":["reviews"],"http":[{"route":[{"destination":{"host":"reviews","port":{"number":70000}}}]}]}`, "spec.http[0].route[0].destination.port.number"},
	} {
		r := review(t, h, admissionv1.Update, vs(c.spec))
		if r.Allowed || r.Result == nil || !strings.Contains(r.Result.Message, c.want) || !strings.Contains(r.Result.Message, "VirtualService bookstore/reviews") {
			t.Errorf("%s: allowed %v, message %v; want a refusal naming %s", c.spec, r.Allowed, r.Result, c.want)
		}
	}
	if r := review(t, h, admissionv1.Delete, nil); !r.Allowed {
		t.Error("a delete was refused")
	}
	if r := review(t, h, admissionv1.Create, []byte(`{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"x"},"spec":[]}`)); r.Allowed {
		t.Error("a spec that is not an object was admitted")
	}
}

func TestHandlerRefusesBadRequests(t *testing.T) {
	h := Handler(Validate, nil)
	for _, c := range []struct {
		method, ct string
		body       []byte
		want       int
	}{
		{http.MethodGet, "application/json", nil, http.StatusMethodNotAllowed},
		{http.MethodPost, "text/plain", []byte("{}"), http.StatusUnsupportedMediaType},
		{http.MethodPost, "application/json", []byte("{}"), http.StatusBadRequest},
		{http.MethodPost, "application/json", []byte("[1,2"), http.StatusBadRequest},
		{http.MethodPost, "application/json", bytes.Repeat([]byte(" "), MaxReview+1), http.StatusRequestEntityTooLarge},
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(c.method, "/validate", bytes.NewReader(c.body))
		req.Header.Set("Content-Type", c.ct)
		h.ServeHTTP(rec, req)
		if rec.Code != c.want {
			t.Errorf("%s %s %d bytes: %d, want %d", c.method, c.ct, len(c.body), rec.Code, c.want)
		}
	}
}
