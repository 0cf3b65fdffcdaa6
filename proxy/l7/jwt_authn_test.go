package l7

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	gcorev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	gjwtauthnv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	jose "github.com/go-jose/go-jose/v4"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/strait-mesh/strait/internal/testenv/jwttest"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	rbacv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/rbac/v3"
	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
	jwtauthnv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/jwt_authn/v3"
	rbachttpv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/matcher/v3"
)

const jwtIssuer = "https://accounts.example.com"

// jwtSigner signs test tokens with one ES256 key; jwks is its public JWKS.
type jwtSigner struct {
	key  *ecdsa.PrivateKey
	jwks string
}

func newJWTSigner(t testing.TB) *jwtSigner {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	return &jwtSigner{key: k, jwks: string(b)}
}

// token signs claims valid now, with overrides.
func (j *jwtSigner) token(t testing.TB, over map[string]any) string {
	t.Helper()
	c := map[string]any{"iss": jwtIssuer, "sub": "user-1", "aud": "bookinfo", "exp": time.Now().Add(time.Hour).Unix()}
	return jwttest.Sign(t, jose.ES256, j.key, "k1", jwttest.Override(c, over))
}

// istioJWTFilter is the jwt_authn filter istiod emits for one RequestAuthentication jwtRule
// (with outputClaimToHeaders sub -> x-jwt-sub).
func istioJWTFilter(jwks string) *hcmv3.HttpFilter {
	cfg := &jwtauthnv3.JwtAuthentication{
		Providers: map[string]*jwtauthnv3.JwtProvider{"origins-0": {
			Issuer:            jwtIssuer,
			Audiences:         []string{"bookinfo"},
			PayloadInMetadata: "payload",
			NormalizePayloadInMetadata: &jwtauthnv3.JwtProvider_NormalizePayload{
				SpaceDelimitedClaims: []string{"permission", "scope"},
			},
			ClaimToHeaders: []*jwtauthnv3.JwtClaimToHeader{{HeaderName: "x-jwt-sub", ClaimName: "sub"}},
			JwksSourceSpecifier: &jwtauthnv3.JwtProvider_LocalJwks{LocalJwks: &corev3.DataSource{
				Specifier: &corev3.DataSource_InlineString{InlineString: jwks}}},
		}},
		Rules: []*jwtauthnv3.RequirementRule{{
			Match: pfx("/"),
			RequirementType: &jwtauthnv3.RequirementRule_Requires{Requires: &jwtauthnv3.JwtRequirement{
				RequiresType: &jwtauthnv3.JwtRequirement_RequiresAny{RequiresAny: &jwtauthnv3.JwtRequirementOrList{
					Requirements: []*jwtauthnv3.JwtRequirement{
						{RequiresType: &jwtauthnv3.JwtRequirement_ProviderName{ProviderName: "origins-0"}},
						{RequiresType: &jwtauthnv3.JwtRequirement_AllowMissing{AllowMissing: &emptypb.Empty{}}},
					}}}}},
		}},
		BypassCorsPreflight: true,
	}
	return typedFilter("envoy.filters.http.jwt_authn", cfg)
}

func typedFilter(name string, m proto.Message) *hcmv3.HttpFilter {
	a, err := anypb.New(m)
	if err != nil {
		panic(err)
	}
	return &hcmv3.HttpFilter{Name: name, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: a}}
}

// jwtMetadata is Istio's matcher on one claim of the verified payload.
func jwtMetadata(claim, value string) *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Metadata{Metadata: &matcherv3.MetadataMatcher{
		Filter: "envoy.filters.http.jwt_authn",
		Path: []*matcherv3.MetadataMatcher_PathSegment{
			{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: "payload"}},
			{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: claim}},
		},
		Value: &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_Exact{Exact: value}}}},
	}}}
}

// istioRBAC allows /public to anyone and everything else to the request principal
// "<jwtIssuer>/user-1", as istiod translates an AuthorizationPolicy with requestPrincipals.
func istioRBAC() *hcmv3.HttpFilter {
	cfg := &rbachttpv3.RBAC{Rules: &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW, Policies: map[string]*rbacv3.Policy{
		"ns[default]-policy[require-jwt]-rule[0]": {
			Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_Any{Any: true}}},
			Principals: []*rbacv3.Principal{{Identifier: &rbacv3.Principal_AndIds{AndIds: &rbacv3.Principal_Set{Ids: []*rbacv3.Principal{{
				Identifier: &rbacv3.Principal_OrIds{OrIds: &rbacv3.Principal_Set{Ids: []*rbacv3.Principal{{
					Identifier: &rbacv3.Principal_AndIds{AndIds: &rbacv3.Principal_Set{Ids: []*rbacv3.Principal{
						jwtMetadata("iss", jwtIssuer), jwtMetadata("sub", "user-1"),
					}}},
				}}}},
			}}}}}},
		},
		"ns[default]-policy[public]-rule[0]": {
			Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{
				Rule: &matcherv3.PathMatcher_Path{Path: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "/public"}}}}}}},
			Principals: []*rbacv3.Principal{{Identifier: &rbacv3.Principal_Any{Any: true}}},
		},
	}}}
	return typedFilter("envoy.filters.http.rbac", cfg)
}

// seenRequest is what the upstream received.
type seenRequest struct {
	uri    string
	header http.Header
}

func TestJWTFilterWithRBAC(t *testing.T) {
	j := newJWTSigner(t)
	var mu sync.Mutex
	var seen []seenRequest
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, seenRequest{uri: r.RequestURI, header: r.Header.Clone()})
		mu.Unlock()
		io.WriteString(w, "ok")
	}), false)
	env := &testEnv{clusters: map[string]Upstream{"c": newTestUpstream(up, false)}}
	p := startProxy(t, inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("c"))), istioJWTFilter(j.jwks), istioRBAC()), env, false)
	lastSeen := func() seenRequest {
		mu.Lock()
		defer mu.Unlock()
		if len(seen) == 0 {
			return seenRequest{}
		}
		return seen[len(seen)-1]
	}

	valid := j.token(t, nil)
	other := j.token(t, map[string]any{"sub": "user-2"})
	expired := j.token(t, map[string]any{"exp": time.Now().Add(-time.Hour).Unix()})
	wrongAud := j.token(t, map[string]any{"aud": "other"})
	host := p.addr

	tests := []struct {
		name      string
		method    string
		path      string
		header    map[string]string
		status    int
		body      string
		challenge string // expected www-authenticate, "" for not checked
		details   string
		upstream  func(t *testing.T, r seenRequest)
	}{
		{name: "no token, principal required: RBAC denies", path: "/data", status: 403, body: "RBAC: access denied"},
		{name: "no token, public path", path: "/public/x", status: 200, body: "ok"},
		{name: "valid token of the allowed principal", path: "/data", header: map[string]string{"Authorization": "Bearer " + valid}, status: 200, body: "ok"},
		{name: "valid token of another principal: RBAC denies", path: "/data", header: map[string]string{"Authorization": "Bearer " + other}, status: 403, body: "RBAC: access denied"},
		{name: "expired token", path: "/data?x=1", header: map[string]string{"Authorization": "Bearer " + expired}, status: 401, body: "Jwt is expired",
			challenge: `Bearer realm="http://` + host + `/data?x=1", error="invalid_token"`, details: "jwt_authn_access_denied{Jwt_is_expired}"},
		{name: "expired token on a public path", path: "/public", header: map[string]string{"Authorization": "Bearer " + expired}, status: 401, body: "Jwt is expired",
			challenge: `Bearer realm="http://` + host + `/public", error="invalid_token"`},
		{name: "wrong audience", path: "/data", header: map[string]string{"Authorization": "Bearer " + wrongAud}, status: 403, body: "Audiences in Jwt are not allowed",
			challenge: `Bearer realm="http://` + host + `/data", error="invalid_token"`, details: "jwt_authn_access_denied{Audiences_in_Jwt_are_not_allowed}"},
		{name: "garbage token", path: "/public", header: map[string]string{"Authorization": "Bearer abc"}, status: 401,
			body: "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"},
		{name: "alg none", path: "/public", header: map[string]string{"Authorization": "Bearer eyJhbGciOiJub25lIn0." + strings.Split(valid, ".")[1] + "."},
			status: 401, body: "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"},
		{name: "bad token in the query", path: "/public?access_token=" + expired, status: 401, body: "Jwt is expired"},
		{name: "valid token in the query", path: "/data?a=1&access_token=" + valid, status: 200, body: "ok",
			upstream: func(t *testing.T, r seenRequest) {
				if r.uri != "/data?a=1" {
					t.Errorf("upstream URI %q, want the token cut from the query", r.uri)
				}
				if got := r.header.Get("X-Jwt-Sub"); got != "user-1" {
					t.Errorf("upstream x-jwt-sub %q", got)
				}
			}},
		{name: "valid token in the header", path: "/data", header: map[string]string{"Authorization": "Bearer " + valid}, status: 200, body: "ok",
			upstream: func(t *testing.T, r seenRequest) {
				if got := r.header.Get("Authorization"); got != "" {
					t.Errorf("token forwarded upstream: %q", got)
				}
			}},
		{name: "long garbage token", path: "/public", header: map[string]string{"Authorization": "Bearer " + strings.Repeat("A", 100)},
			status: 401, body: "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
			challenge: `Bearer realm="http://` + host + `/public", error="invalid_token"`},
		{name: "CORS preflight with a bad token is not checked", method: "OPTIONS", path: "/public",
			header: map[string]string{"Authorization": "Bearer abc", "Origin": "https://app.example.com", "Access-Control-Request-Method": "GET"}, status: 200, body: "ok"},
	}
	c := h1Client()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = "GET"
			}
			req, _ := http.NewRequest(method, p.url(tc.path), nil)
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			ri := p.nextInfo(t)
			if resp.StatusCode != tc.status || string(body) != tc.body {
				t.Fatalf("got %d %q, want %d %q", resp.StatusCode, body, tc.status, tc.body)
			}
			if got := resp.Header.Get("Www-Authenticate"); tc.challenge != "" && got != tc.challenge {
				t.Errorf("www-authenticate %q, want %q", got, tc.challenge)
			}
			if tc.status == 200 && resp.Header.Get("Www-Authenticate") != "" {
				t.Errorf("www-authenticate on success: %q", resp.Header.Get("Www-Authenticate"))
			}
			if tc.upstream != nil {
				tc.upstream(t, lastSeen())
			}
			if tc.details != "" && ri.Details != tc.details {
				t.Errorf("details %q, want %q", ri.Details, tc.details)
			}
		})
	}

	// A client cannot set the claim header itself.
	req, _ := http.NewRequest("GET", p.url("/public"), nil)
	req.Header.Set("X-Jwt-Sub", "admin")
	req.Header.Set("Authorization", "Basic dTpw")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	p.nextInfo(t)
	if last := lastSeen(); last.header.Get("X-Jwt-Sub") != "" || last.header.Get("Authorization") != "Basic dTpw" {
		t.Errorf("upstream headers after a spoofed claim header: %v", last.header)
	}

	if got := p.counter("http.test.jwt_authn.denied"); got != 7 {
		t.Errorf("denied = %d, want 7", got)
	}
	if got := p.counter("http.test.jwt_authn.allowed"); got != 8 {
		t.Errorf("allowed = %d, want 8", got)
	}
	if got := p.counter("http.test.jwt_authn.cors_preflight_bypassed"); got != 1 {
		t.Errorf("cors_preflight_bypassed = %d, want 1", got)
	}
}

// TestJWTFilterGRPC checks that a gRPC request is refused with a trailers-only UNAUTHENTICATED.
func TestJWTFilterGRPC(t *testing.T) {
	j := newJWTSigner(t)
	env := &testEnv{clusters: map[string]Upstream{}}
	p := startProxy(t, inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("c"))), istioJWTFilter(j.jwks)), env, false)
	req, _ := http.NewRequest("POST", p.url("/pkg.Svc/Call"), strings.NewReader(""))
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Authorization", "Bearer "+j.token(t, map[string]any{"iss": "https://other.example.com"}))
	resp, err := h2cClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	grpcStatus := resp.Header.Get("Grpc-Status")
	if grpcStatus == "" {
		grpcStatus = resp.Trailer.Get("Grpc-Status")
	}
	if resp.StatusCode != 200 || grpcStatus != "16" || resp.Header.Get("Grpc-Message") != "Jwt issuer is not configured" {
		t.Fatalf("got %d grpc-status %q grpc-message %q", resp.StatusCode, grpcStatus, resp.Header.Get("Grpc-Message"))
	}
	if !strings.HasPrefix(resp.Header.Get("Www-Authenticate"), `Bearer realm="http://`) {
		t.Errorf("www-authenticate %q", resp.Header.Get("Www-Authenticate"))
	}
}

// TestJWTFilterRefusesRemoteJWKS checks that a listener whose JWT filter fetches keys remotely is
// NACKed with the field named.
func TestJWTFilterRefusesRemoteJWKS(t *testing.T) {
	f := istioJWTFilter("{}")
	var cfg gjwtauthnv3.JwtAuthentication // go-control-plane's: strait-proxy does not read remote_jwks.http_uri
	if err := f.GetTypedConfig().UnmarshalTo(&cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Providers["origins-0"].JwksSourceSpecifier = &gjwtauthnv3.JwtProvider_RemoteJwks{RemoteJwks: &gjwtauthnv3.RemoteJwks{
		HttpUri: &gcorev3.HttpUri{Uri: "https://accounts.example.com/jwks", HttpUpstreamType: &gcorev3.HttpUri_Cluster{Cluster: "jwks"}}}}
	_, err := New(inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("c"))), typedFilter("envoy.filters.http.jwt_authn", &cfg)), &testEnv{}, Options{})
	if err == nil || !strings.Contains(err.Error(), "http_connection_manager.http_filters[0].typed_config.providers[origins-0].remote_jwks") {
		t.Fatalf("error %v", err)
	}
}

// TestJWTFilterMissingToken checks the reply when a provider is required outright: 401 "Jwt is
// missing" with a challenge that carries no error (RFC 6750: no credentials were presented).
func TestJWTFilterMissingToken(t *testing.T) {
	j := newJWTSigner(t)
	f := istioJWTFilter(j.jwks)
	var cfg jwtauthnv3.JwtAuthentication
	if err := f.GetTypedConfig().UnmarshalTo(&cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Rules[0].RequirementType = &jwtauthnv3.RequirementRule_Requires{Requires: &jwtauthnv3.JwtRequirement{
		RequiresType: &jwtauthnv3.JwtRequirement_ProviderName{ProviderName: "origins-0"}}}
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }), false)
	env := &testEnv{clusters: map[string]Upstream{"c": newTestUpstream(up, false)}}
	off, _ := anypb.New(&routev3.FilterConfig{Disabled: true})
	open := fwdRoute("open", pfx("/open"), toCluster("c"))
	open.TypedPerFilterConfig = map[string]*anypb.Any{"envoy.filters.http.jwt_authn": off}
	p := startProxy(t, inlineHCM(oneVhost(open, fwdRoute("r", pfx("/"), toCluster("c"))), typedFilter("envoy.filters.http.jwt_authn", &cfg)), env, false)
	c := h1Client()

	// A route that disables the filter by name skips it.
	resp, err := c.Get(p.url("/open"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("route with the filter disabled: %d", resp.StatusCode)
	}

	resp, err = c.Get(p.url("/x"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 || string(body) != "Jwt is missing" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	if got, want := resp.Header.Get("Www-Authenticate"), `Bearer realm="http://`+p.addr+`/x"`; got != want {
		t.Errorf("www-authenticate %q, want %q", got, want)
	}

	req, _ := http.NewRequest("GET", p.url("/x"), nil)
	req.Header.Set("Authorization", "Bearer "+j.token(t, nil))
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("valid token: %d", resp.StatusCode)
	}
}
