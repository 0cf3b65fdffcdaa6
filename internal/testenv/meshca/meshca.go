// Package meshca serves straitd's real CA (controlplane/ca) for tests of its clients, as straitd
// serves it on its mesh port. It is a package of its own because controlplane/ca's own tests
// import internal/testenv: testenv cannot import controlplane/ca.
package meshca

import (
	"testing"

	"google.golang.org/grpc"

	"github.com/strait-mesh/strait/controlplane/ca"
	"github.com/strait-mesh/strait/internal/testenv"
)

// Server is straitd's mesh port (15012) in miniature: the CSR service with the certificate and
// bootstrap-token authenticators, on loopback TLS configured as straitd configures it. Stop and
// Start (of the embedded GRPCServer) simulate a CA outage on the same address.
type Server struct {
	*testenv.GRPCServer
	Authority *ca.Authority
	Tokens    *ca.BootstrapTokens
	Logs      *testenv.SyncBuffer // the CA's log
}

// Start serves a new self-signed CA (trust domain cluster.local) on a free loopback port until the
// test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	log, logs := testenv.Logger(t, "CA")
	a, err := ca.New(ca.Options{Dir: t.TempDir(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := ca.NewBootstrapTokens(ca.BootstrapOptions{TrustDomain: a.TrustDomain()})
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Authority: a, Tokens: tokens, Logs: logs}
	s.GRPCServer = testenv.ServeGRPC(t, "127.0.0.1:0", func() *grpc.Server {
		g, err := ca.NewMeshServer(a, []ca.Authenticator{tokens}, ca.ServingOptions{Logger: log}, log)
		if err != nil {
			t.Fatal(err)
		}
		return g
	})
	return s
}

// Mint returns a new bootstrap token for ns/sa with the default lifetime.
func (s *Server) Mint(t testing.TB, ns, sa string) string {
	t.Helper()
	tok, err := s.Tokens.Mint(ns, sa, 0)
	if err != nil {
		t.Fatal(err)
	}
	return tok.Token
}
