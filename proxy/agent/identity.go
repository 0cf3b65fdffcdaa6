package agent

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// DefaultTrustDomain is the trust domain when Options.TrustDomain is empty (Istio's default).
const DefaultTrustDomain = "cluster.local"

// spiffeID returns spiffe://<td>/ns/<ns>/sa/<sa> after checking each part with the rules straitd's
// CA applies (trust domain: lowercase letters, digits, '.', '-', '_'; namespace: a DNS-1123
// label; service account: a DNS-1123 subdomain), so a misconfigured proxy fails at start rather
// than at every CSR.
func spiffeID(td, ns, sa string) (*url.URL, error) {
	if td == "" || len(td) > 255 || strings.Trim(td, "abcdefghijklmnopqrstuvwxyz0123456789.-_") != "" {
		return nil, fmt.Errorf("trust domain %q: want 1 to 255 of [a-z0-9.-_]", td)
	}
	if err := dnsLabel(ns, 63); err != nil {
		return nil, fmt.Errorf("namespace %q: %w", ns, err)
	}
	if sa == "" || len(sa) > 253 {
		return nil, fmt.Errorf("service account %q: want 1 to 253 bytes", sa)
	}
	for _, l := range strings.Split(sa, ".") {
		if err := dnsLabel(l, 63); err != nil {
			return nil, fmt.Errorf("service account %q: %w", sa, err)
		}
	}
	return &url.URL{Scheme: "spiffe", Host: td, Path: "/ns/" + ns + "/sa/" + sa}, nil
}

func dnsLabel(s string, max int) error {
	if s == "" || len(s) > max {
		return fmt.Errorf("want 1 to %d bytes", max)
	}
	if strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
		return errors.New("want lowercase letters, digits and '-'")
	}
	if s[0] == '-' || s[len(s)-1] == '-' {
		return errors.New("must start and end with a letter or digit")
	}
	return nil
}

// newKey generates a workload key: ECDSA P-256, straitd's and Istio's default. It lives only in
// memory.
func newKey() (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating the workload key: %w", err)
	}
	return k, nil
}

// newCSR returns a PEM CSR over key whose only name is the URI SAN id, as Istio's agent sends:
// an empty subject, no DNS or IP names. The CA takes the identity from the caller's proof, not
// from the CSR, but refuses a CSR that names another one.
func newCSR(key *ecdsa.PrivateKey, id *url.URL) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id}}, key)
	if err != nil {
		return nil, fmt.Errorf("creating the CSR: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}
