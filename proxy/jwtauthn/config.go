// Package jwtauthn implements Envoy's JWT authentication HTTP filter
// (envoy.filters.http.jwt_authn, envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication)
// with Envoy's semantics, for the configuration istiod emits for a RequestAuthentication:
// providers "origins-N" with an issuer, audiences and a JWKS inlined as local_jwks (istiod fetches
// the jwksUri itself), token locations, forward / forward_payload_header / claim_to_headers,
// payload_in_metadata "payload" normalized for the space-delimited "scope" and "permission"
// claims, and one rule on prefix "/" requiring any of {provider, allow_missing}: a request without
// a token passes, one with an invalid token is refused.
//
// Compile turns the config into an immutable *Filter (NACKing, with an *xdsfield.UnsupportedError
// naming it, every field it does not implement, remote_jwks among them: the proxy never fetches
// keys). Filter.Verify runs on the request path, concurrently; the connection manager's filter
// (proxy/l7) turns a failed Result into Envoy's 401 / 403 reply and a successful one into the
// dynamic metadata namespace MetadataNamespace that RBAC rules on request principals read.
//
// Token signatures are checked with the standard library (crypto/rsa, ecdsa, ed25519, hmac) on
// the segments this package has already decoded, so that each step fails with the status Envoy
// reports; keys are parsed with go-jose.
package jwtauthn

import (
	"errors"
	"fmt"
	"net/textproto"
	"sort"
	"strings"
	"time"

	"github.com/strait-mesh/strait/internal/vocab"
	"github.com/strait-mesh/strait/proxy/xdsfield"
	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
	jwtauthnv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/jwt_authn/v3"
)

// MetadataNamespace is the dynamic metadata namespace the filter writes (Envoy's filter name).
const MetadataNamespace = vocab.FilterJWTAuthn

// defaultClockSkew is jwt_verify_lib's kClockSkewInSecond, used when clock_skew_seconds is 0.
const defaultClockSkew = 60

// maxRequirementDepth bounds the nesting of requires_any / requires_all (hostile config).
const maxRequirementDepth = 32

// Filter is a compiled JwtAuthentication. It is immutable and safe for concurrent use.
type Filter struct {
	providers    map[string]*provider
	byIssuer     []*provider // sorted by name: the first provider of an issuer wins
	rules        []rule
	reqMap       map[string]*requirement
	bypassCORS   bool
	stripFailure bool
	warnings     []string
	now          func() time.Time
}

// provider is a compiled JwtProvider.
type provider struct {
	name          string
	issuer        string
	audiences     *audiences // nil: not checked
	keys          []*key     // nil: the JWKS was invalid; every token fails with JwksNoValidKeys
	forward       bool
	payloadHeader string // forward_payload_header, canonical
	padPayload    bool
	payloadMeta   string
	headerMeta    string
	spaceClaims   []string
	clockSkew     uint64
	claimHeaders  []claimHeader
	clearRoute    bool
	extractor     *extractor
	sigs          *sigCache // tokens whose signature verified with keys
}

type claimHeader struct {
	header string // canonical
	claim  []string
}

// audiences is jwt_verify_lib's CheckAudience: scheme prefix and trailing slash are ignored.
type audiences struct{ list []string }

func newAudiences(list []string) *audiences {
	if len(list) == 0 {
		return nil
	}
	a := &audiences{}
	for _, s := range list {
		a.list = append(a.list, sanitizeAudience(s))
	}
	return a
}

func sanitizeAudience(s string) string {
	beg, end := 0, len(s)
	if strings.HasPrefix(s, "http://") {
		beg = len("http://")
	} else if strings.HasPrefix(s, "https://") {
		beg = len("https://")
	}
	if end > 0 && s[end-1] == '/' {
		end--
	}
	if end < beg {
		return ""
	}
	return s[beg:end]
}

// allows reports whether any of the token's audiences is configured; nil allows all.
func (a *audiences) allows(aud []string) bool {
	if a == nil {
		return true
	}
	for _, x := range aud {
		x = sanitizeAudience(x)
		for _, y := range a.list {
			if x == y {
				return true
			}
		}
	}
	return false
}

type matchKind uint8

const (
	matchPrefix matchKind = iota
	matchPath
	matchPathSeparatedPrefix
)

// rule is a compiled RequirementRule.
type rule struct {
	kind          matchKind
	value         string
	caseSensitive bool
	req           *requirement // never nil: an unset requirement allows all
}

type reqKind uint8

const (
	reqAllowAll reqKind = iota
	reqProvider
	reqAny
	reqAll
	reqAllowMissing
	reqAllowFailed
)

// requirement is a compiled JwtRequirement (Envoy's verifier tree).
type requirement struct {
	kind      reqKind
	provider  *provider
	audiences *audiences // provider_and_audiences: replaces the provider's
	children  []*requirement
	// requires_any only: allow_missing / allow_missing_or_failed among the alternatives.
	allowMissing, allowFailed bool
	extractor                 *extractor // allow_missing(_or_failed): every provider's locations
}

// Compile compiles cfg; path prefixes the field names in errors (e.g.
// "http_filters[0].typed_config"). It refuses, with an *xdsfield.UnsupportedError, every field
// it does not implement. A local JWKS that is not valid is not an error: as in Envoy, the
// provider then has no keys and every token it would verify is refused; Warnings says why.
func Compile(cfg *jwtauthnv3.JwtAuthentication, path string) (*Filter, error) {
	if cfg == nil {
		cfg = &jwtauthnv3.JwtAuthentication{}
	}
	if err := xdsfield.Check(cfg, path, "providers", "rules", "bypass_cors_preflight",
		"requirement_map", "strip_failure_response"); err != nil {
		return nil, err
	}
	f := &Filter{
		providers:    make(map[string]*provider, len(cfg.GetProviders())),
		bypassCORS:   cfg.GetBypassCorsPreflight(),
		stripFailure: cfg.GetStripFailureResponse(),
		now:          time.Now,
	}
	names := make([]string, 0, len(cfg.GetProviders()))
	for name := range cfg.GetProviders() {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		p, err := f.compileProvider(fmt.Sprintf("%s.providers[%s]", path, name), name, cfg.GetProviders()[name])
		if err != nil {
			return nil, err
		}
		f.providers[name] = p
		f.byIssuer = append(f.byIssuer, p)
	}

	all := make([]*jwtauthnv3.JwtProvider, 0, len(names))
	for _, name := range names {
		all = append(all, cfg.GetProviders()[name])
	}
	c := &compiler{f: f, all: newExtractor(all...)}

	reqNames := make([]string, 0, len(cfg.GetRequirementMap()))
	for name := range cfg.GetRequirementMap() {
		reqNames = append(reqNames, name)
	}
	sort.Strings(reqNames)
	if len(reqNames) > 0 {
		f.reqMap = make(map[string]*requirement, len(reqNames))
	}
	for _, name := range reqNames {
		q, err := c.requirement(fmt.Sprintf("%s.requirement_map[%s]", path, name), cfg.GetRequirementMap()[name], 0)
		if err != nil {
			return nil, err
		}
		f.reqMap[name] = q
	}

	for i, r := range cfg.GetRules() {
		field := fmt.Sprintf("%s.rules[%d]", path, i)
		if err := xdsfield.Check(r, field, "match", "requires", "requirement_name"); err != nil {
			return nil, err
		}
		ru, err := compileRuleMatch(field+".match", r.GetMatch())
		if err != nil {
			return nil, err
		}
		switch rt := r.GetRequirementType().(type) {
		case *jwtauthnv3.RequirementRule_Requires:
			if ru.req, err = c.requirement(field+".requires", rt.Requires, 0); err != nil {
				return nil, err
			}
		case *jwtauthnv3.RequirementRule_RequirementName:
			q, ok := f.reqMap[rt.RequirementName]
			if !ok {
				return nil, fmt.Errorf("%s.requirement_name: Wrong requirement_name: %s. It should be one of [%s]",
					field, rt.RequirementName, strings.Join(reqNames, ","))
			}
			ru.req = q
		default:
			ru.req = &requirement{kind: reqAllowAll}
		}
		f.rules = append(f.rules, ru)
	}
	return f, nil
}

// Warnings describes the configuration problems that did not refuse the config (an invalid
// JWKS, skipped keys), for the log: Envoy logs these and goes on.
func (f *Filter) Warnings() []string { return f.warnings }

// StripFailureResponse reports strip_failure_response: a rejection has no body and no
// www-authenticate header.
func (f *Filter) StripFailureResponse() bool { return f.stripFailure }

func (f *Filter) compileProvider(field, name string, p *jwtauthnv3.JwtProvider) (*provider, error) {
	if p == nil {
		return nil, fmt.Errorf("%s: missing provider", field)
	}
	if p.GetRemoteJwks() != nil {
		return nil, xdsfield.Unsupported(field+".remote_jwks",
			"the control plane inlines the JWKS as local_jwks; strait-proxy never fetches keys")
	}
	if err := xdsfield.Check(p, field, "issuer", "audiences", "local_jwks", "forward", "from_headers",
		"from_params", "from_cookies", "forward_payload_header", "pad_forward_payload_header",
		"payload_in_metadata", "normalize_payload_in_metadata", "header_in_metadata",
		"clock_skew_seconds", "claim_to_headers", "clear_route_cache", "jwt_cache_config"); err != nil {
		return nil, err
	}
	// The signature cache is on whether or not jwt_cache_config asks (it changes no outcome,
	// see sigCache); the config sets its bounds.
	cacheSize, cacheMax := defaultCacheSize, defaultCacheMaxToken
	if cc := p.GetJwtCacheConfig(); cc != nil {
		if err := xdsfield.Check(cc, field+".jwt_cache_config", "jwt_cache_size", "jwt_max_token_size"); err != nil {
			return nil, err
		}
		if n := cc.GetJwtCacheSize(); n > 0 {
			cacheSize = int(min(n, 1<<16))
		}
		if n := cc.GetJwtMaxTokenSize(); n > 0 {
			cacheMax = int(min(n, 1<<16))
		}
	}
	pr := &provider{
		sigs:          newSigCache(cacheSize, cacheMax),
		name:          name,
		issuer:        p.GetIssuer(),
		audiences:     newAudiences(p.GetAudiences()),
		forward:       p.GetForward(),
		payloadHeader: canonical(p.GetForwardPayloadHeader()),
		padPayload:    p.GetPadForwardPayloadHeader(),
		payloadMeta:   p.GetPayloadInMetadata(),
		headerMeta:    p.GetHeaderInMetadata(),
		clockSkew:     uint64(p.GetClockSkewSeconds()),
		clearRoute:    p.GetClearRouteCache(),
		extractor:     newExtractor(p),
	}
	if pr.clockSkew == 0 {
		pr.clockSkew = defaultClockSkew
	}
	if n := p.GetNormalizePayloadInMetadata(); n != nil {
		if err := xdsfield.Check(n, field+".normalize_payload_in_metadata", "space_delimited_claims"); err != nil {
			return nil, err
		}
		pr.spaceClaims = n.GetSpaceDelimitedClaims()
	}
	for i, h := range p.GetFromHeaders() {
		hf := fmt.Sprintf("%s.from_headers[%d]", field, i)
		if err := xdsfield.Check(h, hf, "name", "value_prefix"); err != nil {
			return nil, err
		}
		if h.GetName() == "" {
			return nil, fmt.Errorf("%s.name: empty", hf)
		}
	}
	for i, c := range p.GetClaimToHeaders() {
		cf := fmt.Sprintf("%s.claim_to_headers[%d]", field, i)
		if err := xdsfield.Check(c, cf, "header_name", "claim_name"); err != nil {
			return nil, err
		}
		if c.GetHeaderName() == "" || c.GetClaimName() == "" {
			return nil, fmt.Errorf("%s: header_name and claim_name are required", cf)
		}
		pr.claimHeaders = append(pr.claimHeaders, claimHeader{header: canonical(c.GetHeaderName()), claim: strings.Split(c.GetClaimName(), ".")})
	}

	ds := p.GetLocalJwks()
	if ds == nil {
		return nil, fmt.Errorf("%s: one of local_jwks or remote_jwks is required", field)
	}
	if err := xdsfield.Check(ds, field+".local_jwks", "inline_string", "inline_bytes"); err != nil {
		return nil, err
	}
	jwks := ds.GetInlineBytes()
	if s := ds.GetInlineString(); s != "" {
		jwks = []byte(s)
	}
	keys, skipped, err := parseJWKS(jwks)
	for _, s := range skipped {
		f.warnings = append(f.warnings, fmt.Sprintf("%s.local_jwks: key skipped: %s", field, s))
	}
	if err != nil {
		// Envoy: "Invalid inline jwks for issuer"; the provider keeps no keys.
		f.warnings = append(f.warnings, fmt.Sprintf("%s.local_jwks: invalid JWKS for issuer %q, every token of this provider will be refused: %v", field, pr.issuer, err))
	}
	pr.keys = keys
	return pr, nil
}

func canonical(name string) string {
	if name == "" {
		return ""
	}
	return textproto.CanonicalMIMEHeaderKey(name)
}

// compiler holds what compiling requirements needs.
type compiler struct {
	f   *Filter
	all *extractor // every provider's locations
}

func (c *compiler) requirement(field string, r *jwtauthnv3.JwtRequirement, depth int) (*requirement, error) {
	if depth > maxRequirementDepth {
		return nil, fmt.Errorf("%s: requirements nested deeper than %d", field, maxRequirementDepth)
	}
	if r == nil {
		return &requirement{kind: reqAllowAll}, nil
	}
	if err := xdsfield.Check(r, field, "provider_name", "provider_and_audiences", "requires_any",
		"requires_all", "allow_missing_or_failed", "allow_missing"); err != nil {
		return nil, err
	}
	switch t := r.GetRequiresType().(type) {
	case *jwtauthnv3.JwtRequirement_ProviderName:
		p, err := c.provider(field+".provider_name", t.ProviderName)
		if err != nil {
			return nil, err
		}
		return &requirement{kind: reqProvider, provider: p}, nil
	case *jwtauthnv3.JwtRequirement_ProviderAndAudiences:
		pf := field + ".provider_and_audiences"
		if err := xdsfield.Check(t.ProviderAndAudiences, pf, "provider_name", "audiences"); err != nil {
			return nil, err
		}
		p, err := c.provider(pf+".provider_name", t.ProviderAndAudiences.GetProviderName())
		if err != nil {
			return nil, err
		}
		q := &requirement{kind: reqProvider, provider: p, audiences: newAudiences(t.ProviderAndAudiences.GetAudiences())}
		if q.audiences == nil {
			q.audiences = p.audiences
		}
		return q, nil
	case *jwtauthnv3.JwtRequirement_RequiresAny:
		q := &requirement{kind: reqAny}
		lf := field + ".requires_any"
		if err := xdsfield.Check(t.RequiresAny, lf, "requirements"); err != nil {
			return nil, err
		}
		if len(t.RequiresAny.GetRequirements()) < 2 {
			return nil, fmt.Errorf("%s.requirements: at least 2 requirements are required", lf)
		}
		for i, sub := range t.RequiresAny.GetRequirements() {
			sf := fmt.Sprintf("%s.requirements[%d]", lf, i)
			switch sub.GetRequiresType().(type) {
			case *jwtauthnv3.JwtRequirement_AllowMissing:
				if err := xdsfield.Check(sub.GetAllowMissing(), sf+".allow_missing"); err != nil {
					return nil, err
				}
				q.allowMissing = true
				continue
			case *jwtauthnv3.JwtRequirement_AllowMissingOrFailed:
				if err := xdsfield.Check(sub.GetAllowMissingOrFailed(), sf+".allow_missing_or_failed"); err != nil {
					return nil, err
				}
				q.allowFailed = true
				continue
			}
			child, err := c.requirement(sf, sub, depth+1)
			if err != nil {
				return nil, err
			}
			q.children = append(q.children, child)
		}
		if len(q.children) == 0 {
			// Only bypass alternatives: one verifier over every provider's locations.
			kind := reqAllowMissing
			if q.allowFailed {
				kind = reqAllowFailed
			}
			q.children = append(q.children, &requirement{kind: kind, extractor: c.all})
		}
		return q, nil
	case *jwtauthnv3.JwtRequirement_RequiresAll:
		q := &requirement{kind: reqAll}
		lf := field + ".requires_all"
		if err := xdsfield.Check(t.RequiresAll, lf, "requirements"); err != nil {
			return nil, err
		}
		if len(t.RequiresAll.GetRequirements()) < 2 {
			return nil, fmt.Errorf("%s.requirements: at least 2 requirements are required", lf)
		}
		for i, sub := range t.RequiresAll.GetRequirements() {
			child, err := c.requirement(fmt.Sprintf("%s.requirements[%d]", lf, i), sub, depth+1)
			if err != nil {
				return nil, err
			}
			q.children = append(q.children, child)
		}
		return q, nil
	case *jwtauthnv3.JwtRequirement_AllowMissingOrFailed:
		if err := xdsfield.Check(t.AllowMissingOrFailed, field+".allow_missing_or_failed"); err != nil {
			return nil, err
		}
		return &requirement{kind: reqAllowFailed, extractor: c.all}, nil
	case *jwtauthnv3.JwtRequirement_AllowMissing:
		if err := xdsfield.Check(t.AllowMissing, field+".allow_missing"); err != nil {
			return nil, err
		}
		return &requirement{kind: reqAllowMissing, extractor: c.all}, nil
	}
	return &requirement{kind: reqAllowAll}, nil
}

func (c *compiler) provider(field, name string) (*provider, error) {
	p, ok := c.f.providers[name]
	if !ok {
		return nil, fmt.Errorf("%s: Required provider ['%s'] is not configured.", field, name)
	}
	return p, nil
}

// compileRuleMatch compiles the subset of RouteMatch a rule may use: prefix, path and
// path_separated_prefix, with case_sensitive.
func compileRuleMatch(field string, m *routev3.RouteMatch) (rule, error) {
	if m == nil {
		return rule{}, fmt.Errorf("%s: missing", field)
	}
	if err := xdsfield.Check(m, field, "prefix", "path", "path_separated_prefix", "case_sensitive"); err != nil {
		return rule{}, err
	}
	r := rule{caseSensitive: m.GetCaseSensitive() == nil || m.GetCaseSensitive().GetValue()}
	switch p := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		r.kind, r.value = matchPrefix, p.Prefix
	case *routev3.RouteMatch_Path:
		r.kind, r.value = matchPath, p.Path
	case *routev3.RouteMatch_PathSeparatedPrefix:
		if strings.ContainsAny(p.PathSeparatedPrefix, "?#") || strings.HasSuffix(p.PathSeparatedPrefix, "/") {
			return rule{}, fmt.Errorf("%s.path_separated_prefix: %q must not contain ? or # nor end in /", field, p.PathSeparatedPrefix)
		}
		r.kind, r.value = matchPathSeparatedPrefix, p.PathSeparatedPrefix
	default:
		return rule{}, errors.New(field + ": a path specifier is required")
	}
	return r, nil
}

// matches implements Envoy's jwt_authn matchers on the :path (query included for prefix, as in
// Envoy; excluded for path and path_separated_prefix).
func (r *rule) matches(path string) bool {
	switch r.kind {
	case matchPrefix:
		if len(path) < len(r.value) {
			return false
		}
		if r.caseSensitive {
			return path[:len(r.value)] == r.value
		}
		return strings.EqualFold(path[:len(r.value)], r.value)
	case matchPath:
		p, _, _ := strings.Cut(path, "?")
		if r.caseSensitive {
			return p == r.value
		}
		return strings.EqualFold(p, r.value)
	case matchPathSeparatedPrefix:
		p, _, _ := strings.Cut(path, "?")
		if len(p) < len(r.value) {
			return false
		}
		head := p[:len(r.value)]
		if r.caseSensitive && head != r.value || !r.caseSensitive && !strings.EqualFold(head, r.value) {
			return false
		}
		return len(p) == len(r.value) || p[len(r.value)] == '/'
	}
	return false
}
