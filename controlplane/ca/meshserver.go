package ca

import (
	"fmt"
	"log/slog"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// NewMeshServer returns the gRPC server of straitd's mesh port (15012) as far as the CA is
// concerned: the CSR service, which authenticates callers by their client certificate and then by
// the token Authenticators in order (BootstrapTokens, then KubernetesTokens), behind ServerTLSConfig with a serving certificate issued from a (serving configures it).
// The service counts CSRs in a's metrics (Options.Registerer). opts are added after the TLS
// credentials. The caller registers any other service, then serves.
func NewMeshServer(a *Authority, tokens []Authenticator, serving ServingOptions, log *slog.Logger, opts ...grpc.ServerOption) (*grpc.Server, error) {
	svc, err := NewService(ServiceOptions{
		Signer:         a,
		Authenticators: append([]Authenticator{NewCertificateAuthenticator(a, a.Now)}, tokens...),
		Logger:         log,
		Metrics:        a.metrics,
	})
	if err != nil {
		return nil, err
	}
	sc, err := NewServingCertificate(a, serving)
	if err != nil {
		return nil, fmt.Errorf("serving certificate: %w", err)
	}
	g := grpc.NewServer(append([]grpc.ServerOption{grpc.Creds(credentials.NewTLS(ServerTLSConfig(a, sc)))}, opts...)...)
	svc.Register(g)
	return g, nil
}
