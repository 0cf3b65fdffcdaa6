package jwtauthn

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
)

// Limits on a JWKS. Envoy has none; these bound what a hostile or broken key set (istiod inlines
// whatever the jwksUri served) costs the proxy. A key set over a limit is treated like an
// invalid one: the provider has no keys and every token it would verify is rejected with
// "Jwks doesn't have any valid public key", as Envoy does for an invalid local JWKS.
const (
	// MaxJWKSBytes bounds the size of one provider's inline JWKS.
	MaxJWKSBytes = 1 << 20
	// MaxJWKSKeys bounds the number of keys in one JWKS: a token without kid is tried against
	// every key, so this also bounds the signature checks one request can cost.
	MaxJWKSKeys = 100
	// MaxRSAKeyBits bounds an RSA modulus (the cost of one verification grows with its square).
	MaxRSAKeyBits = 8192
)

// key is one usable public key of a JWKS.
type key struct {
	kid string // "" when the JWK has none
	alg string // "" when the JWK has none: any alg of the key's family
	kty string // "RSA", "EC", "OKP" or "oct"
	rsa *rsa.PublicKey
	ec  *ecdsa.PublicKey
	ed  ed25519.PublicKey
	oct []byte
}

// jwksError is why a JWKS has no usable key: an Envoy status plus detail for the log.
type jwksError struct {
	status Status
	detail string
}

func (e *jwksError) Error() string {
	if e.detail == "" {
		return e.status.String()
	}
	return e.status.String() + ": " + e.detail
}

// parseJWKS parses a JSON Web Key Set as jwt_verify_lib's Jwks::createFrom(JWKS) does: a
// {"keys": [...]} object whose members that are not valid keys are skipped (their problems are
// returned as skipped), or Google's X.509 form {"kid": "-----BEGIN CERTIFICATE-----..."}. It
// fails when no valid key remains. Keys are public keys only; private members are ignored.
func parseJWKS(data []byte) (keys []*key, skipped []string, err error) {
	if len(data) > MaxJWKSBytes {
		return nil, nil, &jwksError{JwksNoValidKeys, fmt.Sprintf("%d bytes, over the limit of %d", len(data), MaxJWKSBytes)}
	}
	data, ok := normalizeJWKS(data)
	if !ok {
		return nil, nil, &jwksError{status: JwksParseError}
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil || top == nil {
		return nil, nil, &jwksError{status: JwksParseError}
	}
	raw, ok := top["keys"]
	if !ok {
		if keys, ok, err := parseX509Set(top); ok {
			return keys, nil, err
		}
		return nil, nil, &jwksError{status: JwksNoKeys}
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil, nil, &jwksError{status: JwksBadKeys}
	}
	if len(list) > MaxJWKSKeys {
		return nil, nil, &jwksError{JwksNoValidKeys, fmt.Sprintf("%d keys, over the limit of %d", len(list), MaxJWKSKeys)}
	}
	for i, m := range list {
		if t := bytes.TrimSpace(m); len(t) == 0 || t[0] != '{' {
			continue // jwt_verify_lib skips members that are not objects
		}
		k, err := parseJWK(m)
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("keys[%d]: %v", i, err))
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, skipped, &jwksError{JwksNoValidKeys, strings.Join(skipped, "; ")}
	}
	return keys, skipped, nil
}

// normalizeJWKS decides whether data parses as jwt_verify_lib parses a JWKS, with C++
// protobuf's JsonStringToMessage into a Struct (see decodeMembers: duplicate names, more than
// 100 nested objects and arrays and numbers out of range refused; ' strings, bare-word names,
// trailing commas and a top-level null, an empty set, accepted), and returns what it accepted
// as strict JSON for the readers below. As before, a string's bytes that are not UTF-8 read as
// U+FFFD.
func normalizeJWKS(data []byte) ([]byte, bool) {
	s, ok := decodeStructAs(string(data), cppJSONDepth, true)
	if !ok {
		return nil, false
	}
	out, err := json.Marshal(s.AsMap())
	return out, err == nil
}

// jsonString returns the string a raw JSON member holds; ok is false when it is absent or not a
// string.
func jsonString(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// ignoredMembers are the JWK members jwt_verify_lib does not read: certificate chains and
// thumbprints (which go-jose would check, and could refuse a key over) and private parts (the
// key is only ever used to verify).
var ignoredMembers = []string{"x5c", "x5t", "x5t#S256", "x5u", "d", "p", "q", "dp", "dq", "qi", "oth"}

// parseJWK parses one member of "keys" with jwt_verify_lib's rules for kty, alg and crv, and
// go-jose for the key material (which checks, among other things, that an EC point is on its
// curve).
func parseJWK(data []byte) (*key, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, errors.New("invalid JSON")
	}
	kty, ok := jsonString(m["kty"])
	if !ok {
		if len(m["kty"]) == 0 {
			return nil, errors.New("[kty] is missing in [keys]")
		}
		return nil, errors.New("[kty] is bad in [keys]")
	}
	k := &key{kty: kty}
	k.kid, _ = jsonString(m["kid"])
	k.alg, _ = jsonString(m["alg"])
	crv, crvOK := jsonString(m["crv"])
	if len(m["crv"]) > 0 && !crvOK && (kty == "EC" || kty == "OKP") {
		return nil, fmt.Errorf("[crv] field is not string for an %s key", kty)
	}

	switch kty {
	case "RSA":
		if k.alg != "" && !strings.HasPrefix(k.alg, "RS") && !strings.HasPrefix(k.alg, "PS") {
			return nil, errors.New("[alg] is not started with [RS] or [PS] for an RSA key")
		}
	case "EC":
		if k.alg != "" && !strings.HasPrefix(k.alg, "ES") {
			return nil, errors.New("[alg] is not started with [ES] for an EC key")
		}
		if k.alg != "" && crv != "" && ecAlgCurve[k.alg] != crv {
			return nil, errors.New("[crv] field specified is not compatible with [alg] for an EC key")
		}
		if crv == "" {
			// jwt_verify_lib takes the curve from alg, or P-256 when neither is given.
			crv = ecAlgCurve[k.alg]
			if k.alg == "" {
				crv = "P-256"
			}
			if crv == "" {
				return nil, errors.New("[crv] or [alg] field is not supported for an EC key")
			}
			m["crv"], _ = json.Marshal(crv)
		}
	case "OKP":
		if k.alg != "" && k.alg != "EdDSA" {
			return nil, errors.New("[alg] is not [EdDSA] for an OKP key")
		}
		if crv == "" {
			return nil, errors.New("[crv] field is missing for an OKP key")
		}
		if crv != "Ed25519" {
			return nil, errors.New("[crv] field is not supported for an OKP key")
		}
	case "oct":
		if k.alg != "" && k.alg != "HS256" && k.alg != "HS384" && k.alg != "HS512" {
			return nil, errors.New("[alg] does not start with [HS] for an HMAC key")
		}
	default:
		return nil, errors.New("[kty] is not supported in [keys]")
	}

	for _, name := range ignoredMembers {
		delete(m, name)
	}
	data, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(data); err != nil {
		return nil, err
	}
	switch pk := jwk.Key.(type) {
	case *rsa.PublicKey:
		k.rsa = pk
	case *rsa.PrivateKey:
		k.rsa = &pk.PublicKey
	case *ecdsa.PublicKey:
		k.ec = pk
	case *ecdsa.PrivateKey:
		k.ec = &pk.PublicKey
	case ed25519.PublicKey:
		k.ed = pk
	case ed25519.PrivateKey:
		k.ed = pk.Public().(ed25519.PublicKey)
	case []byte:
		if len(pk) == 0 {
			return nil, errors.New("Jwks Oct key is an invalid Base64")
		}
		k.oct = pk
	default:
		return nil, fmt.Errorf("unsupported key type %T", jwk.Key)
	}
	if k.rsa != nil {
		if err := checkRSA(k.rsa); err != nil {
			return nil, err
		}
	}
	if k.ed != nil && len(k.ed) != ed25519.PublicKeySize {
		return nil, errors.New("Jwks OKP [x] field is wrong length.")
	}
	return k, nil
}

// ecAlgCurve maps an ECDSA JWS algorithm to its curve's JWK name.
var ecAlgCurve = map[string]string{"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}

// checkRSA applies jwt_verify_lib's exponent rule (3 or 65537 only) and the size limit.
func checkRSA(k *rsa.PublicKey) error {
	if k.E != 3 && k.E != 65537 {
		return errors.New("Jwks RSA [n] or [e] field is missing or has a parse error")
	}
	if k.N.BitLen() > MaxRSAKeyBits {
		return fmt.Errorf("RSA modulus of %d bits, over the limit of %d", k.N.BitLen(), MaxRSAKeyBits)
	}
	return nil
}

// parseX509Set parses Google's {"kid": "<PEM certificate>", ...} form, which jwt_verify_lib
// accepts when every member is a PEM certificate string; ok is false when top is not of that
// form. As there, the certificates must hold RSA keys and one bad certificate fails the set.
func parseX509Set(top map[string]json.RawMessage) (keys []*key, ok bool, err error) {
	if len(top) == 0 {
		return nil, false, nil
	}
	certs := make(map[string]string, len(top))
	for kid, raw := range top {
		s, isStr := jsonString(raw)
		if kid == "" || !isStr || !strings.HasPrefix(s, "-----BEGIN CERTIFICATE-----\n") ||
			!strings.HasSuffix(s, "\n-----END CERTIFICATE-----\n") {
			return nil, false, nil
		}
		certs[kid] = s
	}
	if len(certs) > MaxJWKSKeys {
		return nil, true, &jwksError{JwksNoValidKeys, fmt.Sprintf("%d keys, over the limit of %d", len(certs), MaxJWKSKeys)}
	}
	for kid, s := range certs {
		b, _ := pem.Decode([]byte(s))
		if b == nil {
			return nil, true, &jwksError{JwksNoValidKeys, "X509 parse pubkey fails"}
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, true, &jwksError{JwksNoValidKeys, "X509 parse pubkey fails"}
		}
		pk, isRSA := c.PublicKey.(*rsa.PublicKey)
		if !isRSA {
			return nil, true, &jwksError{JwksNoValidKeys, "X509 parse pubkey internal fails: get pubkey"}
		}
		if err := checkRSA(pk); err != nil {
			return nil, true, &jwksError{JwksNoValidKeys, err.Error()}
		}
		keys = append(keys, &key{kid: kid, kty: "RSA", rsa: pk})
	}
	return keys, true, nil
}

// curveOf returns the JWK name of an ECDSA key's curve.
func curveOf(k *ecdsa.PublicKey) string {
	switch k.Curve {
	case elliptic.P256():
		return "P-256"
	case elliptic.P384():
		return "P-384"
	case elliptic.P521():
		return "P-521"
	}
	return ""
}
