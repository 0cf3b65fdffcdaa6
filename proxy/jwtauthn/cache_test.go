package jwtauthn

import (
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/strait-mesh/strait/internal/testenv/jwttest"
)

// TestSignatureCache checks that the signature cache changes no outcome: a repeated token is
// accepted without a second signature check, a token with another signature is checked (and
// refused), and a cached token is refused once it expires.
func TestSignatureCache(t *testing.T) {
	k := mustKeys(t)
	f := mustCompile(t, istioConfig(istioProvider(testIssuer, k.jwks, "bookinfo")))
	p := f.findByIssuer(testIssuer)
	tok := jwttest.Sign(t, jose.ES256, k.ec, "ec1", claims(map[string]any{"exp": testNow.Add(time.Minute).Unix()}))
	verify := func(tok string) Status {
		return f.Verify(newReq("/", "Authorization", "Bearer "+tok)).Status
	}
	if st := verify(tok); st != OK {
		t.Fatalf("first use: %v", st)
	}
	if !p.sigs.has(tok) {
		t.Fatal("a verified token is not cached")
	}
	if st := verify(tok); st != OK {
		t.Fatalf("cached use: %v", st)
	}
	parts := strings.Split(tok, ".")
	forged := parts[0] + "." + parts[1] + "." + strings.Split(jwttest.Sign(t, jose.ES256, k.ec2, "ec1", claims(nil)), ".")[2]
	if st := verify(forged); st != JwtVerificationFail {
		t.Errorf("same payload, another key's signature: %v, want %v", st, JwtVerificationFail)
	}
	f.now = func() time.Time { return testNow.Add(3 * time.Minute) } // past exp and the 60 s clock skew
	if st := verify(tok); st != JwtExpired {
		t.Errorf("cached token after its expiry: %v, want %v", st, JwtExpired)
	}
}

func TestSigCacheBounds(t *testing.T) {
	c := newSigCache(2, 8)
	c.add("a")
	c.add("b")
	c.add("c")
	if c.has("a") || !c.has("b") || !c.has("c") {
		t.Errorf("after 3 adds to a cache of 2: a=%v b=%v c=%v, want false true true", c.has("a"), c.has("b"), c.has("c"))
	}
	c.add("123456789")
	if c.has("123456789") {
		t.Error("a token over the size limit was cached")
	}
	var none *sigCache
	none.add("x")
	if none.has("x") {
		t.Error("a nil cache remembered a token")
	}
}
