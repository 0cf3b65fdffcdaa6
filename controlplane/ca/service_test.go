package ca

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	pb "istio.io/api/security/v1alpha1"

	"github.com/strait-mesh/strait/internal/testenv"
)

// meshPort is straitd's 15012 in miniature: the CSR service on a TLS gRPC server on loopback,
// configured as straitd will configure it.
type meshPort struct {
	a      *Authority
	tokens *BootstrapTokens
	clock  *fakeClock // the bootstrap tokens' clock
	addr   string
	logs   *testenv.SyncBuffer
}

func startMeshPort(t *testing.T) *meshPort {
	t.Helper()
	return startMeshPortMetrics(t, nil)
}

// startMeshPortMetrics is startMeshPort with the CA's metrics registered with reg (nil: none).
func startMeshPortMetrics(t *testing.T, reg prometheus.Registerer) *meshPort {
	t.Helper()
	log, logs := testLogger(t)
	a, err := New(Options{Dir: t.TempDir(), Logger: log, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	clock := newFakeClock()
	tokens, err := NewBootstrapTokens(BootstrapOptions{TrustDomain: a.TrustDomain(), Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	g, err := NewMeshServer(a, []Authenticator{tokens}, ServingOptions{Logger: log}, log)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(ln)
	t.Cleanup(g.Stop)
	return &meshPort{a: a, tokens: tokens, clock: clock, addr: ln.Addr().String(), logs: logs}
}

// call makes one CreateCertificate call on a new connection, presenting clientChain (raw DER,
// leaf first; nil for none) with key, and token as bearer token ("" for none).
func (m *meshPort) call(t *testing.T, req *pb.IstioCertificateRequest, clientChain [][]byte, key crypto.Signer, token string) (*pb.IstioCertificateResponse, error) {
	t.Helper()
	cfg := &tls.Config{
		RootCAs:    m.a.TrustPool(),
		ServerName: "istiod.istio-system.svc",
		// GetClientCertificate sends the chain as is, even one Go's own parser refuses (a NUL
		// SAN), so the server's defences are what is tested.
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if clientChain == nil {
				return &tls.Certificate{}, nil
			}
			return &tls.Certificate{Certificate: clientChain, PrivateKey: key}, nil
		},
	}
	conn, err := grpc.NewClient("passthrough:///"+m.addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	return pb.NewIstioCertificateServiceClient(conn).CreateCertificate(ctx, req)
}

func csrRequest(t *testing.T, key crypto.Signer, uris ...string) *pb.IstioCertificateRequest {
	return &pb.IstioCertificateRequest{Csr: makeCSR(t, key, uris), ValidityDuration: 3600}
}

// parseResponse checks Istio's response shape and returns the leaf and the chain the client
// presents with it (leaf and intermediates, without the roots).
func (m *meshPort) parseResponse(t *testing.T, resp *pb.IstioCertificateResponse) (*x509.Certificate, [][]byte) {
	t.Helper()
	roots := m.a.TrustBundle()
	if len(resp.CertChain) != 1+len(roots) {
		t.Fatalf("cert_chain has %d elements, want leaf + %d roots", len(resp.CertChain), len(roots))
	}
	var certs []*x509.Certificate
	for i, p := range resp.CertChain {
		c, err := ParsePEMBundle([]byte(p))
		if err != nil || len(c) != 1 || !strings.HasSuffix(p, "\n") {
			t.Fatalf("cert_chain[%d]: %d certificates, err %v", i, len(c), err)
		}
		certs = append(certs, c[0])
	}
	if !certs[len(certs)-1].Equal(roots[len(roots)-1]) {
		t.Fatal("cert_chain does not end with the root")
	}
	return certs[0], [][]byte{certs[0].Raw}
}

func TestCSRServiceEndToEnd(t *testing.T) {
	m := startMeshPort(t)
	key := testP256()
	ratings := "spiffe://cluster.local/ns/default/sa/ratings"
	admin := "spiffe://cluster.local/ns/default/sa/admin"
	tok, err := m.tokens.Mint("default", "ratings", 0)
	if err != nil {
		t.Fatal(err)
	}

	// A new workload with a bootstrap token gets a certificate for its identity (its CSR may name
	// that identity, as Istio's agent's does, or nothing).
	resp, err := m.call(t, csrRequest(t, key, ratings), nil, nil, tok.Token)
	if err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	leaf, chain := m.parseResponse(t, resp)
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != ratings || !publicKeysEqual(leaf.PublicKey, key.Public()) {
		t.Fatalf("leaf for %v", leaf.URIs)
	}
	if d := leaf.NotAfter.Sub(leaf.NotBefore); d > time.Hour+time.Minute || d < time.Hour {
		t.Errorf("validity_duration 3600 gave %v", d)
	}
	if !strings.Contains(m.logs.String(), "authn="+MethodBootstrapToken) {
		t.Error("issuance not logged with the authentication method")
	}

	// Renewal with that certificate alone.
	resp, err = m.call(t, csrRequest(t, testP256b()), chain, key, "")
	if err != nil {
		t.Fatalf("renewal: %v", err)
	}
	renewed, renewedChain := m.parseResponse(t, resp)
	if renewed.URIs[0].String() != ratings || renewed.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
		t.Fatalf("renewed %v serial %x", renewed.URIs, renewed.SerialNumber)
	}
	// And with the renewed one, for a new key again.
	if _, err := m.call(t, csrRequest(t, key, ratings), renewedChain, testP256b(), ""); err != nil {
		t.Fatalf("second renewal: %v", err)
	}
	// Metadata naming the proven identity itself is fine.
	req := csrRequest(t, key)
	req.Metadata = mustStruct(t, map[string]any{MetadataImpersonatedIdentity: ratings})
	if _, err := m.call(t, req, chain, key, ""); err != nil {
		t.Fatalf("ImpersonatedIdentity of oneself: %v", err)
	}

	impersonate := csrRequest(t, key)
	impersonate.Metadata = mustStruct(t, map[string]any{MetadataImpersonatedIdentity: admin})
	reviewsTok, _ := m.tokens.Mint("default", "reviews", 0)
	shortTok, _ := m.tokens.Mint("default", "ratings", time.Minute)

	// Client certificates the CA never issues for a workload, or that fail verification.
	now := time.Now()
	other := newTestAuthority(t, nil)
	fromOther, err := other.Sign(SignRequest{CSR: mustParseCSR(t, makeCSR(t, key, nil)), Identity: testID})
	if err != nil {
		t.Fatal(err)
	}
	twoURIs := signWithAuthority(t, m.a, leafTemplate(now, ratings, admin), key.Public())
	otherTD := signWithAuthority(t, m.a, leafTemplate(now, "spiffe://evil.org/ns/default/sa/ratings"), key.Public())
	expiredT := leafTemplate(now, ratings)
	expiredT.NotBefore, expiredT.NotAfter = now.Add(-2*time.Hour), now.Add(-time.Hour)
	expired := signWithAuthority(t, m.a, expiredT, key.Public())
	nul := nulSANCert(t, m.a, key, "spiffe://cluster.local/ns/default/sa/ratings\x00.admin")

	tests := []struct {
		name  string
		req   *pb.IstioCertificateRequest
		chain [][]byte
		token string
		code  codes.Code
		// errText is a substring of the status message.
		errText string
		// log is a substring of the refusal's log line.
		log string
	}{
		{name: "no credential", req: csrRequest(t, key), code: codes.Unauthenticated, errText: "request authentication failure", log: "not authenticated"},
		{name: "CSR for another identity with the token", req: csrRequest(t, key, admin), token: tok.Token, code: codes.PermissionDenied,
			log: "claimed=" + admin},
		{name: "CSR for another identity with the certificate", req: csrRequest(t, key, admin), chain: chain, code: codes.PermissionDenied, log: "claimed=" + admin},
		{name: "CSR naming two identities", req: csrRequest(t, key, ratings, admin), token: tok.Token, code: codes.PermissionDenied, log: "claimed=" + admin},
		{name: "metadata asks for another service account", req: impersonate, token: tok.Token, code: codes.PermissionDenied, log: "metadata asks for another identity"},
		{name: "metadata asks for another service account, certificate", req: impersonate, chain: chain, code: codes.PermissionDenied, log: "metadata asks for another identity"},
		{name: "token of another service account", req: csrRequest(t, key, ratings), token: reviewsTok.Token, code: codes.PermissionDenied, log: "proven=spiffe://cluster.local/ns/default/sa/reviews"},
		{name: "unknown token", req: csrRequest(t, key), token: BootstrapTokenPrefix + "forged", code: codes.Unauthenticated, log: "unknown token"},
		{name: "certificate with two URI SANs", req: csrRequest(t, key), chain: [][]byte{twoURIs.Raw}, code: codes.Unauthenticated, log: "2 URI SANs"},
		{name: "certificate of another trust domain", req: csrRequest(t, key), chain: [][]byte{otherTD.Raw}, code: codes.Unauthenticated, log: "not in the CA's trust domain"},
		// Refused by the TLS handshake already (VerifyClientCertIfGiven): no RPC reaches the
		// service, the connection fails (the reasons: TestServerTLSHandshakeRefusals).
		{name: "certificate from another root", req: csrRequest(t, key), chain: [][]byte{fromOther.Leaf.Raw}, code: codes.Unavailable},
		{name: "expired certificate", req: csrRequest(t, key), chain: [][]byte{expired.Raw}, code: codes.Unavailable},
		{name: "NUL in the URI SAN", req: csrRequest(t, key), chain: [][]byte{nul}, code: codes.Unavailable},
		// A valid credential does not excuse a bad request.
		{name: "malformed CSR", req: &pb.IstioCertificateRequest{Csr: "nope"}, token: tok.Token, code: codes.InvalidArgument, log: "malformed"},
		{name: "weak key", req: csrRequest(t, testP384()), token: tok.Token, code: codes.InvalidArgument, log: "ECDSA curve P-384"},
		{name: "oversized CSR", req: &pb.IstioCertificateRequest{Csr: strings.Repeat("a", MaxCSRSize+1)}, token: tok.Token, code: codes.InvalidArgument, log: "too large"},
		{name: "CertSigner", req: &pb.IstioCertificateRequest{Csr: makeCSR(t, key, nil), Metadata: mustStruct(t, map[string]any{MetadataCertSigner: "kubernetes.io/x"})}, token: tok.Token, code: codes.InvalidArgument, log: "CertSigner"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(m.logs.String())
			resp, err := m.call(t, tc.req, tc.chain, key, tc.token)
			if status.Code(err) != tc.code || !strings.Contains(status.Convert(err).Message(), tc.errText) {
				t.Fatalf("got %v (%d certificates), want %v with %q", err, len(resp.GetCertChain()), tc.code, tc.errText)
			}
			if tc.code == codes.Unavailable && strings.Contains(m.logs.String()[before:], "CSR") {
				t.Fatal("a request refused at the handshake reached the service")
			}
			if tc.log == "" {
				return
			}
			logged := m.logs.String()[before:]
			if !strings.Contains(logged, tc.log) || !strings.Contains(logged, "level=WARN") {
				t.Fatalf("log %q does not contain %q", logged, tc.log)
			}
			if tc.token != "" && strings.Contains(logged, tc.token) {
				t.Fatal("the token was logged")
			}
			if tc.code == codes.PermissionDenied && !strings.Contains(logged, "proven=spiffe://") {
				t.Fatalf("refusal %q does not log the proven identity", logged)
			}
		})
	}

	// The short token expires; then it proves nothing.
	m.clock.Add(2 * time.Minute)
	before := len(m.logs.String())
	if _, err := m.call(t, csrRequest(t, key), nil, nil, shortTok.Token); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("expired token: %v", err)
	}
	if !strings.Contains(m.logs.String()[before:], "token expired") {
		t.Fatal("expired token not logged as such")
	}
}

// TestServerTLSTrustChanges: the mesh port follows root rotation without a restart: the serving
// certificate is re-issued under the new root, and client certificates of both roots are
// accepted until the old root is removed.
func TestServerTLSTrustChanges(t *testing.T) {
	m := startMeshPort(t)
	key := testP256()
	tok, _ := m.tokens.Mint("default", "ratings", 0)
	resp, err := m.call(t, csrRequest(t, key), nil, nil, tok.Token)
	if err != nil {
		t.Fatal(err)
	}
	_, oldChain := m.parseResponse(t, resp)
	old := m.a.TrustBundle()[0]
	if _, err := m.a.StageRoot(); err != nil {
		t.Fatal(err)
	}
	if err := m.a.ActivateStagedRoot(); err != nil {
		t.Fatal(err)
	}
	resp, err = m.call(t, csrRequest(t, key), oldChain, key, "")
	if err != nil {
		t.Fatalf("renewal with a certificate of the previous root: %v", err)
	}
	leaf, newChain := m.parseResponse(t, resp)
	newRoot, _ := m.a.SigningCertificate()
	if leaf.CheckSignatureFrom(newRoot) != nil {
		t.Fatal("renewed certificate is not signed by the new root")
	}
	if err := m.a.RemoveRoot(Fingerprint(old)); err != nil {
		t.Fatal(err)
	}
	if _, err := m.call(t, csrRequest(t, key), oldChain, key, ""); status.Code(err) != codes.Unavailable {
		t.Fatalf("certificate of a removed root: %v", err)
	}
	if _, err := m.call(t, csrRequest(t, key), newChain, key, ""); err != nil {
		t.Fatalf("certificate of the new root: %v", err)
	}
}

func TestNewServiceOptions(t *testing.T) {
	a := newTestAuthority(t, nil)
	if _, err := NewService(ServiceOptions{Signer: a}); err == nil {
		t.Error("no authenticators accepted")
	}
	if _, err := NewService(ServiceOptions{Authenticators: []Authenticator{NewCertificateAuthenticator(a, nil)}}); err == nil {
		t.Error("no signer accepted")
	}
}

func mustStruct(t *testing.T, m map[string]any) *structpb.Struct {
	s, err := structpb.NewStruct(m)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// nulSANCert returns the DER of a workload certificate, signed by a, whose URI SAN holds a NUL:
// the SAN extension is written by hand, since Go's encoder would percent-encode it.
func nulSANCert(t *testing.T, a *Authority, key crypto.Signer, uri string) []byte {
	val, err := asn1.Marshal([]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte(uri)}})
	if err != nil {
		t.Fatal(err)
	}
	tmpl := leafTemplate(time.Now())
	serial, err := newSerial()
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = serial
	tmpl.ExtraExtensions = []pkix.Extension{{Id: oidSubjectAltName, Critical: true, Value: val}}
	st := a.state.Load()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, st.cert, key.Public(), st.signer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x509.ParseCertificate(der); err == nil {
		t.Fatal("Go parses a NUL URI SAN; the test no longer exercises the handshake refusal")
	}
	return der
}
