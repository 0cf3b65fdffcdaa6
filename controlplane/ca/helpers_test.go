package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/testenv"
)

// Keys are generated once per test binary: RSA generation is slow on a shared machine.
var (
	testP256    = sync.OnceValue(func() crypto.Signer { return mustKey(ecdsa.GenerateKey(elliptic.P256(), rand.Reader)) })
	testP256b   = sync.OnceValue(func() crypto.Signer { return mustKey(ecdsa.GenerateKey(elliptic.P256(), rand.Reader)) })
	testP384    = sync.OnceValue(func() crypto.Signer { return mustKey(ecdsa.GenerateKey(elliptic.P384(), rand.Reader)) })
	testRSA2048 = sync.OnceValue(func() crypto.Signer { return mustKey(rsa.GenerateKey(rand.Reader, 2048)) })
)

func mustKey[K crypto.Signer](k K, err error) crypto.Signer {
	if err != nil {
		panic(err)
	}
	return k
}

// fakeClock is a settable clock for Options.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Now().Truncate(time.Second)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func testLogger(t testing.TB) (*slog.Logger, *testenv.SyncBuffer) { return testenv.Logger(t, "CA") }

// newTestAuthority creates a self-signed Authority in a temporary dir.
func newTestAuthority(t testing.TB, mod func(*Options)) *Authority {
	t.Helper()
	log, _ := testLogger(t)
	o := Options{Dir: t.TempDir(), Logger: log}
	if mod != nil {
		mod(&o)
	}
	a, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return a
}

// makeCSR returns a PEM CSR over key with the given URI SANs and DNS names.
func makeCSR(t testing.TB, key crypto.Signer, uris []string, dns ...string) string {
	t.Helper()
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: "ignored", Organization: []string{"ignored"}}, DNSNames: dns}
	for _, u := range uris {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatalf("CreateCertificateRequest: %v", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func mustParseCSR(t testing.TB, p string) *x509.CertificateRequest {
	t.Helper()
	csr, err := ParseCSR([]byte(p))
	if err != nil {
		t.Fatalf("ParseCSR: %v", err)
	}
	return csr
}

// issue signs a raw template with the given parent certificate and key: for certificates the CA
// itself would never sign (two URI SANs, another trust domain, expired).
func issue(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, parentKey crypto.Signer) *x509.Certificate {
	t.Helper()
	if parent == nil {
		parent = tmpl
	}
	c, err := newCertificate(tmpl, parent, pub, parentKey)
	if err != nil {
		t.Fatalf("issuing a test certificate: %v", err)
	}
	return c
}

// leafTemplate is a workload certificate template like Sign's, for the given SPIFFE IDs.
func leafTemplate(now time.Time, uris ...string) *x509.Certificate {
	var parsed []*url.URL
	for _, u := range uris {
		pu, _ := url.Parse(u)
		parsed = append(parsed, pu)
	}
	return workloadTemplate(now.Add(-time.Minute), now.Add(time.Hour), parsed...)
}

// caTemplate is a CA certificate template.
func caTemplate(cn string, now time.Time) *x509.Certificate {
	return &x509.Certificate{
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"Example Org"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
}

// signWithAuthority signs tmpl with the Authority's current signing key.
func signWithAuthority(t testing.TB, a *Authority, tmpl *x509.Certificate, pub crypto.PublicKey) *x509.Certificate {
	st := a.state.Load()
	return issue(t, tmpl, st.cert, pub, st.signer)
}
