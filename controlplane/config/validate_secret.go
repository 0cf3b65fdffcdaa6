package config

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"sort"
	"strconv"

	"github.com/strait-mesh/strait/controlplane/config/corev1"
)

// validateSecret checks a Secret as a TLS credential:
//   - its type is kubernetes.io/tls or Opaque (or empty, Kubernetes' Opaque): Strait keeps
//     Secrets only to serve them to gateways, and other types (service-account tokens, registry
//     credentials) have no business in its store;
//   - its data is at most MaxSecretSize bytes, with valid keys;
//   - a kubernetes.io/tls Secret holds tls.crt and tls.key and no other keys but ca.crt;
//   - no key Strait does not support yet (CRLs, OCSP staples);
//   - every certificate chain (tls.crt, cert) and CA bundle (ca.crt, cacert) is PEM
//     certificates that parse, every private key (tls.key, key) is one PEM key, and each key
//     matches its certificate (tls.crt with tls.key, cert with key; one needs the other).
//
// Messages name keys and sizes, never data.
func validateSecret(fe *fieldErrs, s *corev1.Secret) {
	typ := s.GetType()
	switch typ {
	case SecretTypeTLS, SecretTypeOpaque, "":
	default:
		fe.add("type", "type %s is not supported: Strait reads Secrets only as TLS credentials for gateways (type %s or %s)",
			quoteShort(typ), SecretTypeTLS, SecretTypeOpaque)
		return
	}
	data := s.GetData()
	if n := secretSize(s); n > MaxSecretSize {
		fe.add("data", "the Secret's data is %d bytes, more than the limit of %d", n, MaxSecretSize)
		return
	}
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		path := dataPath(k)
		if msg := secretKeyErr(k); msg != "" {
			fe.add(path, "%s", msg)
			continue
		}
		if msg, ok := secretUnsupportedKeys[k]; ok {
			fe.add(path, "%s", msg)
			continue
		}
		if typ == SecretTypeTLS && k != SecretTLSCert && k != SecretTLSKey && k != SecretTLSCA {
			fe.add(path, "unknown key %s in a %s Secret (want %s, %s and optionally %s)", quoteShort(k), SecretTypeTLS, SecretTLSCert, SecretTLSKey, SecretTLSCA)
		}
	}
	if typ == SecretTypeTLS {
		for _, k := range []string{SecretTLSCert, SecretTLSKey} {
			if _, ok := data[k]; !ok {
				fe.add(dataPath(k), "a %s Secret needs %s and %s", SecretTypeTLS, SecretTLSCert, SecretTLSKey)
			}
		}
	}
	for _, pair := range [][2]string{{SecretTLSCert, SecretTLSKey}, {SecretCert, SecretKey}} {
		cert, hasCert := data[pair[0]]
		key, hasKey := data[pair[1]]
		switch {
		case !hasCert && !hasKey:
			continue
		case !hasKey:
			fe.add(dataPath(pair[1]), "%s needs its private key %s", pair[0], pair[1])
			continue
		case !hasCert:
			fe.add(dataPath(pair[0]), "%s needs its certificate %s", pair[1], pair[0])
			continue
		}
		certOK, keyOK := true, true
		if msg := certificatesErr(cert); msg != "" {
			fe.add(dataPath(pair[0]), "%s", msg)
			certOK = false
		}
		if msg := privateKeyErr(key); msg != "" {
			fe.add(dataPath(pair[1]), "%s", msg)
			keyOK = false
		}
		if certOK && keyOK {
			if err := ValidKeyPair(cert, key); err != nil {
				fe.add(dataPath(pair[1]), "%v", err)
			}
		}
	}
	for _, k := range []string{SecretTLSCA, SecretCA} {
		if ca, ok := data[k]; ok {
			if msg := certificatesErr(ca); msg != "" {
				fe.add(dataPath(k), "%s", msg)
			}
		}
	}
}

// dataPath is the field path of a data key.
func dataPath(k string) string { return "data[" + strconv.Quote(k) + "]" }

// ValidKeyPair checks that chain (PEM certificates, leaf first) and key (a PEM private key) load
// as a TLS certificate: both parse and the key is the leaf's. The error never holds their
// content.
func ValidKeyPair(chain, key []byte) error {
	if _, err := tls.X509KeyPair(chain, key); err != nil {
		return fmt.Errorf("the private key and certificate do not load as a pair: %w", err)
	}
	return nil
}

// ValidCABundle checks that ca is one or more PEM certificates that parse. The error never holds
// its content.
func ValidCABundle(ca []byte) error {
	if msg := certificatesErr(ca); msg != "" {
		return fmt.Errorf("%s", msg)
	}
	return nil
}

// certificatesErr says why b is not one or more PEM certificates that parse, or "".
func certificatesErr(b []byte) string {
	if len(bytes.TrimSpace(b)) == 0 {
		return "empty: want PEM certificates"
	}
	n := 0
	for rest := b; ; {
		block, next := pem.Decode(rest)
		if block == nil {
			if len(bytes.TrimSpace(rest)) > 0 {
				if n == 0 {
					return "not PEM: want -----BEGIN CERTIFICATE----- blocks"
				}
				return fmt.Sprintf("data after PEM block %d is not PEM", n)
			}
			break
		}
		n++
		if block.Type != "CERTIFICATE" {
			return fmt.Sprintf("PEM block %d is a %s, want CERTIFICATE", n, quoteShort(block.Type))
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return fmt.Sprintf("PEM block %d: parsing certificate: %v", n, err)
		}
		rest = next
	}
	return ""
}

// privateKeyErr says why b is not one PEM private key, or "".
func privateKeyErr(b []byte) string {
	block, rest := pem.Decode(b)
	switch {
	case block == nil:
		return "not PEM: want one -----BEGIN PRIVATE KEY----- block"
	case len(bytes.TrimSpace(rest)) > 0:
		return "more than one PEM block: want one private key"
	}
	switch block.Type {
	case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY":
	default:
		return fmt.Sprintf("PEM block is a %s, want a PRIVATE KEY", quoteShort(block.Type))
	}
	if _, ok := block.Headers["Proc-Type"]; ok {
		return "encrypted private keys are not supported"
	}
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		_, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		_, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		_, err = x509.ParseECPrivateKey(block.Bytes)
	}
	if err != nil {
		return fmt.Sprintf("parsing private key: %v", err)
	}
	return ""
}
