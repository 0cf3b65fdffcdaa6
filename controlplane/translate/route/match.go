package route

import (
	"regexp"
	"sort"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"
)

// maxRegexLen bounds regexes taken from config; Istio's validation applies a similar program-size
// limit, and Envoy rejects oversized RE2 programs at runtime.
const maxRegexLen = 4096

// matchApplies reports whether a match block applies to the proxy and port being generated. The
// conditions Envoy cannot see — port, gateways, sourceLabels, sourceNamespace — are evaluated
// here, at generation time, as Istio does: a block that names gateways applies to those gateways
// (its sourceLabels and sourceNamespace are then not consulted, as in Istio); otherwise it
// applies where the VirtualService does, to proxies with the sourceLabels and sourceNamespace.
func (c *routeCtx) matchApplies(m *networking.HTTPMatchRequest) bool {
	if m.GetPort() != 0 && m.GetPort() != c.port {
		return false
	}
	if len(m.GetGateways()) > 0 {
		return contains(resolveGateways(m.GetGateways(), c.rootNS), c.gateway)
	}
	if !contains(c.vsGateways, c.gateway) {
		return false
	}
	if len(m.GetSourceLabels()) > 0 && !labelsMatch(m.GetSourceLabels(), c.b.in.Proxy.Labels) {
		return false
	}
	if m.GetSourceNamespace() != "" && m.GetSourceNamespace() != c.b.in.Proxy.Namespace {
		return false
	}
	return true
}

// isCatchAll reports whether a match block matches every request once its generation-time
// conditions hold: no request conditions at all, or only a "/" prefix (or ".*" regex) on the URI.
// Routes after a catch-all can never match; like Istio, generation stops there.
func isCatchAll(m *networking.HTTPMatchRequest) bool {
	if m == nil {
		return true
	}
	if m.Scheme != nil || m.Method != nil || m.Authority != nil || len(m.Headers) > 0 ||
		len(m.QueryParams) > 0 || len(m.WithoutHeaders) > 0 {
		return false
	}
	switch u := m.GetUri().GetMatchType().(type) {
	case nil:
		return true
	case *networking.StringMatch_Prefix:
		return u.Prefix == "/" || u.Prefix == ""
	case *networking.StringMatch_Regex:
		return u.Regex == "*" || u.Regex == ".*"
	}
	return false
}

// translateMatch maps an HTTPMatchRequest to an Envoy RouteMatch. A nil match is the catch-all
// prefix "/".
func translateMatch(m *networking.HTTPMatchRequest) (*routev3.RouteMatch, error) {
	out := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}
	if m == nil {
		return out, nil
	}
	switch u := m.GetUri().GetMatchType().(type) {
	case nil:
	case *networking.StringMatch_Exact:
		out.PathSpecifier = &routev3.RouteMatch_Path{Path: u.Exact}
	case *networking.StringMatch_Prefix:
		if u.Prefix != "" {
			out.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: u.Prefix}
		}
	case *networking.StringMatch_Regex:
		if err := checkRegex(u.Regex); err != nil {
			return nil, atField("uri.regex", err)
		}
		out.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: u.Regex}}
	}
	if m.IgnoreUriCase {
		out.CaseSensitive = wrapperspb.Bool(false)
	}
	pseudo := []struct {
		field, header string
		sm            *networking.StringMatch
	}{{"scheme", ":scheme", m.Scheme}, {"method", ":method", m.Method}, {"authority", ":authority", m.Authority}}
	for _, p := range pseudo {
		if p.sm == nil {
			continue
		}
		hm, err := headerMatcher(p.header, p.sm, false)
		if err != nil {
			return nil, atField(p.field, err)
		}
		out.Headers = append(out.Headers, hm)
	}
	for _, k := range sortedKeys(m.Headers) {
		hm, err := headerMatcher(k, m.Headers[k], false)
		if err != nil {
			return nil, atField("headers["+k+"]", err)
		}
		out.Headers = append(out.Headers, hm)
	}
	for _, k := range sortedKeys(m.WithoutHeaders) {
		hm, err := headerMatcher(k, m.WithoutHeaders[k], true)
		if err != nil {
			return nil, atField("withoutHeaders["+k+"]", err)
		}
		out.Headers = append(out.Headers, hm)
	}
	for _, k := range sortedKeys(m.QueryParams) {
		qm := &routev3.QueryParameterMatcher{Name: k}
		sm := m.QueryParams[k]
		if isPresenceMatch(sm) {
			qm.QueryParameterMatchSpecifier = &routev3.QueryParameterMatcher_PresentMatch{PresentMatch: true}
		} else {
			s, err := stringMatcher(sm, false)
			if err != nil {
				return nil, atField("queryParams["+k+"]", err)
			}
			qm.QueryParameterMatchSpecifier = &routev3.QueryParameterMatcher_StringMatch{StringMatch: s}
		}
		out.QueryParameters = append(out.QueryParameters, qm)
	}
	return out, nil
}

// isPresenceMatch reports whether a StringMatch only asks for presence: empty ({}), regex "*"
// (not RE2: Istio reads it as "present"), or an empty prefix (Envoy rejects empty prefixes, and
// an empty prefix matches any present value).
func isPresenceMatch(sm *networking.StringMatch) bool {
	switch t := sm.GetMatchType().(type) {
	case nil:
		return true
	case *networking.StringMatch_Prefix:
		return t.Prefix == ""
	case *networking.StringMatch_Regex:
		return t.Regex == "*"
	}
	return false
}

// headerMatcher maps one header condition. invert is true for withoutHeaders: the request matches
// when the condition does not hold — for a presence condition, when the header is absent; for a
// value condition, also when the header is absent (treat_missing_header_as_empty, as Istio).
func headerMatcher(name string, sm *networking.StringMatch, invert bool) (*routev3.HeaderMatcher, error) {
	hm := &routev3.HeaderMatcher{Name: name, InvertMatch: invert}
	if isPresenceMatch(sm) {
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}
		return hm, nil
	}
	s, err := stringMatcher(sm, false)
	if err != nil {
		return nil, err
	}
	hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: s}
	hm.TreatMissingHeaderAsEmpty = invert
	return hm, nil
}

// stringMatcher maps an Istio StringMatch to Envoy's; a nil match type is an error (callers
// handle presence first).
func stringMatcher(sm *networking.StringMatch, ignoreCase bool) (*matcherv3.StringMatcher, error) {
	out := &matcherv3.StringMatcher{IgnoreCase: ignoreCase}
	switch t := sm.GetMatchType().(type) {
	case *networking.StringMatch_Exact:
		out.MatchPattern = &matcherv3.StringMatcher_Exact{Exact: t.Exact}
	case *networking.StringMatch_Prefix:
		if t.Prefix == "" {
			return nil, errf("prefix", "empty prefix")
		}
		out.MatchPattern = &matcherv3.StringMatcher_Prefix{Prefix: t.Prefix}
	case *networking.StringMatch_Regex:
		if err := checkRegex(t.Regex); err != nil {
			return nil, atField("regex", err)
		}
		out.MatchPattern = &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: t.Regex}}
	default:
		return nil, errf("", "no exact, prefix or regex")
	}
	return out, nil
}

// checkRegex rejects regexes RE2 (and so Envoy) would reject, or that exceed the size limit.
func checkRegex(re string) error {
	if re == "" {
		return errf("", "empty regex")
	}
	if len(re) > maxRegexLen {
		return errf("", "regex longer than %d bytes", maxRegexLen)
	}
	if _, err := regexp.Compile(re); err != nil {
		return errf("", "invalid RE2 regex: %v", err)
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// labelsMatch reports whether labels carry every key and value of selector.
func labelsMatch(selector, labels map[string]string) bool {
	for k, v := range selector {
		if lv, ok := labels[k]; !ok || lv != v {
			return false
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
