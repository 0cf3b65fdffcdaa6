package ca

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"time"
)

// maxBackdate bounds how far a workload certificate's NotBefore is set before its signing time,
// so a peer whose clock lags accepts it at once. It is at most a tenth of the lifetime, so a
// short-lived certificate (minutes, in rotation tests) keeps nearly all of its validity ahead.
const maxBackdate = time.Minute

// ErrForeignTrustDomain is returned when asked to sign an identity of another trust domain.
var ErrForeignTrustDomain = errors.New("identity is not in the CA's trust domain")

// SignRequest asks for a workload certificate.
type SignRequest struct {
	// CSR is a request parsed by ParseCSR. Only its public key is used: its subject, SANs and
	// extensions never reach the certificate.
	CSR *x509.CertificateRequest
	// Identity is the identity an Authenticator proved for the caller; it becomes the
	// certificate's only SAN.
	Identity Identity
	// Lifetime is the requested lifetime; zero or negative means Options.DefaultLifetime, and
	// anything above Options.MaxLifetime or past the signing chain's expiry is cut to it.
	Lifetime time.Duration
}

// Certificate is a signed workload certificate and what a peer needs to verify it. Its slices
// and certificates may be shared with the Authority and other Certificates: treat them as
// read-only.
type Certificate struct {
	Leaf *x509.Certificate
	// Intermediates are the CA certificates between Leaf and its root, issuer-last: empty under a
	// self-signed root; ca-cert.pem and any intermediates above it for plug-in certificates.
	Intermediates []*x509.Certificate
	// Roots is the trust bundle at signing time; the root that anchors Leaf is last.
	Roots []*x509.Certificate
}

// CertChainPEM returns the certificate in the shape of Istio's IstioCertificateResponse.cert_chain:
// one PEM certificate per element, each ending in a newline — the leaf first, then the
// intermediates, then every root of the trust bundle (the leaf's own root last).
func (c *Certificate) CertChainPEM() []string {
	out := make([]string, 0, 1+len(c.Intermediates)+len(c.Roots))
	out = append(out, string(encodeCert(c.Leaf)))
	for _, x := range c.Intermediates {
		out = append(out, string(encodeCert(x)))
	}
	for _, x := range c.Roots {
		out = append(out, string(encodeCert(x)))
	}
	return out
}

// Sign issues a workload certificate for req.Identity over the CSR's public key: X.509 v3, empty
// subject, exactly one (critical) URI SAN, the SPIFFE ID; key usage digitalSignature and
// keyEncipherment; extended key usage serverAuth and clientAuth; not a CA; a random 128-bit
// serial; NotBefore backdated by up to a minute. The CSR's key must pass the workload key policy
// (ECDSA P-256 or RSA 2048/3072/4096). Errors wrap ErrKeyPolicy, ErrMalformed or
// ErrForeignTrustDomain when the request is at fault. Sign is safe for concurrent use; it does
// not authenticate anything, so its caller must have proved req.Identity.
func (a *Authority) Sign(req SignRequest) (*Certificate, error) {
	if req.CSR == nil {
		return nil, malformed("signing: no CSR")
	}
	if err := req.Identity.Validate(); err != nil {
		return nil, fmt.Errorf("signing: %w: %w", ErrMalformed, err)
	}
	if req.Identity.TrustDomain != a.opts.TrustDomain {
		return nil, fmt.Errorf("signing %s: %w %q", req.Identity, ErrForeignTrustDomain, a.opts.TrustDomain)
	}
	if err := checkWorkloadKey(req.CSR.PublicKey); err != nil {
		return nil, fmt.Errorf("signing %s: %w", req.Identity, err)
	}
	lifetime := req.Lifetime
	if lifetime <= 0 {
		lifetime = a.opts.DefaultLifetime
	}
	lifetime = min(lifetime, a.opts.MaxLifetime)

	st := a.state.Load()
	now := a.opts.Now()
	notAfter := now.Add(lifetime)
	if notAfter.After(st.notAfter) {
		notAfter = st.notAfter
	}
	if !notAfter.After(now) {
		return nil, fmt.Errorf("signing %s: the CA's signing chain expired at %s", req.Identity, st.notAfter.UTC().Format(time.RFC3339))
	}
	tmpl := workloadTemplate(now.Add(-min(maxBackdate, lifetime/10)), notAfter, req.Identity.URL())
	leaf, err := newCertificate(tmpl, st.cert, req.CSR.PublicKey, st.signer)
	if err != nil {
		return nil, fmt.Errorf("signing %s: %w", req.Identity, err)
	}
	return &Certificate{Leaf: leaf, Intermediates: st.chain, Roots: st.roots}, nil
}

// workloadTemplate is the template of a workload certificate (see Sign) with the URI SANs uris.
func workloadTemplate(notBefore, notAfter time.Time, uris ...*url.URL) *x509.Certificate {
	return &x509.Certificate{
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
		URIs:                  uris,
	}
}

// newCertificate has parentKey sign tmpl for pub as issued by parent (tmpl itself for a
// self-signed certificate) and returns the parsed certificate. A tmpl without a serial number
// gets a random one (newSerial).
func newCertificate(tmpl, parent *x509.Certificate, pub crypto.PublicKey, parentKey crypto.Signer) (*x509.Certificate, error) {
	if tmpl.SerialNumber == nil {
		serial, err := newSerial()
		if err != nil {
			return nil, err
		}
		tmpl.SerialNumber = serial
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		return nil, err
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing the new certificate: %w", err)
	}
	return c, nil
}

// newSerial returns a random, positive 128-bit serial number (RFC 5280 allows up to 20 octets).
func newSerial() (*big.Int, error) {
	var b [16]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("generating a serial number: %w", err)
		}
		if n := new(big.Int).SetBytes(b[:]); n.Sign() > 0 {
			return n, nil
		}
	}
}
