package agent_test

// End-to-end tests of the agent against straitd's real CA (controlplane/ca), served on loopback
// TLS as straitd serves it on 15012. Importing controlplane/ca here is allowed: test
// dependencies are not linked into strait-proxy (go list -deps ./proxy/agent has no controlplane
// package). Certificates live seconds, not hours, with a configurable renew fraction, so the
// tests run on the real clock; every wait is bounded and generous.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strait-mesh/strait/controlplane/ca"
	"github.com/strait-mesh/strait/internal/grpclite"
	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/internal/testenv/meshca"
	"github.com/strait-mesh/strait/proxy/agent"
)

const ratingsID = "spiffe://cluster.local/ns/default/sa/ratings"

// startAgent runs an agent for default/ratings against c until the test ends.
func startAgent(t *testing.T, c *meshca.Server, mod func(*agent.Options)) (*agent.Agent, *testenv.SyncBuffer) {
	t.Helper()
	log, logs := testenv.Logger(t, "agent")
	o := agent.Options{
		CAAddress:      c.Addr(),
		RootsPEM:       c.Authority.TrustBundlePEM(),
		Namespace:      "default",
		ServiceAccount: "ratings",
		Lifetime:       10 * time.Second,
		RetryInitial:   100 * time.Millisecond,
		RetryMax:       500 * time.Millisecond,
		Logger:         log,
	}
	if mod != nil {
		mod(&o)
	}
	ag, err := agent.New(o)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Go(t, "Run", 15*time.Second, ag.Run)
	return ag, logs
}

// eventually polls cond until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, what, timeout, cond)
}

func waitReady(t *testing.T, ag *agent.Agent) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := ag.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
}

// handshake connects a TLS client that trusts roots to a server config and returns the serial
// number of the certificate the server presented.
func handshake(t *testing.T, server *tls.Config, roots *x509.CertPool) string {
	t.Helper()
	cc, sc := net.Pipe()
	defer cc.Close()
	defer sc.Close()
	errc := make(chan error, 1)
	go func() {
		s := tls.Server(sc, server)
		errc <- s.Handshake()
		s.Close()
	}()
	client := tls.Client(cc, &tls.Config{
		InsecureSkipVerify: true, // SPIFFE certificates carry no DNS name: verify by hand below
		VerifyConnection: func(cs tls.ConnectionState) error {
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
			if err == nil && cs.PeerCertificates[0].URIs[0].String() != ratingsID {
				err = fmt.Errorf("peer is %v", cs.PeerCertificates[0].URIs)
			}
			return err
		},
	})
	if err := client.Handshake(); err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	return fmt.Sprintf("%x", client.ConnectionState().PeerCertificates[0].SerialNumber)
}

func TestIssueAndRenew(t *testing.T) {
	t.Parallel()
	c := meshca.Start(t)
	tok := c.Mint(t, "default", "ratings")
	tokFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokFile, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ag, logs := startAgent(t, c, func(o *agent.Options) {
		o.BootstrapTokenFile = tokFile
		o.RenewFraction = 0.3
	})
	changes, cancel := ag.Subscribe()
	defer cancel()
	waitReady(t, ag)

	first := ag.Certificate()
	leaf := first.Leaf
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != ratingsID || ag.Identity() != ratingsID {
		t.Fatalf("certificate for %v, agent %s", leaf.URIs, ag.Identity())
	}
	if d := leaf.NotAfter.Sub(leaf.NotBefore); d < 10*time.Second || d > 12*time.Second {
		t.Errorf("requested 10s, got a validity of %v", d)
	}
	if len(first.Certificate) != 1 {
		t.Errorf("self-signed root: want the leaf alone in the chain, got %d certificates", len(first.Certificate))
	}
	st := ag.Status()
	if st.AuthenticatedBy != "bootstrap-token" || st.Issued != 1 || st.Serial != fmt.Sprintf("%x", leaf.SerialNumber) {
		t.Errorf("status %+v", st)
	}
	if !bytes.Equal(ag.RootsPEM(), c.Authority.TrustBundlePEM()) {
		t.Error("ROOTCA is not the CA's trust bundle")
	}
	if s, ok := ag.CertExpirySeconds(); !ok || s <= 0 || s > 10 {
		t.Errorf("expiry seconds %v %v", s, ok)
	}
	// SDS "default" as Envoy's Secret: the same chain and key.
	sec := ag.Secret(agent.SecretDefault)
	kp, err := tls.X509KeyPair(sec.GetTlsCertificate().GetCertificateChain().GetInlineBytes(), sec.GetTlsCertificate().GetPrivateKey().GetInlineBytes())
	if err != nil || !kp.Leaf.Equal(leaf) {
		t.Fatalf("secret default: %v", err)
	}
	if !bytes.Equal(ag.Secret(agent.SecretRootCA).GetValidationContext().GetTrustedCa().GetInlineBytes(), ag.RootsPEM()) {
		t.Error("secret ROOTCA differs from RootsPEM")
	}
	if ag.Secret("kubernetes://other") != nil {
		t.Error("a secret name the agent does not own")
	}

	// A server config built once serves whatever certificate is current.
	server := &tls.Config{GetCertificate: ag.GetCertificate}
	if got := handshake(t, server, ag.Roots()); got != st.Serial {
		t.Fatalf("handshake presented %s, want %s", got, st.Serial)
	}

	// Renewals prove the workload by its certificate: the token is no longer valid.
	c.Tokens.Revoke(tok)
	eventually(t, 40*time.Second, "two renewals", func() bool { return ag.Status().Issued >= 3 })
	st2 := ag.Status()
	if st2.AuthenticatedBy != "certificate" || st2.Serial == st.Serial || st2.LastError != nil {
		t.Errorf("after renewals: %+v", st2)
	}
	if n := strings.Count(c.Logs.String(), "authn=certificate"); n < 2 {
		t.Errorf("the CA saw %d certificate-authenticated requests, want at least 2", n)
	}
	renewed := ag.Certificate()
	if renewed.Leaf.URIs[0].String() != ratingsID || !renewed.Leaf.NotAfter.After(leaf.NotAfter) {
		t.Errorf("renewed certificate %v until %v", renewed.Leaf.URIs, renewed.Leaf.NotAfter)
	}
	if renewed.Leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(leaf.PublicKey) {
		t.Error("the renewed certificate reuses the first key")
	}
	if got := handshake(t, server, ag.Roots()); got == st.Serial {
		t.Error("the server config still presents the first certificate")
	}
	if ag.Secret(agent.SecretDefault) == sec {
		t.Error("secret default was not replaced")
	}
	select { // subscribers are told after the certificate is stored
	case <-changes:
	case <-time.After(10 * time.Second):
		t.Error("no change notification")
	}
	if strings.Contains(logs.String(), tok) || strings.Contains(c.Logs.String(), tok) {
		t.Error("the bootstrap token was logged")
	}
	if strings.Contains(logs.String(), "level=WARN") || strings.Contains(logs.String(), "level=ERROR") {
		t.Error("warnings without an outage")
	}
}

func TestCAOutage(t *testing.T) {
	t.Parallel()
	c := meshca.Start(t)
	ag, logs := startAgent(t, c, func(o *agent.Options) {
		o.BootstrapToken = c.Mint(t, "default", "ratings")
		o.RenewFraction = 0.5
		o.RenewJitter = -1
		o.WarnFraction = 0.3
	})
	waitReady(t, ag)

	// The CA goes away for longer than half of the lifetime: the certificate stays in use, its
	// expiry value falls, and the warning appears.
	c.Stop()
	before := ag.Status()
	e1, _ := ag.CertExpirySeconds()
	eventually(t, 20*time.Second, "expiry warning", func() bool { return strings.Contains(logs.String(), "expires soon") })
	e2, _ := ag.CertExpirySeconds()
	if e2 >= e1 || e2 > 0.3*11 {
		t.Errorf("expiry seconds went from %v to %v", e1, e2)
	}
	if s := ag.Status(); s.Serial != before.Serial || ag.Certificate() == nil {
		t.Fatalf("certificate changed during the outage: %+v", s)
	}
	err := ag.LastError()
	if err == nil || errors.Is(err, agent.ErrRefused) || grpclite.CodeOf(err) != grpclite.Unavailable {
		t.Errorf("last error during the outage: %v (%v)", err, grpclite.CodeOf(err))
	}
	if !strings.Contains(logs.String(), "level=WARN") {
		t.Error("failures not logged as warnings")
	}

	// The CA returns: the certificate is renewed.
	c.Start()
	eventually(t, 30*time.Second, "renewal after the CA returned", func() bool {
		s := ag.Status()
		return s.Serial != before.Serial && s.LastError == nil
	})

	// An outage past the expiry: the expired certificate is reported, and when the CA returns
	// the agent proves itself with the bootstrap token again.
	c.Stop()
	eventually(t, 30*time.Second, "expired warning", func() bool { return strings.Contains(logs.String(), "workload certificate expired") })
	if s, _ := ag.CertExpirySeconds(); s >= 0 {
		t.Errorf("expiry seconds %v after the expiry", s)
	}
	expired := ag.Status().Serial
	c.Start()
	eventually(t, 30*time.Second, "renewal with the token after the expiry", func() bool {
		s := ag.Status()
		return s.Serial != expired && s.AuthenticatedBy == "bootstrap-token"
	})
}

func TestRootRotation(t *testing.T) {
	t.Parallel()
	c := meshca.Start(t)
	ag, _ := startAgent(t, c, func(o *agent.Options) {
		o.BootstrapToken = c.Mint(t, "default", "ratings")
		o.RenewFraction = 0.3
	})
	waitReady(t, ag)
	changes, cancel := ag.Subscribe()
	defer cancel()
	old := c.Authority.TrustBundle()[0]
	has := func(r *x509.Certificate) bool {
		for _, x := range ag.RootCertificates() {
			if x.Equal(r) {
				return true
			}
		}
		return false
	}

	// A new root is added beside the old one: it reaches the agent with the next renewal.
	newRoot, err := c.Authority.StageRoot()
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the staged root in ROOTCA", func() bool { return has(newRoot) && has(old) })
	if !bytes.Equal(ag.Secret(agent.SecretRootCA).GetValidationContext().GetTrustedCa().GetInlineBytes(), ag.RootsPEM()) {
		t.Error("secret ROOTCA not updated")
	}
	// The roots are stored before subscribers are told: the notification may follow the
	// roots the poll above saw by a moment.
	select {
	case <-changes:
	case <-time.After(10 * time.Second):
		t.Error("no change notification for ROOTCA")
	}

	// The new root signs: the agent (which trusts it already) renews through straitd's re-issued
	// serving certificate and gets a certificate of the new root.
	if err := c.Authority.ActivateStagedRoot(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "a certificate of the new root", func() bool {
		return ag.Certificate().Leaf.CheckSignatureFrom(newRoot) == nil
	})

	// The old root is removed: it leaves ROOTCA with the next renewal.
	if err := c.Authority.RemoveRoot(ca.Fingerprint(old)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the old root out of ROOTCA", func() bool { return !has(old) && has(newRoot) })
	if _, err := ag.Certificate().Leaf.Verify(x509.VerifyOptions{Roots: ag.Roots(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("the workload certificate does not verify against ROOTCA: %v", err)
	}
	eventually(t, 30*time.Second, "renewals under the new root alone", func() bool {
		return ag.Status().LastError == nil && ag.Certificate().Leaf.CheckSignatureFrom(newRoot) == nil && ag.Status().Issued >= 5
	})
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	c := meshca.Start(t)
	other := meshca.Start(t) // another mesh: its roots do not authenticate c
	tests := []struct {
		name string
		mod  func(*agent.Options)
		code grpclite.Code
		// refused: the CA answered (ErrRefused); otherwise the TLS connection failed.
		refused bool
		caLog   string
	}{
		{"token for another service account", func(o *agent.Options) { o.BootstrapToken = c.Mint(t, "default", "reviews") },
			grpclite.PermissionDenied, true, "proven=spiffe://cluster.local/ns/default/sa/reviews"},
		{"token for another namespace", func(o *agent.Options) { o.BootstrapToken = c.Mint(t, "prod", "ratings") },
			grpclite.PermissionDenied, true, "CSR refused"},
		{"unknown token", func(o *agent.Options) { o.BootstrapToken = ca.BootstrapTokenPrefix + "forged" },
			grpclite.Unauthenticated, true, "unknown token"},
		{"another trust domain", func(o *agent.Options) {
			o.BootstrapToken = c.Mint(t, "default", "ratings")
			o.TrustDomain = "example.org"
		}, grpclite.PermissionDenied, true, "claimed=spiffe://example.org/ns/default/sa/ratings"},
		{"CA not trusted", func(o *agent.Options) {
			o.BootstrapToken = c.Mint(t, "default", "ratings")
			o.RootsPEM = other.Authority.TrustBundlePEM()
		}, grpclite.Unavailable, false, ""},
		{"wrong server name", func(o *agent.Options) {
			o.BootstrapToken = c.Mint(t, "default", "ratings")
			o.CAServerName = "istiod.evil.svc"
		}, grpclite.Unavailable, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(c.Logs.String())
			ag, logs := startAgent(t, c, tc.mod)
			eventually(t, 20*time.Second, "a failed request", func() bool { return ag.LastError() != nil })
			err := ag.LastError()
			if grpclite.CodeOf(err) != tc.code || errors.Is(err, agent.ErrRefused) != tc.refused {
				t.Fatalf("error %v: code %v, want %v (refused %v)", err, grpclite.CodeOf(err), tc.code, tc.refused)
			}
			if ag.Certificate() != nil || ag.Secret(agent.SecretDefault) != nil {
				t.Fatal("a certificate after a refusal")
			}
			if _, err := ag.GetCertificate(nil); !errors.Is(err, agent.ErrNoCertificate) {
				t.Errorf("GetCertificate: %v", err)
			}
			if _, ok := ag.CertExpirySeconds(); ok {
				t.Error("an expiry value without a certificate")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			if err := ag.WaitReady(ctx); err == nil || !strings.Contains(err.Error(), "last request") {
				t.Errorf("WaitReady: %v", err)
			}
			level := "level=WARN"
			if tc.refused {
				level = "level=ERROR"
			}
			if !strings.Contains(logs.String(), level) || !strings.Contains(logs.String(), "certificate=\"none yet\"") {
				t.Errorf("the failure is not logged at %s", level)
			}
			caLogs := c.Logs.String()[before:]
			if tc.caLog != "" && !strings.Contains(caLogs, tc.caLog) {
				t.Errorf("the CA's log lacks %q", tc.caLog)
			}
			if !tc.refused && strings.Contains(caLogs, "CSR") {
				t.Error("a request reached the CA over a connection the agent should not have trusted")
			}
		})
	}
}

// TestMutualTLSBetweenAgents: two workloads with certificates from the agent authenticate each
// other with the agent's tls callbacks and trust bundle, as two sidecars do.
func TestMutualTLSBetweenAgents(t *testing.T) {
	t.Parallel()
	c := meshca.Start(t)
	server, _ := startAgent(t, c, func(o *agent.Options) { o.BootstrapToken = c.Mint(t, "default", "ratings") })
	client, _ := startAgent(t, c, func(o *agent.Options) {
		o.BootstrapToken = c.Mint(t, "default", "reviews")
		o.ServiceAccount = "reviews"
	})
	waitReady(t, server)
	waitReady(t, client)
	verify := func(roots func() *x509.CertPool, want string) func(tls.ConnectionState) error {
		return func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no peer certificate")
			}
			inter := x509.NewCertPool()
			for _, x := range cs.PeerCertificates[1:] {
				inter.AddCert(x)
			}
			if _, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots(), Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
				return err
			}
			if got := cs.PeerCertificates[0].URIs[0].String(); got != want {
				return fmt.Errorf("peer %s, want %s", got, want)
			}
			return nil
		}
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		GetCertificate:   server.GetCertificate,
		ClientAuth:       tls.RequireAnyClientCert,
		VerifyConnection: verify(server.Roots, "spiffe://cluster.local/ns/default/sa/reviews"),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				io.Copy(conn, io.LimitReader(conn, 5))
			}()
		}
	}()
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{
		InsecureSkipVerify:   true,
		GetClientCertificate: client.GetClientCertificate,
		VerifyConnection:     verify(client.Roots, ratingsID),
	})
	if err != nil {
		t.Fatalf("mutual TLS: %v", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("echo %q %v", buf, err)
	}
}
