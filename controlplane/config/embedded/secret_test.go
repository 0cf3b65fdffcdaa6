package embedded_test

import (
	"bytes"
	"encoding/base64"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/config/corev1"
	"github.com/strait-mesh/strait/internal/testenv"
)

// TestSecretApplyGetRedactedAndPersisted applies a Secret with `strait apply`, reads it back with
// `strait get` (every format) and the open GET /apis/v1/objects, which show its keys and sizes
// but never its data, and checks that the store keeps the data across a reopen.
func TestSecretApplyGetRedactedAndPersisted(t *testing.T) {
	dir := t.TempDir()
	cert, key := testenv.PEM(t, testenv.SelfSigned(t, "edge.example"))
	b64 := base64.StdEncoding.EncodeToString
	doc := "apiVersion: v1\nkind: Secret\nmetadata: {name: edge-cred, namespace: edge}\ntype: kubernetes.io/tls\ndata:\n" +
		"  tls.crt: " + b64(cert) + "\n  tls.key: " + b64(key) + "\n"
	file := filepath.Join(dir, "secret.yaml")
	if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "store.db")
	h := open(t, db)
	out, errOut, code := h.strait("", "apply", "-f", file)
	if code != 0 || !strings.Contains(out, "secret/edge-cred created") {
		t.Fatalf("apply: code %d out %q err %q", code, out, errOut)
	}
	pemBody := func(b []byte) string { return string(b[bytes.IndexByte(b, '\n')+1:][:32]) } // after the BEGIN line
	leaks := []string{b64(key)[:32], b64(cert)[:32], pemBody(key), pemBody(cert)}
	noLeak := func(what, s string) {
		t.Helper()
		for _, l := range leaks {
			if strings.Contains(s, l) {
				t.Fatalf("%s shows the Secret's data:\n%s", what, s)
			}
		}
	}
	for _, format := range []string{"yaml", "json", ""} {
		out, errOut, code := h.strait("", "get", "secret", "edge-cred", "-n", "edge", "-o", format)
		if code != 0 {
			t.Fatalf("get -o %q: %s", format, errOut)
		}
		noLeak("strait get -o "+format, out)
		if format != "" && (!strings.Contains(out, "tls.key") || !strings.Contains(out, "bytes]")) {
			t.Errorf("get -o %s does not show the keys and sizes:\n%s", format, out)
		}
	}
	resp, err := http.Get(h.srv.URL + "/apis/v1/objects?kind=secrets&namespace=edge")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	noLeak("GET /apis/v1/objects", string(body))

	// Applying what `strait get` printed fails, saying why, and changes nothing.
	printed, _, _ := h.strait("", "get", "secret", "edge-cred", "-n", "edge", "-o", "yaml")
	_, errOut, code = h.strait(printed, "apply", "-f", "-")
	if code == 0 || !strings.Contains(errOut, "the value is redacted") {
		t.Fatalf("apply of the redacted output: code %d err %q", code, errOut)
	}
	noLeak("apply errors", errOut)

	// The store keeps the data itself.
	h.close()
	h = open(t, db)
	objs, err := h.store.Get(config.Secret, "edge", "edge-cred")
	if err != nil || len(objs) != 1 {
		t.Fatalf("after reopen: %v %v", objs, err)
	}
	s := objs[0].Spec.(*corev1.Secret)
	if s.Type != config.SecretTypeTLS || string(s.Data[config.SecretTLSKey]) != string(key) || string(s.Data[config.SecretTLSCert]) != string(cert) {
		t.Fatal("the store did not keep the Secret's data")
	}
}
