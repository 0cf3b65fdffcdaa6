package jwtauthn

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	jwtauthnv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	jose "github.com/go-jose/go-jose/v4"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/strait-mesh/strait/internal/testenv/jwttest"
	"github.com/strait-mesh/strait/proxy/xdsfield"
	"github.com/strait-mesh/strait/proxy/xdspb"
	pjwtauthnv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/jwt_authn/v3"
)

// TestCompileRefuses checks that every field strait-proxy does not implement is NACKed with an
// error naming it, and that broken references are errors.
func TestCompileRefuses(t *testing.T) {
	k := mustKeys(t)
	base := func(mod func(c *jwtauthnv3.JwtAuthentication, p *jwtauthnv3.JwtProvider)) *jwtauthnv3.JwtAuthentication {
		p := istioProvider(testIssuer, k.jwks)
		c := istioConfig(p)
		mod(c, p)
		return c
	}
	tests := []struct {
		name        string
		cfg         *jwtauthnv3.JwtAuthentication
		unsupported string // the field an *xdsfield.UnsupportedError names; "" for another error
		contains    string
	}{
		{"remote_jwks", base(func(_ *jwtauthnv3.JwtAuthentication, p *jwtauthnv3.JwtProvider) {
			p.JwksSourceSpecifier = &jwtauthnv3.JwtProvider_RemoteJwks{RemoteJwks: &jwtauthnv3.RemoteJwks{
				HttpUri: &corev3.HttpUri{Uri: "https://issuer.example.com/jwks", Timeout: durationpb.New(5 * time.Second),
					HttpUpstreamType: &corev3.HttpUri_Cluster{Cluster: "outbound|443||issuer.example.com"}}}}
		}), "jwt.providers[origins-0].remote_jwks", "never fetches keys"},
		{"no JWKS source", base(func(_ *jwtauthnv3.JwtAuthentication, p *jwtauthnv3.JwtProvider) { p.JwksSourceSpecifier = nil }),
			"", "local_jwks or remote_jwks is required"},
		{"JWKS from a file", base(func(_ *jwtauthnv3.JwtAuthentication, p *jwtauthnv3.JwtProvider) {
			p.JwksSourceSpecifier = &jwtauthnv3.JwtProvider_LocalJwks{LocalJwks: &corev3.DataSource{
				Specifier: &corev3.DataSource_Filename{Filename: "/etc/jwks.json"}}}
		}), "jwt.providers[origins-0].local_jwks.filename", ""},
		{"subjects", base(func(_ *jwtauthnv3.JwtAuthentication, p *jwtauthnv3.JwtProvider) {
			p.Subjects = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "x"}}
		}), "jwt.providers[origins-0].subjects", ""},
		{"require_expiration", base(func(_ *jwtauthnv3.JwtAuthentication, p *jwtauthnv3.JwtProvider) { p.RequireExpiration = true }),
			"jwt.providers[origins-0].require_expiration", ""},
		{"failed_status_in_metadata", base(func(_ *jwtauthnv3.JwtAuthentication, p *jwtauthnv3.JwtProvider) { p.FailedStatusInMetadata = "x" }),
			"jwt.providers[origins-0].failed_status_in_metadata", ""},
		{"claim_path", base(func(_ *jwtauthnv3.JwtAuthentication, p *jwtauthnv3.JwtProvider) {
			p.ClaimToHeaders = []*jwtauthnv3.JwtClaimToHeader{{HeaderName: "x", ClaimName: "a", ClaimPath: []*jwtauthnv3.JwtClaimToHeader_PathSegment{{Key: "a"}}}}
		}), "jwt.providers[origins-0].claim_to_headers[0].claim_path", ""},
		{"filter_state_rules", base(func(c *jwtauthnv3.JwtAuthentication, _ *jwtauthnv3.JwtProvider) {
			c.FilterStateRules = &jwtauthnv3.FilterStateRule{Name: "x"}
		}), "jwt.filter_state_rules", ""},
		{"stat_prefix", base(func(c *jwtauthnv3.JwtAuthentication, _ *jwtauthnv3.JwtProvider) { c.StatPrefix = "x" }), "jwt.stat_prefix", ""},
		{"rule matching headers", base(func(c *jwtauthnv3.JwtAuthentication, _ *jwtauthnv3.JwtProvider) {
			c.Rules[0].Match.Headers = []*routev3.HeaderMatcher{{Name: "x"}}
		}), "jwt.rules[0].match.headers", ""},
		{"rule matching a regex", base(func(c *jwtauthnv3.JwtAuthentication, _ *jwtauthnv3.JwtProvider) {
			c.Rules[0].Match.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: ".*"}}
		}), "jwt.rules[0].match.safe_regex", ""},
		{"rule without match", base(func(c *jwtauthnv3.JwtAuthentication, _ *jwtauthnv3.JwtProvider) { c.Rules[0].Match = nil }),
			"", "rules[0].match: missing"},
		{"extract_only_without_validation", base(func(c *jwtauthnv3.JwtAuthentication, _ *jwtauthnv3.JwtProvider) {
			c.Rules[0].RequirementType = &jwtauthnv3.RequirementRule_Requires{Requires: &jwtauthnv3.JwtRequirement{
				RequiresType: &jwtauthnv3.JwtRequirement_ExtractOnlyWithoutValidation{ExtractOnlyWithoutValidation: &jwtauthnv3.ExtractOnlyWithoutValidation{}}}}
		}), "jwt.rules[0].requires.extract_only_without_validation", ""},
		{"unknown provider", base(func(c *jwtauthnv3.JwtAuthentication, _ *jwtauthnv3.JwtProvider) {
			c.Rules[0].RequirementType = &jwtauthnv3.RequirementRule_Requires{Requires: providerReq("nope")}
		}), "", "Required provider ['nope'] is not configured."},
		{"unknown requirement_name", base(func(c *jwtauthnv3.JwtAuthentication, _ *jwtauthnv3.JwtProvider) {
			c.RequirementMap = map[string]*jwtauthnv3.JwtRequirement{"r": providerReq("origins-0")}
			c.Rules[0].RequirementType = &jwtauthnv3.RequirementRule_RequirementName{RequirementName: "x"}
		}), "", "Wrong requirement_name: x. It should be one of [r]"},
		{"requires_any with one requirement", base(func(c *jwtauthnv3.JwtAuthentication, _ *jwtauthnv3.JwtProvider) {
			c.Rules[0].RequirementType = &jwtauthnv3.RequirementRule_Requires{Requires: anyOf(providerReq("origins-0"))}
		}), "", "at least 2 requirements"},
		{"requirements nested too deep", base(func(c *jwtauthnv3.JwtAuthentication, _ *jwtauthnv3.JwtProvider) {
			r := providerReq("origins-0")
			for i := 0; i < 40; i++ {
				r = anyOf(r, allowMissing())
			}
			c.Rules[0].RequirementType = &jwtauthnv3.RequirementRule_Requires{Requires: r}
		}), "", "nested deeper than 32"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile(xdspb.MustFrom[*pjwtauthnv3.JwtAuthentication](tc.cfg), "jwt")
			if err == nil {
				t.Fatal("accepted")
			}
			var ue *xdsfield.UnsupportedError
			if tc.unsupported != "" && (!errors.As(err, &ue) || ue.Field != tc.unsupported) {
				t.Fatalf("error %v, want an *xdsfield.UnsupportedError for %s", err, tc.unsupported)
			}
			if !strings.Contains(err.Error(), tc.contains) {
				t.Fatalf("error %q does not contain %q", err, tc.contains)
			}
		})
	}
}

// TestCompileAccepts checks the optional fields that are implemented.
func TestCompileAccepts(t *testing.T) {
	k := mustKeys(t)
	p := istioProvider(testIssuer, k.jwks)
	p.HeaderInMetadata = "header"
	p.ClockSkewSeconds = 5
	p.PadForwardPayloadHeader = true
	p.ForwardPayloadHeader = "x-payload"
	cfg := istioConfig(p)
	cfg.StripFailureResponse = true
	cfg.Rules = append([]*jwtauthnv3.RequirementRule{{
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: "/Public"},
			CaseSensitive: wrapperspb.Bool(false)},
	}}, cfg.Rules...)
	cfg.RequirementMap = map[string]*jwtauthnv3.JwtRequirement{"any": allowMissing()}
	f := mustCompile(t, cfg)
	if !f.StripFailureResponse() {
		t.Error("strip_failure_response lost")
	}
	if len(f.Warnings()) != 0 {
		t.Errorf("warnings: %v", f.Warnings())
	}

	bad := jwttest.Sign(t, jose.RS256, k.rsa2, "rsa1", claims(nil))
	for path, want := range map[string]Status{"/public": OK, "/PUBLIC/x": OK, "/publicity": JwtVerificationFail} {
		if got := f.Verify(newReq(path, "authorization", "Bearer "+bad)).Status; got != want {
			t.Errorf("%s: status %q, want %q", path, got, want)
		}
	}

	// clock_skew_seconds replaces the 60 s default.
	late := jwttest.Sign(t, jose.RS256, k.rsa, "rsa1", claims(map[string]any{"exp": testNow.Add(-30 * time.Second).Unix()}))
	if got := f.Verify(newReq("/", "authorization", "Bearer "+late)).Status; got != JwtExpired {
		t.Errorf("30 s late with a 5 s skew: %q", got)
	}

	// header_in_metadata and a padded payload header.
	tok := jwttest.Sign(t, jose.RS256, k.rsa, "rsa1", claims(map[string]any{"x": "y"}))
	r := newReq("/", "authorization", "Bearer "+tok)
	res := f.Verify(r)
	if res.Status != OK {
		t.Fatalf("status %q", res.Status)
	}
	if kid := res.Metadata.GetFields()["header"].GetStructValue().GetFields()["kid"].GetStringValue(); kid != "rsa1" {
		t.Errorf("header metadata: %v", res.Metadata)
	}
	if got := r.get("x-payload"); len(got)%4 != 0 || !strings.HasPrefix(got, strings.Split(tok, ".")[1]) {
		t.Errorf("padded payload header %q", got)
	}
}

// TestParseJWKS covers the JWKS forms and the faults that leave a provider without keys.
func TestParseJWKS(t *testing.T) {
	k := mustKeys(t)
	// jwk is the JWK of a public key with the members of over changed (a nil value deletes).
	jwk := func(key any, kid string, over map[string]any) string {
		b, _ := json.Marshal(jose.JSONWebKey{Key: key, KeyID: kid})
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		b, _ = json.Marshal(jwttest.Override(m, over))
		return string(b)
	}
	rsaJWK := func(over map[string]any) string { return jwk(&k.rsa.PublicKey, "r", over) }
	ecJWK := func(over map[string]any) string { return jwk(&k.ec.PublicKey, "e", over) }
	many := make([]string, MaxJWKSKeys+1)
	for i := range many {
		many[i] = rsaJWK(map[string]any{"kid": fmt.Sprint(i)})
	}

	tests := []struct {
		name     string
		jwks     string
		keys     int
		status   Status // when no key results
		skipped  int
		contains string
	}{
		{"not JSON", "nope", 0, JwksParseError, 0, ""},
		{"empty", "", 0, JwksParseError, 0, ""},
		{"JSON array", "[]", 0, JwksParseError, 0, ""},
		{"no keys member", `{"a":1}`, 0, JwksNoKeys, 0, ""},
		{"keys not a list", `{"keys":{}}`, 0, JwksBadKeys, 0, ""},
		{"keys null", `{"keys":null}`, 0, JwksBadKeys, 0, ""},
		{"empty key list", `{"keys":[]}`, 0, JwksNoValidKeys, 0, ""},
		{"one RSA key", `{"keys":[` + rsaJWK(nil) + `]}`, 1, OK, 0, ""},
		{"non-object members are skipped silently", `{"keys":[1,"x",` + rsaJWK(nil) + `]}`, 1, OK, 0, ""},
		{"a bad key is skipped", `{"keys":[{"kty":"RSA","n":"AQAB"},` + rsaJWK(nil) + `]}`, 1, OK, 1, ""},
		{"kty missing", `{"keys":[{"n":"x"}]}`, 0, JwksNoValidKeys, 1, "[kty] is missing"},
		{"kty unknown", `{"keys":[{"kty":"XYZ"}]}`, 0, JwksNoValidKeys, 1, "[kty] is not supported"},
		{"x5c is not looked at", `{"keys":[` + rsaJWK(map[string]any{"x5c": []string{"bm90IGEgY2VydA=="}, "x5t": "!"}) + `]}`, 1, OK, 0, ""},
		{"a private key is used as its public key", `{"keys":[` + privateRSAJWK(t, k.rsa) + `]}`, 1, OK, 0, ""},
		{"RSA key with an EC alg", `{"keys":[` + rsaJWK(map[string]any{"alg": "ES256"}) + `]}`, 0, JwksNoValidKeys, 1, "[RS] or [PS]"},
		{"RSA exponent 17", `{"keys":[` + rsaJWK(map[string]any{"e": base64.RawURLEncoding.EncodeToString([]byte{17})}) + `]}`, 0, JwksNoValidKeys, 1, "[e]"},
		{"RSA key without n", `{"keys":[` + rsaJWK(map[string]any{"n": nil}) + `]}`, 0, JwksNoValidKeys, 1, ""},
		{"EC key", `{"keys":[` + ecJWK(nil) + `]}`, 1, OK, 0, ""},
		{"EC key without crv defaults to P-256", `{"keys":[` + ecJWK(map[string]any{"crv": nil}) + `]}`, 1, OK, 0, ""},
		{"EC key whose crv contradicts alg", `{"keys":[` + ecJWK(map[string]any{"alg": "ES384"}) + `]}`, 0, JwksNoValidKeys, 1, "not compatible"},
		{"EC point off the curve", `{"keys":[` + ecJWK(map[string]any{"y": base64.RawURLEncoding.EncodeToString(make([]byte, 32))}) + `]}`, 0, JwksNoValidKeys, 1, ""},
		{"OKP key of another curve", `{"keys":[{"kty":"OKP","crv":"X25519","x":"AAAA"}]}`, 0, JwksNoValidKeys, 1, "[crv]"},
		{"oct key with an RSA alg", `{"keys":[{"kty":"oct","k":"AAAA","alg":"RS256"}]}`, 0, JwksNoValidKeys, 1, "[HS]"},
		{"too many keys", `{"keys":[` + strings.Join(many, ",") + `]}`, 0, JwksNoValidKeys, 0, "over the limit"},
		{"too large", `{"keys":[` + strings.Repeat(" ", MaxJWKSBytes) + `]}`, 0, JwksNoValidKeys, 0, "over the limit"},
		// jwt_verify_lib parses the JWKS with C++ protobuf's JsonStringToMessage (decodeMembers).
		{"duplicate keys member", `{"keys":[` + rsaJWK(nil) + `],"keys":[]}`, 0, JwksParseError, 0, ""},
		{"duplicate member in a key", `{"keys":[{"kty":"RSA","kty":"RSA"},` + rsaJWK(nil) + `]}`, 0, JwksParseError, 0, ""},
		{"number out of range", `{"keys":[` + rsaJWK(nil) + `],"x":1e400}`, 0, JwksParseError, 0, ""},
		{"100 nested", `{"keys":[` + rsaJWK(nil) + `],"x":` + strings.Repeat("[", 99) + strings.Repeat("]", 99) + `}`, 1, OK, 0, ""},
		{"101 nested", `{"keys":[` + rsaJWK(nil) + `],"x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`, 0, JwksParseError, 0, ""},
		{"byte not UTF-8", "{\"keys\":[" + rsaJWK(nil) + "],\"x\":\"\xff\"}", 0, JwksParseError, 0, ""},
		{"legacy syntax", `{keys:[` + strings.Replace(rsaJWK(nil), `"kty"`, `'kty'`, 1) + `,],}`, 1, OK, 0, ""},
		{"top-level null", `null`, 0, JwksNoKeys, 0, ""},
		{"X.509 form", x509JWKS(t, k.rsa), 1, OK, 0, ""},
		{"X.509 form with an EC certificate", x509JWKSEC(t), 0, JwksNoValidKeys, 0, "get pubkey"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			keys, skipped, err := parseJWKS([]byte(tc.jwks))
			if len(keys) != tc.keys {
				t.Fatalf("%d keys, want %d (err %v, skipped %v)", len(keys), tc.keys, err, skipped)
			}
			if len(skipped) != tc.skipped {
				t.Errorf("skipped %v, want %d", skipped, tc.skipped)
			}
			if tc.keys > 0 {
				if err != nil {
					t.Fatalf("error %v with keys", err)
				}
				return
			}
			var je *jwksError
			if !errors.As(err, &je) || je.status != tc.status {
				t.Fatalf("error %v, want status %q", err, tc.status)
			}
			if !strings.Contains(err.Error()+strings.Join(skipped, ";"), tc.contains) {
				t.Errorf("error %q (skipped %v) does not contain %q", err, skipped, tc.contains)
			}
		})
	}
}

func selfSignedPEM(t *testing.T, pub, priv any) string {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "jwt"},
		NotBefore: testNow.Add(-time.Hour), NotAfter: testNow.Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func x509JWKS(t *testing.T, k *rsa.PrivateKey) string {
	b, _ := json.Marshal(map[string]string{"kid1": selfSignedPEM(t, &k.PublicKey, k)})
	return string(b)
}

func x509JWKSEC(t *testing.T) string {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(map[string]string{"kid1": selfSignedPEM(t, &k.PublicKey, k)})
	return string(b)
}

// TestX509Form verifies a token against Google's certificate-map key set.
func TestX509Form(t *testing.T) {
	k := mustKeys(t)
	f := mustCompile(t, istioConfig(istioProvider(testIssuer, x509JWKS(t, k.rsa))))
	tok := jwttest.Sign(t, jose.RS256, k.rsa, "kid1", claims(nil))
	if got := f.Verify(newReq("/", "authorization", "Bearer "+tok)).Status; got != OK {
		t.Fatalf("status %q", got)
	}
}

func privateRSAJWK(t *testing.T, k *rsa.PrivateKey) string {
	b, err := json.Marshal(jose.JSONWebKey{Key: k, KeyID: "priv"})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
