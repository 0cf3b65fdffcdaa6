package translate_test

import (
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/config/corev1"
	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/mesh/meshtest"
	"github.com/strait-mesh/strait/controlplane/translate"
	"github.com/strait-mesh/strait/internal/node"
)

const credentialsCase = "testdata/gateway-credentials.input.yaml"

// snapshotObjects returns every object of a snapshot.
func snapshotObjects(snap *mesh.Snapshot) []*config.Object {
	var out []*config.Object
	for _, list := range snap.Configs {
		out = append(out, list...)
	}
	return out
}

// secretsOf indexes the SDS Secrets of generated resources by name.
func secretsOf(t *testing.T, res translate.Resources) map[string]*tlsv3.Secret {
	t.Helper()
	out := map[string]*tlsv3.Secret{}
	for _, r := range res[resource.SecretType] {
		s := r.(*tlsv3.Secret)
		if err := s.Validate(); err != nil {
			t.Fatalf("secret %s: %v", s.GetName(), err)
		}
		out[s.GetName()] = s
	}
	return out
}

// subject returns the subject of the first certificate of inline PEM.
func subject(t *testing.T, b []byte) string {
	t.Helper()
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatal("not PEM")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.Subject.CommonName
}

// withSecret returns a copy of the Secret o (decoded from the case) with data.
func withSecret(o *config.Object, data map[string][]byte) *config.Object {
	c := *o
	c.Spec = &corev1.Secret{Type: o.Spec.(*corev1.Secret).GetType(), Data: data}
	return &c
}

func findObject(t *testing.T, objs []*config.Object, kind config.Kind, ns, name string) *config.Object {
	t.Helper()
	for _, o := range objs {
		if o.Kind == kind && o.Namespace == ns && o.Name == name {
			return o
		}
	}
	t.Fatalf("%s %s/%s not in the case", kind, ns, name)
	return nil
}

// TestRouterSecretsFollowSecretChanges checks that a changed Secret changes the served credential
// (rotation) while every other credential stays the same object, and that a Secret NAME-cacert
// created later takes precedence for kubernetes://NAME-cacert, as in Istio.
func TestRouterSecretsFollowSecretChanges(t *testing.T) {
	snap, p := loadCase(t, credentialsCase)
	objs := snapshotObjects(snap)
	r := newReporter()
	g := translate.New(translate.Options{Report: r.report})
	res, err := g.Generate(snap, p)
	if err != nil {
		t.Fatal(err)
	}
	before := secretsOf(t, res)
	if got := subject(t, before["kubernetes://shop-cert"].GetTlsCertificate().GetCertificateChain().GetInlineBytes()); got != "gateway.example" {
		t.Fatalf("shop-cert serves %q", got)
	}

	// Rotate shop-cert to partner-cert's certificate and key.
	partner := findObject(t, objs, config.Secret, "istio-system", "partner-cert").Spec.(*corev1.Secret)
	shop := findObject(t, objs, config.Secret, "istio-system", "shop-cert")
	rotated := withSecret(shop, map[string][]byte{config.SecretTLSCert: partner.Data[config.SecretCert], config.SecretTLSKey: partner.Data[config.SecretKey]})
	// And give bundled a separate CA Secret, bundled-cacert, which wins over bundled's ca.crt.
	caSecret := withSecret(findObject(t, objs, config.Secret, "istio-system", "partner-cert-cacert"), map[string][]byte{
		config.SecretTLSCA: findObject(t, objs, config.Secret, "istio-system", "egress-client").Spec.(*corev1.Secret).Data[config.SecretCA]})
	caSecret.Name = "bundled-cacert"
	snap2 := mesh.New(2, snap.Mesh, append(replaceObject(objs, rotated), caSecret))
	res2, err := g.Generate(snap2, p)
	if err != nil {
		t.Fatal(err)
	}
	after := secretsOf(t, res2)
	if len(after) != len(before) {
		t.Fatalf("%d secrets, want %d", len(after), len(before))
	}
	for name, s := range before {
		changed := name == "kubernetes://shop-cert" || name == "kubernetes://bundled-cacert"
		if changed == (after[name] == s) {
			t.Errorf("%s: rebuilt %v, want %v", name, after[name] != s, changed)
		}
	}
	if got := subject(t, after["kubernetes://shop-cert"].GetTlsCertificate().GetCertificateChain().GetInlineBytes()); got != "other.example" {
		t.Errorf("rotated shop-cert serves %q, want other.example", got)
	}
	if got := subject(t, after["kubernetes://bundled-cacert"].GetValidationContext().GetTrustedCa().GetInlineBytes()); got != "Test CA" {
		t.Errorf("bundled-cacert serves %q, want Test CA from the Secret bundled-cacert", got)
	}
	if got := subject(t, before["kubernetes://bundled-cacert"].GetValidationContext().GetTrustedCa().GetInlineBytes()); got != "Client CA" {
		t.Errorf("before: bundled-cacert served %q, want Client CA from bundled's ca.crt", got)
	}
}

// TestRouterSecretsScope checks who gets Secrets: a sidecar none, a router of another namespace
// the Secrets of its own namespace only (istio-system's are not found for it), and that no
// report quotes a Secret's data.
func TestRouterSecretsScope(t *testing.T) {
	snap, router := loadCase(t, credentialsCase)
	r := newReporter()
	g := translate.New(translate.Options{Report: r.report})

	id := node.NewID(node.Sidecar, "10.0.0.9", "app-1", "istio-system")
	sidecar := &translate.Proxy{ID: id, Type: node.Sidecar, Namespace: "istio-system", IPs: []string{"10.0.0.9"}, InterceptMode: "REDIRECT"}
	res, err := g.Generate(snap, sidecar)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := res[resource.SecretType]; ok {
		t.Errorf("a sidecar got SDS secrets: %d", len(res[resource.SecretType]))
	}

	// The same router in namespace shop: the Gateway (istio-system) still selects it by labels,
	// but istio-system's Secrets are not its to read.
	shopID := node.NewID(node.Router, "10.0.0.10", "gw-shop", "shop")
	shopRouter := &translate.Proxy{ID: shopID, Type: node.Router, Namespace: "shop", Labels: router.Labels, IPs: []string{"10.0.0.10"}}
	r.take()
	res, err = g.Generate(snap, shopRouter)
	if err != nil {
		t.Fatal(err)
	}
	// shop-cert names shop/shop-cert for this router, as does shop/shop-cert: both are served,
	// nothing else.
	got := secretsOf(t, res)
	for name := range got {
		if name != "kubernetes://shop/shop-cert" && name != "kubernetes://shop-cert" {
			t.Errorf("router in shop got %s", name)
		}
	}
	if len(got) != 2 || subject(t, got["kubernetes://shop-cert"].GetTlsCertificate().GetCertificateChain().GetInlineBytes()) != "other.example" {
		t.Errorf("router in shop did not get shop/shop-cert as both names: %v", got)
	}
	reports := strings.Join(r.take(), "\n")
	if !strings.Contains(reports, "servers[1].tls.credentialName: Secret shop/partner-cert not found") {
		t.Errorf("reports:\n%s", reports)
	}

	r.take()
	if _, err := g.Generate(snap, router); err != nil {
		t.Fatal(err)
	}
	for _, rep := range r.take() {
		if strings.Contains(rep, "BEGIN") || strings.Contains(rep, "MII") {
			t.Errorf("report quotes Secret data: %s", rep)
		}
	}
}

// TestRouterSecretConflict checks that an SDS name used both as a certificate and as CA
// certificates is reported and not served.
func TestRouterSecretConflict(t *testing.T) {
	snap, p := loadCase(t, credentialsCase)
	extra, err := meshtest.Decode("conflict.yaml", []byte(`apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: conflict, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8443, name: https-conflict, protocol: HTTPS}
    hosts: [conflict.example.com]
    tls: {mode: MUTUAL, credentialName: bundled, caCertCredentialName: bundled}
`))
	if err != nil {
		t.Fatal(err)
	}
	snap2 := mesh.New(2, snap.Mesh, append(snapshotObjects(snap), extra...))
	r := newReporter()
	res, err := translate.New(translate.Options{Report: r.report}).Generate(snap2, p)
	if err != nil {
		t.Fatal(err)
	}
	if secretsOf(t, res)["kubernetes://bundled"] != nil {
		t.Error("kubernetes://bundled served despite the conflict")
	}
	if reports := strings.Join(r.take(), "\n"); !strings.Contains(reports, `.tls.credentialName: SDS secret "kubernetes://bundled" is named both as a certificate and as CA certificates`) {
		t.Errorf("reports:\n%s", reports)
	}
}
