package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// Limits on parsed input. A CSR for an RSA 4096 key is under 2 KiB; a bundle of a few dozen
// certificates is well under 1 MiB.
const (
	// MaxCSRSize bounds a PEM CSR (IstioCertificateRequest.csr).
	MaxCSRSize = 16 << 10
	// MaxPEMBundleSize bounds a PEM certificate bundle (a cacerts file, a trust bundle).
	MaxPEMBundleSize = 1 << 20
	// MaxBundleCertificates bounds the number of certificates in one bundle.
	MaxBundleCertificates = 100
	// maxKeyFileSize bounds a PEM private key file.
	maxKeyFileSize = 64 << 10
)

// ErrMalformed is wrapped by every parse error of this file, so callers can tell bad input
// (codes.InvalidArgument at the edge) from internal failures.
var ErrMalformed = errors.New("malformed input")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// ParseCSR parses a PEM-encoded PKCS#10 certificate request and checks its self-signature (proof
// that the requester holds the private key). The input must hold exactly one PEM block, of type
// "CERTIFICATE REQUEST" (or the legacy "NEW CERTIFICATE REQUEST"), without PEM headers, and at
// most MaxCSRSize bytes; text around the block other than whitespace is refused. The key type is
// not checked here: Sign applies the key policy. Safe on any input.
func ParseCSR(data []byte) (*x509.CertificateRequest, error) {
	if len(data) > MaxCSRSize {
		return nil, malformed("CSR larger than %d bytes", MaxCSRSize)
	}
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, malformed("CSR: no PEM block")
	}
	begin := []byte("-----BEGIN")
	if bytes.Count(data, begin) != 1 || len(bytes.TrimSpace(rest)) != 0 || len(bytes.TrimSpace(data[:bytes.Index(data, begin)])) != 0 {
		return nil, malformed("CSR: data outside the PEM block")
	}
	if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
		return nil, malformed("CSR: PEM block type %q, want \"CERTIFICATE REQUEST\"", truncate(block.Type, 64))
	}
	if len(block.Headers) != 0 {
		return nil, malformed("CSR: PEM headers not allowed")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: parsing CSR: %w", ErrMalformed, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: checking CSR signature: %w", ErrMalformed, err)
	}
	return csr, nil
}

// ParsePEMBundle parses a PEM bundle of one or more certificates, in order. Every PEM block must
// be a "CERTIFICATE" without headers; text between blocks (as openssl writes) is skipped, but a
// broken block, a block of another type (a private key in a certificate file), more than
// MaxBundleCertificates certificates or more than MaxPEMBundleSize bytes is an error, as is a
// bundle without certificates. Safe on any input.
func ParsePEMBundle(data []byte) ([]*x509.Certificate, error) {
	if len(data) > MaxPEMBundleSize {
		return nil, malformed("PEM bundle larger than %d bytes", MaxPEMBundleSize)
	}
	var certs []*x509.Certificate
	rest := data
	for {
		block, r := pem.Decode(rest)
		if block == nil {
			if bytes.Contains(rest, []byte("-----BEGIN")) {
				return nil, malformed("PEM bundle: broken PEM block after certificate %d", len(certs))
			}
			break
		}
		rest = r
		if block.Type != "CERTIFICATE" {
			return nil, malformed("PEM bundle: block %d has type %q, want \"CERTIFICATE\"", len(certs)+1, truncate(block.Type, 64))
		}
		if len(block.Headers) != 0 {
			return nil, malformed("PEM bundle: block %d has PEM headers", len(certs)+1)
		}
		if len(certs) == MaxBundleCertificates {
			return nil, malformed("PEM bundle: more than %d certificates", MaxBundleCertificates)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: parsing certificate %d of PEM bundle: %w", ErrMalformed, len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, malformed("PEM bundle: no certificate")
	}
	return certs, nil
}

// parsePrivateKey parses one PEM private key: PKCS#8 ("PRIVATE KEY"), PKCS#1 ("RSA PRIVATE
// KEY") or SEC 1 ("EC PRIVATE KEY"), as Istio's cacerts and openssl write them. Only ECDSA and
// RSA keys are returned; encrypted keys and other blocks are refused.
func parsePrivateKey(data []byte) (crypto.Signer, error) {
	if len(data) > maxKeyFileSize {
		return nil, malformed("private key larger than %d bytes", maxKeyFileSize)
	}
	var block *pem.Block
	for rest := data; ; {
		b, r := pem.Decode(rest)
		if b == nil {
			break
		}
		rest = r
		if b.Type == "EC PARAMETERS" { // openssl ecparam -genkey writes it before the key
			continue
		}
		if block != nil {
			return nil, malformed("private key: more than one PEM block")
		}
		block = b
	}
	if block == nil {
		return nil, malformed("private key: no PEM block")
	}
	if len(block.Headers) != 0 {
		return nil, malformed("private key: PEM headers (an encrypted key?) not supported")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, malformed("private key: PEM block type %q not supported", truncate(block.Type, 64))
	}
	if err != nil {
		return nil, fmt.Errorf("%w: parsing %s: %w", ErrMalformed, block.Type, err)
	}
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		return k, nil
	case *rsa.PrivateKey:
		return k, nil
	default:
		return nil, malformed("private key: type %T not supported (ECDSA or RSA)", key)
	}
}

// encodeCert returns one certificate as PEM (ending in a newline).
func encodeCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// encodeCerts returns certificates as one PEM bundle.
func encodeCerts(certs []*x509.Certificate) []byte {
	var b []byte
	for _, c := range certs {
		b = append(b, encodeCert(c)...)
	}
	return b
}

// encodeKey returns a private key as PKCS#8 PEM.
func encodeKey(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("encoding private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
