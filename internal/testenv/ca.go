package testenv

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"
)

// CA is a throwaway certificate authority for tests: an ECDSA P-256 root valid from an hour ago
// for a day, issuing leaf certificates with fresh P-256 keys.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	PEM  []byte // Cert, PEM-encoded

	mu     sync.Mutex
	serial int64
}

// NewCA makes a self-signed root whose subject's common name and organization are name.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name, Organization: []string{name}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	c := sign(t, tmpl, tmpl, key, key)
	return &CA{Cert: c.Leaf, Key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}), serial: 1}
}

// SelfSigned returns a server certificate for dnsName signed by its own key, valid from an hour
// ago for a day: a backend's certificate that is its own trust anchor.
func SelfSigned(t testing.TB, dnsName string) tls.Certificate {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: dnsName},
		DNSNames:              []string{dnsName},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	return sign(t, tmpl, tmpl, key, key)
}

// Leaf describes a certificate for CA.Issue.
type Leaf struct {
	// Serial is the serial number; zero takes the CA's next one.
	Serial int64
	// CommonName is the subject's common name; empty takes the first DNS name.
	CommonName string
	DNS        []string
	IPs        []net.IP
	URIs       []string // SPIFFE IDs and other URI SANs
	// Usage is the extended key usage; nil means both server and client authentication.
	Usage []x509.ExtKeyUsage
}

// Issue signs a leaf certificate and returns it with its key and parsed Leaf.
func (ca *CA) Issue(t testing.TB, l Leaf) tls.Certificate {
	t.Helper()
	ca.mu.Lock()
	if l.Serial == 0 {
		ca.serial++
		l.Serial = ca.serial
	}
	ca.mu.Unlock()
	if l.CommonName == "" && len(l.DNS) > 0 {
		l.CommonName = l.DNS[0]
	}
	if l.Usage == nil {
		l.Usage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(l.Serial),
		Subject:      pkix.Name{CommonName: l.CommonName},
		DNSNames:     l.DNS,
		IPAddresses:  l.IPs,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  l.Usage,
	}
	for _, u := range l.URIs {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	return sign(t, tmpl, ca.Cert, key, ca.Key)
}

// sign makes tmpl a certificate for key, signed by parent's key.
func sign(t testing.TB, tmpl, parent *x509.Certificate, key *ecdsa.PrivateKey, parentKey crypto.Signer) tls.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// PEM returns c's certificate and its key ("EC PRIVATE KEY"), PEM-encoded.
func PEM(t testing.TB, c tls.Certificate) (certPEM, keyPEM []byte) {
	t.Helper()
	kb, err := x509.MarshalECPrivateKey(c.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}
