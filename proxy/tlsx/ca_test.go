package tlsx

import (
	"sync"
	"testing"

	"github.com/strait-mesh/strait/internal/testenv"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	tlsv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/transport_sockets/tls/v3"
)

// testCA is a throwaway certificate authority issuing SPIFFE workload certificates.
type testCA struct {
	*testenv.CA
	pem []byte
}

func newCA(t testing.TB, name string) *testCA {
	t.Helper()
	ca := testenv.NewCA(t, name)
	return &testCA{CA: ca, pem: ca.PEM}
}

// issue returns PEM chain and key for a leaf with the given URI and DNS SANs.
func (ca *testCA) issue(t testing.TB, uris []string, dns ...string) (certPEM, keyPEM []byte, serial int64) {
	t.Helper()
	c := ca.Issue(t, testenv.Leaf{URIs: uris, DNS: dns})
	certPEM, keyPEM = testenv.PEM(t, c)
	return certPEM, keyPEM, c.Leaf.SerialNumber.Int64()
}

func inline(b []byte) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
}

func certSecret(name string, certPEM, keyPEM []byte) *tlsv3.Secret {
	return &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: inline(certPEM), PrivateKey: inline(keyPEM)}}}
}

func caSecret(name string, caPEM []byte) *tlsv3.Secret {
	return &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
		TrustedCa: inline(caPEM)}}}
}

// secretMap is a Secrets source whose contents tests can replace, as SDS updates do.
type secretMap struct {
	mu sync.Mutex
	m  map[string]*tlsv3.Secret
}

func (s *secretMap) Secret(name string) *tlsv3.Secret {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[name]
}

func (s *secretMap) set(sec *tlsv3.Secret) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]*tlsv3.Secret{}
	}
	s.m[sec.Name] = sec
}
