package jwks

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/strait-mesh/strait/proxy/jwtauthn"
)

// TestNormalizeAsTheProxy checks that Normalize reads a key set as strait-proxy and Envoy do
// (C++ protobuf's JSON rules, exact member names, the proxy's key checks) and that what it
// returns is a set the proxy can use. Each row cites the rule that decides it.
func TestNormalizeAsTheProxy(t *testing.T) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(jose.JSONWebKey{Key: &k.PublicKey})
	if err != nil {
		t.Fatal(err)
	}
	var ec struct{ X, Y string }
	if err := json.Unmarshal(b, &ec); err != nil {
		t.Fatal(err)
	}
	// key is an EC JWK's members with the given syntax around them: q is the quote, sep ends
	// the object (a trailing comma or not).
	key := func(q, kty, sep string) string {
		name := func(n string) string { return q + n + q }
		if q == "" {
			name = func(n string) string { return n }
			q = "'"
		}
		return "{" + name(kty) + ":" + q + "EC" + q + "," + name("crv") + ":" + q + "P-256" + q + "," +
			name("x") + ":" + q + ec.X + q + "," + name("y") + ":" + q + ec.Y + q + "," +
			name("kid") + ":" + q + "k1" + q + "," + name("alg") + ":" + q + "ES256" + q + sep + "}"
	}
	strictKey := key(`"`, "kty", "")
	rsaE5, err := json.Marshal(map[string]any{"keys": []any{map[string]any{"kty": "RSA", "kid": "r",
		"n": base64.RawURLEncoding.EncodeToString(mustRSA(t).N.Bytes()), "e": base64.RawURLEncoding.EncodeToString(big.NewInt(5).Bytes())}}})
	if err != nil {
		t.Fatal(err)
	}
	deep := strings.Repeat("[", 99) + strings.Repeat("]", 99)
	for _, c := range []struct {
		doc  string
		ok   bool
		rule string
	}{
		{`{"keys":[` + strictKey + `]}`, true, "a strict JWKS"},
		{`{keys:[` + key("", "kty", ",") + `,],}`, true, "legacy syntax: bare names, ' strings, trailing commas (allow_legacy_syntax)"},
		{`{'keys':[` + key("'", "kty", "") + `]}`, true, "legacy syntax: ' strings"},
		{`{"keys":[` + strictKey + `],"x":` + deep + `}`, true, "100 nested levels, the top object included"},
		{`{"keys":[` + strictKey + `],"x":[` + deep + `]}`, false, "more than 100 nested levels (kDefaultDepth)"},
		{`{"keys":[` + strictKey + `],"keys":[` + strictKey + `]}`, false, "a duplicate name (ParseMap's keys_seen)"},
		{`{"keys":[` + strings.Replace(strictKey, `"kid":"k1"`, `"kid":"k1","kid":"k1"`, 1) + `]}`, false, "a duplicate name in a key"},
		{`{"KEYS":[` + strictKey + `]}`, false, "member names are exact: no \"keys\" (JwksNoKeys)"},
		{`{"keys":[` + key(`"`, "KTY", "") + `]}`, false, "member names are exact: no \"kty\", no valid key"},
		{`{"keys":[` + strictKey + `]} x`, false, "only white space after the value"},
		{`null`, false, "a top-level null is an empty Struct: no keys"},
		{string(rsaE5), false, "jwt_verify_lib takes RSA exponents 3 and 65537 only: no valid key"},
		{key("", "kty", ","), true, "a single JWK (straitd's form), legacy syntax"},
	} {
		out, err := Normalize([]byte(c.doc))
		if (err == nil) != c.ok {
			t.Errorf("Normalize(%.60q...) error %v, want ok %v (%s)", c.doc, err, c.ok, c.rule)
			continue
		}
		if _, jsonOK := jwtauthn.JWKSJSON([]byte(c.doc)); !jsonOK && c.ok {
			t.Errorf("%s: accepted, but the proxy refuses its JSON", c.rule)
		}
		if err != nil {
			continue
		}
		if err := jwtauthn.CheckJWKS([]byte(out)); err != nil {
			t.Errorf("%s: the proxy refuses the result %s: %v", c.rule, out, err)
		}
		var set jose.JSONWebKeySet
		if err := json.Unmarshal([]byte(out), &set); err != nil || len(set.Keys) != 1 || set.Keys[0].KeyID != "k1" {
			t.Errorf("%s: result %s (%v)", c.rule, out, err)
		}
	}
}

func mustRSA(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
