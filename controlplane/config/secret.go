package config

import (
	"encoding/base64"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/strait-mesh/strait/controlplane/config/corev1"
)

// Secrets are Kubernetes core/v1 Secrets, read for one purpose: the TLS credentials that Gateway
// servers name with credentialName (and DestinationRules, for gateways, with their own
// credentialName). Istio reads two layouts, and so does Strait:
//
//	kubernetes.io/tls (kubectl create secret tls):  tls.crt, tls.key and, for MUTUAL, ca.crt
//	Opaque (kubectl create secret generic):         cert, key, cacert — or the tls.* names above
//
// A Secret's data is a credential: it is never quoted in an error, rendered by MarshalJSON or
// MarshalYAML (they show each key's size only), or logged.

// Secret types Strait accepts.
const (
	// SecretTypeTLS is Kubernetes' type for a certificate and its key (tls.crt, tls.key).
	SecretTypeTLS = "kubernetes.io/tls"
	// SecretTypeOpaque is Kubernetes' default type, of `kubectl create secret generic`.
	SecretTypeOpaque = "Opaque"
)

// Data keys of a credential Secret, as Istio names them.
const (
	SecretTLSCert = "tls.crt" // certificate chain, PEM (kubernetes.io/tls)
	SecretTLSKey  = "tls.key" // private key, PEM (kubernetes.io/tls)
	SecretTLSCA   = "ca.crt"  // CA bundle to verify clients, PEM
	SecretCert    = "cert"    // certificate chain, PEM (generic)
	SecretKey     = "key"     // private key, PEM (generic)
	SecretCA      = "cacert"  // CA bundle to verify clients, PEM (generic)
)

// secretUnsupportedKeys are data keys Istio reads that Strait does not support yet: refusing
// them beats ignoring them (an ignored revocation list would admit revoked clients).
var secretUnsupportedKeys = map[string]string{
	"ca.crl":          "certificate revocation lists are not supported yet",
	"crl":             "certificate revocation lists are not supported yet",
	"tls.ocsp-staple": "OCSP stapling is not supported yet",
}

// MaxSecretSize bounds the data of one Secret, all keys together, as Kubernetes does (1 MiB).
const MaxSecretSize = 1 << 20

// secretTopFields are the fields of a Secret document.
const secretTopFields = "apiVersion, kind, metadata, type, data, stringData, immutable"

// redactedPrefix starts the value MarshalJSON renders in place of a Secret's data.
const redactedPrefix = "[redacted"

// decodeSecret decodes the fields of a Secret document beside apiVersion, kind and metadata. It
// never quotes a data value in an error.
func decodeSecret(d *docErr, obj map[string]any) (*corev1.Secret, []error) {
	var errs []error
	s := &corev1.Secret{Type: SecretTypeOpaque}
	for _, k := range sortedKeys(obj) {
		switch k {
		case "apiVersion", "kind", "metadata", "type", "data", "stringData", "immutable":
		case "spec":
			errs = append(errs, d.err(k, "a Secret has no spec: type, data and stringData are top-level fields"))
		default:
			errs = append(errs, d.err(k, "unknown field %q in Secret (want %s)", k, secretTopFields))
		}
	}
	if v, ok := obj["type"]; ok && v != nil {
		t, isStr := v.(string)
		if !isStr {
			errs = append(errs, d.err("type", "expected a string, got %s", jsonType(v)))
		} else if t != "" {
			s.Type = t
		}
	}
	if v, ok := obj["immutable"]; ok && v != nil {
		b, isBool := v.(bool)
		if !isBool {
			errs = append(errs, d.err("immutable", "expected a boolean, got %s", jsonType(v)))
		}
		s.Immutable = b
	}
	for _, field := range []string{"data", "stringData"} { // stringData last: it wins

		raw, ok := obj[field]
		if !ok || raw == nil {
			continue
		}
		m, isObj := raw.(map[string]any)
		if !isObj {
			errs = append(errs, d.err(field, "expected an object (map of key to value), got %s", jsonType(raw)))
			continue
		}
		if s.Data == nil {
			s.Data = make(map[string][]byte, len(m))
		}
		for _, k := range sortedKeys(m) {
			path := field + "[" + strconv.Quote(k) + "]"
			if msg := secretKeyErr(k); msg != "" {
				errs = append(errs, d.err(path, "%s", msg))
				continue
			}
			str, isStr := m[k].(string)
			if !isStr {
				errs = append(errs, d.err(path, "expected a string, got %s", jsonType(m[k])))
				continue
			}
			if field == "stringData" {
				s.Data[k] = []byte(str) // over data's value, as in Kubernetes
				continue
			}
			b, err := base64.StdEncoding.DecodeString(str)
			if err != nil {
				msg := "invalid base64 data (use stringData for text)"
				if strings.HasPrefix(str, redactedPrefix) {
					msg = "the value is redacted (output of `strait get`, which never shows a Secret's data); apply the Secret from its source"
				}
				errs = append(errs, d.err(path, "%s", msg))
				continue
			}
			s.Data[k] = b
		}
	}
	if n := secretSize(s); n > MaxSecretSize {
		errs = append(errs, d.err("data", "the Secret's data is %d bytes, more than the limit of %d", n, MaxSecretSize))
	}
	return s, errs
}

// secretKeyErr says why k is not a valid data key (Kubernetes' rule: letters, digits, '-', '_'
// and '.', at most 253 characters, not "." or ".." or starting with ".."), or "".
func secretKeyErr(k string) string {
	if k == "" {
		return "empty data key"
	}
	if len(k) > 253 {
		return fmt.Sprintf("data key is %d characters, more than 253", len(k))
	}
	for _, r := range k {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Sprintf("invalid data key %s: use letters, digits, '-', '_' and '.'", quoteShort(k))
		}
	}
	if k == "." || k == ".." || strings.HasPrefix(k, "..") {
		return fmt.Sprintf("invalid data key %s: must not be '.' or '..' or start with '..'", quoteShort(k))
	}
	return ""
}

func secretSize(s *corev1.Secret) int {
	n := 0
	for k, v := range s.GetData() {
		n += len(k) + len(v)
	}
	return n
}

// SecretKeyPair returns the certificate chain and private key (PEM) a credential Secret holds, as
// Istio reads them: cert and key when both are non-empty, else tls.crt and tls.key. The error
// names the keys, never their content.
func SecretKeyPair(s *corev1.Secret) (chain, key []byte, err error) {
	d := s.GetData()
	if len(d[SecretCert]) > 0 && len(d[SecretKey]) > 0 {
		return d[SecretCert], d[SecretKey], nil
	}
	if len(d[SecretTLSCert]) > 0 && len(d[SecretTLSKey]) > 0 {
		return d[SecretTLSCert], d[SecretTLSKey], nil
	}
	return nil, nil, fmt.Errorf("no certificate and key: want keys %s and %s, or %s and %s; found %s",
		SecretTLSCert, SecretTLSKey, SecretCert, SecretKey, secretKeys(s))
}

// SecretCABundle returns the CA bundle (PEM) a credential Secret holds, as Istio reads it: cacert
// when non-empty, else ca.crt. The error names the keys, never their content.
func SecretCABundle(s *corev1.Secret) ([]byte, error) {
	d := s.GetData()
	if len(d[SecretCA]) > 0 {
		return d[SecretCA], nil
	}
	if len(d[SecretTLSCA]) > 0 {
		return d[SecretTLSCA], nil
	}
	return nil, fmt.Errorf("no CA certificates: want key %s or %s; found %s", SecretTLSCA, SecretCA, secretKeys(s))
}

// secretKeys lists the data keys of s for messages ("none" when empty).
func secretKeys(s *corev1.Secret) string {
	keys := make([]string, 0, len(s.GetData()))
	for k := range s.GetData() {
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return "none"
	}
	sort.Strings(keys)
	return strings.Join(keys, ", ")
}
