package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// orgPKI is an organisation's PKI for plug-in tests: root → inter → ca, and a direct ca under the
// root, plus an unrelated root.
type orgPKI struct {
	now                       time.Time
	root, inter, ca, directCA *x509.Certificate
	otherRoot                 *x509.Certificate
	rootKey, interKey         crypto.Signer
	caKey, directKey          crypto.Signer
	otherKey                  crypto.Signer
}

func newOrgPKI(t *testing.T) *orgPKI {
	now := time.Now()
	p := &orgPKI{now: now, rootKey: testP384(), interKey: testP256b(), caKey: testP256(), directKey: testRSA2048()}
	p.otherKey = mustKey(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	p.root = issue(t, caTemplate("Org Root", now), nil, p.rootKey.Public(), p.rootKey)
	p.inter = issue(t, caTemplate("Org Intermediate", now), p.root, p.interKey.Public(), p.rootKey)
	p.ca = issue(t, caTemplate("Strait Intermediate", now), p.inter, p.caKey.Public(), p.interKey)
	p.directCA = issue(t, caTemplate("Strait Direct", now), p.root, p.directKey.Public(), p.rootKey)
	p.otherRoot = issue(t, caTemplate("Other Root", now), nil, p.otherKey.Public(), p.otherKey)
	return p
}

func keyPEM(t *testing.T, k crypto.Signer) []byte {
	b, err := encodeKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func pems(certs ...*x509.Certificate) []byte { return encodeCerts(certs) }

// writeCACerts writes a cacerts dir; a nil entry omits the file.
func writeCACerts(t *testing.T, files map[string][]byte) string {
	dir := t.TempDir()
	for name, data := range files {
		if data == nil {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestPluginCertificates(t *testing.T) {
	p := newOrgPKI(t)
	// good is Istio's layout for ca under inter under root.
	good := func() map[string][]byte {
		return map[string][]byte{
			PluginCACert:    pems(p.ca),
			PluginCAKey:     keyPEM(t, p.caKey),
			PluginRootCert:  pems(p.root),
			PluginCertChain: pems(p.ca, p.inter, p.root),
		}
	}
	with := func(k string, v []byte) map[string][]byte {
		m := good()
		m[k] = v
		return m
	}
	notCA := caTemplate("Not a CA", p.now)
	notCA.IsCA = false
	notCA.KeyUsage = x509.KeyUsageDigitalSignature
	notCACert := issue(t, notCA, p.inter, p.caKey.Public(), p.interKey)
	expiredT := caTemplate("Expired", p.now)
	expiredT.NotAfter = p.now.Add(-time.Minute)
	expired := issue(t, expiredT, p.inter, p.caKey.Public(), p.interKey)
	futureT := caTemplate("Future", p.now)
	futureT.NotBefore = p.now.Add(time.Hour)
	future := issue(t, futureT, p.inter, p.caKey.Public(), p.interKey)
	serverOnlyT := caTemplate("Server-only Intermediate", p.now)
	serverOnlyT.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	serverOnly := issue(t, serverOnlyT, p.root, p.interKey.Public(), p.rootKey)
	underServerOnly := issue(t, caTemplate("Strait Intermediate", p.now), serverOnly, p.caKey.Public(), p.interKey)
	leafOfRoot := issue(t, leafTemplate(p.now, "spiffe://cluster.local/ns/a/sa/b"), p.root, p.caKey.Public(), p.rootKey)
	weakKey := mustKey(rsa.GenerateKey(rand.Reader, 1024))
	weakCA := issue(t, caTemplate("Weak", p.now), p.inter, weakKey.Public(), p.interKey)
	sec1DER, _ := x509.MarshalECPrivateKey(p.caKey.(*ecdsa.PrivateKey))
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(p.directKey.(*rsa.PrivateKey))})

	tests := []struct {
		name  string
		files map[string][]byte
		// wantErr is a substring of the error; "" means success with wantChain (the
		// certificates after the leaf, before the roots) and wantRoots.
		wantErr   string
		wantChain []*x509.Certificate
		wantRoots []*x509.Certificate // anchor last
	}{
		{name: "istio layout: ca, intermediate, root", files: good(), wantChain: []*x509.Certificate{p.ca, p.inter}, wantRoots: []*x509.Certificate{p.root}},
		{name: "SEC 1 key", files: with(PluginCAKey, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1DER})), wantChain: []*x509.Certificate{p.ca, p.inter}, wantRoots: []*x509.Certificate{p.root}},
		{name: "chain without the root", files: with(PluginCertChain, pems(p.ca, p.inter)), wantChain: []*x509.Certificate{p.ca, p.inter}, wantRoots: []*x509.Certificate{p.root}},
		{name: "two roots (rotation), anchor last", files: with(PluginRootCert, pems(p.root, p.otherRoot)), wantChain: []*x509.Certificate{p.ca, p.inter}, wantRoots: []*x509.Certificate{p.otherRoot, p.root}},
		{name: "directly under the root, no cert-chain.pem, RSA PKCS#1 key", files: map[string][]byte{
			PluginCACert: pems(p.directCA), PluginCAKey: pkcs1, PluginRootCert: pems(p.root),
		}, wantChain: []*x509.Certificate{p.directCA}, wantRoots: []*x509.Certificate{p.root}},
		{name: "the root itself as ca-cert", files: map[string][]byte{
			PluginCACert: pems(p.root), PluginCAKey: keyPEM(t, p.rootKey), PluginRootCert: pems(p.root), PluginCertChain: pems(p.root),
		}, wantChain: nil, wantRoots: []*x509.Certificate{p.root}},

		{name: "key does not match", files: with(PluginCAKey, keyPEM(t, p.otherKey)), wantErr: "private key does not match"},
		{name: "ca-cert not a CA", files: with(PluginCACert, pems(notCACert)), wantErr: "is not a CA"},
		{name: "ca-cert expired", files: with(PluginCACert, pems(expired)), wantErr: "expired at"},
		{name: "ca-cert not yet valid", files: with(PluginCACert, pems(future)), wantErr: "not valid before"},
		{name: "chains to another root", files: with(PluginRootCert, pems(p.otherRoot)), wantErr: "does not chain"},
		{name: "intermediate missing", files: with(PluginCertChain, pems(p.ca)), wantErr: "does not chain"},
		{name: "cert-chain starts elsewhere", files: with(PluginCertChain, pems(p.inter, p.root)), wantErr: "must start with"},
		{name: "two certificates in ca-cert.pem", files: with(PluginCACert, pems(p.ca, p.inter)), wantErr: "want 1"},
		{name: "non-CA in root-cert.pem", files: with(PluginRootCert, pems(p.root, leafOfRoot)), wantErr: "is not a CA"},
		{name: "chain forbids client auth", files: map[string][]byte{
			PluginCACert: pems(underServerOnly), PluginCAKey: keyPEM(t, p.caKey), PluginRootCert: pems(p.root), PluginCertChain: pems(underServerOnly, serverOnly, p.root),
		}, wantErr: "for client authentication"},
		{name: "weak CA key", files: map[string][]byte{
			PluginCACert: pems(weakCA), PluginCAKey: keyPEM(t, weakKey), PluginRootCert: pems(p.root), PluginCertChain: pems(weakCA, p.inter),
		}, wantErr: "want 2048 to 8192"},
		{name: "missing ca-key.pem", files: with(PluginCAKey, nil), wantErr: "ca-key.pem: no such file"},
		{name: "missing root-cert.pem", files: with(PluginRootCert, nil), wantErr: "root-cert.pem: no such file"},
		{name: "garbage root-cert.pem", files: with(PluginRootCert, []byte("not pem")), wantErr: "root-cert.pem: malformed input"},
		{name: "key in ca-cert.pem", files: with(PluginCACert, append(pems(p.ca), keyPEM(t, p.caKey)...)), wantErr: "ca-cert.pem: malformed input"},
	}
	log, _ := testLogger(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeCACerts(t, tc.files)
			a, err := New(Options{PluginDir: dir, Logger: log})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if a.Mode() != "plug-in" {
				t.Errorf("mode %q", a.Mode())
			}
			c, err := a.Sign(SignRequest{CSR: mustParseCSR(t, makeCSR(t, testP256(), nil)), Identity: testID})
			if err != nil {
				t.Fatal(err)
			}
			if !equalCerts(c.Intermediates, tc.wantChain) || !equalCerts(c.Roots, tc.wantRoots) || !equalCerts(a.TrustBundle(), tc.wantRoots) {
				t.Fatalf("chain %v roots %v", subjects(c.Intermediates), subjects(c.Roots))
			}
			// A peer holding only the trust bundle verifies the leaf with the chain sent.
			inter := x509.NewCertPool()
			for _, x := range c.Intermediates {
				inter.AddCert(x)
			}
			for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
				if _, err := c.Leaf.Verify(x509.VerifyOptions{Roots: a.TrustPool(), Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
					t.Fatalf("leaf does not verify: %v", err)
				}
			}
			// Istio's response: leaf, chain, roots; the leaf's own root last.
			got := c.CertChainPEM()
			want := len(tc.wantChain) + len(tc.wantRoots) + 1
			if len(got) != want || got[len(got)-1] != string(encodeCert(tc.wantRoots[len(tc.wantRoots)-1])) {
				t.Fatalf("CertChainPEM has %d elements, want %d, anchor last", len(got), want)
			}
			// Root rotation belongs to the operator in plug-in mode.
			if _, err := a.StageRoot(); err != ErrPluginMode {
				t.Errorf("StageRoot: %v", err)
			}
		})
	}
}

// TestPluginLeafLifetimeCappedByChain: a leaf never outlives the plug-in intermediate.
func TestPluginLeafLifetimeCappedByChain(t *testing.T) {
	p := newOrgPKI(t)
	shortT := caTemplate("Short", p.now)
	shortT.NotAfter = p.now.Add(2 * time.Hour)
	short := issue(t, shortT, p.root, p.caKey.Public(), p.rootKey)
	dir := writeCACerts(t, map[string][]byte{PluginCACert: pems(short), PluginCAKey: keyPEM(t, p.caKey), PluginRootCert: pems(p.root)})
	log, buf := testLogger(t)
	a, err := New(Options{PluginDir: dir, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "expires before the maximum workload certificate lifetime") {
		t.Error("no warning about the short chain")
	}
	c, err := a.Sign(SignRequest{CSR: mustParseCSR(t, makeCSR(t, testP256(), nil)), Identity: testID})
	if err != nil {
		t.Fatal(err)
	}
	if !c.Leaf.NotAfter.Equal(short.NotAfter) {
		t.Errorf("leaf NotAfter %v, intermediate %v", c.Leaf.NotAfter, short.NotAfter)
	}
}

// equalCerts reports whether a and b hold the same certificates in the same order.
func equalCerts(a, b []*x509.Certificate) bool {
	return slices.EqualFunc(a, b, (*x509.Certificate).Equal)
}

func subjects(cs []*x509.Certificate) []string {
	var s []string
	for _, c := range cs {
		s = append(s, c.Subject.CommonName)
	}
	return s
}
