package agent

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Test PKI, made once per test binary: two roots, an intermediate under the first, and keys.
type testPKI struct {
	rootKey, interKey, otherKey, leafKey *ecdsa.PrivateKey
	root, inter, other                   *x509.Certificate
}

var pki = sync.OnceValue(func() *testPKI {
	p := &testPKI{rootKey: genKey(), interKey: genKey(), otherKey: genKey(), leafKey: genKey()}
	p.root = sign(caTmpl("root"), nil, p.rootKey.Public(), p.rootKey)
	p.other = sign(caTmpl("other root"), nil, p.otherKey.Public(), p.otherKey)
	p.inter = sign(caTmpl("intermediate"), p.root, p.interKey.Public(), p.rootKey)
	return p
})

func genKey() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

var serial int64

func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) *x509.Certificate {
	serial++
	tmpl.SerialNumber = big.NewInt(serial)
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		panic(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	return c
}

func caTmpl(cn string) *x509.Certificate {
	return &x509.Certificate{
		Subject:   pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true, IsCA: true,
	}
}

func leafTmpl(uris ...string) *x509.Certificate {
	t := &x509.Certificate{
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	for _, u := range uris {
		pu, _ := url.Parse(u)
		t.URIs = append(t.URIs, pu)
	}
	return t
}

func pemOf(certs ...*x509.Certificate) string {
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return string(b)
}

var testID = &url.URL{Scheme: "spiffe", Host: "cluster.local", Path: "/ns/default/sa/ratings"}

func TestParseResponse(t *testing.T) {
	p := pki()
	id := testID.String()
	pub := p.leafKey.Public()
	direct := sign(leafTmpl(id), p.root, pub, p.rootKey)
	viaInter := sign(leafTmpl(id), p.inter, pub, p.interKey)
	wrongID := sign(leafTmpl("spiffe://cluster.local/ns/default/sa/admin"), p.root, pub, p.rootKey)
	twoIDs := sign(leafTmpl(id, "spiffe://cluster.local/ns/default/sa/admin"), p.root, pub, p.rootKey)
	otherKey := sign(leafTmpl(id), p.root, p.otherKey.Public(), p.rootKey)
	serverOnlyT := leafTmpl(id)
	serverOnlyT.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	serverOnly := sign(serverOnlyT, p.root, pub, p.rootKey)
	expiredT := leafTmpl(id)
	expiredT.NotBefore, expiredT.NotAfter = time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)
	expired := sign(expiredT, p.root, pub, p.rootKey)

	tests := []struct {
		name      string
		chain     []string
		wantInter int
		wantRoots []*x509.Certificate
		err       string
	}{
		{name: "leaf and root", chain: []string{pemOf(direct), pemOf(p.root)}, wantRoots: []*x509.Certificate{p.root}},
		{name: "rotation: two roots, the anchor last", chain: []string{pemOf(direct), pemOf(p.other), pemOf(p.root)}, wantRoots: []*x509.Certificate{p.other, p.root}},
		{name: "roots in one element", chain: []string{pemOf(direct), pemOf(p.other, p.root)}, wantRoots: []*x509.Certificate{p.other, p.root}},
		{name: "intermediate", chain: []string{pemOf(viaInter), pemOf(p.inter), pemOf(p.root)}, wantInter: 1, wantRoots: []*x509.Certificate{p.root}},
		{name: "intermediate as the anchor", chain: []string{pemOf(viaInter), pemOf(p.inter)}, wantRoots: []*x509.Certificate{p.inter}},
		{name: "duplicate root", chain: []string{pemOf(direct), pemOf(p.root), pemOf(p.root)}, wantRoots: []*x509.Certificate{p.root}},
		{name: "empty", chain: nil, err: "empty cert_chain"},
		{name: "leaf alone", chain: []string{pemOf(direct)}, err: "no root"},
		{name: "garbage", chain: []string{"nope", pemOf(p.root)}, err: "no PEM certificate"},
		{name: "private key in the chain", chain: []string{pemOf(direct), string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte{1}}))}, err: "want CERTIFICATE"},
		{name: "another identity", chain: []string{pemOf(wrongID), pemOf(p.root)}, err: "names"},
		{name: "two URI SANs", chain: []string{pemOf(twoIDs), pemOf(p.root)}, err: "want exactly"},
		{name: "another key", chain: []string{pemOf(otherKey), pemOf(p.root)}, err: "not for the key"},
		{name: "root is not the issuer", chain: []string{pemOf(direct), pemOf(p.other)}, err: "verifying"},
		{name: "intermediate missing", chain: []string{pemOf(viaInter), pemOf(p.root)}, err: "verifying"},
		{name: "server authentication only", chain: []string{pemOf(serverOnly), pemOf(p.root)}, err: "verifying"},
		{name: "expired", chain: []string{pemOf(expired), pemOf(p.root)}, err: "verifying"},
		{name: "a CA as the leaf", chain: []string{pemOf(p.inter), pemOf(p.root)}, err: "not for the key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := parseResponse(tc.chain, pub, testID, time.Now())
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrMalformed) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(res.intermediates) != tc.wantInter || !sameOrder(res.roots, tc.wantRoots) {
				t.Fatalf("%d intermediates, roots %v", len(res.intermediates), res.roots)
			}
		})
	}
}

// sameOrder reports whether a and b hold the same certificates in the same order.
func sameOrder(a, b []*x509.Certificate) bool {
	return slices.EqualFunc(a, b, (*x509.Certificate).Equal)
}

func TestParseTrustBundle(t *testing.T) {
	p := pki()
	leaf := sign(leafTmpl(testID.String()), p.root, p.leafKey.Public(), p.rootKey)
	got, err := ParseTrustBundle([]byte("comment\n" + pemOf(p.root, p.other, p.root)))
	if err != nil || !sameOrder(got, []*x509.Certificate{p.root, p.other}) {
		t.Fatalf("%v %v", got, err)
	}
	for name, in := range map[string]string{
		"empty":       "",
		"not PEM":     "hello",
		"broken":      pemOf(p.root) + "-----BEGIN CERTIFICATE-----\nAAAA",
		"leaf":        pemOf(p.root, leaf),
		"key":         pemOf(p.root) + string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}})),
		"headers":     string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Headers: map[string]string{"a": "b"}, Bytes: p.root.Raw})),
		"bad DER":     string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{0x30, 0}})),
		"too many":    strings.Repeat(pemOf(p.root), MaxBundleCertificates+1),
		"too large":   strings.Repeat(" ", MaxBundleSize+1),
		"NUL in text": "\x00" + pemOf(p.root)[:30],
	} {
		if _, err := ParseTrustBundle([]byte(in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func FuzzParseTrustBundle(f *testing.F) {
	p := pki()
	f.Add([]byte(pemOf(p.root)))
	f.Add([]byte(pemOf(p.root, p.other)))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"))
	f.Add([]byte("x\n-----BEGIN CERTIFICATE-----\nAAAA"))
	f.Fuzz(func(t *testing.T, b []byte) {
		certs, err := ParseTrustBundle(b)
		if err == nil {
			if len(certs) == 0 || len(certs) > MaxBundleCertificates {
				t.Fatalf("%d certificates", len(certs))
			}
			for _, c := range certs {
				if !c.IsCA {
					t.Fatal("a non-CA certificate accepted")
				}
			}
		}
	})
}

func FuzzParseResponse(f *testing.F) {
	p := pki()
	leaf := sign(leafTmpl(testID.String()), p.root, p.leafKey.Public(), p.rootKey)
	f.Add(pemOf(leaf), pemOf(p.root))
	f.Add(pemOf(leaf), pemOf(p.other, p.root))
	f.Add("", "")
	f.Fuzz(func(t *testing.T, a, b string) {
		res, err := parseResponse([]string{a, b}, p.leafKey.Public(), testID, time.Now())
		if err == nil && (len(res.roots) == 0 || res.leaf.URIs[0].String() != testID.String()) {
			t.Fatalf("accepted %+v", res)
		}
	})
}

func TestSchedule(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	day := 24 * time.Hour
	for _, tc := range []struct {
		fraction, jitter, r float64
		want                time.Duration
	}{
		{0.5, 0.1, 0, 12 * time.Hour},
		{0.5, 0.1, 1, 12*time.Hour + 72*time.Minute},
		{0.5, 0.1, -1, 12*time.Hour - 72*time.Minute},
		{0.3, 0, 1, day * 3 / 10},
		{0.9, 0.9, 1, day*9/10 + day*9/100},
	} {
		if got := renewAt(t0, t0.Add(day), tc.fraction, tc.jitter, tc.r).Sub(t0); got != tc.want {
			t.Errorf("renewAt(%v, %v, %v) = %v, want %v", tc.fraction, tc.jitter, tc.r, got, tc.want)
		}
	}
	if got := renewAt(t0, t0.Add(-time.Second), 0.5, 0.1, 1); !got.Equal(t0) {
		t.Errorf("expired on receipt: renew at %v", got)
	}
	if got := warnAt(t0, t0.Add(10*time.Hour), 0.2); !got.Equal(t0.Add(8 * time.Hour)) {
		t.Errorf("warnAt %v", got)
	}

	b := backoff{initial: time.Second, max: 8 * time.Second}
	var got []time.Duration
	for range 6 {
		got = append(got, b.next())
	}
	for i, base := range []time.Duration{1, 2, 4, 8, 8, 8} {
		lo, hi := base*time.Second*8/10, base*time.Second*12/10
		if got[i] < lo || got[i] > hi {
			t.Errorf("retry %d after %v, want %v..%v", i, got[i], lo, hi)
		}
	}
	b.reset()
	if d := b.next(); d > 1200*time.Millisecond {
		t.Errorf("after reset: %v", d)
	}
}

func TestCSR(t *testing.T) {
	key, err := newKey()
	if err != nil {
		t.Fatal(err)
	}
	p, err := newCSR(key, testID)
	if err != nil {
		t.Fatal(err)
	}
	b, rest := pem.Decode(p)
	if b == nil || b.Type != "CERTIFICATE REQUEST" || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("PEM %q", p)
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil || csr.CheckSignature() != nil {
		t.Fatalf("CSR: %v", err)
	}
	if len(csr.URIs) != 1 || csr.URIs[0].String() != testID.String() || len(csr.DNSNames)+len(csr.IPAddresses)+len(csr.EmailAddresses) != 0 {
		t.Errorf("names %v %v %v", csr.URIs, csr.DNSNames, csr.IPAddresses)
	}
	if len(csr.Subject.Names) != 0 {
		t.Errorf("subject %v", csr.Subject)
	}
	if k, ok := csr.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() || !k.Equal(key.Public()) {
		t.Errorf("key %T", csr.PublicKey)
	}
}

func validOptions() Options {
	return Options{
		CAAddress:      "127.0.0.1:15012",
		RootsPEM:       []byte(pemOf(pki().root)),
		BootstrapToken: "sbt1.x",
		Namespace:      "default",
		ServiceAccount: "ratings",
	}
}

func TestNewOptions(t *testing.T) {
	a, err := New(validOptions())
	if err != nil {
		t.Fatal(err)
	}
	if a.o.CAServerName != DefaultCAServerName || a.o.Lifetime != DefaultLifetime || a.o.RenewFraction != 0.5 ||
		a.o.RenewJitter != 0.1 || a.o.WarnFraction != 0.2 || a.Identity() != testID.String() || a.client.target != "127.0.0.1:15012" {
		t.Errorf("defaults: %+v %s", a.o, a.client.target)
	}
	if o := validOptions(); true {
		o.RenewJitter = -1
		if a, err := New(o); err != nil || a.o.RenewJitter != 0 {
			t.Errorf("no jitter: %v", err)
		}
	}
	dir := t.TempDir()
	rootsFile := filepath.Join(dir, "root-cert.pem")
	os.WriteFile(rootsFile, []byte(pemOf(pki().root)), 0o644)
	if o := validOptions(); true {
		o.RootsPEM, o.RootsFile = nil, rootsFile
		o.CAAddress = "dns:///straitd.istio-system.svc:15012"
		if a, err := New(o); err != nil || a.client.target != "straitd.istio-system.svc:15012" {
			t.Errorf("roots file: %v", err)
		}
	}
	for name, mod := range map[string]func(*Options){
		"no address":            func(o *Options) { o.CAAddress = "" },
		"address without port":  func(o *Options) { o.CAAddress = "straitd.istio-system.svc" },
		"unknown target scheme": func(o *Options) { o.CAAddress = "xds:///straitd:15012" },
		"no roots":              func(o *Options) { o.RootsPEM = nil },
		"two roots sources":     func(o *Options) { o.RootsFile = rootsFile },
		"missing roots file":    func(o *Options) { o.RootsPEM, o.RootsFile = nil, filepath.Join(dir, "nope") },
		"bad roots":             func(o *Options) { o.RootsPEM = []byte("x") },
		"no token":              func(o *Options) { o.BootstrapToken = "" },
		"two token sources":     func(o *Options) { o.BootstrapTokenFile = "/x" },
		"token with newline":    func(o *Options) { o.BootstrapToken = "a\nb" },
		"bad namespace":         func(o *Options) { o.Namespace = "Default" },
		"empty sa":              func(o *Options) { o.ServiceAccount = "" },
		"sa with slash":         func(o *Options) { o.ServiceAccount = "a/b" },
		"bad trust domain":      func(o *Options) { o.TrustDomain = "a/b" },
		"short lifetime":        func(o *Options) { o.Lifetime = time.Millisecond },
		"renew fraction 1":      func(o *Options) { o.RenewFraction = 1 },
		"negative warn":         func(o *Options) { o.WarnFraction = -0.1 },
		"jitter 1":              func(o *Options) { o.RenewJitter = 1 },
		"renew fraction >1":     func(o *Options) { o.RenewFraction = 2 },
		"NUL in namespace":      func(o *Options) { o.Namespace = "a\x00b" },
		"namespace too long":    func(o *Options) { o.Namespace = strings.Repeat("a", 64) },
		"trailing dash in sa":   func(o *Options) { o.ServiceAccount = "a-" },
	} {
		o := validOptions()
		mod(&o)
		if _, err := New(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestUpdateRoots(t *testing.T) {
	p := pki()
	a, err := New(validOptions())
	if err != nil {
		t.Fatal(err)
	}
	ch, cancel := a.Subscribe()
	defer cancel()
	sec := a.Secret(SecretRootCA)
	if a.Secret(SecretDefault) != nil || a.Certificate() != nil {
		t.Fatal("a certificate before Run")
	}

	// The same bundle in another order changes nothing.
	if err := a.UpdateRoots([]byte(pemOf(p.root))); err != nil || a.Secret(SecretRootCA) != sec {
		t.Fatalf("same bundle: %v", err)
	}
	select {
	case <-ch:
		t.Fatal("notified without a change")
	default:
	}

	if err := a.UpdateRoots([]byte(pemOf(p.other, p.root))); err != nil {
		t.Fatal(err)
	}
	if got := a.RootCertificates(); !sameOrder(got, []*x509.Certificate{p.other, p.root}) {
		t.Fatalf("roots %v", got)
	}
	if s := a.Secret(SecretRootCA); s == sec || !bytes.Equal(s.GetValidationContext().GetTrustedCa().GetInlineBytes(), a.RootsPEM()) {
		t.Fatal("ROOTCA secret not replaced")
	}
	select {
	case <-ch:
	default:
		t.Fatal("not notified")
	}
	leaf := sign(leafTmpl(testID.String()), p.other, p.leafKey.Public(), p.otherKey)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: a.Roots(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("Roots() does not hold the new root: %v", err)
	}

	// Bad input is refused and changes nothing.
	before := a.RootsPEM()
	if err := a.UpdateRoots([]byte(pemOf(leaf))); err == nil || !bytes.Equal(a.RootsPEM(), before) {
		t.Fatalf("leaf as a root: %v", err)
	}
	cancel()
	if err := a.UpdateRoots([]byte(pemOf(p.root))); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
		t.Fatal("notified after cancel")
	default:
	}
}

func TestTokenFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	c := &caClient{tokenFile: path}
	if _, err := c.bootstrapToken(); err == nil {
		t.Error("missing file accepted")
	}
	os.WriteFile(path, []byte("  sbt1.abc\n"), 0o600)
	if tok, err := c.bootstrapToken(); err != nil || tok != "sbt1.abc" {
		t.Errorf("token %q %v", tok, err)
	}
	os.WriteFile(path, bytes.Repeat([]byte("a"), maxTokenSize+1), 0o600)
	if _, err := c.bootstrapToken(); err == nil {
		t.Error("oversized token file accepted")
	}
}
