package ca

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// tlsPeerContext returns a context as grpc-go builds it for a TLS connection whose client sent
// chain.
func tlsPeerContext(chain ...*x509.Certificate) context.Context {
	return peer.NewContext(context.Background(), &peer.Peer{
		Addr:     &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000},
		AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{PeerCertificates: chain}},
	})
}

// withRawURISANs returns a copy of c whose parsed SAN extension is replaced by one holding the
// given raw URI names: certificates Go refuses to parse (a NUL in a URI) cannot be made any other
// way, and this checks the authenticator's own guard behind the TLS stack's.
func withRawURISANs(t *testing.T, c *x509.Certificate, uris ...string) *x509.Certificate {
	var names []asn1.RawValue
	for _, u := range uris {
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte(u)})
	}
	val, err := asn1.Marshal(names)
	if err != nil {
		t.Fatal(err)
	}
	cp := *c
	cp.Extensions = nil
	for _, e := range c.Extensions {
		if e.Id.Equal(oidSubjectAltName) {
			e.Value = val
		}
		cp.Extensions = append(cp.Extensions, e)
	}
	return &cp
}

func TestCertificateAuthenticator(t *testing.T) {
	clock := newFakeClock()
	a := newTestAuthority(t, func(o *Options) { o.Now = clock.Now })
	other := newTestAuthority(t, func(o *Options) { o.Now = clock.Now })
	now := clock.Now()
	key := testP256()
	id := testID.SPIFFEID()
	good, err := a.Sign(SignRequest{CSR: mustParseCSR(t, makeCSR(t, key, nil)), Identity: testID, Lifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	fromOther, err := other.Sign(SignRequest{CSR: mustParseCSR(t, makeCSR(t, key, nil)), Identity: testID})
	if err != nil {
		t.Fatal(err)
	}
	twoURIs := signWithAuthority(t, a, leafTemplate(now, id, "spiffe://cluster.local/ns/default/sa/admin"), key.Public())
	noURI := leafTemplate(now)
	noURI.DNSNames = []string{"ratings.default.svc"}
	dnsOnly := signWithAuthority(t, a, noURI, key.Public())
	otherTD := signWithAuthority(t, a, leafTemplate(now, "spiffe://evil.org/ns/default/sa/ratings"), key.Public())
	notSPIFFE := signWithAuthority(t, a, leafTemplate(now, "https://cluster.local/ns/default/sa/ratings"), key.Public())
	caT := leafTemplate(now, id)
	caT.IsCA = true
	caT.KeyUsage |= x509.KeyUsageCertSign
	caCert := signWithAuthority(t, a, caT, key.Public())
	serverOnlyT := leafTemplate(now, id)
	serverOnlyT.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	serverOnly := signWithAuthority(t, a, serverOnlyT, key.Public())
	selfSigned := issue(t, leafTemplate(now, id), nil, key.Public(), key)
	nul := withRawURISANs(t, good.Leaf, "spiffe://cluster.local/ns/default/sa/ratings\x00.evil")
	nulTwo := withRawURISANs(t, good.Leaf, id, id)

	auth := NewCertificateAuthenticator(a, clock.Now)
	tests := []struct {
		name    string
		chain   []*x509.Certificate
		advance time.Duration
		wantErr string // "" for success
	}{
		{name: "current mesh certificate", chain: []*x509.Certificate{good.Leaf}},
		{name: "no certificate", chain: nil, wantErr: "no client certificate"},
		{name: "expired", chain: []*x509.Certificate{good.Leaf}, advance: 2 * time.Hour, wantErr: "expired"},
		{name: "another root", chain: []*x509.Certificate{fromOther.Leaf}, wantErr: "unknown authority"},
		{name: "self-signed", chain: []*x509.Certificate{selfSigned}, wantErr: "unknown authority"},
		{name: "two URI SANs", chain: []*x509.Certificate{twoURIs}, wantErr: "2 URI SANs"},
		{name: "no URI SAN", chain: []*x509.Certificate{dnsOnly}, wantErr: "0 URI SANs"},
		{name: "another trust domain", chain: []*x509.Certificate{otherTD}, wantErr: "not in the CA's trust domain"},
		{name: "not a SPIFFE ID", chain: []*x509.Certificate{notSPIFFE}, wantErr: "invalid SPIFFE ID"},
		{name: "a CA certificate", chain: []*x509.Certificate{caCert}, wantErr: "CA certificate"},
		{name: "server auth only", chain: []*x509.Certificate{serverOnly}, wantErr: "incompatible key usage"},
		{name: "NUL in the URI SAN", chain: []*x509.Certificate{nul}, wantErr: "NUL"},
		{name: "the same URI twice", chain: []*x509.Certificate{nulTwo}, wantErr: "2 URI SANs"},
		{name: "overlong chain", chain: []*x509.Certificate{good.Leaf, good.Leaf, good.Leaf, good.Leaf, good.Leaf, good.Leaf, good.Leaf, good.Leaf, good.Leaf, good.Leaf, good.Leaf}, wantErr: "chain of 11"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock.Add(tc.advance)
			defer clock.Add(-tc.advance)
			c, err := auth.Authenticate(tlsPeerContext(tc.chain...))
			if tc.wantErr == "" {
				if err != nil || c.Identity != testID || c.Method != MethodCertificate || !strings.HasPrefix(c.Credential, "serial ") {
					t.Fatalf("Authenticate = %+v, %v", c, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
			}
			if len(tc.chain) > 0 && !errors.Is(err, ErrBadCertificate) {
				t.Fatalf("err %v does not wrap ErrBadCertificate", err)
			}
			if len(tc.chain) == 0 && !errors.Is(err, ErrNoCredential) {
				t.Fatalf("err %v does not wrap ErrNoCredential", err)
			}
		})
	}

	// No peer, or a peer without TLS: no credential.
	for _, ctx := range []context.Context{context.Background(), peer.NewContext(context.Background(), &peer.Peer{})} {
		if _, err := auth.Authenticate(ctx); !errors.Is(err, ErrNoCredential) {
			t.Errorf("no TLS peer: %v", err)
		}
	}

	// The trust bundle is read per call: after the root is rotated out, the old certificate
	// no longer proves anything, even on a connection verified earlier.
	if _, err := a.StageRoot(); err != nil {
		t.Fatal(err)
	}
	if err := a.ActivateStagedRoot(); err != nil {
		t.Fatal(err)
	}
	if _, err := auth.Authenticate(tlsPeerContext(good.Leaf)); err != nil {
		t.Fatalf("during rotation: %v", err)
	}
	old := a.TrustBundle()[0]
	if err := a.RemoveRoot(Fingerprint(old)); err != nil {
		t.Fatal(err)
	}
	if _, err := auth.Authenticate(tlsPeerContext(good.Leaf)); err == nil {
		t.Fatal("a certificate of a removed root still authenticates")
	}
}

// TestCertificateAuthenticatorIntermediate: under plug-in certificates the client sends the
// intermediates after its leaf.
func TestCertificateAuthenticatorIntermediate(t *testing.T) {
	p := newOrgPKI(t)
	dir := writeCACerts(t, map[string][]byte{
		PluginCACert: pems(p.ca), PluginCAKey: keyPEM(t, p.caKey), PluginRootCert: pems(p.root), PluginCertChain: pems(p.ca, p.inter, p.root),
	})
	log, _ := testLogger(t)
	a, err := New(Options{PluginDir: dir, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	c, err := a.Sign(SignRequest{CSR: mustParseCSR(t, makeCSR(t, testP256(), nil)), Identity: testID})
	if err != nil {
		t.Fatal(err)
	}
	auth := NewCertificateAuthenticator(a, nil)
	if _, err := auth.Authenticate(tlsPeerContext(append([]*x509.Certificate{c.Leaf}, c.Intermediates...)...)); err != nil {
		t.Fatalf("with intermediates: %v", err)
	}
	if _, err := auth.Authenticate(tlsPeerContext(c.Leaf)); err == nil {
		t.Fatal("verified without the intermediates")
	}
}
