package jwtauthn

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/textproto"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	jwtauthnv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	jose "github.com/go-jose/go-jose/v4"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/strait-mesh/strait/internal/testenv/jwttest"
	"github.com/strait-mesh/strait/proxy/xdspb"
	pjwtauthnv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/jwt_authn/v3"
)

// testNow is the clock of the tests: tokens are minted relative to it.
var testNow = time.Unix(1_800_000_000, 0)

const testIssuer = "https://issuer.example.com"

// testKeys are the signing keys of the tests, generated once per process.
type testKeys struct {
	rsa  *rsa.PrivateKey
	rsa2 *rsa.PrivateKey // not in the JWKS
	ec   *ecdsa.PrivateKey
	ec2  *ecdsa.PrivateKey // not in the JWKS
	ed   ed25519.PrivateKey
	jwks string // rsa (kid "rsa1", no alg), ec (kid "ec1", ES256), ed (kid "ed1", EdDSA)
}

var (
	keysOnce sync.Once
	keys     *testKeys
)

func mustKeys(tb testing.TB) *testKeys {
	tb.Helper()
	keysOnce.Do(func() {
		k := &testKeys{}
		var err error
		if k.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if k.rsa2, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
		if k.ec2, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
		if _, k.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
			panic(err)
		}
		set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
			{Key: &k.rsa.PublicKey, KeyID: "rsa1", Use: "sig"},
			{Key: &k.ec.PublicKey, KeyID: "ec1", Algorithm: "ES256", Use: "sig"},
			{Key: k.ed.Public(), KeyID: "ed1", Algorithm: "EdDSA", Use: "sig"},
		}}
		b, err := json.Marshal(set)
		if err != nil {
			panic(err)
		}
		k.jwks = string(b)
		keys = k
	})
	return keys
}

// claims returns standard claims valid at testNow, with overrides (a nil value deletes).
func claims(over map[string]any) map[string]any {
	c := map[string]any{
		"iss": testIssuer,
		"sub": "user-1",
		"aud": "bookinfo",
		"iat": testNow.Add(-time.Minute).Unix(),
		"exp": testNow.Add(time.Hour).Unix(),
	}
	return jwttest.Override(c, over)
}

// rawToken assembles a token from a header and payload (JSON-encoded) and a raw signature.
func rawToken(tb testing.TB, header, payload any, sig []byte) string {
	tb.Helper()
	enc := func(v any) string {
		if s, ok := v.(string); ok {
			return base64.RawURLEncoding.EncodeToString([]byte(s))
		}
		b, err := json.Marshal(v)
		if err != nil {
			tb.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	return enc(header) + "." + enc(payload) + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// istioProvider is a provider as istiod emits it for a RequestAuthentication jwtRule.
func istioProvider(issuer, jwks string, aud ...string) *jwtauthnv3.JwtProvider {
	return &jwtauthnv3.JwtProvider{
		Issuer:            issuer,
		Audiences:         aud,
		PayloadInMetadata: "payload",
		NormalizePayloadInMetadata: &jwtauthnv3.JwtProvider_NormalizePayload{
			SpaceDelimitedClaims: []string{"permission", "scope"},
		},
		JwksSourceSpecifier: &jwtauthnv3.JwtProvider_LocalJwks{LocalJwks: &corev3.DataSource{
			Specifier: &corev3.DataSource_InlineString{InlineString: jwks},
		}},
	}
}

func providerReq(name string) *jwtauthnv3.JwtRequirement {
	return &jwtauthnv3.JwtRequirement{RequiresType: &jwtauthnv3.JwtRequirement_ProviderName{ProviderName: name}}
}

func allowMissing() *jwtauthnv3.JwtRequirement {
	return &jwtauthnv3.JwtRequirement{RequiresType: &jwtauthnv3.JwtRequirement_AllowMissing{AllowMissing: &emptypb.Empty{}}}
}

func anyOf(rs ...*jwtauthnv3.JwtRequirement) *jwtauthnv3.JwtRequirement {
	return &jwtauthnv3.JwtRequirement{RequiresType: &jwtauthnv3.JwtRequirement_RequiresAny{
		RequiresAny: &jwtauthnv3.JwtRequirementOrList{Requirements: rs}}}
}

func allOf(rs ...*jwtauthnv3.JwtRequirement) *jwtauthnv3.JwtRequirement {
	return &jwtauthnv3.JwtRequirement{RequiresType: &jwtauthnv3.JwtRequirement_RequiresAll{
		RequiresAll: &jwtauthnv3.JwtRequirementAndList{Requirements: rs}}}
}

func prefixRule(prefix string, req *jwtauthnv3.JwtRequirement) *jwtauthnv3.RequirementRule {
	return &jwtauthnv3.RequirementRule{
		Match:           &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: prefix}},
		RequirementType: &jwtauthnv3.RequirementRule_Requires{Requires: req},
	}
}

func pathMatch(p string) *routev3.RouteMatch {
	return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: p}}
}

// istioConfig is istiod's convertToEnvoyJwtConfig output for these providers ("origins-N").
func istioConfig(providers ...*jwtauthnv3.JwtProvider) *jwtauthnv3.JwtAuthentication {
	cfg := &jwtauthnv3.JwtAuthentication{Providers: map[string]*jwtauthnv3.JwtProvider{}, BypassCorsPreflight: true}
	var inner, outer []*jwtauthnv3.JwtRequirement
	for i, p := range providers {
		name := fmt.Sprintf("origins-%d", i)
		cfg.Providers[name] = p
		inner = append(inner, anyOf(providerReq(name), allowMissing()))
		outer = append(outer, providerReq(name))
	}
	if len(inner) == 1 {
		cfg.Rules = []*jwtauthnv3.RequirementRule{prefixRule("/", inner[0])}
		return cfg
	}
	cfg.Rules = []*jwtauthnv3.RequirementRule{prefixRule("/", anyOf(append(outer, allOf(inner...))...))}
	return cfg
}

func mustCompile(tb testing.TB, cfg *jwtauthnv3.JwtAuthentication) *Filter {
	tb.Helper()
	f, err := Compile(xdspb.MustFrom[*pjwtauthnv3.JwtAuthentication](cfg), "jwt")
	if err != nil {
		tb.Fatalf("Compile: %v", err)
	}
	f.now = func() time.Time { return testNow }
	return f
}

// fakeReq is a Request over a plain header map.
type fakeReq struct {
	method, path string
	h            map[string][]string
}

func newReq(path string, kv ...string) *fakeReq {
	r := &fakeReq{method: "GET", path: path, h: map[string][]string{}}
	for i := 0; i+1 < len(kv); i += 2 {
		r.AddHeader(textproto.CanonicalMIMEHeaderKey(kv[i]), kv[i+1])
	}
	return r
}

func (r *fakeReq) Method() string               { return r.method }
func (r *fakeReq) Path() string                 { return r.path }
func (r *fakeReq) SetPath(p string)             { r.path = p }
func (r *fakeReq) Header(name string) []string  { return r.h[name] }
func (r *fakeReq) DelHeader(name string)        { delete(r.h, name) }
func (r *fakeReq) AddHeader(name, value string) { r.h[name] = append(r.h[name], value) }
func (r *fakeReq) get(name string) string {
	if v := r.h[textproto.CanonicalMIMEHeaderKey(name)]; len(v) > 0 {
		return v[0]
	}
	return ""
}
