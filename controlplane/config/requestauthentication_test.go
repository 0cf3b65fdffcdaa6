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

// jwtRuleReject is a rejectCase of one JWT rule with fields, refused at field (a path below
// spec.jwtRules[0]) with msg.
func jwtRuleReject(name, fields, field, msg string) rejectCase {
	return rejectCase{name: name, spec: jwtRule(fields), field: "spec.jwtRules[0]" + field, msg: msg}
}

func TestRequestAuthenticationRejects(t *testing.T) {
	checkRejects(t, "RequestAuthentication", []rejectCase{
		{"selector and targetRef", "", "  selector: {matchLabels: {app: a}}\n  targetRef: {kind: Service, name: s}\n", "spec", "only one of selector, targetRef and targetRefs"},
		{"target kind", "", "  targetRefs: [{kind: Pod, name: p}]\n", "spec.targetRefs[0]", "cannot target /Pod"},
		{"target namespace", "", "  targetRefs: [{kind: Service, name: s, namespace: b}]\n", "spec.targetRefs[0].namespace", "cross-namespace"},
		{"selector empty key", "", "  selector: {matchLabels: {'': a}}\n", "spec.selector.matchLabels", "empty label key"},
		jwtRuleReject("no issuer nor jwksUri", "audiences: [a]", ".issuer", "issuer is required"),
		jwtRuleReject("empty audience", "issuer: a, audiences: [b, '']", ".audiences[1]", "empty value"),
		jwtRuleReject("jwks and jwksUri", "issuer: a, jwksUri: 'https://a/k', jwks: '"+testJWKS+"'", "", "only one of jwks and jwksUri"),
		jwtRuleReject("jwksUri scheme", "issuer: a, jwksUri: 'ftp://a/k'", ".jwksUri", "must have scheme http:// or https://"),
		jwtRuleReject("jwksUri relative", "issuer: a, jwksUri: '/keys'", ".jwksUri", "must have scheme"),
		jwtRuleReject("jwksUri no host", "issuer: a, jwksUri: 'https:///keys'", ".jwksUri", "has no host"),
		jwtRuleReject("jwksUri port", "issuer: a, jwksUri: 'https://a:99999/k'", ".jwksUri", "1-65535"),
		jwtRuleReject("jwksUri port name", "issuer: a, jwksUri: 'https://a:https/k'", ".jwksUri", "invalid URL"),
		jwtRuleReject("jwks not json", "issuer: a, jwks: 'keys'", ".jwks", "not a JSON object"),
		jwtRuleReject("jwks array", "issuer: a, jwks: '[]'", ".jwks", "not a JSON object"),
		jwtRuleReject("jwks empty object", "issuer: a, jwks: '{}'", ".jwks", "nor a valid JSON Web Key"),
		jwtRuleReject("jwks keys not array", `issuer: a, jwks: '{"keys": {}}'`, ".jwks", "keys must be an array"),
		jwtRuleReject("jwks null key", `issuer: a, jwks: '{"keys": [null]}'`, ".jwks", "keys[0] is null"),
		jwtRuleReject("jwks unknown kty", `issuer: a, jwks: '{"keys": [{"kty": "XYZ"}]}'`, ".jwks", "keys[0]"),
		jwtRuleReject("jwks bad rsa", `issuer: a, jwks: '{"keys": [{"kty": "RSA", "e": "AQAB"}]}'`, ".jwks", "keys[0]"),
		jwtRuleReject("jwks bad ec point", `issuer: a, jwks: '{"keys": [{"kty": "EC", "crv": "P-256", "x": "AQAB", "y": "AQAB"}]}'`, ".jwks", "keys[0]"),
		jwtRuleReject("from header no name", "issuer: a, fromHeaders: [{prefix: 'Bearer '}]", ".fromHeaders[0].name", "name is required"),
		jwtRuleReject("from header bad name", "issuer: a, fromHeaders: [{name: 'x jwt'}]", ".fromHeaders[0].name", "invalid header name"),
		jwtRuleReject("from param empty", "issuer: a, fromParams: ['']", ".fromParams[0]", "empty value"),
		jwtRuleReject("from cookie empty", "issuer: a, fromCookies: ['']", ".fromCookies[0]", "empty value"),
		jwtRuleReject("from cookie bad name", "issuer: a, fromCookies: ['a;b']", ".fromCookies[0]", "invalid cookie name"),
		jwtRuleReject("payload header", "issuer: a, outputPayloadToHeader: 'x:payload'", ".outputPayloadToHeader", "invalid header name"),
		jwtRuleReject("claim header empty claim", "issuer: a, outputClaimToHeaders: [{header: x-a}]", ".outputClaimToHeaders[0].claim", "claim is required"),
		jwtRuleReject("claim header empty header", "issuer: a, outputClaimToHeaders: [{claim: sub}]", ".outputClaimToHeaders[0].header", "header is required"),
		jwtRuleReject("claim header pseudo", "issuer: a, outputClaimToHeaders: [{claim: sub, header: ':authority'}]", ".outputClaimToHeaders[0].header", "letters, digits and '-'"),
		jwtRuleReject("claim header underscore", "issuer: a, outputClaimToHeaders: [{claim: sub, header: x_sub}]", ".outputClaimToHeaders[0].header", "letters, digits and '-'"),
		jwtRuleReject("claim header duplicate", "issuer: a, outputClaimToHeaders: [{claim: sub, header: x-a}, {claim: iss, header: X-A}]", ".outputClaimToHeaders[1].header", "already set by outputClaimToHeaders[0]"),
		jwtRuleReject("timeout too small", "issuer: a, timeout: 100us", ".timeout", "at least 1ms"),
		jwtRuleReject("timeout zero", "issuer: a, timeout: 0s", ".timeout", "at least 1ms"),
		jwtRuleReject("timeout precision", "issuer: a, timeout: 1.0005s", ".timeout", "millisecond precision"),
		jwtRuleReject("space delimited empty", "issuer: a, spaceDelimitedClaims: [scope, '']", ".spaceDelimitedClaims[1]", "empty value"),
		// Limits on sizes.
		jwtRuleReject("jwksUri too long", "issuer: a, jwksUri: 'https://a/"+strings.Repeat("k", 2048)+"'", ".jwksUri", "more than the limit of 2048"),
		jwtRuleReject("space delimited too many", "issuer: a, spaceDelimitedClaims: ["+strings.Repeat("c, ", 64)+"c]", ".spaceDelimitedClaims", "more than the limit of 64"),
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
	checkBuiltSpecsRejected(t, RequestAuthentication, specs)
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
