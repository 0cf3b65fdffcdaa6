package agent

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"fmt"
	"net/url"
	"time"
)

// issued is a checked CA response.
type issued struct {
	leaf *x509.Certificate
	// intermediates are the CA certificates between leaf and its root, issuer-last: what is sent
	// after the leaf in a handshake.
	intermediates []*x509.Certificate
	// roots is the CA's trust bundle at signing time, the leaf's own root last.
	roots []*x509.Certificate
}

// parseResponse checks IstioCertificateResponse.cert_chain, which straitd's CA (like Istio's)
// fills with the leaf first, then the intermediates, then the roots of the trust bundle with the
// leaf's own root last. Each element is a PEM bundle (normally one certificate; Istio's CA may
// put several roots in one). The roots are the trailing run of self-signed certificates (or, if
// the last certificate is not self-signed, that one alone: a trust anchor that is itself an
// intermediate). The leaf must be for pub, carry exactly the one URI SAN id, not be a CA, be valid
// for both client and server authentication, and verify against the roots through the
// intermediates at now (or at its NotBefore, if now is earlier: a clock behind the CA's does not
// make a fresh certificate unusable to us, though peers judge it by their own clocks).
func parseResponse(chain []string, pub crypto.PublicKey, id *url.URL, now time.Time) (*issued, error) {
	if len(chain) == 0 {
		return nil, fmt.Errorf("%w: empty cert_chain", ErrMalformed)
	}
	var certs []*x509.Certificate
	for i, p := range chain {
		cs, err := parsePEMCertificates([]byte(p), MaxBundleCertificates-len(certs))
		if err != nil {
			return nil, fmt.Errorf("cert_chain[%d]: %w", i, err)
		}
		certs = append(certs, cs...)
	}
	if len(certs) < 2 {
		return nil, fmt.Errorf("%w: cert_chain holds no root after the leaf", ErrMalformed)
	}
	leaf := certs[0]
	if err := checkLeaf(leaf, pub, id); err != nil {
		return nil, err
	}
	n := len(certs)
	first := n - 1 // index of the first root
	for first > 1 && selfSigned(certs[first-1]) {
		first--
	}
	if !selfSigned(certs[n-1]) {
		first = n - 1
	}
	res := &issued{leaf: leaf, intermediates: certs[1:first]}
	for _, r := range certs[first:] {
		if !r.BasicConstraintsValid || !r.IsCA {
			return nil, fmt.Errorf("%w: root %s in cert_chain is not a CA certificate", ErrMalformed, truncate(r.Subject.String(), 128))
		}
		if !containsCert(res.roots, r) {
			res.roots = append(res.roots, r)
		}
	}
	opts := x509.VerifyOptions{Roots: x509.NewCertPool(), Intermediates: x509.NewCertPool(), CurrentTime: now}
	if now.Before(leaf.NotBefore) {
		opts.CurrentTime = leaf.NotBefore
	}
	for _, r := range res.roots {
		opts.Roots.AddCert(r)
	}
	for _, c := range res.intermediates {
		opts.Intermediates.AddCert(c)
	}
	for _, eku := range []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth} {
		opts.KeyUsages = []x509.ExtKeyUsage{eku}
		if _, err := leaf.Verify(opts); err != nil {
			return nil, fmt.Errorf("%w: verifying the issued certificate against the roots of the response: %w", ErrMalformed, err)
		}
	}
	return res, nil
}

// checkLeaf checks what verification does not: the key and the identity.
func checkLeaf(leaf *x509.Certificate, pub crypto.PublicKey, id *url.URL) error {
	if k, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !k.Equal(pub) {
		return fmt.Errorf("%w: the issued certificate is not for the key of the CSR", ErrMalformed)
	}
	if leaf.IsCA {
		return fmt.Errorf("%w: the issued certificate is a CA certificate", ErrMalformed)
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != id.String() {
		got := make([]string, len(leaf.URIs))
		for i, u := range leaf.URIs {
			got[i] = truncate(u.String(), 256)
		}
		return fmt.Errorf("%w: the issued certificate names %q, want exactly %s", ErrMalformed, got, id)
	}
	return nil
}

func selfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(c) == nil
}
