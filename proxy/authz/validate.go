package authz

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	rbacv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/rbac/v3"
	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
	matcherv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/matcher/v3"
)

// Envoy checks every configuration it loads against the protoc-gen-validate (PGV) rules of its
// protos (the validate.rules annotations of rbac.proto, string.proto, metadata.proto, ...) and
// rejects a config that breaks one. The trimmed types strait-proxy decodes into carry no
// validators, so this file enforces those rules itself, for the fields the RBAC compiler
// accepts (any other field is refused before this runs). Compile calls validateRBAC after
// compiling, so an error the compiler reports in its own words comes first.

// validateRBAC enforces the PGV rules of envoy.config.rbac.v3.RBAC and the messages it reaches.
func validateRBAC(path string, r *rbacv3.RBAC) error {
	if _, ok := rbacv3.RBAC_Action_name[int32(r.GetAction())]; !ok {
		return fmt.Errorf("%s.action: %d is not a defined value", path, r.GetAction())
	}
	names := make([]string, 0, len(r.GetPolicies()))
	for name := range r.GetPolicies() {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		p := r.GetPolicies()[name]
		f := policyField(path, name)
		if err := validateItems(f+".permissions", p.GetPermissions(), 1, validatePermission); err != nil {
			return err
		}
		if err := validateItems(f+".principals", p.GetPrincipals(), 1, validatePrincipal); err != nil {
			return err
		}
	}
	return nil
}

// validatePermission: the rule oneof is required; and_rules / or_rules hold at least one rule;
// any must be true; destination_port is at most 65535.
func validatePermission(field string, p *rbacv3.Permission) error {
	if p == nil {
		return nil
	}
	switch r := p.GetRule().(type) {
	case nil:
		return fmt.Errorf("%s: rule: value is required", field)
	case *rbacv3.Permission_AndRules:
		return validateItems(field+".and_rules.rules", r.AndRules.GetRules(), 1, validatePermission)
	case *rbacv3.Permission_OrRules:
		return validateItems(field+".or_rules.rules", r.OrRules.GetRules(), 1, validatePermission)
	case *rbacv3.Permission_NotRule:
		return validatePermission(field+".not_rule", r.NotRule)
	case *rbacv3.Permission_Any:
		if !r.Any {
			return fmt.Errorf("%s.any: must be true", field)
		}
	case *rbacv3.Permission_Header:
		return validateHeaderMatcher(field+".header", r.Header)
	case *rbacv3.Permission_UrlPath:
		return validatePathMatcher(field+".url_path", r.UrlPath)
	case *rbacv3.Permission_UriTemplate:
		return validateTypedExtensionConfig(field+".uri_template", r.UriTemplate)
	case *rbacv3.Permission_DestinationIp:
		return validateCIDR(field+".destination_ip", r.DestinationIp)
	case *rbacv3.Permission_DestinationPort:
		if r.DestinationPort > 65535 {
			return fmt.Errorf("%s.destination_port: %d is above 65535", field, r.DestinationPort)
		}
	case *rbacv3.Permission_Metadata:
		return validateMetadataMatcher(field+".metadata", r.Metadata)
	case *rbacv3.Permission_SourcedMetadata:
		return validateSourcedMetadata(field+".sourced_metadata", r.SourcedMetadata)
	case *rbacv3.Permission_RequestedServerName:
		return validateStringMatcher(field+".requested_server_name", r.RequestedServerName)
	}
	return nil
}

// validatePrincipal: the identifier oneof is required; and_ids / or_ids hold at least one id;
// any must be true.
func validatePrincipal(field string, p *rbacv3.Principal) error {
	if p == nil {
		return nil
	}
	switch r := p.GetIdentifier().(type) {
	case nil:
		return fmt.Errorf("%s: identifier: value is required", field)
	case *rbacv3.Principal_AndIds:
		return validateItems(field+".and_ids.ids", r.AndIds.GetIds(), 1, validatePrincipal)
	case *rbacv3.Principal_OrIds:
		return validateItems(field+".or_ids.ids", r.OrIds.GetIds(), 1, validatePrincipal)
	case *rbacv3.Principal_NotId:
		return validatePrincipal(field+".not_id", r.NotId)
	case *rbacv3.Principal_Any:
		if !r.Any {
			return fmt.Errorf("%s.any: must be true", field)
		}
	case *rbacv3.Principal_Authenticated_:
		if r.Authenticated.GetPrincipalName() != nil {
			return validateStringMatcher(field+".authenticated.principal_name", r.Authenticated.GetPrincipalName())
		}
	case *rbacv3.Principal_SourceIp:
		return validateCIDR(field+".source_ip", r.SourceIp)
	case *rbacv3.Principal_DirectRemoteIp:
		return validateCIDR(field+".direct_remote_ip", r.DirectRemoteIp)
	case *rbacv3.Principal_RemoteIp:
		return validateCIDR(field+".remote_ip", r.RemoteIp)
	case *rbacv3.Principal_Header:
		return validateHeaderMatcher(field+".header", r.Header)
	case *rbacv3.Principal_UrlPath:
		return validatePathMatcher(field+".url_path", r.UrlPath)
	case *rbacv3.Principal_Metadata:
		return validateMetadataMatcher(field+".metadata", r.Metadata)
	case *rbacv3.Principal_SourcedMetadata:
		return validateSourcedMetadata(field+".sourced_metadata", r.SourcedMetadata)
	case *rbacv3.Principal_FilterState:
		return validateFilterStateMatcher(field+".filter_state", r.FilterState)
	}
	return nil
}

// validateHeaderMatcher: name is a non-empty header name without NUL, CR or LF (PGV's
// HTTP_HEADER_NAME, not strict); prefix_match, suffix_match and contains_match are not empty;
// safe_regex_match has a regex; string_match follows StringMatcher's rules.
func validateHeaderMatcher(field string, h *routev3.HeaderMatcher) error {
	if h == nil {
		return nil
	}
	if err := minLen(field+".name", h.GetName()); err != nil {
		return err
	}
	if strings.ContainsAny(h.GetName(), "\x00\r\n") {
		return fmt.Errorf("%s.name: %q is not a valid HTTP header name (NUL, CR or LF)", field, h.GetName())
	}
	switch s := h.GetHeaderMatchSpecifier().(type) {
	case *routev3.HeaderMatcher_PrefixMatch:
		return minLen(field+".prefix_match", s.PrefixMatch)
	case *routev3.HeaderMatcher_SuffixMatch:
		return minLen(field+".suffix_match", s.SuffixMatch)
	case *routev3.HeaderMatcher_ContainsMatch:
		return minLen(field+".contains_match", s.ContainsMatch)
	case *routev3.HeaderMatcher_SafeRegexMatch:
		return validateRegex(field+".safe_regex_match", s.SafeRegexMatch)
	case *routev3.HeaderMatcher_StringMatch:
		return validateStringMatcher(field+".string_match", s.StringMatch)
	}
	return nil
}

// validateStringMatcher: the match_pattern oneof is required; prefix, suffix and contains are
// not empty; safe_regex is set and has a regex.
func validateStringMatcher(field string, m *matcherv3.StringMatcher) error {
	if m == nil {
		return nil
	}
	switch p := m.GetMatchPattern().(type) {
	case nil:
		return fmt.Errorf("%s: match_pattern: value is required", field)
	case *matcherv3.StringMatcher_Prefix:
		return minLen(field+".prefix", p.Prefix)
	case *matcherv3.StringMatcher_Suffix:
		return minLen(field+".suffix", p.Suffix)
	case *matcherv3.StringMatcher_Contains:
		return minLen(field+".contains", p.Contains)
	case *matcherv3.StringMatcher_SafeRegex:
		if p.SafeRegex == nil {
			return fmt.Errorf("%s.safe_regex: value is required", field)
		}
		return validateRegex(field+".safe_regex", p.SafeRegex)
	}
	return nil
}

// validateRegex: a RegexMatcher's regex is not empty.
func validateRegex(field string, r *matcherv3.RegexMatcher) error {
	if r == nil {
		return nil
	}
	return minLen(field+".regex", r.GetRegex())
}

// validatePathMatcher: the rule oneof is required and path is set.
func validatePathMatcher(field string, m *matcherv3.PathMatcher) error {
	if m == nil {
		return nil
	}
	if m.GetRule() == nil {
		return fmt.Errorf("%s: rule: value is required", field)
	}
	if m.GetPath() == nil {
		return fmt.Errorf("%s.path: value is required", field)
	}
	return validateStringMatcher(field+".path", m.GetPath())
}

// validateTypedExtensionConfig: name is not empty and typed_config is set.
func validateTypedExtensionConfig(field string, tc *corev3.TypedExtensionConfig) error {
	if tc == nil {
		return nil
	}
	if err := minLen(field+".name", tc.GetName()); err != nil {
		return err
	}
	if tc.GetTypedConfig() == nil {
		return fmt.Errorf("%s.typed_config: value is required", field)
	}
	return nil
}

// validateCIDR: address_prefix is not empty and prefix_len is at most 128.
func validateCIDR(field string, c *corev3.CidrRange) error {
	if c == nil {
		return nil
	}
	if err := minLen(field+".address_prefix", c.GetAddressPrefix()); err != nil {
		return err
	}
	if c.GetPrefixLen() != nil && c.GetPrefixLen().GetValue() > 128 {
		return fmt.Errorf("%s.prefix_len: %d is above 128", field, c.GetPrefixLen().GetValue())
	}
	return nil
}

// validateMetadataMatcher: filter is not empty; path has at least one segment, each with a
// non-empty key; value is set and follows ValueMatcher's rules.
func validateMetadataMatcher(field string, m *matcherv3.MetadataMatcher) error {
	if m == nil {
		return nil
	}
	if err := minLen(field+".filter", m.GetFilter()); err != nil {
		return err
	}
	if err := minItems(field+".path", len(m.GetPath()), 1); err != nil {
		return err
	}
	for i, seg := range m.GetPath() {
		f := fmt.Sprintf("%s.path[%d]", field, i)
		if seg.GetSegment() == nil {
			return fmt.Errorf("%s: segment: value is required", f)
		}
		if err := minLen(f+".key", seg.GetKey()); err != nil {
			return err
		}
	}
	if m.GetValue() == nil {
		return fmt.Errorf("%s.value: value is required", field)
	}
	return validateValueMatcher(field+".value", m.GetValue())
}

// validateValueMatcher: the match_pattern oneof is required, and that of a double_match and a
// list_match too; an or_match holds at least two matchers.
func validateValueMatcher(field string, v *matcherv3.ValueMatcher) error {
	if v == nil {
		return nil
	}
	switch p := v.GetMatchPattern().(type) {
	case nil:
		return fmt.Errorf("%s: match_pattern: value is required", field)
	case *matcherv3.ValueMatcher_DoubleMatch:
		if p.DoubleMatch != nil && p.DoubleMatch.GetMatchPattern() == nil {
			return fmt.Errorf("%s.double_match: match_pattern: value is required", field)
		}
	case *matcherv3.ValueMatcher_StringMatch:
		return validateStringMatcher(field+".string_match", p.StringMatch)
	case *matcherv3.ValueMatcher_ListMatch:
		if p.ListMatch == nil {
			return nil
		}
		if p.ListMatch.GetMatchPattern() == nil {
			return fmt.Errorf("%s.list_match: match_pattern: value is required", field)
		}
		return validateValueMatcher(field+".list_match.one_of", p.ListMatch.GetOneOf())
	case *matcherv3.ValueMatcher_OrMatch:
		if p.OrMatch == nil {
			return nil
		}
		return validateItems(field+".or_match.value_matchers", p.OrMatch.GetValueMatchers(), 2, validateValueMatcher)
	}
	return nil
}

// validateSourcedMetadata: metadata_matcher is set and valid; metadata_source is a defined value.
func validateSourcedMetadata(field string, s *rbacv3.SourcedMetadata) error {
	if s == nil {
		return nil
	}
	if s.GetMetadataMatcher() == nil {
		return fmt.Errorf("%s.metadata_matcher: value is required", field)
	}
	if _, ok := rbacv3.MetadataSource_name[int32(s.GetMetadataSource())]; !ok {
		return fmt.Errorf("%s.metadata_source: %d is not a defined value", field, s.GetMetadataSource())
	}
	return validateMetadataMatcher(field+".metadata_matcher", s.GetMetadataMatcher())
}

// validateFilterStateMatcher: key is not empty and the matcher oneof is required.
func validateFilterStateMatcher(field string, m *matcherv3.FilterStateMatcher) error {
	if m == nil {
		return nil
	}
	if err := minLen(field+".key", m.GetKey()); err != nil {
		return err
	}
	if m.GetStringMatch() == nil { // the compiler refuses the other member, address_match
		return fmt.Errorf("%s: matcher: value is required", field)
	}
	return validateStringMatcher(field+".string_match", m.GetStringMatch())
}

// validateURITemplateConfig enforces the PGV rule of
// envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig: path_template holds 1 to
// 256 characters.
func validateURITemplateConfig(field string, pathTemplate string) error {
	if err := minLen(field+".path_template", pathTemplate); err != nil {
		return err
	}
	if n := utf8.RuneCountInString(pathTemplate); n > maxPathTemplateLen {
		return fmt.Errorf("%s.path_template: %d characters, at most %d", field, n, maxPathTemplateLen)
	}
	return nil
}

// maxPathTemplateLen is uri_template.proto's max_len for path_template.
const maxPathTemplateLen = 256

// validateItems enforces PGV's repeated.min_items of min on items, then each item's rules.
func validateItems[T any](field string, items []T, min int, each func(string, T) error) error {
	if err := minItems(field, len(items), min); err != nil {
		return err
	}
	for i, it := range items {
		if err := each(fmt.Sprintf("%s[%d]", field, i), it); err != nil {
			return err
		}
	}
	return nil
}

// minItems is PGV's repeated.min_items.
func minItems(field string, n, min int) error {
	if n < min {
		if min == 1 {
			return fmt.Errorf("%s: empty", field)
		}
		return fmt.Errorf("%s: %d items, want at least %d", field, n, min)
	}
	return nil
}

// minLen is PGV's string.min_len of 1.
func minLen(field, s string) error {
	if s == "" {
		return fmt.Errorf("%s: empty", field)
	}
	return nil
}
