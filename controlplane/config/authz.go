package config

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"

	typev1beta1 "istio.io/api/type/v1beta1"
)

// The meaning of AuthorizationPolicy and RequestAuthentication values, shared by validation and
// the translator so that both read a policy the same way, as Istio does
// (https://istio.io/latest/docs/reference/config/security/authorization-policy/,
// https://istio.io/latest/docs/reference/config/security/conditions/). Nothing here builds Envoy
// config. All functions are safe for concurrent use.

// DryRunAnnotation is the annotation that makes an AuthorizationPolicy (action ALLOW or DENY)
// dry-run: evaluated and logged, never enforced. Its value is parsed with strconv.ParseBool, as
// Istio does ("true", "false", "1", "0", "t", "f", in any case that ParseBool accepts).
const DryRunAnnotation = "istio.io/dry-run"

// DryRun reports whether o is marked dry-run with DryRunAnnotation. It is false, with no error,
// when the annotation is absent. It is an error when the value is not a boolean, or when o is not
// an AuthorizationPolicy with action ALLOW or DENY (Validate rejects such objects, so for a
// validated object the error is nil).
func DryRun(o *Object) (bool, error) {
	if o == nil {
		return false, fmt.Errorf("nil object")
	}
	v, ok := o.Annotations[DryRunAnnotation]
	if !ok {
		return false, nil
	}
	if msg := dryRunErr(o, v); msg != "" {
		return false, fmt.Errorf("%s: annotation %s: %s", o.Key(), DryRunAnnotation, msg)
	}
	b, _ := strconv.ParseBool(v)
	return b, nil
}

// MatchType is how a string value of an AuthorizationPolicy matches (see ParseValueMatch).
type MatchType uint8

// The match types of AuthorizationPolicy values.
const (
	MatchExact    MatchType = iota // "abc": the value is exactly "abc"
	MatchPrefix                    // "abc*": the value starts with "abc"
	MatchSuffix                    // "*abc": the value ends with "abc"
	MatchPresence                  // "*": the value is present and not empty
)

func (t MatchType) String() string {
	switch t {
	case MatchExact:
		return "exact"
	case MatchPrefix:
		return "prefix"
	case MatchSuffix:
		return "suffix"
	case MatchPresence:
		return "presence"
	}
	return "MatchType(" + strconv.Itoa(int(t)) + ")"
}

// ValueMatch is one string value of an AuthorizationPolicy rule, parsed.
type ValueMatch struct {
	Type  MatchType
	Value string // without the '*'; empty for MatchPresence
}

// ParseValueMatch parses a string value of an AuthorizationPolicy rule (principals, hosts,
// methods, paths without a template, condition values, ...) as Istio does: "*" alone is a
// presence match, a leading '*' a suffix match, a trailing '*' a prefix match, anything else an
// exact match. Validation rejects values with a '*' elsewhere, except in namespaces, where Istio
// reads every '*' as "any characters" (a glob) and ParseValueMatch does not apply. Hosts match
// case-insensitively; every other field case-sensitively.
func ParseValueMatch(v string) ValueMatch {
	switch {
	case v == "*":
		return ValueMatch{Type: MatchPresence}
	case strings.HasPrefix(v, "*"):
		return ValueMatch{Type: MatchSuffix, Value: v[1:]}
	case strings.HasSuffix(v, "*"):
		return ValueMatch{Type: MatchPrefix, Value: v[:len(v)-1]}
	}
	return ValueMatch{Type: MatchExact, Value: v}
}

// Path template operators of Operation.paths: "{*}" matches one path segment, "{**}" zero or more.
const (
	PathMatchOne = "{*}"
	PathMatchAny = "{**}"
)

// IsPathTemplate reports whether an Operation path is an Envoy URI template (it contains "{*}"
// or "{**}") rather than an exact, prefix, suffix or presence match.
func IsPathTemplate(path string) bool {
	return strings.Contains(path, PathMatchOne) || strings.Contains(path, PathMatchAny)
}

// The attributes of AuthorizationPolicy conditions (when.key), as listed in
// https://istio.io/latest/docs/reference/config/security/conditions/.
const (
	AttrRequestHeaders       = "request.headers"                     // request.headers[NAME]
	AttrRequestInlineHeaders = "request.experimental.inline.headers" // request.experimental.inline.headers[NAME]
	AttrSourceIP             = "source.ip"
	AttrRemoteIP             = "remote.ip"
	AttrSourceNamespace      = "source.namespace"
	AttrSourceServiceAccount = "source.serviceAccount"
	AttrSourcePrincipal      = "source.principal"
	AttrRequestPrincipal     = "request.auth.principal"
	AttrRequestAudiences     = "request.auth.audiences"
	AttrRequestPresenter     = "request.auth.presenter"
	AttrRequestClaims        = "request.auth.claims" // request.auth.claims[NAME] or [NAME][NESTED]...
	AttrDestinationIP        = "destination.ip"
	AttrDestinationPort      = "destination.port"
	AttrConnectionSNI        = "connection.sni"
	AttrEnvoyFilters         = "experimental.envoy.filters" // experimental.envoy.filters.FILTER[KEY]
)

// ConditionKey is a parsed condition key (when.key) of an AuthorizationPolicy.
type ConditionKey struct {
	// Attribute is one of the Attr constants.
	Attribute string
	// Names are the bracketed names: the header of request.headers[NAME], the claim path of
	// request.auth.claims[a][b] (one name per level), the metadata key of
	// experimental.envoy.filters.FILTER[KEY]. Empty for the other attributes.
	Names []string
	// Filter is the Envoy dynamic metadata namespace of an experimental.envoy.filters key:
	// "envoy.filters.http.foo" for "experimental.envoy.filters.http.foo[key]".
	Filter string
}

// HTTPOnly reports whether the attribute exists only for HTTP requests (headers and JWT
// attributes), not for plain TCP connections.
func (k ConditionKey) HTTPOnly() bool {
	switch k.Attribute {
	case AttrRequestHeaders, AttrRequestInlineHeaders, AttrRequestPrincipal, AttrRequestAudiences,
		AttrRequestPresenter, AttrRequestClaims:
		return true
	}
	return false
}

// ParseConditionKey parses a condition key. It returns an error for a key that is not one of
// Istio's attributes, for the attributes Istio removed (destination.labels, destination.namespace,
// destination.name, destination.user) and for a malformed bracketed name.
func ParseConditionKey(key string) (ConditionKey, error) {
	switch key {
	case AttrSourceIP, AttrRemoteIP, AttrSourceNamespace, AttrSourceServiceAccount, AttrSourcePrincipal,
		AttrRequestPrincipal, AttrRequestAudiences, AttrRequestPresenter, AttrDestinationIP,
		AttrDestinationPort, AttrConnectionSNI:
		return ConditionKey{Attribute: key}, nil
	case "destination.namespace":
		return ConditionKey{}, fmt.Errorf("attribute %s is replaced by the policy's metadata.namespace", key)
	case "destination.name", "destination.user":
		return ConditionKey{}, fmt.Errorf("attribute %s was removed with Istio's v1alpha1 RBAC API", key)
	}
	for _, a := range []string{AttrRequestHeaders, AttrRequestInlineHeaders, AttrRequestClaims} {
		if rest, ok := strings.CutPrefix(key, a); ok && strings.HasPrefix(rest, "[") {
			names, err := bracketNames(rest, a == AttrRequestClaims)
			if err != nil {
				return ConditionKey{}, fmt.Errorf("bad key %s: %v", quoteShort(key), err)
			}
			return ConditionKey{Attribute: a, Names: names}, nil
		}
	}
	if rest, ok := strings.CutPrefix(key, AttrEnvoyFilters+"."); ok {
		filter, names, found := strings.Cut(rest, "[")
		if !found || filter == "" {
			return ConditionKey{}, fmt.Errorf("bad key %s: want %s.FILTER[KEY]", quoteShort(key), AttrEnvoyFilters)
		}
		n, err := bracketNames("["+names, false)
		if err != nil {
			return ConditionKey{}, fmt.Errorf("bad key %s: %v", quoteShort(key), err)
		}
		return ConditionKey{Attribute: AttrEnvoyFilters, Filter: "envoy.filters." + filter, Names: n}, nil
	}
	if strings.HasPrefix(key, "destination.labels") {
		return ConditionKey{}, fmt.Errorf("attribute %s is replaced by the policy's selector", quoteShort(key))
	}
	for _, a := range []string{AttrRequestHeaders, AttrRequestInlineHeaders, AttrRequestClaims} {
		if key == a {
			return ConditionKey{}, fmt.Errorf("bad key %s: want %s[NAME]", quoteShort(key), a)
		}
	}
	return ConditionKey{}, fmt.Errorf("unknown attribute %s (see https://istio.io/latest/docs/reference/config/security/conditions/)", quoteShort(key))
}

// bracketNames parses "[a]" or, when nested, "[a][b]...": non-empty names without brackets.
func bracketNames(s string, nested bool) ([]string, error) {
	var names []string
	for s != "" {
		if s[0] != '[' {
			return nil, fmt.Errorf("expected '[' at %s", quoteShort(s))
		}
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return nil, fmt.Errorf("missing ']'")
		}
		name := s[1:end]
		switch {
		case name == "":
			return nil, fmt.Errorf("empty name in brackets")
		case strings.ContainsAny(name, "["):
			return nil, fmt.Errorf("'[' inside a name")
		}
		names = append(names, name)
		s = s[end+1:]
		if len(names) > 1 && !nested {
			return nil, fmt.Errorf("only one bracketed name is allowed")
		}
	}
	return names, nil
}

// ParseServiceAccount splits a serviceAccounts value ("namespace/name", or "name" for a service
// account in the policy's own namespace) into its namespace and name.
func ParseServiceAccount(value, policyNamespace string) (namespace, name string) {
	if ns, sa, ok := strings.Cut(value, "/"); ok {
		return ns, sa
	}
	return policyNamespace, value
}

// targetRefSpec is implemented by the specs of the kinds that accept targetRef and targetRefs.
type targetRefSpec interface {
	GetTargetRef() *typev1beta1.PolicyTargetReference
	GetTargetRefs() []*typev1beta1.PolicyTargetReference
}

// PolicyTargetRefs returns the resources a policy (*securityv1beta1.AuthorizationPolicy or
// *securityv1beta1.RequestAuthentication) is attached to: its targetRefs, or its deprecated
// singular targetRef, or nil when the policy uses a selector (or applies to the whole
// namespace). The result must not be modified.
func PolicyTargetRefs(spec targetRefSpec) []*typev1beta1.PolicyTargetReference {
	if refs := spec.GetTargetRefs(); len(refs) > 0 {
		return refs
	}
	if ref := spec.GetTargetRef(); ref != nil {
		return []*typev1beta1.PolicyTargetReference{ref}
	}
	return nil
}

// TargetRefGroup returns the API group of a target reference with Kubernetes' core group as ""
// (targetRefs may write it as "" or "core").
func TargetRefGroup(ref *typev1beta1.PolicyTargetReference) string {
	if g := ref.GetGroup(); g != "core" {
		return g
	}
	return ""
}

// JWKSURI is a parsed jwksUri of a RequestAuthentication JWT rule.
type JWKSURI struct {
	Host string // host name or IP, without brackets
	Port int    // explicit port, or 80 for http and 443 for https
	TLS  bool   // https
}

// ParseJWKSURI parses a jwksUri: an absolute http or https URL with a host, as Istio fetches it.
func ParseJWKSURI(uri string) (JWKSURI, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return JWKSURI{}, fmt.Errorf("invalid URL %s", quoteShort(uri))
	}
	var j JWKSURI
	switch u.Scheme {
	case "http":
		j.Port = 80
	case "https":
		j.Port, j.TLS = 443, true
	default:
		return JWKSURI{}, fmt.Errorf("URL %s must have scheme http:// or https://", quoteShort(uri))
	}
	if j.Host = u.Hostname(); j.Host == "" {
		return JWKSURI{}, fmt.Errorf("URL %s has no host", quoteShort(uri))
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return JWKSURI{}, fmt.Errorf("URL %s: port must be in 1-65535", quoteShort(uri))
		}
		j.Port = n
	}
	return j, nil
}
