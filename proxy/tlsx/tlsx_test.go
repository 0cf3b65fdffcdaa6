package tlsx

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gtlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/strait-mesh/strait/proxy/xdspb"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	tlsv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/matcher/v3"
)

const (
	clientID = "spiffe://cluster.local/ns/default/sa/productpage"
	serverID = "spiffe://cluster.local/ns/default/sa/reviews"
)

func uriMatcher(m *matcherv3.StringMatcher) *tlsv3.SubjectAltNameMatcher {
	return &tlsv3.SubjectAltNameMatcher{SanType: tlsv3.SubjectAltNameMatcher_URI, Matcher: m}
}

func exact(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
}

// istioServer is the DownstreamTlsContext shape Istio emits for inbound mTLS.
func istioServer(sans ...*tlsv3.SubjectAltNameMatcher) *tlsv3.DownstreamTlsContext {
	return &tlsv3.DownstreamTlsContext{
		RequireClientCertificate: wrapperspb.Bool(true),
		CommonTlsContext: &tlsv3.CommonTlsContext{
			AlpnProtocols:                  []string{"h2", "http/1.1"},
			TlsParams:                      &tlsv3.TlsParameters{TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_2},
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: "default"}},
			ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext:         &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: sans},
				ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: "ROOTCA"},
			}},
		},
	}
}

// istioClient is the UpstreamTlsContext shape Istio emits for outbound mTLS.
func istioClient(sni string, sans ...*tlsv3.SubjectAltNameMatcher) *tlsv3.UpstreamTlsContext {
	c := istioServer(sans...).CommonTlsContext
	c.AlpnProtocols = []string{"istio-peer-exchange", "istio"}
	return &tlsv3.UpstreamTlsContext{Sni: sni, CommonTlsContext: c}
}

// handshake runs a real TLS handshake over loopback TCP and returns both sides' errors, the
// server's view of the connection and the client's.
func handshake(t *testing.T, server, client *tls.Config) (serr, cerr error, ss, cs tls.ConnectionState) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			serr = err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		tc := tls.Server(c, server)
		if serr = tc.Handshake(); serr == nil {
			ss = tc.ConnectionState()
			// Echo one message so that the client sees TLS 1.3 post-handshake failures too.
			buf := make([]byte, 4)
			if _, err := io.ReadFull(tc, buf); err == nil {
				tc.Write(buf)
			}
		}
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Client(raw, client)
	cerr = tc.Handshake()
	if cerr == nil {
		cs = tc.ConnectionState()
		if _, err := tc.Write([]byte("ping")); err != nil {
			cerr = err
		} else if _, err := io.ReadFull(tc, make([]byte, 4)); err != nil {
			cerr = err
		}
	}
	raw.Close()
	<-done
	return serr, cerr, ss, cs
}

type mesh struct {
	ca              *testCA
	serverS, client *secretMap
	serverSerial    int64
}

// istioConfigs returns the server's configuration (as istiod configures an inbound listener)
// and the client's (for the server's identity, reviews) over the mesh's secrets.
func (m *mesh) istioConfigs(t *testing.T) (srv, cli *tls.Config) {
	t.Helper()
	srv, err := Server(istioServer(), m.serverS)
	if err != nil {
		t.Fatal(err)
	}
	cli, err = Client(istioClient("reviews"), m.client)
	if err != nil {
		t.Fatal(err)
	}
	return srv, cli
}

func newMesh(t *testing.T) *mesh {
	ca := newCA(t, "cluster.local")
	m := &mesh{ca: ca, serverS: &secretMap{}, client: &secretMap{}}
	sc, sk, serial := ca.issue(t, []string{serverID})
	m.serverSerial = serial
	m.serverS.set(certSecret("default", sc, sk))
	m.serverS.set(caSecret("ROOTCA", ca.pem))
	cc, ck, _ := ca.issue(t, []string{clientID})
	m.client.set(certSecret("default", cc, ck))
	m.client.set(caSecret("ROOTCA", ca.pem))
	return m
}

func TestMutualTLSWithSPIFFE(t *testing.T) {
	m := newMesh(t)
	srv, err := Server(istioServer(uriMatcher(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "spiffe://cluster.local/"}})), m.serverS)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := Client(istioClient("outbound_.9080_._.reviews.default.svc.cluster.local", uriMatcher(exact(serverID))), m.client)
	if err != nil {
		t.Fatal(err)
	}
	serr, cerr, ss, cs := handshake(t, srv, cli)
	if serr != nil || cerr != nil {
		t.Fatalf("server: %v, client: %v", serr, cerr)
	}
	if lc := LocalCertificate(srv, ss.ServerName); lc == nil || lc.URIs[0].String() != serverID {
		t.Errorf("LocalCertificate = %v", lc)
	}
	if got := ss.PeerCertificates[0].URIs[0].String(); got != clientID {
		t.Errorf("server saw peer %s", got)
	}
	if ss.ServerName != "outbound_.9080_._.reviews.default.svc.cluster.local" {
		t.Errorf("SNI = %q", ss.ServerName)
	}
	if cs.NegotiatedProtocol != "" {
		t.Errorf("ALPN with no overlap negotiated %q, want none (Envoy semantics)", cs.NegotiatedProtocol)
	}
	if cs.Version < tls.VersionTLS12 {
		t.Errorf("version %x", cs.Version)
	}
}

func TestWrongSANRejected(t *testing.T) {
	m := newMesh(t)
	// The server only accepts a different service account.
	srv, err := Server(istioServer(uriMatcher(exact("spiffe://cluster.local/ns/default/sa/ratings"))), m.serverS)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := Client(istioClient("reviews", uriMatcher(exact(serverID))), m.client)
	if err != nil {
		t.Fatal(err)
	}
	serr, cerr, _, _ := handshake(t, srv, cli)
	if serr == nil || !strings.Contains(serr.Error(), "match none") || cerr == nil {
		t.Fatalf("server: %v, client: %v; want SAN rejection", serr, cerr)
	}
	// The client rejects a server with the wrong identity.
	srv2, _ := Server(istioServer(), m.serverS)
	cli2, _ := Client(istioClient("reviews", uriMatcher(exact("spiffe://cluster.local/ns/other/sa/x"))), m.client)
	_, cerr, _, _ = handshake(t, srv2, cli2)
	if cerr == nil || !strings.Contains(cerr.Error(), "match none") {
		t.Fatalf("client: %v; want SAN rejection", cerr)
	}
}

func TestUntrustedAndMissingClientCert(t *testing.T) {
	m := newMesh(t)
	srv, _ := Server(istioServer(), m.serverS)
	// A client whose certificate comes from another CA.
	other := newCA(t, "evil")
	oc, ok, _ := other.issue(t, []string{clientID})
	evil := &secretMap{}
	evil.set(certSecret("default", oc, ok))
	evil.set(caSecret("ROOTCA", m.ca.pem))
	cli, _ := Client(istioClient("reviews"), evil)
	serr, _, _, _ := handshake(t, srv, cli)
	if serr == nil || !strings.Contains(serr.Error(), "unknown authority") {
		t.Fatalf("server: %v; want unknown authority", serr)
	}
	// A client with no certificate at all.
	plain, _ := Client(&tlsv3.UpstreamTlsContext{}, nil)
	serr, _, _, _ = handshake(t, srv, plain)
	if serr == nil {
		t.Fatal("server accepted a client without certificate")
	}
}

func TestRotation(t *testing.T) {
	m := newMesh(t)
	srv, err := Server(istioServer(), m.serverS)
	if err != nil {
		t.Fatal(err)
	}
	cli, _ := Client(&tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: "default"}},
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
			ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: "ROOTCA"}},
		// No session cache, so that each handshake is a full one.
	}, MaxSessionKeys: wrapperspb.UInt32(0)}, m.client)
	_, cerr, _, cs := handshake(t, srv, cli)
	if cerr != nil {
		t.Fatal(cerr)
	}
	if got := cs.PeerCertificates[0].SerialNumber.Int64(); got != m.serverSerial {
		t.Fatalf("first serial %d, want %d", got, m.serverSerial)
	}
	// SDS pushes a new certificate: the next handshake presents it.
	nc, nk, serial := m.ca.issue(t, []string{serverID})
	m.serverS.set(certSecret("default", nc, nk))
	_, cerr, _, cs = handshake(t, srv, cli)
	if cerr != nil {
		t.Fatal(cerr)
	}
	if got := cs.PeerCertificates[0].SerialNumber.Int64(); got != serial {
		t.Fatalf("after rotation serial %d, want %d", got, serial)
	}
	// Root rotation: the server now trusts only a new CA, so the old client cert is refused.
	newRoot := newCA(t, "cluster.local-2")
	m.serverS.set(caSecret("ROOTCA", newRoot.pem))
	serr, _, _, _ := handshake(t, srv, cli)
	if serr == nil {
		t.Fatal("server accepted a client of the retired root")
	}
	// A missing secret fails the handshake instead of skipping validation.
	m.serverS.mu.Lock()
	delete(m.serverS.m, "ROOTCA")
	m.serverS.mu.Unlock()
	serr, _, _, _ = handshake(t, srv, cli)
	if serr == nil || !errors.Is(serr, errNoSecret) {
		t.Fatalf("server: %v; want missing secret", serr)
	}
}

func TestInlineCertificatesALPNAndDNS(t *testing.T) {
	ca := newCA(t, "gw")
	sc, sk, _ := ca.issue(t, nil, "*.example.com")
	srv, err := Server(&tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		AlpnProtocols:   []string{"h2", "http/1.1"},
		TlsCertificates: []*tlsv3.TlsCertificate{{CertificateChain: inline(sc), PrivateKey: inline(sk)}},
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	dnsSAN := &tlsv3.SubjectAltNameMatcher{SanType: tlsv3.SubjectAltNameMatcher_DNS, Matcher: exact("api.example.com")}
	cli, err := Client(&tlsv3.UpstreamTlsContext{Sni: "api.example.com", CommonTlsContext: &tlsv3.CommonTlsContext{
		AlpnProtocols: []string{"h2"},
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: inline(ca.pem), MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{dnsSAN}}},
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	serr, cerr, _, cs := handshake(t, srv, cli)
	if serr != nil || cerr != nil {
		t.Fatalf("server %v client %v", serr, cerr)
	}
	if cs.NegotiatedProtocol != "h2" {
		t.Errorf("ALPN = %q", cs.NegotiatedProtocol)
	}
	// The wildcard covers one label only.
	deep := &tlsv3.SubjectAltNameMatcher{SanType: tlsv3.SubjectAltNameMatcher_DNS, Matcher: exact("a.b.example.com")}
	cli2, _ := Client(&tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: inline(ca.pem), MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{deep}}},
	}}, nil)
	if _, cerr, _, _ := handshake(t, srv, cli2); cerr == nil {
		t.Fatal("wildcard matched two labels")
	}
}

func TestStringMatchers(t *testing.T) {
	cases := []struct {
		m    *matcherv3.StringMatcher
		in   string
		want bool
	}{
		{exact("a"), "a", true},
		{&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: "/sa/x"}}, "spiffe://td/ns/n/sa/x", true},
		{&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Contains{Contains: "/ns/n/"}}, "spiffe://td/ns/n/sa/x", true},
		{&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Contains{Contains: "/ns/m/"}}, "spiffe://td/ns/n/sa/x", false},
		{&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "spiffe://td/ns/[a-z]+/sa/x"}}}, "spiffe://td/ns/n/sa/x", true},
		{&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "spiffe://td"}}}, "spiffe://td/ns/n", false},
		{&matcherv3.StringMatcher{IgnoreCase: true, MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "SPIFFE://TD/"}}, "spiffe://td/x", true},
	}
	for i, c := range cases {
		m, err := compileStringMatch(c.m, "m")
		if err != nil {
			t.Fatal(err)
		}
		if got := m.Match(c.in); got != c.want {
			t.Errorf("case %d: match(%q) = %v", i, c.in, got)
		}
	}
}

func TestUnsupportedFieldsNamed(t *testing.T) {
	cases := []struct {
		ctx  proto.Message // go-control-plane's type where a field strait-proxy does not read is set
		want string
	}{
		{&gtlsv3.DownstreamTlsContext{CommonTlsContext: &gtlsv3.CommonTlsContext{}, SessionTimeout: nil, OcspStaplePolicy: gtlsv3.DownstreamTlsContext_STRICT_STAPLING}, "ocsp_staple_policy"},
		{&gtlsv3.DownstreamTlsContext{CommonTlsContext: &gtlsv3.CommonTlsContext{KeyLog: &gtlsv3.TlsKeyLog{Path: "/tmp/k"}}}, "common_tls_context.key_log"},
		{&gtlsv3.DownstreamTlsContext{CommonTlsContext: &gtlsv3.CommonTlsContext{TlsParams: &gtlsv3.TlsParameters{SignatureAlgorithms: []string{"x"}}}}, "tls_params.signature_algorithms"},
		{&tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{TlsParams: &tlsv3.TlsParameters{CipherSuites: []string{"RC4-MD5"}}}}, "RC4-MD5"},
		{&gtlsv3.DownstreamTlsContext{CommonTlsContext: &gtlsv3.CommonTlsContext{ValidationContextType: &gtlsv3.CommonTlsContext_ValidationContext{ValidationContext: &gtlsv3.CertificateValidationContext{VerifyCertificateSpki: []string{"x"}}}}}, "validation_context.verify_certificate_spki"},
		{&tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{uriMatcher(exact("x"))}}}}}, "requires trusted_ca"},
		{&tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{}}, "needs tls_certificates"},
	}
	for _, c := range cases {
		_, err := Server(xdspb.MustFrom[*tlsv3.DownstreamTlsContext](c.ctx), &secretMap{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("err = %v, want mention of %q", err, c.want)
		}
	}
}

func TestMinimumVersionEnforced(t *testing.T) {
	m := newMesh(t)
	ctx := istioServer()
	ctx.CommonTlsContext.TlsParams = &tlsv3.TlsParameters{TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_0}
	srv, err := Server(ctx, m.serverS)
	if err != nil {
		t.Fatal(err)
	}
	cli, _ := Client(istioClient("x"), m.client)
	cli.MinVersion, cli.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	if serr, _, _, _ := handshake(t, srv, cli); serr == nil {
		t.Fatal("TLS 1.1 handshake accepted")
	}
}

// TestResumptionRevalidates: a resumed TLS session is validated against the current trust
// anchors, so a root rotation also applies to clients holding session tickets.
func TestResumptionRevalidates(t *testing.T) {
	m := newMesh(t)
	srv, cli := m.istioConfigs(t)
	cli.MaxVersion = tls.VersionTLS12 // session tickets are issued within the handshake in 1.2
	if serr, cerr, _, _ := handshake(t, srv, cli); serr != nil || cerr != nil {
		t.Fatalf("first: %v %v", serr, cerr)
	}
	_, _, ss, _ := handshake(t, srv, cli)
	if !ss.DidResume {
		t.Skip("session was not resumed; nothing to check")
	}
	m.serverS.set(caSecret("ROOTCA", newCA(t, "other").pem))
	if serr, _, ss, _ := handshake(t, srv, cli); serr == nil {
		t.Fatalf("resumed=%v: server accepted a session whose client chain the new root does not sign", ss.DidResume)
	}
}

// TestCertificateSelectionBySNI: with several certificates the one covering the SNI is served.
func TestCertificateSelectionBySNI(t *testing.T) {
	ca := newCA(t, "sel")
	ac, ak, _ := ca.issue(t, nil, "a.example")
	bc, bk, _ := ca.issue(t, nil, "b.example")
	srv, err := Server(&tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{TlsCertificates: []*tlsv3.TlsCertificate{
		{CertificateChain: inline(ac), PrivateKey: inline(ak)}, {CertificateChain: inline(bc), PrivateKey: inline(bk)}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a.example", "b.example"} {
		cli, _ := Client(&tlsv3.UpstreamTlsContext{Sni: name}, nil)
		_, cerr, _, cs := handshake(t, srv, cli)
		if cerr != nil {
			t.Fatal(cerr)
		}
		if got := cs.PeerCertificates[0].DNSNames[0]; got != name {
			t.Errorf("SNI %s: served %s", name, got)
		}
	}
}

// TestDataSources loads the certificate from a file, the key from an inline string and the CA
// from an environment variable.
func TestDataSources(t *testing.T) {
	ca := newCA(t, "ds")
	cp, kp, _ := ca.issue(t, nil, "ds.test")
	certFile := filepath.Join(t.TempDir(), "cert.pem")
	if err := os.WriteFile(certFile, cp, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("STRAIT_TLSX_TEST_CA", string(ca.pem))
	srv, err := Server(&tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{TlsCertificates: []*tlsv3.TlsCertificate{{
		CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: certFile}},
		PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: string(kp)}},
	}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := Client(&tlsv3.UpstreamTlsContext{Sni: "ds.test", CommonTlsContext: &tlsv3.CommonTlsContext{
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa:                 &corev3.DataSource{Specifier: &corev3.DataSource_EnvironmentVariable{EnvironmentVariable: "STRAIT_TLSX_TEST_CA"}},
			MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{SanType: tlsv3.SubjectAltNameMatcher_DNS, Matcher: exact("ds.test")}},
		}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if serr, cerr, _, _ := handshake(t, srv, cli); serr != nil || cerr != nil {
		t.Fatalf("server %v client %v", serr, cerr)
	}
	if _, err := Server(&tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{TlsCertificates: []*tlsv3.TlsCertificate{{
		CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: certFile + ".missing"}},
		PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: string(kp)}},
	}}}}, nil); err == nil || !strings.Contains(err.Error(), "tls_certificates[0].certificate_chain") {
		t.Fatalf("missing file: %v", err)
	}
}
