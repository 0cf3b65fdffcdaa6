package tlsx

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"

	matcherv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/matcher/v3"
)

// peerCert signs a client certificate with the mesh CA from a template the test shapes.
func peerCert(t *testing.T, ca *testCA, shape func(*x509.Certificate)) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(clientID)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		URIs:         []*url.URL{u},
	}
	shape(tmpl)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

// rawURISAN is a subjectAltName extension holding the given URI strings verbatim.
func rawURISAN(t *testing.T, uris ...string) []pkix.Extension {
	t.Helper()
	var names []asn1.RawValue
	for _, u := range uris {
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte(u)})
	}
	v, err := asn1.Marshal(names)
	if err != nil {
		t.Fatal(err)
	}
	return []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 17}, Value: v}}
}

// TestPeerCertificateTricksRefused checks the refusals a mesh mTLS server owes: a peer
// certificate from another trust domain, expired, not yet valid, with a wrong SAN, with two URI
// SANs, with a NUL in its SPIFFE ID or a malformed SPIFFE ID, or signed by another root.
func TestPeerCertificateTricksRefused(t *testing.T) {
	m := newMesh(t)
	trustDomain := uriMatcher(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "spiffe://cluster.local/"}})
	srv, err := Server(istioServer(trustDomain), m.serverS)
	if err != nil {
		t.Fatal(err)
	}
	other := newCA(t, "other root")
	cases := []struct {
		name  string
		ca    *testCA
		shape func(*x509.Certificate)
		want  string
	}{
		{"another trust domain", m.ca, func(c *x509.Certificate) {
			c.URIs[0], _ = url.Parse("spiffe://evil.example/ns/default/sa/productpage")
		}, "match none"},
		{"expired", m.ca, func(c *x509.Certificate) {
			c.NotBefore, c.NotAfter = time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)
		}, "expired"},
		{"not yet valid", m.ca, func(c *x509.Certificate) { c.NotBefore = time.Now().Add(time.Hour) }, "expired or is not yet valid"},
		{"no SPIFFE ID", m.ca, func(c *x509.Certificate) { c.URIs = nil; c.DNSNames = []string{"productpage"} }, "match none"},
		{"two URI SANs", m.ca, func(c *x509.Certificate) {
			second, _ := url.Parse("spiffe://cluster.local/ns/istio-system/sa/admin")
			c.URIs = append(c.URIs, second)
		}, "2 URI SANs"},
		{"SPIFFE ID and another URI", m.ca, func(c *x509.Certificate) {
			second, _ := url.Parse("https://cluster.local/ns/default")
			c.URIs = append([]*url.URL{second}, c.URIs...)
		}, "2 URI SANs"},
		{"NUL in the SPIFFE ID", m.ca, func(c *x509.Certificate) {
			c.URIs = nil
			c.ExtraExtensions = rawURISAN(t, "spiffe://cluster.local/ns/default/sa/admin\x00.productpage")
		}, "cannot parse URI"},
		{"malformed SPIFFE ID", m.ca, func(c *x509.Certificate) {
			c.URIs[0], _ = url.Parse("spiffe://cluster.local/ns/../sa/admin")
		}, "not a valid SPIFFE ID"},
		{"another root", other, func(*x509.Certificate) {}, "unknown authority"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cp, kp := peerCert(t, tc.ca, tc.shape)
			// The client sends the certificate's bytes as they are (crypto/tls's own loader
			// would refuse some of them before they reach the server).
			cb, _ := pem.Decode(cp)
			kb, _ := pem.Decode(kp)
			key, err := x509.ParseECPrivateKey(kb.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			cli := &tls.Config{InsecureSkipVerify: true, ServerName: "reviews",
				Certificates: []tls.Certificate{{Certificate: [][]byte{cb.Bytes}, PrivateKey: key}}}
			serr, _, _, _ := handshake(t, srv, cli)
			if serr == nil {
				t.Fatal("the server accepted the peer certificate")
			}
			if !strings.Contains(serr.Error(), tc.want) {
				t.Fatalf("server error %q, want it to mention %q", serr, tc.want)
			}
		})
	}
	// The well-formed certificate passes the same server.
	cp, kp := peerCert(t, m.ca, func(*x509.Certificate) {})
	s := &secretMap{}
	s.set(certSecret("default", cp, kp))
	s.set(caSecret("ROOTCA", m.ca.pem))
	cli, _ := Client(istioClient("reviews"), s)
	if serr, cerr, _, _ := handshake(t, srv, cli); serr != nil || cerr != nil {
		t.Fatalf("a valid peer: server %v, client %v", serr, cerr)
	}
}

func TestValidSPIFFEID(t *testing.T) {
	for id, want := range map[string]bool{
		"spiffe://cluster.local/ns/default/sa/reviews": true,
		"spiffe://cluster.local":                       true,
		"spiffe://td.example_1-a/a.b/c_d-e":            true,
		"spiffe://Cluster.local/ns/a/sa/b":             false,
		"spiffe://cluster.local/":                      false,
		"spiffe://cluster.local//sa/b":                 false,
		"spiffe://cluster.local/ns/./sa/b":             false,
		"spiffe://cluster.local/ns/a%20b":              false,
		"spiffe://user@cluster.local/ns/a":             false,
		"spiffe://cluster.local:8443/ns/a":             false,
		"spiffe://cluster.local/ns/a?x=y":              false,
		"spiffe:///ns/a":                               false,
		"https://cluster.local/ns/a":                   false,
	} {
		if got := ValidSPIFFEID(id); got != want {
			t.Errorf("ValidSPIFFEID(%q) = %v, want %v", id, got, want)
		}
	}
}
