package jwtauthn

import (
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/strait-mesh/strait/internal/testenv/jwttest"
)

// BenchmarkVerify measures one request through istiod's configuration: a valid token signed
// with RS256 (2048-bit) or ES256, and a request without token.
func BenchmarkVerify(b *testing.B) {
	k := mustKeys(b)
	f := mustCompile(b, istioConfig(istioProvider(testIssuer, k.jwks, "bookinfo")))
	for _, bc := range []struct {
		name, auth string
	}{
		{"RS256", "Bearer " + jwttest.Sign(b, jose.RS256, k.rsa, "rsa1", claims(map[string]any{"scope": "read write"}))},
		{"ES256", "Bearer " + jwttest.Sign(b, jose.ES256, k.ec, "ec1", claims(map[string]any{"scope": "read write"}))},
		{"no-token", ""},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := newReq("/productpage")
			b.ReportAllocs()
			for b.Loop() {
				if bc.auth != "" {
					r.h["Authorization"] = append(r.h["Authorization"][:0], bc.auth)
				}
				if res := f.Verify(r); res.Status != OK {
					b.Fatalf("status %q", res.Status)
				}
			}
		})
	}
}
