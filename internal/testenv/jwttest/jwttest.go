// Package jwttest signs JSON Web Tokens for tests: the token signing that the JWT tests of the
// proxy (proxy/jwtauthn, proxy/l7) and the end-to-end tests share. It depends on go-jose only, so
// that any package's tests may import it; production code must not.
package jwttest

import (
	"encoding/json"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// Sign returns a compact JWS of claims (JSON-encoded) signed with key (a private key or []byte)
// by alg, with the header typ JWT and kid ("" for none).
func Sign(tb testing.TB, alg jose.SignatureAlgorithm, key any, kid string, claims map[string]any) string {
	tb.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		tb.Fatal(err)
	}
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		tb.Fatal(err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		tb.Fatal(err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// Override sets over's entries in m, deleting those whose value is nil, and returns m: default
// claims (or JSON Web Key members) with a test's changes.
func Override(m, over map[string]any) map[string]any {
	for k, v := range over {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	return m
}
