package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/internal/testenv/jwttest"
)

// jwtIssuer is a test issuer: it signs tokens with its current key and serves its key set.
type jwtIssuer struct {
	url  string
	keys atomic.Pointer[[]byte]
	key  atomic.Pointer[ecdsa.PrivateKey]
	kid  atomic.Value
}

func newJWTIssuer(t *testing.T) *jwtIssuer {
	t.Helper()
	is := &jwtIssuer{}
	is.rotate(t, "k1")
	is.url = testenv.HTTPBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(*is.keys.Load())
	})
	return is
}

// rotate replaces the issuer's key: the old one no longer verifies.
func (is *jwtIssuer) rotate(t *testing.T, kid string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.PublicKey, KeyID: kid, Algorithm: "ES256", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	is.key.Store(k)
	is.kid.Store(kid)
	is.keys.Store(&b)
}

// token signs claims (iss defaults to the issuer's, exp to an hour from now).
func (is *jwtIssuer) token(t *testing.T, claims map[string]any) string {
	t.Helper()
	c := map[string]any{"iss": "https://issuer.test", "sub": "alice", "aud": "reviews", "exp": time.Now().Add(time.Hour).Unix()}
	return jwttest.Sign(t, jose.ES256, is.key.Load(), is.kid.Load().(string), jwttest.Override(c, claims))
}

// TestJWTRequestAuthentication verifies end-user tokens on a server sidecar: straitd fetches the
// issuer's key set (jwksUri) and inlines it; a valid token passes and its principal satisfies an
// AuthorizationPolicy, a request without a token passes authentication but not the policy (403),
// expired, foreign-issuer, unsigned (alg none) and tampered tokens get 401 and a token for another
// audience 403, as Envoy answers.
// After the issuer rotates its key, new tokens pass once straitd refetches the set. An issuer
// whose key set cannot be fetched gets its tokens refused.
func TestJWTRequestAuthentication(t *testing.T) {
	skipShort(t)
	const clientIP, serverIP = "127.0.0.114", "127.0.0.115"
	is := newJWTIssuer(t)
	app := startBackend(t, "127.0.0.1", "reviews", backendOptions{})
	sd := testenv.StartStraitd(t, map[string]string{"mesh.yaml": mtlsYAML(clientIP, serverIP, app.Addr()) + "---\n" +
		reviewsPolicyYAML("RequestAuthentication", "jwt", fmt.Sprintf(`  jwtRules:
  - issuer: https://issuer.test
    audiences: [reviews]
    jwksUri: http://%s/jwks
  - issuer: https://unreachable.test
    jwksUri: http://127.0.0.1:1/jwks
`, is.url)) + "---\n" + reviewsPolicyYAML("AuthorizationPolicy", "require-jwt", `  rules:
  - from: [{source: {requestPrincipals: ["https://issuer.test/alice"]}}]
`)}, "--jwks-allow-private", "--jwks-refresh", "2s")
	for _, s := range []struct{ name, ip, app, sa string }{{"reviews-1", serverIP, "reviews", "reviews"}, {"client-1", clientIP, "client", "client"}} {
		testenv.StartProxy(t, sd.XDS, testenv.ProxyOptions{Mode: "sidecar", Name: s.name, Namespace: "e2e", IP: s.ip,
			Labels: map[string]string{"app": s.app}, Extra: append([]string{"--interception-mode", "NONE"}, sd.Identity(t, "e2e", s.sa)...)})
	}
	get := func(token string) (int, string) {
		h := http.Header{}
		if token != "" {
			h.Set("Authorization", "Bearer "+token)
		}
		rep, err := do(h1Client, request{URL: fmt.Sprintf("http://%s:9080/hello", clientIP), Host: "reviews.e2e.svc.cluster.local:9080", Header: h})
		if err != nil {
			return 0, err.Error()
		}
		return rep.Code, rep.Body
	}
	expect := func(what, token string, code int) {
		t.Helper()
		testenv.Eventually(t, 30*time.Second, func() error {
			if got, body := get(token); got != code {
				return fmt.Errorf("%s: %d %.120q, want %d", what, got, body, code)
			}
			return nil
		})
	}
	valid := is.token(t, nil)
	expect("a valid token", valid, http.StatusOK)
	expect("no token (authentication passes, the policy wants a principal)", "", http.StatusForbidden)
	for what, tok := range map[string]string{
		"an expired token":       is.token(t, map[string]any{"exp": time.Now().Add(-time.Hour).Unix()}),
		"another issuer":         is.token(t, map[string]any{"iss": "https://evil.test"}),
		"alg none":               "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + strings.Split(valid, ".")[1] + ".",
		"a tampered signature":   valid[:len(valid)-4] + "AAAA",
		"the unreachable issuer": is.token(t, map[string]any{"iss": "https://unreachable.test"}),
	} {
		if code, body := get(tok); code != http.StatusUnauthorized {
			t.Errorf("%s: %d %.120q, want 401", what, code, body)
		}
	}
	// Envoy answers a token for another audience with 403 "Audiences in Jwt are not allowed".
	if code, body := get(is.token(t, map[string]any{"aud": "ratings"})); code != http.StatusForbidden || body != "Audiences in Jwt are not allowed" {
		t.Errorf("another audience: %d %q, want 403 \"Audiences in Jwt are not allowed\"", code, body)
	}
	expect("another subject (authenticated, not allowed)", is.token(t, map[string]any{"sub": "bob"}), http.StatusForbidden)

	// The issuer rotates its key: old tokens fail, new ones pass once straitd has refetched.
	is.rotate(t, "k2")
	expect("a token of the new key", is.token(t, nil), http.StatusOK)
	if code, _ := get(valid); code != http.StatusUnauthorized {
		t.Errorf("a token of the rotated-out key: %d, want 401", code)
	}
}
