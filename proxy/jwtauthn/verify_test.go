package jwtauthn

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	jwtauthnv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	jose "github.com/go-jose/go-jose/v4"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/strait-mesh/strait/internal/testenv/jwttest"
)

// TestVerifyIstio runs tokens through the configuration istiod emits for one
// RequestAuthentication: a token that is absent passes, one that is present must be valid.
func TestVerifyIstio(t *testing.T) {
	k := mustKeys(t)
	f := mustCompile(t, istioConfig(istioProvider(testIssuer, k.jwks, "bookinfo", "https://reviews.example.com/")))

	pubDER, err := x509.MarshalPKIXPublicKey(&k.rsa.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})

	valid := jwttest.Sign(t, jose.RS256, k.rsa, "rsa1", claims(nil))
	parts := strings.Split(valid, ".")
	tamperedSig := parts[0] + "." + parts[1] + "." + flipLast(parts[2])
	otherPayload := base64.RawURLEncoding.EncodeToString(mustJSON(t, claims(map[string]any{"sub": "admin"})))
	tamperedPayload := parts[0] + "." + otherPayload + "." + parts[2]

	tests := []struct {
		name  string
		token string // in Authorization: Bearer; "" for none
		want  Status
	}{
		{"valid RS256", valid, OK},
		{"valid ES256", jwttest.Sign(t, jose.ES256, k.ec, "ec1", claims(nil)), OK},
		{"valid PS256", jwttest.Sign(t, jose.PS256, k.rsa, "rsa1", claims(nil)), OK},
		{"valid EdDSA", jwttest.Sign(t, jose.EdDSA, k.ed, "ed1", claims(nil)), OK},
		{"valid without kid tries every key", jwttest.Sign(t, jose.RS256, k.rsa, "", claims(nil)), OK},
		{"no token passes (allow_missing)", "", OK},
		{"expired", jwttest.Sign(t, jose.RS256, k.rsa, "rsa1", claims(map[string]any{"exp": testNow.Add(-2 * time.Minute).Unix()})), JwtExpired},
		{"expired within the 60s skew", jwttest.Sign(t, jose.RS256, k.rsa, "rsa1", claims(map[string]any{"exp": testNow.Add(-30 * time.Second).Unix()})), OK},
		{"not yet valid", jwttest.Sign(t, jose.RS256, k.rsa, "rsa1", claims(map[string]any{"nbf": testNow.Add(2 * time.Minute).Unix()})), JwtNotYetValid},
		{"nbf within the skew", jwttest.Sign(t, jose.RS256, k.rsa, "rsa1", claims(map[string]any{"nbf": testNow.Add(30 * time.Second).Unix()})), OK},
		{"no exp never expires", jwttest.Sign(t, jose.RS256, k.rsa, "rsa1", claims(map[string]any{"exp": nil})), OK},
		{"wrong issuer", jwttest.Sign(t, jose.RS256, k.rsa, "rsa1", claims(map[string]any{"iss": "https://evil.example.com"})), JwtUnknownIssuer},
		{"no issuer", jwttest.Sign(t, jose.RS256, k.rsa, "rsa1", claims(map[string]any{"iss": nil})), JwtUnknownIssuer},
		{"wrong audience", jwttest.Sign(t, jose.RS256, k.rsa, "rsa1", claims(map[string]any{"aud": "other"})), JwtAudienceNotAllowed},
		{"no audience", jwttest.Sign(t, jose.RS256, k.rsa, "rsa1", claims(map[string]any{"aud": nil})), JwtAudienceNotAllowed},
		{"one of several audiences", jwttest.Sign(t, jose.RS256, k.rsa, "rsa1", claims(map[string]any{"aud": []string{"x", "bookinfo"}})), OK},
		{"audience scheme and slash ignored", jwttest.Sign(t, jose.RS256, k.rsa, "rsa1", claims(map[string]any{"aud": "http://reviews.example.com"})), OK},
		{"audience not a string", jwttest.Sign(t, jose.RS256, k.rsa, "rsa1", claims(map[string]any{"aud": 7})), JwtPayloadParseErrorAudNotString},
		{"exp not a number", jwttest.Sign(t, jose.RS256, k.rsa, "rsa1", claims(map[string]any{"exp": "tomorrow"})), JwtPayloadParseErrorExpNotInteger},
		{"negative exp", jwttest.Sign(t, jose.RS256, k.rsa, "rsa1", claims(map[string]any{"exp": -1})), JwtPayloadParseErrorExpOutOfRange},
		{"alg none, no signature", rawToken(t, map[string]any{"alg": "none"}, claims(nil), nil), JwtBadFormat},
		{"alg none with a signature", rawToken(t, map[string]any{"alg": "none"}, claims(nil), []byte("x")), JwtHeaderNotImplementedAlg},
		{"alg missing", rawToken(t, map[string]any{"typ": "JWT"}, claims(nil), []byte("x")), JwtHeaderBadAlg},
		{"kid not a string", rawToken(t, map[string]any{"alg": "RS256", "kid": 1}, claims(nil), []byte("x")), JwtHeaderBadKid},
		{"HS256 with the public key as secret (alg confusion)", jwttest.Sign(t, jose.HS256, pubPEM, "rsa1", claims(nil)), JwtVerificationFail},
		{"HS256 with the public key as secret, no kid", jwttest.Sign(t, jose.HS256, pubPEM, "", claims(nil)), JwtVerificationFail},
		{"tampered signature", tamperedSig, JwtVerificationFail},
		{"tampered payload", tamperedPayload, JwtVerificationFail},
		{"signed by another key, same kid", jwttest.Sign(t, jose.RS256, k.rsa2, "rsa1", claims(nil)), JwtVerificationFail},
		{"ES256 by another key", jwttest.Sign(t, jose.ES256, k.ec2, "ec1", claims(nil)), JwtVerificationFail},
		{"unknown kid", jwttest.Sign(t, jose.RS256, k.rsa, "nope", claims(nil)), JwksKidAlgMismatch},
		{"alg not the key's (ES384 on an ES256 key)", rawToken(t, map[string]any{"alg": "ES384", "kid": "ec1"}, claims(nil), make([]byte, 96)), JwksKidAlgMismatch},
		{"RS256 signature of zeros", rawToken(t, map[string]any{"alg": "RS256"}, claims(nil), make([]byte, 256)), JwtVerificationFail},
		{"EdDSA signature of the wrong length", rawToken(t, map[string]any{"alg": "EdDSA", "kid": "ed1"}, claims(nil), make([]byte, 63)), JwtEd25519SignatureWrongLength},
		{"not a JWT", "abc", JwtBadFormat},
		{"empty segment", "a..c", JwtBadFormat},
		{"four segments", "a.b.c.d", JwtBadFormat},
		{"header not base64url", "a+b.e30.c", JwtHeaderParseErrorBadBase64},
		{"header not JSON", base64.RawURLEncoding.EncodeToString([]byte("nope")) + ".e30.c", JwtHeaderParseErrorBadJSON},
		{"payload not JSON", rawToken(t, map[string]any{"alg": "RS256"}, "[1]", []byte("x")), JwtPayloadParseErrorBadJSON},
		{"signature not base64url", parts[0] + "." + parts[1] + ".*", JwtSignatureParseErrorBadBase64},
		{"JWS JSON serialization is not accepted", `{"payload":"e30","signatures":[]}`, JwtBadFormat},
		{"oversized token", valid[:len(parts[0])+1] + strings.Repeat("A", MaxTokenBytes) + "." + parts[2], JwtVerificationFail},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newReq("/productpage")
			if tc.token != "" {
				r.AddHeader("Authorization", "Bearer "+tc.token)
			}
			res := f.Verify(r)
			if res.Status != tc.want {
				t.Fatalf("status %q, want %q", res.Status, tc.want)
			}
			switch {
			case tc.want != OK:
				if res.Metadata != nil {
					t.Errorf("metadata on failure: %v", res.Metadata)
				}
			case tc.token == "":
				if res.Metadata != nil {
					t.Errorf("metadata without token: %v", res.Metadata)
				}
			default:
				if got := r.get("Authorization"); got != "" {
					t.Errorf("token forwarded: %q", got)
				}
				p := res.Metadata.GetFields()["payload"].GetStructValue()
				if iss := p.GetFields()["iss"].GetStringValue(); iss != testIssuer {
					t.Errorf("metadata payload.iss = %q, want %q (metadata %v)", iss, testIssuer, res.Metadata)
				}
				if sub := p.GetFields()["sub"].GetStringValue(); sub != "user-1" {
					t.Errorf("metadata payload.sub = %q", sub)
				}
			}
		})
	}
}

func flipLast(s string) string {
	b := []byte(s)
	if b[len(b)-2] == 'A' {
		b[len(b)-2] = 'B'
	} else {
		b[len(b)-2] = 'A'
	}
	return string(b)
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestLocations checks where tokens are looked for and what happens to them afterwards.
func TestLocations(t *testing.T) {
	k := mustKeys(t)
	tok := jwttest.Sign(t, jose.RS256, k.rsa, "rsa1", claims(nil))
	bad := jwttest.Sign(t, jose.RS256, k.rsa2, "rsa1", claims(nil))

	withLoc := func(mod func(p *jwtauthnv3.JwtProvider)) *Filter {
		p := istioProvider(testIssuer, k.jwks)
		mod(p)
		return mustCompile(t, istioConfig(p))
	}
	defaults := withLoc(func(*jwtauthnv3.JwtProvider) {})
	custom := withLoc(func(p *jwtauthnv3.JwtProvider) {
		p.FromHeaders = []*jwtauthnv3.JwtHeader{{Name: "x-jwt-assertion", ValuePrefix: "Istio "}, {Name: "x-raw-jwt"}}
		p.FromParams = []string{"token"}
		p.FromCookies = []string{"session"}
	})
	forward := withLoc(func(p *jwtauthnv3.JwtProvider) { p.Forward = true })

	tests := []struct {
		name     string
		f        *Filter
		req      *fakeReq
		want     Status
		wantPath string            // "" : unchanged
		wantHdr  map[string]string // header -> value after ("" : absent)
		verified bool
	}{
		{name: "default: Authorization Bearer", f: defaults, req: newReq("/", "authorization", "Bearer "+tok), want: OK,
			wantHdr: map[string]string{"Authorization": ""}, verified: true},
		{name: "default: access_token query parameter", f: defaults, req: newReq("/p?a=1&access_token=" + tok + "&b=2"), want: OK,
			wantPath: "/p?a=1&b=2", verified: true},
		{name: "default: only parameter removed", f: defaults, req: newReq("/p?access_token=" + tok), want: OK, wantPath: "/p", verified: true},
		{name: "default: bad token in query refused", f: defaults, req: newReq("/p?access_token=" + bad), want: JwtVerificationFail},
		{name: "default: lower-case bearer is no token (Envoy matches the prefix case-sensitively)", f: defaults,
			req: newReq("/", "authorization", "bearer "+bad), want: OK, wantHdr: map[string]string{"Authorization": "bearer " + bad}},
		{name: "default: Basic credentials are no token", f: defaults, req: newReq("/", "authorization", "Basic dTpw"), want: OK,
			wantHdr: map[string]string{"Authorization": "Basic dTpw"}},
		{name: "default: Bearer with nothing after it", f: defaults, req: newReq("/", "authorization", "Bearer "), want: JwtBadFormat},
		{name: "default: cookie not looked at", f: defaults, req: newReq("/", "cookie", "session="+bad), want: OK},
		{name: "custom header with prefix", f: custom, req: newReq("/", "x-jwt-assertion", "Istio "+tok), want: OK,
			wantHdr: map[string]string{"X-Jwt-Assertion": ""}, verified: true},
		{name: "custom header without prefix", f: custom, req: newReq("/", "x-raw-jwt", tok), want: OK, verified: true},
		{name: "custom: Authorization no longer looked at", f: custom, req: newReq("/", "authorization", "Bearer "+bad), want: OK},
		{name: "custom: query parameter", f: custom, req: newReq("/x?token=" + tok), want: OK, wantPath: "/x", verified: true},
		{name: "custom: cookie", f: custom, req: newReq("/", "cookie", "a=b; session="+tok+"; c=d"), want: OK,
			wantHdr: map[string]string{"Cookie": "a=b; session=" + tok + "; c=d"}, verified: true},
		{name: "custom: quoted cookie", f: custom, req: newReq("/", "cookie", `session="`+tok+`"`), want: OK, verified: true},
		{name: "custom: bad cookie refused", f: custom, req: newReq("/", "cookie", "session="+bad), want: JwtVerificationFail},
		{name: "two tokens, one bad: refused", f: custom, req: newReq("/?token="+bad, "x-raw-jwt", tok), want: JwtVerificationFail},
		{name: "two good tokens: both removed", f: custom, req: newReq("/?token="+tok, "x-raw-jwt", tok), want: OK, wantPath: "/",
			wantHdr: map[string]string{"X-Raw-Jwt": ""}, verified: true},
		{name: "forward keeps the token", f: forward, req: newReq("/", "authorization", "Bearer "+tok), want: OK,
			wantHdr: map[string]string{"Authorization": "Bearer " + tok}, verified: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.req.path
			res := tc.f.Verify(tc.req)
			if res.Status != tc.want {
				t.Fatalf("status %q, want %q", res.Status, tc.want)
			}
			want := tc.wantPath
			if want == "" {
				want = path
			}
			if tc.req.path != want {
				t.Errorf("path %q, want %q", tc.req.path, want)
			}
			for h, v := range tc.wantHdr {
				if got := tc.req.get(h); got != v {
					t.Errorf("%s = %q, want %q", h, got, v)
				}
			}
			if got := res.Metadata != nil; got != tc.verified {
				t.Errorf("metadata set: %v, want %v", got, tc.verified)
			}
		})
	}
}

// TestOutputs checks forward_payload_header, claim_to_headers, the sanitizing of their headers
// and the normalized metadata.
func TestOutputs(t *testing.T) {
	k := mustKeys(t)
	p := istioProvider(testIssuer, k.jwks)
	p.ForwardPayloadHeader = "x-jwt-payload"
	p.ClaimToHeaders = []*jwtauthnv3.JwtClaimToHeader{
		{HeaderName: "x-sub", ClaimName: "sub"},
		{HeaderName: "x-team", ClaimName: "org.team"},
		{HeaderName: "x-level", ClaimName: "level"},
		{HeaderName: "x-ratio", ClaimName: "ratio"},
		{HeaderName: "x-admin", ClaimName: "admin"},
		{HeaderName: "x-groups", ClaimName: "groups"},
		{HeaderName: "x-missing", ClaimName: "nope"},
	}
	p.ClearRouteCache = true
	f := mustCompile(t, istioConfig(p))

	c := claims(map[string]any{
		"org":    map[string]any{"team": "books"},
		"level":  3,
		"ratio":  1.5,
		"admin":  true,
		"groups": []string{"a", "b"},
		"scope":  "read  write",
	})
	tok := jwttest.Sign(t, jose.RS256, k.rsa, "rsa1", c)
	r := newReq("/", "authorization", "Bearer "+tok, "x-sub", "spoofed", "x-missing", "spoofed", "x-jwt-payload", "spoofed")
	res := f.Verify(r)
	if res.Status != OK {
		t.Fatalf("status %q", res.Status)
	}
	if !res.ClearRouteCache {
		t.Error("ClearRouteCache not set although claim headers were added")
	}
	groups := base64.StdEncoding.EncodeToString([]byte(`["a","b"]`))
	for h, want := range map[string]string{
		"x-sub": "user-1", "x-team": "books", "x-level": "3", "x-ratio": "1.500000", "x-admin": "true",
		"x-groups": groups, "x-missing": "", "x-jwt-payload": strings.Split(tok, ".")[1],
	} {
		if got := r.h[canonical(h)]; want == "" && len(got) != 0 || want != "" && (len(got) != 1 || got[0] != want) {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	scope := res.Metadata.GetFields()["payload"].GetStructValue().GetFields()["scope"]
	want := structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{structpb.NewStringValue("read"), structpb.NewStringValue("write")}})
	if scope.String() != want.String() {
		t.Errorf("payload.scope = %v, want %v", scope, want)
	}
	team := res.Metadata.GetFields()["payload"].GetStructValue().GetFields()["org"].GetStructValue().GetFields()["team"].GetStringValue()
	if team != "books" {
		t.Errorf("nested claim payload.org.team = %q", team)
	}

	// Without a token the spoofable headers are still removed.
	r = newReq("/", "x-sub", "spoofed", "x-jwt-payload", "spoofed", "x-other", "kept")
	if res := f.Verify(r); res.Status != OK || res.ClearRouteCache {
		t.Fatalf("no token: %+v", res)
	}
	if r.get("x-sub") != "" || r.get("x-jwt-payload") != "" || r.get("x-other") != "kept" {
		t.Errorf("headers after a request without token: %v", r.h)
	}
}

// TestRequirements checks the requirement tree: a provider required outright, several providers
// as istiod combines them, audiences per requirement, allow_missing_or_failed, rules by path.
func TestRequirements(t *testing.T) {
	k := mustKeys(t)
	ecJWKS := mustJSONString(t, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.ec2.PublicKey, KeyID: "other"}}})
	two := mustCompile(t, istioConfig(istioProvider(testIssuer, k.jwks), istioProvider("issuer-2", ecJWKS)))

	strict := &jwtauthnv3.JwtAuthentication{
		Providers: map[string]*jwtauthnv3.JwtProvider{"p": istioProvider(testIssuer, k.jwks, "bookinfo")},
		Rules: []*jwtauthnv3.RequirementRule{
			{Match: pathMatch("/health")},
			prefixRule("/admin", &jwtauthnv3.JwtRequirement{RequiresType: &jwtauthnv3.JwtRequirement_ProviderAndAudiences{
				ProviderAndAudiences: &jwtauthnv3.ProviderWithAudiences{ProviderName: "p", Audiences: []string{"admin"}}}}),
			prefixRule("/lenient", anyOf(providerReq("p"), &jwtauthnv3.JwtRequirement{
				RequiresType: &jwtauthnv3.JwtRequirement_AllowMissingOrFailed{AllowMissingOrFailed: &emptypb.Empty{}}})),
			prefixRule("/api", providerReq("p")),
		},
	}
	sf := mustCompile(t, strict)

	tokA := jwttest.Sign(t, jose.RS256, k.rsa, "rsa1", claims(nil))
	tokB := jwttest.Sign(t, jose.ES256, k.ec2, "other", claims(map[string]any{"iss": "issuer-2"}))
	tokC := jwttest.Sign(t, jose.RS256, k.rsa, "rsa1", claims(map[string]any{"iss": "issuer-3"}))
	admin := jwttest.Sign(t, jose.RS256, k.rsa, "rsa1", claims(map[string]any{"aud": "admin"}))
	expired := jwttest.Sign(t, jose.RS256, k.rsa, "rsa1", claims(map[string]any{"exp": testNow.Add(-time.Hour).Unix()}))

	tests := []struct {
		name  string
		f     *Filter
		path  string
		token string
		want  Status
	}{
		{"two providers: first issuer", two, "/", tokA, OK},
		{"two providers: second issuer", two, "/", tokB, OK},
		{"two providers: no token", two, "/", "", OK},
		{"two providers: unknown issuer", two, "/", tokC, JwtUnknownIssuer},
		{"two providers: expired", two, "/", expired, JwtExpired},
		{"provider required: no token", sf, "/api/x", "", JwtMissed},
		{"provider required: valid", sf, "/api/x", tokA, OK},
		{"provider required: expired", sf, "/api/x", expired, JwtExpired},
		{"rule without requirement", sf, "/health", expired, OK},
		{"path rule does not match a longer path", sf, "/healthz", expired, OK},
		{"no rule matches", sf, "/other", expired, OK},
		{"prefix is case-sensitive", sf, "/API/x", expired, OK},
		{"audiences of the requirement replace the provider's", sf, "/admin", tokA, JwtAudienceNotAllowed},
		{"audiences of the requirement", sf, "/admin", admin, OK},
		{"allow_missing_or_failed: bad token passes", sf, "/lenient", expired, OK},
		{"allow_missing_or_failed: no token passes", sf, "/lenient", "", OK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newReq(tc.path)
			if tc.token != "" {
				r.AddHeader("Authorization", "Bearer "+tc.token)
			}
			if got := tc.f.Verify(r).Status; got != tc.want {
				t.Fatalf("status %q, want %q", got, tc.want)
			}
		})
	}
}

func mustJSONString(t *testing.T, v any) string {
	t.Helper()
	return string(mustJSON(t, v))
}

// TestCORSPreflightBypass checks bypass_cors_preflight: a preflight carries no credentials.
func TestCORSPreflightBypass(t *testing.T) {
	k := mustKeys(t)
	f := mustCompile(t, istioConfig(istioProvider(testIssuer, k.jwks)))
	r := newReq("/", "origin", "https://app.example.com", "access-control-request-method", "POST", "authorization", "Bearer garbage")
	r.method = "OPTIONS"
	if res := f.Verify(r); res.Status != OK || !res.CORSBypassed {
		t.Fatalf("preflight: %+v", res)
	}
	r = newReq("/", "origin", "https://app.example.com", "authorization", "Bearer garbage")
	r.method = "OPTIONS"
	if res := f.Verify(r); res.Status != JwtBadFormat {
		t.Fatalf("OPTIONS without Access-Control-Request-Method: %q", res.Status)
	}
}

// TestInvalidJWKS checks Envoy's handling of a local JWKS that does not parse: the config is
// accepted (with a warning), tokens of that provider are refused, requests without pass.
func TestInvalidJWKS(t *testing.T) {
	k := mustKeys(t)
	f := mustCompile(t, istioConfig(istioProvider(testIssuer, `{"keys": "nope"}`)))
	if len(f.Warnings()) == 0 {
		t.Error("no warning for an invalid JWKS")
	}
	r := newReq("/", "authorization", "Bearer "+jwttest.Sign(t, jose.RS256, k.rsa, "rsa1", claims(nil)))
	if got := f.Verify(r).Status; got != JwksNoValidKeys || got.String() != "Jwks doesn't have any valid public key" {
		t.Fatalf("token against an invalid JWKS: %q", got)
	}
	if got := f.Verify(newReq("/")).Status; got != OK {
		t.Fatalf("no token: %q", got)
	}
}

// TestHMAC checks symmetric keys, which Envoy accepts in a JWKS ("oct").
func TestHMAC(t *testing.T) {
	secret := []byte(strings.Repeat("0123456789abcdef", 4))
	jwks := mustJSONString(t, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: secret, KeyID: "h1", Algorithm: "HS256"}}})
	f := mustCompile(t, istioConfig(istioProvider(testIssuer, jwks)))
	for name, tc := range map[string]struct {
		tok  string
		want Status
	}{
		"valid":     {jwttest.Sign(t, jose.HS256, secret, "h1", claims(nil)), OK},
		"other key": {jwttest.Sign(t, jose.HS256, []byte(strings.Repeat("fedcba9876543210", 4)), "h1", claims(nil)), JwtVerificationFail},
		"HS384 alg": {jwttest.Sign(t, jose.HS384, secret, "h1", claims(nil)), JwksKidAlgMismatch},
		"RS256 alg": {rawToken(t, map[string]any{"alg": "RS256", "kid": "h1"}, claims(nil), []byte("x")), JwksKidAlgMismatch},
	} {
		t.Run(name, func(t *testing.T) {
			if got := f.Verify(newReq("/", "authorization", "Bearer "+tc.tok)).Status; got != tc.want {
				t.Fatalf("status %q, want %q", got, tc.want)
			}
		})
	}
}

func TestChallengeAndStatus(t *testing.T) {
	if got, want := Challenge("http", "reviews:9080", "/p?q=1", JwtExpired), `Bearer realm="http://reviews:9080/p?q=1", error="invalid_token"`; got != want {
		t.Errorf("Challenge = %s, want %s", got, want)
	}
	if got, want := Challenge("https", "h", "/", JwtMissed), `Bearer realm="https://h/"`; got != want {
		t.Errorf("Challenge(missing) = %s, want %s", got, want)
	}
	long := "/" + strings.Repeat("a", 300)
	if got := Challenge("http", "h", long, JwtExpired); !strings.Contains(got, `"http://h`+long[:256]+`"`) {
		t.Errorf("realm path not cut at 256 bytes: %s", got)
	}
	if JwtExpired.Details() != "jwt_authn_access_denied{Jwt_is_expired}" {
		t.Errorf("details %q", JwtExpired.Details())
	}
	if JwtAudienceNotAllowed.HTTPCode() != 403 || JwtVerificationFail.HTTPCode() != 401 {
		t.Error("HTTP codes")
	}
	for s := OK; s < statusCount; s++ {
		if s.String() == "" {
			t.Errorf("status %d has no text", s)
		}
	}
}
