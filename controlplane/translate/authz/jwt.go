package authz

import (
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/emptypb"
	security "istio.io/api/security/v1beta1"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/jwks"
	"github.com/strait-mesh/strait/controlplane/translate/selection"
	"github.com/strait-mesh/strait/internal/vocab"
)

// SelectRequestAuthentication returns the RequestAuthentications that apply to a workload, as
// Select does for AuthorizationPolicy.
func SelectRequestAuthentication(all []*config.Object, ns string, labels map[string]string, root string) []*config.Object {
	return selection.Select(all, ns, labels, root, workloadPolicies)
}

// JWKSFunc returns the key set of a jwksUri (see package jwks); an error means none yet.
type JWKSFunc func(uri string) (string, error)

// BuildJWT translates RequestAuthentications into the envoy.filters.http.jwt_authn filter, as
// istiod does: one provider per jwtRule ("origins-N"), the keys inlined (local_jwks) from jwks
// or the control plane's fetch of jwksUri, the payload in dynamic metadata "payload" (where
// requestPrincipals and request.auth.* policies look), and one rule for every path requiring any
// provider or no token: a request without a token passes on to authorization, one with a token
// that no provider verifies is refused with 401. Keys that are not available yet are replaced by
// a key set that verifies nothing (tokens are refused, fail closed). nil when no rule applies.
func BuildJWT(selected []*config.Object, fetch JWKSFunc) (*hcmv3.HttpFilter, []error) {
	var errs []error
	cfg := &jwtv3.JwtAuthentication{Providers: map[string]*jwtv3.JwtProvider{}, BypassCorsPreflight: true}
	var reqs []*jwtv3.JwtRequirement
	n := 0
	for _, o := range selected {
		ra := o.Spec.(*security.RequestAuthentication)
		for i, r := range ra.GetJwtRules() {
			name := fmt.Sprintf("origins-%d", n)
			n++
			keys, err := ruleKeys(r, fetch)
			if err != nil {
				errs = append(errs, fmt.Errorf("RequestAuthentication %s/%s jwtRules[%d]: %w; tokens of issuer %q are refused until keys are available",
					o.Namespace, o.Name, i, err, r.GetIssuer()))
				keys = noKeys
			}
			p := &jwtv3.JwtProvider{
				Issuer:               r.GetIssuer(),
				Audiences:            r.GetAudiences(),
				JwksSourceSpecifier:  &jwtv3.JwtProvider_LocalJwks{LocalJwks: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: keys}}},
				Forward:              r.GetForwardOriginalToken(),
				ForwardPayloadHeader: r.GetOutputPayloadToHeader(),
				PayloadInMetadata:    "payload",
				FromParams:           r.GetFromParams(),
				FromCookies:          r.GetFromCookies(),
			}
			for _, h := range r.GetFromHeaders() {
				p.FromHeaders = append(p.FromHeaders, &jwtv3.JwtHeader{Name: h.GetName(), ValuePrefix: h.GetPrefix()})
			}
			for _, c := range r.GetOutputClaimToHeaders() {
				p.ClaimToHeaders = append(p.ClaimToHeaders, &jwtv3.JwtClaimToHeader{HeaderName: c.GetHeader(), ClaimName: c.GetClaim()})
			}
			cfg.Providers[name] = p
			reqs = append(reqs, &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_ProviderName{ProviderName: name}})
		}
	}
	if n == 0 {
		return nil, errs
	}
	reqs = append(reqs, &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_AllowMissing{AllowMissing: &emptypb.Empty{}}})
	cfg.Rules = []*jwtv3.RequirementRule{{
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		RequirementType: &jwtv3.RequirementRule_Requires{Requires: &jwtv3.JwtRequirement{
			RequiresType: &jwtv3.JwtRequirement_RequiresAny{RequiresAny: &jwtv3.JwtRequirementOrList{Requirements: reqs}}}},
	}}
	return &hcmv3.HttpFilter{Name: vocab.FilterJWTAuthn, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(cfg)}}, errs
}

// ruleKeys returns a rule's key set: its inline jwks, else its jwksUri's as fetched.
func ruleKeys(r *security.JWTRule, fetch JWKSFunc) (string, error) {
	if j := r.GetJwks(); j != "" {
		return jwks.Normalize([]byte(j))
	}
	uri := r.GetJwksUri()
	if uri == "" {
		return "", fmt.Errorf("no jwks or jwksUri (OpenID discovery from the issuer is not supported)")
	}
	if fetch == nil {
		return "", fmt.Errorf("jwksUri %q: the control plane fetches no key sets", uri)
	}
	return fetch(uri)
}

// noKeys is a key set that verifies no token: a P-256 public key whose private key was
// discarded when it was generated for this file.
const noKeys = `{"keys":[{"use":"sig","kty":"EC","kid":"strait-no-keys","crv":"P-256","alg":"ES256","x":"TEsIYEMt9AenVXToQC04Y-Qb_73hu9vQMmEJwhFJBTY","y":"YmNmqVOrH1yHv8Siza_Tw0yGJo9v_n_tbDhrPQW00A8"}]}`
