package config

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/durationpb"
	security "istio.io/api/security/v1beta1"
)

// testJWKS is a JSON Web Key Set with one EC P-256 public key.
const testJWKS = `{"keys":[{"use":"sig","kty":"EC","kid":"k","crv":"P-256","alg":"ES256","x":"29Pqi-U8h4HFTiMxpqo2vm4swThvvSR6aeoe57Oa1V4","y":"CP2wOCqqU_4A5Nr39tAESPGH-Add02qGRhwbdZFooy0"}]}`

// jwtRule wraps the fields of one JWT rule (a flow mapping's content) into a spec.
func jwtRule(fields string) string { return "  jwtRules:\n  - {" + fields + "}\n" }

func TestRequestAuthenticationRejects(t *testing.T) {
	checkRejects(t, "RequestAuthentication", []rejectCase{
		{"selector and targetRef", "", "  selector: {matchLabels: {app: a}}\n  targetRef: {kind: Service, name: s}\n", "spec", "only one of selector, targetRef and targetRefs"},
		{"target kind", "", "  targetRefs: [{kind: Pod, name: p}]\n", "spec.targetRefs[0]", "cannot target /Pod"},
		{"target namespace", "", "  targetRefs: [{kind: Service, name: s, namespace: b}]\n", "spec.targetRefs[0].namespace", "cross-namespace"},
		{"selector empty key", "", "  selector: {matchLabels: {'': a}}\n", "spec.selector.matchLabels", "empty label key"},
		{"no issuer nor jwksUri", "", jwtRule("audiences: [a]"), "spec.jwtRules[0].issuer", "issuer is required"},
		{"empty audience", "", jwtRule("issuer: a, audiences: [b, '']"), "spec.jwtRules[0].audiences[1]", "empty value"},
		{"jwks and jwksUri", "", jwtRule("issuer: a, jwksUri: 'https://a/k', jwks: '" + testJWKS + "'"), "spec.jwtRules[0]", "only one of jwks and jwksUri"},
		{"jwksUri scheme", "", jwtRule("issuer: a, jwksUri: 'ftp://a/k'"), "spec.jwtRules[0].jwksUri", "must have scheme http:// or https://"},
		{"jwksUri relative", "", jwtRule("issuer: a, jwksUri: '/keys'"), "spec.jwtRules[0].jwksUri", "must have scheme"},
		{"jwksUri no host", "", jwtRule("issuer: a, jwksUri: 'https:///keys'"), "spec.jwtRules[0].jwksUri", "has no host"},
		{"jwksUri port", "", jwtRule("issuer: a, jwksUri: 'https://a:99999/k'"), "spec.jwtRules[0].jwksUri", "1-65535"},
		{"jwksUri port name", "", jwtRule("issuer: a, jwksUri: 'https://a:https/k'"), "spec.jwtRules[0].jwksUri", "invalid URL"},
		{"jwksUri too long", "", jwtRule("issuer: a, jwksUri: 'https://a/" + strings.Repeat("k", 2048) + "'"), "spec.jwtRules[0].jwksUri", "more than the limit of 2048"},
		{"jwks not json", "", jwtRule("issuer: a, jwks: 'keys'"), "spec.jwtRules[0].jwks", "not a JSON object"},
		{"jwks array", "", jwtRule("issuer: a, jwks: '[]'"), "spec.jwtRules[0].jwks", "not a JSON object"},
		{"jwks empty object", "", jwtRule("issuer: a, jwks: '{}'"), "spec.jwtRules[0].jwks", "nor a valid JSON Web Key"},
		{"jwks keys not array", "", jwtRule(`issuer: a, jwks: '{"keys": {}}'`), "spec.jwtRules[0].jwks", "keys must be an array"},
		{"jwks null key", "", jwtRule(`issuer: a, jwks: '{"keys": [null]}'`), "spec.jwtRules[0].jwks", "keys[0] is null"},
		{"jwks unknown kty", "", jwtRule(`issuer: a, jwks: '{"keys": [{"kty": "XYZ"}]}'`), "spec.jwtRules[0].jwks", "keys[0]"},
		{"jwks bad rsa", "", jwtRule(`issuer: a, jwks: '{"keys": [{"kty": "RSA", "e": "AQAB"}]}'`), "spec.jwtRules[0].jwks", "keys[0]"},
		{"jwks bad ec point", "", jwtRule(`issuer: a, jwks: '{"keys": [{"kty": "EC", "crv": "P-256", "x": "AQAB", "y": "AQAB"}]}'`), "spec.jwtRules[0].jwks", "keys[0]"},
		{"from header no name", "", jwtRule("issuer: a, fromHeaders: [{prefix: 'Bearer '}]"), "spec.jwtRules[0].fromHeaders[0].name", "name is required"},
		{"from header bad name", "", jwtRule("issuer: a, fromHeaders: [{name: 'x jwt'}]"), "spec.jwtRules[0].fromHeaders[0].name", "invalid header name"},
		{"from param empty", "", jwtRule("issuer: a, fromParams: ['']"), "spec.jwtRules[0].fromParams[0]", "empty value"},
		{"from cookie empty", "", jwtRule("issuer: a, fromCookies: ['']"), "spec.jwtRules[0].fromCookies[0]", "empty value"},
		{"from cookie bad name", "", jwtRule("issuer: a, fromCookies: ['a;b']"), "spec.jwtRules[0].fromCookies[0]", "invalid cookie name"},
		{"payload header", "", jwtRule("issuer: a, outputPayloadToHeader: 'x:payload'"), "spec.jwtRules[0].outputPayloadToHeader", "invalid header name"},
		{"claim header empty claim", "", jwtRule("issuer: a, outputClaimToHeaders: [{header: x-a}]"), "spec.jwtRules[0].outputClaimToHeaders[0].claim", "claim is required"},
		{"claim header empty header", "", jwtRule("issuer: a, outputClaimToHeaders: [{claim: sub}]"), "spec.jwtRules[0].outputClaimToHeaders[0].header", "header is required"},
		{"claim header pseudo", "", jwtRule("issuer: a, outputClaimToHeaders: [{claim: sub, header: ':authority'}]"), "spec.jwtRules[0].outputClaimToHeaders[0].header", "letters, digits and '-'"},
		{"claim header underscore", "", jwtRule("issuer: a, outputClaimToHeaders: [{claim: sub, header: x_sub}]"), "spec.jwtRules[0].outputClaimToHeaders[0].header", "letters, digits and '-'"},
		{"claim header duplicate", "", jwtRule("issuer: a, outputClaimToHeaders: [{claim: sub, header: x-a}, {claim: iss, header: X-A}]"), "spec.jwtRules[0].outputClaimToHeaders[1].header", "already set by outputClaimToHeaders[0]"},
		{"timeout too small", "", jwtRule("issuer: a, timeout: 100us"), "spec.jwtRules[0].timeout", "at least 1ms"},
		{"timeout zero", "", jwtRule("issuer: a, timeout: 0s"), "spec.jwtRules[0].timeout", "at least 1ms"},
		{"timeout precision", "", jwtRule("issuer: a, timeout: 1.0005s"), "spec.jwtRules[0].timeout", "millisecond precision"},
		{"space delimited empty", "", jwtRule("issuer: a, spaceDelimitedClaims: [scope, '']"), "spec.jwtRules[0].spaceDelimitedClaims[1]", "empty value"},
		{"space delimited too many", "", jwtRule("issuer: a, spaceDelimitedClaims: [" + strings.Repeat("c, ", 64) + "c]"), "spec.jwtRules[0].spaceDelimitedClaims", "more than the limit of 64"},
		{"dry-run", "  annotations: {istio.io/dry-run: 'true'}\n", jwtRule("issuer: a"), `metadata.annotations["istio.io/dry-run"]`, "not a RequestAuthentication"},
	})
}

func TestRequestAuthenticationAccepts(t *testing.T) {
	checkAccepts(t, "RequestAuthentication", []rejectCase{
		{name: "empty", spec: "  {}\n"},
		{name: "issuer only", spec: jwtRule("issuer: https://accounts.google.com")},
		{name: "jwksUri without issuer", spec: jwtRule("jwksUri: 'https://a.example.com/keys'")},
		{name: "same issuer twice", spec: "  jwtRules:\n  - {issuer: a, fromHeaders: [{name: x-a}]}\n  - {issuer: a, fromParams: [t]}\n"},
		{name: "inline jwks", spec: jwtRule("issuer: a, jwks: '" + testJWKS + "'")},
		{name: "empty key set", spec: jwtRule(`issuer: a, jwks: '{"keys": []}'`)},
		{name: "http jwksUri with port", spec: jwtRule("issuer: a, jwksUri: 'http://keys.example.com:8080/jwks'")},
		{name: "upper case scheme", spec: jwtRule("issuer: a, jwksUri: 'HTTPS://keys.example.com/jwks'")},
		{name: "timeout", spec: jwtRule("issuer: a, timeout: 1.5s")},
		{name: "claim headers", spec: jwtRule("issuer: a, outputClaimToHeaders: [{claim: sub, header: X-Sub}, {claim: a.b, header: x-ab}]")},
		{name: "gateway class", spec: "  targetRefs: [{kind: GatewayClass, group: gateway.networking.k8s.io, name: istio}]\n" + jwtRule("issuer: a")},
	})
}

// TestRequestAuthenticationObjects checks specs built in code: nil parts are errors, not panics.
func TestRequestAuthenticationObjects(t *testing.T) {
	specs := []*security.RequestAuthentication{
		{JwtRules: []*security.JWTRule{nil}},
		{JwtRules: []*security.JWTRule{{Issuer: "a", FromHeaders: []*security.JWTHeader{nil}, OutputClaimToHeaders: []*security.ClaimToHeader{nil}}}},
		{JwtRules: []*security.JWTRule{{Issuer: "a", Timeout: &durationpb.Duration{Seconds: -1}}}},
		{JwtRules: []*security.JWTRule{{Issuer: "a", Timeout: &durationpb.Duration{Nanos: -1, Seconds: 1}}}},
		{JwtRules: make([]*security.JWTRule, maxJWTRules+1)},
	}
	for i, s := range specs {
		o := &Object{Kind: RequestAuthentication, Meta: Meta{Name: "ra", Namespace: "ns"}, Spec: s}
		err := Validate(o)
		if err == nil || strings.Contains(err.Error(), "internal error") {
			t.Errorf("spec %d: %v", i, err)
		}
	}
}

func TestParseJWKSURI(t *testing.T) {
	for in, want := range map[string]JWKSURI{
		"https://example.com/.well-known/jwks.json": {Host: "example.com", Port: 443, TLS: true},
		"http://example.com/keys":                   {Host: "example.com", Port: 80},
		"http://example.com:8080/keys":              {Host: "example.com", Port: 8080},
		"https://[2001:db8::1]:8443/keys":           {Host: "2001:db8::1", Port: 8443, TLS: true},
	} {
		got, err := ParseJWKSURI(in)
		if err != nil || got != want {
			t.Errorf("ParseJWKSURI(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "example.com/keys", "ftp://example.com/k", "https://", "https://a:0/k", "https://a:x/k", "https://a b/k"} {
		if got, err := ParseJWKSURI(bad); err == nil {
			t.Errorf("ParseJWKSURI(%q) = %+v, want an error", bad, got)
		}
	}
}
