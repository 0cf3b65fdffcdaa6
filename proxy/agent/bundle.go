package agent

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	tlsv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/transport_sockets/tls/v3"
)

// Limits on PEM input (a trust bundle from a file, xDS or a CA response).
const (
	// MaxBundleSize bounds a PEM trust bundle or one cert_chain element.
	MaxBundleSize = 1 << 20
	// MaxBundleCertificates bounds the certificates of one bundle or one CA response.
	MaxBundleCertificates = 100
)

// ErrMalformed is wrapped by errors about unparsable or unacceptable PEM input, and about a CA
// response that does not decode.
var ErrMalformed = errors.New("malformed certificate input")

// parsePEMCertificates parses a PEM bundle of certificates, in order. Every PEM block must be a
// "CERTIFICATE" without headers (a private key in a bundle is a mistake worth an error); text
// between blocks is skipped, but a broken block, more than max certificates, more than
// MaxBundleSize bytes or no certificate at all is an error. Safe on any input.
func parsePEMCertificates(data []byte, max int) ([]*x509.Certificate, error) {
	if len(data) > MaxBundleSize {
		return nil, fmt.Errorf("%w: PEM larger than %d bytes", ErrMalformed, MaxBundleSize)
	}
	var certs []*x509.Certificate
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			if bytes.Contains(rest, []byte("-----BEGIN")) {
				return nil, fmt.Errorf("%w: broken PEM block after certificate %d", ErrMalformed, len(certs))
			}
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%w: PEM block %d has type %q, want CERTIFICATE", ErrMalformed, len(certs)+1, truncate(b.Type, 64))
		}
		if len(b.Headers) != 0 {
			return nil, fmt.Errorf("%w: PEM block %d has headers", ErrMalformed, len(certs)+1)
		}
		if len(certs) == max {
			return nil, fmt.Errorf("%w: more than %d certificates", ErrMalformed, max)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: certificate %d: %w", ErrMalformed, len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: no PEM certificate", ErrMalformed)
	}
	return certs, nil
}

// ParseTrustBundle parses a PEM trust bundle: one or more CA certificates (basic constraints
// CA:TRUE), duplicates dropped. Input that holds anything else is refused whole.
func ParseTrustBundle(data []byte) ([]*x509.Certificate, error) {
	certs, err := parsePEMCertificates(data, MaxBundleCertificates)
	if err != nil {
		return nil, err
	}
	out := certs[:0]
	for i, c := range certs {
		if !c.BasicConstraintsValid || !c.IsCA {
			return nil, fmt.Errorf("%w: certificate %d (%s) is not a CA certificate", ErrMalformed, i+1, truncate(c.Subject.String(), 128))
		}
		if !containsCert(out, c) {
			out = append(out, c)
		}
	}
	return out, nil
}

func readBundleFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Size() > MaxBundleSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, MaxBundleSize)
	}
	return os.ReadFile(path)
}

// bundle is one immutable trust bundle (the "ROOTCA" secret).
type bundle struct {
	certs  []*x509.Certificate
	pool   *x509.CertPool
	pem    []byte
	secret *tlsv3.Secret
}

func newBundle(certs []*x509.Certificate) *bundle {
	b := &bundle{certs: certs, pool: x509.NewCertPool()}
	for _, c := range certs {
		b.pool.AddCert(c)
		b.pem = append(b.pem, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	b.secret = validationSecret(b.pem)
	return b
}

// sameCerts reports whether two bundles hold the same certificates, in any order.
func sameCerts(a, b []*x509.Certificate) bool {
	if len(a) != len(b) {
		return false
	}
	for _, c := range a {
		if !containsCert(b, c) {
			return false
		}
	}
	return true
}

func containsCert(list []*x509.Certificate, c *x509.Certificate) bool {
	for _, x := range list {
		if x.Equal(c) {
			return true
		}
	}
	return false
}

// fingerprints returns the SHA-256 fingerprints (hex) of certs, for logs.
func fingerprints(certs []*x509.Certificate) []string {
	out := make([]string, len(certs))
	for i, c := range certs {
		sum := sha256.Sum256(c.Raw)
		out[i] = hex.EncodeToString(sum[:])
	}
	return out
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
