package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/strait-mesh/strait/controlplane/config/corev1"
)

// testCert returns a PEM certificate and PKCS#8 key for cn, self-signed.
func testCert(t *testing.T, cn string) (certPEM, keyPEM []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn}, DNSNames: []string{cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd})
}

// checkSecretRedacted checks that out, the rendering of the Secret o by marshal, does not depend
// on the content of its data (it equals the rendering of a copy whose values are zeros of the
// same sizes), lists its keys, and that decoding it fails instead of applying placeholders.
func checkSecretRedacted(t *testing.T, o *Object, out []byte, marshal func(*Object) ([]byte, error)) {
	t.Helper()
	s := o.Spec.(*corev1.Secret)
	zeroed := *o
	zs := &corev1.Secret{Type: s.GetType(), Immutable: s.GetImmutable(), Data: map[string][]byte{}}
	for k, v := range s.GetData() {
		zs.Data[k] = make([]byte, len(v))
		if !strings.Contains(string(out), k) {
			t.Errorf("%s: the rendering does not list key %q:\n%s", o.Key(), k, out)
		}
		if len(v) >= 16 && (strings.Contains(string(out), string(v)) || strings.Contains(string(out), base64.StdEncoding.EncodeToString(v))) {
			t.Fatalf("%s: the rendering shows the data of %q:\n%s", o.Key(), k, out)
		}
	}
	zeroed.Spec = zs
	if want, err := marshal(&zeroed); err != nil || string(want) != string(out) {
		t.Fatalf("%s: the rendering depends on the Secret's data (%v):\n%s", o.Key(), err, out)
	}
	if v, ok := o.Annotations[lastAppliedAnnotation]; ok && len(v) > len("[redacted]") && strings.Contains(string(out), v) {
		t.Fatalf("%s: the rendering shows kubectl's last-applied-configuration:\n%s", o.Key(), out)
	}
	if back, errs := Decode("rendered", out); len(o.Spec.(*corev1.Secret).GetData()) > 0 && (len(back) != 0 || len(errs) == 0) {
		t.Fatalf("%s: the redacted rendering decodes: %v", o.Key(), errs)
	}
}

func secretDoc(body string) string {
	return "apiVersion: v1\nkind: Secret\nmetadata: {name: cred, namespace: gw}\n" + body
}

func TestDecodeSecret(t *testing.T) {
	cert, key := testCert(t, "a.example")
	b64 := base64.StdEncoding.EncodeToString
	objs, errs := Load("s.yaml", []byte(secretDoc("type: kubernetes.io/tls\ndata:\n  tls.crt: "+b64(cert)+"\n  tls.key: "+b64([]byte("overridden"))+
		"\nstringData:\n  tls.key: |\n"+indent(string(key), "    "))))
	if len(errs) > 0 || len(objs) != 1 {
		t.Fatalf("%v", errs)
	}
	o := objs[0]
	s := o.Spec.(*corev1.Secret)
	if o.Kind != Secret || o.APIVersion != "v1" || o.Key().String() != "Secret/gw/cred" || s.Type != SecretTypeTLS {
		t.Fatalf("%s %s %+v", o.Key(), o.APIVersion, s.Type)
	}
	if string(s.Data[SecretTLSCert]) != string(cert) || string(s.Data[SecretTLSKey]) != string(key) {
		t.Error("data: stringData must win over data, and data is base64")
	}
	chain, k, err := SecretKeyPair(s)
	if err != nil || string(chain) != string(cert) || string(k) != string(key) {
		t.Errorf("SecretKeyPair: %v", err)
	}

	// No type is Kubernetes' default, Opaque.
	objs, errs = Decode("s.yaml", []byte(secretDoc("stringData: {cacert: x}\n")))
	if len(errs) > 0 || objs[0].Spec.(*corev1.Secret).Type != SecretTypeOpaque {
		t.Fatalf("%v %v", errs, objs)
	}
	if k, ok := KindFor("secrets"); !ok || k != Secret {
		t.Error("KindFor(secrets)")
	}
}

func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return prefix + strings.Join(lines, "\n"+prefix) + "\n"
}

// TestSecretErrors checks decoding and validation errors: each names the file, the Secret and
// the field, and none quotes the data.
func TestSecretErrors(t *testing.T) {
	cert, key := testCert(t, "a.example")
	otherCert, otherKey := testCert(t, "b.example")
	b64 := base64.StdEncoding.EncodeToString
	secret := "c2VjcmV0LXZhbHVlLWRvLW5vdC1wcmludA==" // base64 of a value that must never show
	for _, tc := range []struct {
		name, body, field, msg string
	}{
		{"spec", "spec: {data: {}}\n", "spec", "a Secret has no spec"},
		{"unknown field", "stringdata: {a: b}\n", "stringdata", `unknown field "stringdata" in Secret`},
		{"type not a string", "type: 3\n", "type", "expected a string"},
		{"data not a map", "data: [a]\n", "data", "expected an object"},
		{"value not a string", "data: {a: 3}\n", `data["a"]`, "expected a string"},
		{"bad base64", "data: {tls.crt: 'c2VjcmV0LXZhbHVlLWRvLW5vdC1wcmludA'}\n", `data["tls.crt"]`, "invalid base64 data"},
		{"redacted", "data: {tls.crt: '[redacted: 12 bytes]'}\n", `data["tls.crt"]`, "the value is redacted"},
		{"bad key", "data: {'a/b': " + secret + "}\n", `data["a/b"]`, "invalid data key"},
		{"dot key", "data: {'..a': " + secret + "}\n", `data["..a"]`, "must not be"},
		{"type", "type: kubernetes.io/service-account-token\ndata: {token: " + secret + "}\n", "type", "type \"kubernetes.io/service-account-token\" is not supported"},
		{"tls without key", "type: kubernetes.io/tls\ndata: {tls.crt: " + b64(cert) + "}\n", `data["tls.key"]`, "needs tls.crt and tls.key"},
		{"tls unknown key", "type: kubernetes.io/tls\ndata: {tls.crt: " + b64(cert) + ", tls.key: " + b64(key) + ", extra: " + secret + "}\n", `data["extra"]`, `unknown key "extra"`},
		{"crl", "data: {cacert: " + b64(cert) + ", crl: " + secret + "}\n", `data["crl"]`, "revocation lists are not supported"},
		{"key mismatch", "data: {cert: " + b64(cert) + ", key: " + b64(otherKey) + "}\n", `data["key"]`, "private key does not match public key"},
		{"cert without key", "data: {cert: " + b64(otherCert) + "}\n", `data["key"]`, "cert needs its private key key"},
		{"key not PEM", "data: {tls.crt: " + b64(cert) + ", tls.key: " + secret + "}\n", `data["tls.key"]`, "not PEM"},
		{"cert is a key", "data: {tls.crt: " + b64(key) + ", tls.key: " + b64(key) + "}\n", `data["tls.crt"]`, `PEM block 1 is a "PRIVATE KEY", want CERTIFICATE`},
		{"ca not PEM", "stringData: {ca.crt: 'secret-value-do-not-print'}\n", `data["ca.crt"]`, "not PEM"},
		{"ca empty", "stringData: {cacert: ''}\n", `data["cacert"]`, "empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errs := Load("s.yaml", []byte(secretDoc(tc.body)))
			found := false
			for _, err := range errs {
				var ce *Error
				if !errors.As(err, &ce) {
					t.Fatalf("%T is not a *config.Error: %v", err, err)
				}
				msg := err.Error()
				for _, leak := range []string{secret, "secret-value-do-not-print", b64(cert)[:40], b64(key)[:40], string(key[30:60]), "MIIB"} {
					if strings.Contains(msg, leak) {
						t.Fatalf("error quotes the data: %s", msg)
					}
				}
				if ce.Field == tc.field && strings.Contains(ce.Msg, tc.msg) {
					found = true
					if !strings.HasPrefix(msg, "s.yaml") || !strings.Contains(msg, "cred") {
						t.Errorf("error does not name the file and the Secret: %s", msg)
					}
				}
			}
			if !found {
				t.Fatalf("want %s: %s, got %v", tc.field, tc.msg, errs)
			}
		})
	}
}

// TestSecretSize checks the size limit on a Secret built in code (a document is smaller than the
// limit: see MaxDocumentSize).
func TestSecretSize(t *testing.T) {
	o := &Object{Kind: Secret, APIVersion: "v1", Meta: Meta{Name: "big", Namespace: "gw"},
		Spec: &corev1.Secret{Type: SecretTypeOpaque, Data: map[string][]byte{"a": make([]byte, MaxSecretSize)}}}
	if err := Validate(o); err == nil || !strings.Contains(err.Error(), "Secret gw/big: data: the Secret's data is 1048577 bytes, more than the limit of 1048576") {
		t.Fatalf("%v", err)
	}
}

// TestSecretKinds checks that a v1 Secret is the one Kubernetes core kind Strait reads.
func TestSecretKinds(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {}\n", "is not an Istio object"},
		{"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {a: b}\n", "is not an Istio object"},
		{"apiVersion: apps/v1\nkind: Secret\nmetadata: {name: a}\n", `unsupported apiVersion "apps/v1" (want one of v1)`},
		{"apiVersion: v2\nkind: Secret\nmetadata: {name: a}\n", `unsupported apiVersion "v2" (want one of v1)`},
	} {
		_, errs := Decode("k.yaml", []byte(tc.doc))
		if len(errs) != 1 || !strings.Contains(errs[0].Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.doc, errs, tc.want)
		}
	}
	if objs, errs := Load("k.yaml", []byte("apiVersion: v1\nkind: Secret\nmetadata: {name: a}\n")); len(errs) > 0 || len(objs) != 1 {
		t.Errorf("an empty Opaque Secret: %v", errs)
	}
}

// TestSecretCredentials checks which keys SecretKeyPair and SecretCABundle read, as Istio does:
// the generic names first.
func TestSecretCredentials(t *testing.T) {
	s := &corev1.Secret{Data: map[string][]byte{
		SecretTLSCert: []byte("tls-cert"), SecretTLSKey: []byte("tls-key"), SecretTLSCA: []byte("tls-ca"),
		SecretCert: []byte("cert"), SecretKey: []byte("key"), SecretCA: []byte("ca"),
	}}
	if c, k, err := SecretKeyPair(s); err != nil || string(c) != "cert" || string(k) != "key" {
		t.Errorf("generic keys first: %q %q %v", c, k, err)
	}
	if ca, err := SecretCABundle(s); err != nil || string(ca) != "ca" {
		t.Errorf("cacert first: %q %v", ca, err)
	}
	s = &corev1.Secret{Data: map[string][]byte{SecretTLSCert: []byte("tls-cert"), SecretTLSKey: []byte("tls-key"), SecretKey: []byte("key"), SecretCA: nil}}
	if c, k, err := SecretKeyPair(s); err != nil || string(c) != "tls-cert" || string(k) != "tls-key" {
		t.Errorf("tls keys when the generic pair is incomplete: %q %q %v", c, k, err)
	}
	if _, err := SecretCABundle(s); err == nil || !strings.Contains(err.Error(), "found cacert, key, tls.crt, tls.key") {
		t.Errorf("no CA: %v", err)
	}
	if _, _, err := SecretKeyPair(&corev1.Secret{}); err == nil || !strings.Contains(err.Error(), "found none") {
		t.Errorf("empty: %v", err)
	}
}

// TestSecretRendering checks what `strait get` shows of a Secret: keys and sizes, no data, and
// kubectl's last-applied-configuration annotation (which holds the data) redacted.
func TestSecretRendering(t *testing.T) {
	cert, key := testCert(t, "a.example")
	o := &Object{Kind: Secret, APIVersion: "v1", Meta: Meta{Name: "cred", Namespace: "gw",
		Annotations: map[string]string{lastAppliedAnnotation: `{"data":{"tls.key":"` + base64.StdEncoding.EncodeToString(key) + `"}}`, "team": "edge"}},
		Spec: &corev1.Secret{Type: SecretTypeTLS, Data: map[string][]byte{SecretTLSCert: cert, SecretTLSKey: key}}}
	out, err := MarshalYAML(o)
	if err != nil {
		t.Fatal(err)
	}
	checkSecretRedacted(t, o, out, MarshalYAML)
	for _, want := range []string{"apiVersion: v1\n", "kind: Secret\n", "type: kubernetes.io/tls\n",
		"tls.key: '[redacted: " + itoa(len(key)) + " bytes]'", "kubectl.kubernetes.io/last-applied-configuration: '[redacted]'", "team: edge"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("rendering lacks %q:\n%s", want, out)
		}
	}
	if o.Annotations[lastAppliedAnnotation] == "[redacted]" {
		t.Error("rendering modified the object")
	}
	js, err := MarshalJSON(o)
	if err != nil {
		t.Fatal(err)
	}
	checkSecretRedacted(t, o, js, MarshalJSON)
}

func itoa(n int) string { return big.NewInt(int64(n)).String() }
