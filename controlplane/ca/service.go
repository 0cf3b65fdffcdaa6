package ca

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	pb "istio.io/api/security/v1alpha1"
)

// Keys of IstioCertificateRequest.metadata that the Service reads (Istio's names). Other keys are
// ignored.
const (
	// MetadataImpersonatedIdentity asks for a certificate of another identity (Istio lets a
	// trusted node agent such as ztunnel do so). Strait has no trusted node accounts yet: the
	// value must equal the proven identity, or the request is refused.
	MetadataImpersonatedIdentity = "ImpersonatedIdentity"
	// MetadataCertSigner asks Istio to sign with a named Kubernetes signer; not supported.
	MetadataCertSigner = "CertSigner"
)

// Signer is what the Service needs of the CA. *Authority implements it.
type Signer interface {
	Sign(SignRequest) (*Certificate, error)
}

var _ Signer = (*Authority)(nil)

// ServiceOptions configure a Service.
type ServiceOptions struct {
	// Signer signs the certificates (required): the Authority.
	Signer Signer
	// Authenticators are tried in order (at least one is required); straitd passes
	// CertificateAuthenticator, then BootstrapTokens, then KubernetesTokens (with Kubernetes).
	Authenticators []Authenticator
	// Logger receives one line per issued certificate and per refusal (default slog.Default()).
	Logger *slog.Logger
	// Metrics, when set, count the requests (citadel_server_csr_count and the outcomes).
	Metrics *Metrics
}

// Service implements istio.v1.auth.IstioCertificateService, Istio's CSR API, meant for straitd's
// TLS port 15012 (the gRPC server and its TLS are the caller's: see ServerTLSConfig). Its one
// method signs a CSR for the identity an Authenticator proved, and nothing else. Safe for
// concurrent use.
type Service struct {
	pb.UnimplementedIstioCertificateServiceServer
	signer Signer
	authn  []Authenticator
	log    *slog.Logger
	m      *Metrics
}

var _ pb.IstioCertificateServiceServer = (*Service)(nil)

// NewService returns the CSR service.
func NewService(o ServiceOptions) (*Service, error) {
	if o.Signer == nil {
		return nil, errors.New("creating the CSR service: no Signer")
	}
	if len(o.Authenticators) == 0 {
		return nil, errors.New("creating the CSR service: no Authenticator")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Service{signer: o.Signer, authn: o.Authenticators, log: o.Logger.With("component", "ca"), m: o.Metrics}, nil
}

// Register registers the service on a gRPC server.
func (s *Service) Register(g grpc.ServiceRegistrar) {
	pb.RegisterIstioCertificateServiceServer(g, s)
}

// CreateCertificate signs request.csr for the caller's proven identity and returns Istio's
// response shape: cert_chain = [leaf, intermediates..., roots...], one PEM certificate each. The
// lifetime is request.validity_duration seconds (zero or negative: the default), capped by the
// CA. Status codes:
//   - Unauthenticated: no Authenticator proved the caller;
//   - PermissionDenied: the CSR's URI SANs or metadata ImpersonatedIdentity name an identity
//     other than the proven one (the CSR's SANs are otherwise ignored: the certificate's only
//     SAN is the proven identity);
//   - InvalidArgument: a malformed or oversized CSR, a refused key type, CertSigner metadata;
//   - Internal: signing failed.
//
// Every refusal is logged with the claimed and the proven identity; no credential is logged.
func (s *Service) CreateCertificate(ctx context.Context, req *pb.IstioCertificateRequest) (*pb.IstioCertificateResponse, error) {
	s.m.csr()
	log := s.log.With("peer", peerAddr(ctx))
	caller, err := Authenticate(ctx, s.authn)
	if err != nil {
		s.m.authnFailure()
		log.Warn("CSR refused: caller not authenticated", "claimed", claimedIdentity(req), "err", err)
		return nil, status.Error(codes.Unauthenticated, "request authentication failure")
	}
	proven := caller.Identity.SPIFFEID()
	log = log.With("proven", proven, "authn", caller.Method, "credential", caller.Credential)

	if len(req.GetCsr()) > MaxCSRSize {
		s.m.parseErr()
		log.Warn("CSR refused: too large", "bytes", len(req.GetCsr()))
		return nil, status.Errorf(codes.InvalidArgument, "CSR larger than %d bytes", MaxCSRSize)
	}
	csr, err := ParseCSR([]byte(req.GetCsr()))
	if err != nil {
		s.m.parseErr()
		log.Warn("CSR refused: malformed", "err", err)
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	for _, u := range csr.URIs {
		if claimed := u.String(); claimed != proven {
			s.m.idErr()
			log.Warn("CSR refused: it asks for another identity than the caller proved", "claimed", truncate(claimed, 256))
			return nil, status.Errorf(codes.PermissionDenied, "the CSR names %q but the caller proved %q", truncate(claimed, 256), proven)
		}
	}
	fields := req.GetMetadata().GetFields()
	if v, ok := fields[MetadataImpersonatedIdentity]; ok && v.GetStringValue() != proven {
		s.m.idErr()
		claimed := truncate(v.GetStringValue(), 256)
		log.Warn("CSR refused: metadata asks for another identity than the caller proved", "claimed", claimed)
		return nil, status.Errorf(codes.PermissionDenied, "impersonating %q is not allowed for %q", claimed, proven)
	}
	if v, ok := fields[MetadataCertSigner]; ok && v.GetStringValue() != "" {
		log.Warn("CSR refused: CertSigner metadata is not supported", "certSigner", truncate(v.GetStringValue(), 256))
		return nil, status.Error(codes.InvalidArgument, "CertSigner metadata is not supported")
	}

	lifetime := time.Duration(0)
	if v := req.GetValidityDuration(); v > 0 {
		lifetime = time.Duration(min(v, math.MaxInt64/int64(time.Second))) * time.Second
	}
	cert, err := s.signer.Sign(SignRequest{CSR: csr, Identity: caller.Identity, Lifetime: lifetime})
	if err != nil {
		switch {
		case errors.Is(err, ErrKeyPolicy), errors.Is(err, ErrMalformed):
			s.m.signErr(signErrCSR)
			log.Warn("CSR refused", "err", err)
			return nil, status.Error(codes.InvalidArgument, err.Error())
		case errors.Is(err, ErrForeignTrustDomain):
			s.m.idErr()
			log.Warn("CSR refused", "err", err)
			return nil, status.Error(codes.PermissionDenied, err.Error())
		default:
			s.m.signErr(signErrCertGen)
			log.Error("signing a CSR", "err", err)
			return nil, status.Error(codes.Internal, "signing failed")
		}
	}
	s.m.success()
	log.Info("issued workload certificate", "serial", fmt.Sprintf("%x", cert.Leaf.SerialNumber), "notAfter", cert.Leaf.NotAfter)
	return &pb.IstioCertificateResponse{CertChain: cert.CertChainPEM()}, nil
}

func peerAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}

// claimedIdentity returns, for the log of an unauthenticated request, what it asked for: the
// CSR's URI SANs (the signature is not checked) or the metadata's impersonated identity.
func claimedIdentity(req *pb.IstioCertificateRequest) string {
	var claims []string
	if v := req.GetMetadata().GetFields()[MetadataImpersonatedIdentity].GetStringValue(); v != "" {
		claims = append(claims, truncate(v, 256))
	}
	if len(req.GetCsr()) <= MaxCSRSize {
		if b, _ := pem.Decode([]byte(req.GetCsr())); b != nil {
			if csr, err := x509.ParseCertificateRequest(b.Bytes); err == nil {
				for _, u := range csr.URIs {
					claims = append(claims, truncate(u.String(), 256))
				}
			}
		}
	}
	return strings.Join(claims, ",")
}
