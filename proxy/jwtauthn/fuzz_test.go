package jwtauthn

import (
	"strings"
	"testing"
	"time"

	jwtauthnv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	jose "github.com/go-jose/go-jose/v4"
	"google.golang.org/protobuf/proto"

	"github.com/strait-mesh/strait/internal/testenv/jwttest"
)

// FuzzVerify feeds arbitrary Authorization values to a filter that requires a token signed by a
// fixed JWKS. It must not panic, and it may accept a token only if the token's signing input
// (header.payload) is one the test signed: no other input carries a valid signature.
func FuzzVerify(f *testing.F) {
	k := mustKeys(f)
	cfg := &jwtauthnv3.JwtAuthentication{
		Providers: map[string]*jwtauthnv3.JwtProvider{"p": istioProvider(testIssuer, k.jwks, "bookinfo")},
		Rules:     []*jwtauthnv3.RequirementRule{prefixRule("/", providerReq("p"))},
	}
	flt := mustCompile(f, cfg)

	signed := map[string]bool{}
	add := func(tok string) {
		parts := strings.Split(tok, ".")
		signed[parts[0]+"."+parts[1]] = true
		f.Add("Bearer " + tok)
	}
	add(jwttest.Sign(f, jose.RS256, k.rsa, "rsa1", claims(nil)))
	add(jwttest.Sign(f, jose.ES256, k.ec, "ec1", claims(nil)))
	add(jwttest.Sign(f, jose.EdDSA, k.ed, "ed1", claims(nil)))
	add(jwttest.Sign(f, jose.PS384, k.rsa, "", claims(map[string]any{"scope": "a b"})))
	add(jwttest.Sign(f, jose.RS256, k.rsa, "rsa1", claims(map[string]any{"exp": testNow.Add(-time.Hour).Unix()})))
	for _, s := range []string{
		"", "Bearer ", "Bearer a.b.c", "Bearer ..", "Bearer e30.e30.e30", "Bearer eyJhbGciOiJub25lIn0.e30.",
		"Bearer eyJhbGciOiJSUzI1NiJ9.e30.AAAA", "Bearer eyJhbGciOiJIUzI1NiJ9." + strings.Repeat("W3s", 100) + ".AA",
		"Bearer " + rawToken(f, map[string]any{"alg": "ES256", "kid": "ec1"}, claims(nil), make([]byte, 64)),
		"Bearer " + rawToken(f, map[string]any{"alg": "EdDSA"}, claims(map[string]any{"aud": []any{"bookinfo", 1}}), make([]byte, 64)),
	} {
		f.Add(s)
	}

	f.Fuzz(func(t *testing.T, auth string) {
		r := newReq("/")
		r.AddHeader("Authorization", auth)
		res := flt.Verify(r)
		if res.Status >= statusCount {
			t.Fatalf("status %d out of range", res.Status)
		}
		if res.Status != OK {
			if res.Metadata != nil {
				t.Fatal("metadata on failure")
			}
			return
		}
		pos := strings.Index(auth, "Bearer ")
		if pos < 0 {
			t.Fatalf("accepted without a token: %q", auth)
		}
		tok := tokenAfter(auth, pos+len("Bearer "))
		parts := strings.Split(tok, ".")
		if len(parts) != 3 || !signed[parts[0]+"."+parts[1]] {
			t.Fatalf("accepted a token the test never signed: %q", tok)
		}
		if res.Metadata == nil {
			t.Fatal("accepted without metadata")
		}
		if _, err := proto.Marshal(res.Metadata); err != nil {
			t.Fatalf("metadata not encodable: %v", err)
		}
	})
}
