package ca

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// maxPeerChain bounds the certificates a peer may present (leaf and intermediates).
const maxPeerChain = 10

// ErrBadCertificate is wrapped by every refusal of CertificateAuthenticator.
var ErrBadCertificate = errors.New("client certificate refused")

// TrustSource is what CertificateAuthenticator needs of the CA: the trust domain and the current
// trust bundle. *Authority implements it.
type TrustSource interface {
	TrustDomain() string
	TrustPool() *x509.CertPool
}

var _ TrustSource = (*Authority)(nil)

// CertificateAuthenticator is authenticator (a): it proves the caller by its current mesh
// certificate, the client certificate of the gRPC connection's TLS handshake. It is how a
// workload renews its certificate: the identity proved is the certificate's own, so renewal can
// only yield the same identity.
//
// The certificate is verified again at every call, against the trust bundle and the clock of
// that moment (a gRPC connection outlives both its handshake and, possibly, its certificate),
// for client authentication; it must not be a CA, must carry exactly one URI SAN, and that SAN
// must be a well-formed SPIFFE ID (no NUL or other stray byte) in the CA's trust domain.
type CertificateAuthenticator struct {
	trust TrustSource
	now   func() time.Time
}

var _ Authenticator = (*CertificateAuthenticator)(nil)

// NewCertificateAuthenticator returns the certificate Authenticator; now is its clock (nil means
// time.Now).
func NewCertificateAuthenticator(trust TrustSource, now func() time.Time) *CertificateAuthenticator {
	if now == nil {
		now = time.Now
	}
	return &CertificateAuthenticator{trust: trust, now: now}
}

// Authenticate proves the caller by the client certificate of the gRPC peer's TLS connection. A
// connection without TLS or without a client certificate is ErrNoCredential.
func (c *CertificateAuthenticator) Authenticate(ctx context.Context) (*Caller, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, fmt.Errorf("certificate: %w: no gRPC peer", ErrNoCredential)
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return nil, fmt.Errorf("certificate: %w: no client certificate", ErrNoCredential)
	}
	id, err := c.Verify(info.State.PeerCertificates)
	if err != nil {
		return nil, err
	}
	return &Caller{
		Identity:   id,
		Method:     MethodCertificate,
		Credential: fmt.Sprintf("serial %x", info.State.PeerCertificates[0].SerialNumber),
	}, nil
}

// Verify checks a peer's certificate chain (leaf first, then the intermediates it sent) as
// Authenticate does and returns the identity it proves. It is exported for other users of the
// mesh port (the xDS server binding a connection to its identity).
func (c *CertificateAuthenticator) Verify(chain []*x509.Certificate) (Identity, error) {
	if len(chain) == 0 {
		return Identity{}, fmt.Errorf("certificate: %w", ErrNoCredential)
	}
	if len(chain) > maxPeerChain {
		return Identity{}, fmt.Errorf("%w: chain of %d certificates, at most %d", ErrBadCertificate, len(chain), maxPeerChain)
	}
	leaf := chain[0]
	if leaf.IsCA {
		return Identity{}, fmt.Errorf("%w: a CA certificate is not a workload identity", ErrBadCertificate)
	}
	id, err := identityFromSAN(leaf)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %w", ErrBadCertificate, err)
	}
	inter := x509.NewCertPool()
	for _, x := range chain[1:] {
		inter.AddCert(x)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         c.trust.TrustPool(),
		Intermediates: inter,
		CurrentTime:   c.now(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return Identity{}, fmt.Errorf("%w: %s: %w", ErrBadCertificate, id, err)
	}
	if id.TrustDomain != c.trust.TrustDomain() {
		return Identity{}, fmt.Errorf("%w: %s: %w %q", ErrBadCertificate, id, ErrForeignTrustDomain, c.trust.TrustDomain())
	}
	return id, nil
}

var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

// identityFromSAN reads the certificate's SPIFFE identity from the raw subjectAltName extension
// rather than from Go's parsed URL, so that exactly the bytes a peer's TLS stack would see are
// checked: one SAN extension, exactly one URI name in it, no NUL, and a strict SPIFFE ID. Names of
// other types (DNS, IP) are ignored.
func identityFromSAN(c *x509.Certificate) (Identity, error) {
	var sanExt []byte
	for _, e := range c.Extensions {
		if e.Id.Equal(oidSubjectAltName) {
			if sanExt != nil {
				return Identity{}, errors.New("two subjectAltName extensions")
			}
			sanExt = e.Value
		}
	}
	if sanExt == nil {
		return Identity{}, errors.New("no subjectAltName, want one SPIFFE URI")
	}
	var seq asn1.RawValue
	if rest, err := asn1.Unmarshal(sanExt, &seq); err != nil || len(rest) != 0 || seq.Tag != asn1.TagSequence || !seq.IsCompound {
		return Identity{}, errors.New("malformed subjectAltName")
	}
	var uris [][]byte
	for rest := seq.Bytes; len(rest) > 0; {
		var name asn1.RawValue
		var err error
		if rest, err = asn1.Unmarshal(rest, &name); err != nil {
			return Identity{}, errors.New("malformed subjectAltName")
		}
		if name.Class == asn1.ClassContextSpecific && name.Tag == 6 { // uniformResourceIdentifier
			uris = append(uris, name.Bytes)
		}
	}
	if len(uris) != 1 || len(c.URIs) != 1 {
		return Identity{}, fmt.Errorf("%d URI SANs, want exactly one SPIFFE ID", len(uris))
	}
	if bytes.IndexByte(uris[0], 0) >= 0 {
		return Identity{}, errors.New("URI SAN contains a NUL byte")
	}
	return ParseSPIFFEID(string(uris[0]))
}
