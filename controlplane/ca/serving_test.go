package ca

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"strings"
	"testing"
	"time"
)

func TestServingCertificate(t *testing.T) {
	clock := newFakeClock()
	a := newTestAuthority(t, func(o *Options) { o.Now = clock.Now })
	sc, err := NewServingCertificate(a, ServingOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := sc.Get()
	if err != nil {
		t.Fatal(err)
	}
	l := c.Leaf
	if strings.Join(l.DNSNames, ",") != "istiod.istio-system.svc,straitd,localhost" || len(l.IPAddresses) != 1 || !l.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("SANs %v %v", l.DNSNames, l.IPAddresses)
	}
	if len(l.URIs) != 0 || l.IsCA || len(l.ExtKeyUsage) != 1 || l.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
		t.Errorf("URIs %v CA %v EKU %v", l.URIs, l.IsCA, l.ExtKeyUsage)
	}
	for _, name := range []string{"istiod.istio-system.svc", "straitd", "localhost", "127.0.0.1"} {
		if _, err := l.Verify(x509.VerifyOptions{Roots: a.TrustPool(), DNSName: name, CurrentTime: clock.Now()}); err != nil {
			t.Errorf("verify as %s: %v", name, err)
		}
	}
	// straitd's certificate proves no workload identity.
	if _, err := NewCertificateAuthenticator(a, clock.Now).Verify([]*x509.Certificate{l}); err == nil {
		t.Error("the serving certificate authenticates as a workload")
	}

	// Re-issued past half of its lifetime, not before.
	clock.Add(11 * time.Hour)
	if c2, _ := sc.Get(); c2 != c {
		t.Error("re-issued before half of the lifetime")
	}
	clock.Add(2 * time.Hour)
	c3, _ := sc.Get()
	if c3 == c || !c3.Leaf.NotAfter.After(l.NotAfter) {
		t.Error("not re-issued after half of the lifetime")
	}
	// And when the signing root changes.
	if _, err := a.StageRoot(); err != nil {
		t.Fatal(err)
	}
	if err := a.ActivateStagedRoot(); err != nil {
		t.Fatal(err)
	}
	c4, _ := sc.Get()
	root, _ := a.SigningCertificate()
	if c4 == c3 || c4.Leaf.CheckSignatureFrom(root) != nil {
		t.Error("not re-issued under the new root")
	}

	custom, err := NewServingCertificate(a, ServingOptions{DNSNames: []string{"cp.example.org"}, IPs: []net.IP{}, Lifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	cc, _ := custom.Get()
	if len(cc.Leaf.DNSNames) != 1 || len(cc.Leaf.IPAddresses) != 0 || cc.Leaf.NotAfter.Sub(clock.Now()) != time.Hour {
		t.Errorf("custom: %v %v %v", cc.Leaf.DNSNames, cc.Leaf.IPAddresses, cc.Leaf.NotAfter)
	}
}

// TestServerTLSHandshakeRefusals checks why the mesh port's handshake refuses client
// certificates: the server side's own error, which a gRPC client sees only as a broken
// connection.
func TestServerTLSHandshakeRefusals(t *testing.T) {
	a := newTestAuthority(t, nil)
	other := newTestAuthority(t, nil)
	sc, err := NewServingCertificate(a, ServingOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := ServerTLSConfig(a, sc)
	key := testP256()
	now := time.Now()
	id := testID.SPIFFEID()
	good := signWithAuthority(t, a, leafTemplate(now, id), key.Public())
	expiredT := leafTemplate(now, id)
	expiredT.NotBefore, expiredT.NotAfter = now.Add(-2*time.Hour), now.Add(-time.Hour)
	otherRoot := signWithAuthority(t, other, leafTemplate(now, id), key.Public())
	serverOnlyT := leafTemplate(now, id)
	serverOnlyT.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}

	tests := []struct {
		name    string
		chain   [][]byte
		wantErr string // "" for an accepted handshake
	}{
		{"no certificate", nil, ""},
		{"mesh certificate", [][]byte{good.Raw}, ""},
		{"another root", [][]byte{otherRoot.Raw}, "unknown authority"},
		{"expired", [][]byte{signWithAuthority(t, a, expiredT, key.Public()).Raw}, "expired"},
		{"server auth only", [][]byte{signWithAuthority(t, a, serverOnlyT, key.Public()).Raw}, "key usage"},
		{"NUL in the URI SAN", [][]byte{nulSANCert(t, a, key, id+"\x00x")}, "invalid control character"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cc, sc := net.Pipe()
			defer cc.Close()
			defer sc.Close()
			client := tls.Client(cc, &tls.Config{
				RootCAs: a.TrustPool(), ServerName: "straitd", NextProtos: []string{"h2"},
				GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
					return &tls.Certificate{Certificate: tc.chain, PrivateKey: key}, nil
				},
			})
			go func() {
				client.Handshake()
				client.Read(make([]byte, 1)) // TLS 1.3: the server's verdict arrives after the client's Finished
				client.Close()
			}()
			server := tls.Server(sc, cfg)
			err := server.Handshake()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("handshake: %v", err)
				}
				if server.ConnectionState().NegotiatedProtocol != "h2" {
					t.Fatal("ALPN h2 not negotiated")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("handshake err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}
