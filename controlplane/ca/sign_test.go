package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"math/big"
	"testing"
	"time"
)

var testID = Identity{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "ratings"}

func TestSignWorkloadCertificate(t *testing.T) {
	clock := newFakeClock()
	a := newTestAuthority(t, func(o *Options) { o.Now = clock.Now; o.MaxLifetime = 72 * time.Hour })
	now := clock.Now()
	// The CSR asks for other SANs and a subject: all ignored; the identity is the proven one.
	csr := mustParseCSR(t, makeCSR(t, testP256(), nil, "evil.example.com"))
	cert, err := a.Sign(SignRequest{CSR: csr, Identity: testID})
	if err != nil {
		t.Fatal(err)
	}
	l := cert.Leaf
	if len(l.URIs) != 1 || l.URIs[0].String() != "spiffe://cluster.local/ns/default/sa/ratings" {
		t.Errorf("URIs = %v, want exactly the SPIFFE ID", l.URIs)
	}
	if len(l.DNSNames)+len(l.IPAddresses)+len(l.EmailAddresses) != 0 {
		t.Errorf("other SANs copied from the CSR: %v %v %v", l.DNSNames, l.IPAddresses, l.EmailAddresses)
	}
	if len(l.Subject.Names) != 0 {
		t.Errorf("subject = %q, want empty", l.Subject)
	}
	for _, e := range l.Extensions {
		if e.Id.Equal(oidSubjectAltName) && !e.Critical {
			t.Error("SAN extension not critical with an empty subject")
		}
	}
	if l.KeyUsage != x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment {
		t.Errorf("KeyUsage = %v", l.KeyUsage)
	}
	if len(l.ExtKeyUsage) != 2 || l.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth || l.ExtKeyUsage[1] != x509.ExtKeyUsageClientAuth {
		t.Errorf("ExtKeyUsage = %v", l.ExtKeyUsage)
	}
	if !l.BasicConstraintsValid || l.IsCA {
		t.Errorf("basic constraints: valid=%v CA=%v", l.BasicConstraintsValid, l.IsCA)
	}
	if got := l.NotAfter.Sub(now); got != DefaultWorkloadLifetime {
		t.Errorf("lifetime = %v, want the default %v", got, DefaultWorkloadLifetime)
	}
	if skew := now.Sub(l.NotBefore); skew <= 0 || skew > time.Minute {
		t.Errorf("NotBefore backdated by %v, want (0, 1m]", skew)
	}
	if l.SerialNumber.Sign() <= 0 || l.SerialNumber.BitLen() > 128 {
		t.Errorf("serial %x", l.SerialNumber)
	}
	if !publicKeysEqual(l.PublicKey, testP256().Public()) {
		t.Error("leaf key is not the CSR's key")
	}
	if len(cert.Intermediates) != 0 || len(cert.Roots) != 1 {
		t.Errorf("chain: %d intermediates, %d roots", len(cert.Intermediates), len(cert.Roots))
	}
	if _, err := l.Verify(x509.VerifyOptions{Roots: a.TrustPool(), CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("leaf does not verify against the trust bundle: %v", err)
	}
	if _, err := l.Verify(x509.VerifyOptions{Roots: a.TrustPool(), CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("leaf does not verify for server auth: %v", err)
	}
	// Istio's response shape: one PEM certificate per element, leaf first, root last.
	chain := cert.CertChainPEM()
	if len(chain) != 2 || !bytes.Equal([]byte(chain[0]), encodeCert(l)) || chain[1] != string(a.TrustBundlePEM()) {
		t.Errorf("CertChainPEM = %q", chain)
	}
	for _, c := range chain {
		if c[len(c)-1] != '\n' {
			t.Errorf("chain element without trailing newline")
		}
	}
	// Every serial is fresh.
	again, err := a.Sign(SignRequest{CSR: csr, Identity: testID})
	if err != nil || again.Leaf.SerialNumber.Cmp(l.SerialNumber) == 0 {
		t.Errorf("second signature: err %v, same serial %v", err, again != nil && again.Leaf.SerialNumber.Cmp(l.SerialNumber) == 0)
	}
}

func TestSignLifetime(t *testing.T) {
	clock := newFakeClock()
	a := newTestAuthority(t, func(o *Options) { o.Now = clock.Now; o.MaxLifetime = 48 * time.Hour })
	csr := mustParseCSR(t, makeCSR(t, testP256(), nil))
	tests := []struct {
		requested, want time.Duration
	}{
		{0, 24 * time.Hour},
		{-time.Hour, 24 * time.Hour},
		{2 * time.Minute, 2 * time.Minute},
		{time.Hour, time.Hour},
		{48 * time.Hour, 48 * time.Hour},
		{49 * time.Hour, 48 * time.Hour},
		{1000 * 24 * time.Hour, 48 * time.Hour},
	}
	for _, tc := range tests {
		c, err := a.Sign(SignRequest{CSR: csr, Identity: testID, Lifetime: tc.requested})
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Leaf.NotAfter.Sub(clock.Now()); got != tc.want {
			t.Errorf("requested %v: lifetime %v, want %v", tc.requested, got, tc.want)
		}
		if back := clock.Now().Sub(c.Leaf.NotBefore); back > tc.want/10 || back > time.Minute {
			t.Errorf("requested %v: backdated %v, more than a tenth of the lifetime or 1m", tc.requested, back)
		}
	}
	// The default is capped by the maximum too.
	b := newTestAuthority(t, func(o *Options) { o.Now = clock.Now; o.MaxLifetime = time.Hour })
	c, err := b.Sign(SignRequest{CSR: csr, Identity: testID})
	if err != nil || c.Leaf.NotAfter.Sub(clock.Now()) != time.Hour {
		t.Errorf("default above the maximum: %v, %v", err, c)
	}
	// No certificate outlives its root: near the root's expiry, lifetimes are cut short.
	root, _ := b.SigningCertificate()
	clock.Add(root.NotAfter.Sub(clock.Now()) - 10*time.Minute)
	c, err = b.Sign(SignRequest{CSR: csr, Identity: testID})
	if err != nil || !c.Leaf.NotAfter.Equal(root.NotAfter) {
		t.Errorf("near root expiry: err %v, NotAfter %v, root %v", err, c.Leaf.NotAfter, root.NotAfter)
	}
	clock.Add(time.Hour)
	if _, err := b.Sign(SignRequest{CSR: csr, Identity: testID}); err == nil {
		t.Error("signed under an expired root")
	}
}

func TestSignKeyTypes(t *testing.T) {
	a := newTestAuthority(t, nil)
	rsa1024 := mustKey(rsa.GenerateKey(rand.Reader, 1024))
	p521 := mustKey(ecdsa.GenerateKey(elliptic.P521(), rand.Reader))
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	tests := []struct {
		name string
		key  crypto.Signer
		ok   bool
	}{
		{"ECDSA P-256", testP256(), true},
		{"RSA 2048", testRSA2048(), true},
		{"ECDSA P-384", testP384(), false},
		{"ECDSA P-521", p521, false},
		{"RSA 1024", rsa1024, false},
		{"Ed25519", ed, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			csr := mustParseCSR(t, makeCSR(t, tc.key, nil))
			c, err := a.Sign(SignRequest{CSR: csr, Identity: testID})
			if tc.ok != (err == nil) {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrKeyPolicy) {
				t.Fatalf("err %v does not wrap ErrKeyPolicy", err)
			}
			if err == nil && !publicKeysEqual(c.Leaf.PublicKey, tc.key.Public()) {
				t.Fatal("leaf key differs from CSR key")
			}
		})
	}
	// RSA with an exponent other than 65537 is refused (built by hand: Go always uses 65537).
	k := *testRSA2048().(*rsa.PrivateKey)
	pub := k.PublicKey
	pub.E = 3
	if err := checkWorkloadKey(&pub); !errors.Is(err, ErrKeyPolicy) {
		t.Errorf("RSA e=3: %v", err)
	}
	for _, bits := range []int{3072, 4096} {
		pub := rsa.PublicKey{N: new(big.Int).Lsh(big.NewInt(1), uint(bits-1)), E: 65537}
		if err := checkWorkloadKey(&pub); err != nil {
			t.Errorf("RSA %d refused: %v", bits, err)
		}
	}
}

func TestSignRefusesBadRequests(t *testing.T) {
	a := newTestAuthority(t, nil)
	csr := mustParseCSR(t, makeCSR(t, testP256(), nil))
	for name, req := range map[string]SignRequest{
		"no CSR":             {Identity: testID},
		"invalid identity":   {CSR: csr, Identity: Identity{TrustDomain: "cluster.local", Namespace: "A", ServiceAccount: "b"}},
		"other trust domain": {CSR: csr, Identity: Identity{TrustDomain: "evil.org", Namespace: "a", ServiceAccount: "b"}},
	} {
		if _, err := a.Sign(req); err == nil {
			t.Errorf("%s: signed", name)
		}
	}
	if _, err := a.Sign(SignRequest{CSR: csr, Identity: Identity{TrustDomain: "evil.org", Namespace: "a", ServiceAccount: "b"}}); !errors.Is(err, ErrForeignTrustDomain) {
		t.Errorf("other trust domain: %v", err)
	}
}

// TestSignSANEncoding checks the SAN bytes on the wire: one URI GeneralName, the exact ID.
func TestSignSANEncoding(t *testing.T) {
	a := newTestAuthority(t, func(o *Options) { o.TrustDomain = "example.org" })
	id := Identity{TrustDomain: "example.org", Namespace: "ns-1", ServiceAccount: "sa.with.dots"}
	c, err := a.Sign(SignRequest{CSR: mustParseCSR(t, makeCSR(t, testP256(), []string{id.SPIFFEID()})), Identity: id})
	if err != nil {
		t.Fatal(err)
	}
	var san []byte
	for _, e := range c.Leaf.Extensions {
		if e.Id.Equal(oidSubjectAltName) {
			san = e.Value
		}
	}
	var seq asn1.RawValue
	if _, err := asn1.Unmarshal(san, &seq); err != nil {
		t.Fatal(err)
	}
	var name asn1.RawValue
	rest, err := asn1.Unmarshal(seq.Bytes, &name)
	if err != nil || len(rest) != 0 || name.Tag != 6 || string(name.Bytes) != "spiffe://example.org/ns/ns-1/sa/sa.with.dots" {
		t.Fatalf("SAN = %x (rest %x, err %v)", seq.Bytes, rest, err)
	}
	got, err := identityFromSAN(c.Leaf)
	if err != nil || got != id {
		t.Fatalf("identityFromSAN = %v, %v", got, err)
	}
	// The root carries the trust domain as its organisation, like Istio's self-signed root.
	root, _ := a.SigningCertificate()
	if len(root.Subject.Organization) != 1 || root.Subject.Organization[0] != "example.org" {
		t.Errorf("root subject %q", root.Subject)
	}
	if p, _ := pem.Decode(a.TrustBundlePEM()); p == nil || !bytes.Equal(p.Bytes, root.Raw) {
		t.Error("TrustBundlePEM is not the root")
	}
}

// BenchmarkSign measures signing one ECDSA P-256 workload certificate (CSR already parsed), the
// CA's cost per workload and renewal.
func BenchmarkSign(b *testing.B) {
	a := newTestAuthority(b, nil)
	csr := mustParseCSR(b, makeCSR(b, testP256(), nil))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Sign(SignRequest{CSR: csr, Identity: testID}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseAndSign adds parsing and checking the PEM CSR, as the CSR service does.
func BenchmarkParseAndSign(b *testing.B) {
	a := newTestAuthority(b, nil)
	p := []byte(makeCSR(b, testP256(), []string{testID.SPIFFEID()}))
	b.ReportAllocs()
	for b.Loop() {
		csr, err := ParseCSR(p)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := a.Sign(SignRequest{CSR: csr, Identity: testID}); err != nil {
			b.Fatal(err)
		}
	}
}
