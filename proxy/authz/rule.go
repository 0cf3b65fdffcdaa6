package authz

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/strait-mesh/strait/proxy/matcher"
	"github.com/strait-mesh/strait/proxy/xdsfield"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	rbacv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/rbac/v3"
	uritemplatev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/path/match/uri_template/v3"
	matcherv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/matcher/v3"
	typev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/v3"
)

// MaxRuleDepth bounds the nesting of and/or/not rules and ids (hostile config). Protobuf's C++
// parser, and so Envoy, refuses messages nested deeper than 100 levels; Istio's output nests 4.
const MaxRuleDepth = 100

// uriTemplateType is the type URL of the only uri_template extension Envoy has.
const uriTemplateType = "type.googleapis.com/envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig"

type op uint8

const (
	opAny op = iota
	opAnd
	opOr
	opNot
	opHeader
	opURLPath
	opURITemplate
	opDestIP
	opDestPort
	opDestPortRange
	opMetadata
	opSNI
	opAuthenticated
	opSourceIP
	opDirectRemoteIP
	opRemoteIP
	opFilterState
)

// rule is one compiled Permission or Principal. Evaluation switches on op; only the fields the
// op needs are set.
type rule struct {
	op     op
	kids   []rule           // and, or, not (one)
	sm     *matcher.String  // url_path, requested_server_name, authenticated (nil: any peer), filter_state
	hdr    *headerMatcher   // header
	tmpl   *uriTemplate     // uri_template
	meta   *metadataMatcher // metadata, sourced_metadata
	prefix netip.Prefix     // destination_ip, source_ip, direct_remote_ip, remote_ip
	lo, hi uint32           // destination_port (lo), destination_port_range [lo, hi)
	key    string           // filter_state key
}

func compilePermission(field string, p *rbacv3.Permission, depth int) (rule, error) {
	if p == nil {
		return rule{}, fmt.Errorf("%s: missing permission", field)
	}
	if depth > MaxRuleDepth {
		return rule{}, fmt.Errorf("%s: rules nested deeper than %d", field, MaxRuleDepth)
	}
	if err := xdsfield.Check(p, field, "and_rules", "or_rules", "any", "header", "url_path",
		"destination_ip", "destination_port", "destination_port_range", "metadata", "not_rule",
		"requested_server_name", "uri_template", "sourced_metadata"); err != nil {
		return rule{}, err
	}
	switch r := p.GetRule().(type) {
	case *rbacv3.Permission_AndRules:
		return compilePermissionSet(field+".and_rules", opAnd, r.AndRules, depth)
	case *rbacv3.Permission_OrRules:
		return compilePermissionSet(field+".or_rules", opOr, r.OrRules, depth)
	case *rbacv3.Permission_NotRule:
		k, err := compilePermission(field+".not_rule", r.NotRule, depth+1)
		if err != nil {
			return rule{}, err
		}
		return rule{op: opNot, kids: []rule{k}}.simplified(), nil
	case *rbacv3.Permission_Any:
		return rule{op: opAny}, nil
	case *rbacv3.Permission_Header:
		hm, err := compileHeaderMatcher(field+".header", r.Header)
		if err != nil {
			return rule{}, err
		}
		return rule{op: opHeader, hdr: hm}, nil
	case *rbacv3.Permission_UrlPath:
		sm, err := compilePathMatcher(field+".url_path", r.UrlPath)
		if err != nil {
			return rule{}, err
		}
		return rule{op: opURLPath, sm: sm}, nil
	case *rbacv3.Permission_UriTemplate:
		t, err := compileURITemplateExtension(field+".uri_template", r.UriTemplate)
		if err != nil {
			return rule{}, err
		}
		return rule{op: opURITemplate, tmpl: t}, nil
	case *rbacv3.Permission_DestinationIp:
		pfx, err := compileCIDR(field+".destination_ip", r.DestinationIp)
		if err != nil {
			return rule{}, err
		}
		return rule{op: opDestIP, prefix: pfx}, nil
	case *rbacv3.Permission_DestinationPort:
		if r.DestinationPort > 65535 {
			return rule{}, fmt.Errorf("%s.destination_port: %d is not a port", field, r.DestinationPort)
		}
		return rule{op: opDestPort, lo: r.DestinationPort}, nil
	case *rbacv3.Permission_DestinationPortRange:
		lo, hi, err := compilePortRange(field+".destination_port_range", r.DestinationPortRange)
		if err != nil {
			return rule{}, err
		}
		return rule{op: opDestPortRange, lo: lo, hi: hi}, nil
	case *rbacv3.Permission_Metadata:
		mm, err := compileMetadataMatcher(field+".metadata", r.Metadata)
		if err != nil {
			return rule{}, err
		}
		return rule{op: opMetadata, meta: mm}, nil
	case *rbacv3.Permission_SourcedMetadata:
		mm, err := compileSourcedMetadata(field+".sourced_metadata", r.SourcedMetadata)
		if err != nil {
			return rule{}, err
		}
		return rule{op: opMetadata, meta: mm}, nil
	case *rbacv3.Permission_RequestedServerName:
		sm, err := matcher.CompileString(field+".requested_server_name", r.RequestedServerName, matchOptions)
		if err != nil {
			return rule{}, err
		}
		return rule{op: opSNI, sm: &sm}, nil
	}
	return rule{}, fmt.Errorf("%s: no rule set", field)
}

func compilePermissionSet(field string, o op, s *rbacv3.Permission_Set, depth int) (rule, error) {
	if err := xdsfield.Check(s, field, "rules"); err != nil {
		return rule{}, err
	}
	if len(s.GetRules()) == 0 {
		return rule{}, fmt.Errorf("%s.rules: empty", field)
	}
	r := rule{op: o, kids: make([]rule, 0, len(s.GetRules()))}
	for i, p := range s.GetRules() {
		k, err := compilePermission(fmt.Sprintf("%s.rules[%d]", field, i), p, depth+1)
		if err != nil {
			return rule{}, err
		}
		r.kids = append(r.kids, k)
	}
	return r.simplified(), nil
}

func compilePrincipal(field string, p *rbacv3.Principal, depth int) (rule, error) {
	if p == nil {
		return rule{}, fmt.Errorf("%s: missing principal", field)
	}
	if depth > MaxRuleDepth {
		return rule{}, fmt.Errorf("%s: ids nested deeper than %d", field, MaxRuleDepth)
	}
	if err := xdsfield.Check(p, field, "and_ids", "or_ids", "any", "authenticated", "source_ip",
		"direct_remote_ip", "remote_ip", "header", "url_path", "metadata", "filter_state",
		"not_id", "sourced_metadata"); err != nil {
		return rule{}, err
	}
	switch r := p.GetIdentifier().(type) {
	case *rbacv3.Principal_AndIds:
		return compilePrincipalSet(field+".and_ids", opAnd, r.AndIds, depth)
	case *rbacv3.Principal_OrIds:
		return compilePrincipalSet(field+".or_ids", opOr, r.OrIds, depth)
	case *rbacv3.Principal_NotId:
		k, err := compilePrincipal(field+".not_id", r.NotId, depth+1)
		if err != nil {
			return rule{}, err
		}
		return rule{op: opNot, kids: []rule{k}}.simplified(), nil
	case *rbacv3.Principal_Any:
		return rule{op: opAny}, nil
	case *rbacv3.Principal_Authenticated_:
		f := field + ".authenticated"
		if err := xdsfield.Check(r.Authenticated, f, "principal_name"); err != nil {
			return rule{}, err
		}
		out := rule{op: opAuthenticated}
		if pn := r.Authenticated.GetPrincipalName(); pn != nil {
			sm, err := matcher.CompileString(f+".principal_name", pn, matchOptions)
			if err != nil {
				return rule{}, err
			}
			out.sm = &sm
		}
		return out, nil
	case *rbacv3.Principal_SourceIp:
		pfx, err := compileCIDR(field+".source_ip", r.SourceIp)
		if err != nil {
			return rule{}, err
		}
		return rule{op: opSourceIP, prefix: pfx}, nil
	case *rbacv3.Principal_DirectRemoteIp:
		pfx, err := compileCIDR(field+".direct_remote_ip", r.DirectRemoteIp)
		if err != nil {
			return rule{}, err
		}
		return rule{op: opDirectRemoteIP, prefix: pfx}, nil
	case *rbacv3.Principal_RemoteIp:
		pfx, err := compileCIDR(field+".remote_ip", r.RemoteIp)
		if err != nil {
			return rule{}, err
		}
		return rule{op: opRemoteIP, prefix: pfx}, nil
	case *rbacv3.Principal_Header:
		hm, err := compileHeaderMatcher(field+".header", r.Header)
		if err != nil {
			return rule{}, err
		}
		return rule{op: opHeader, hdr: hm}, nil
	case *rbacv3.Principal_UrlPath:
		sm, err := compilePathMatcher(field+".url_path", r.UrlPath)
		if err != nil {
			return rule{}, err
		}
		return rule{op: opURLPath, sm: sm}, nil
	case *rbacv3.Principal_Metadata:
		mm, err := compileMetadataMatcher(field+".metadata", r.Metadata)
		if err != nil {
			return rule{}, err
		}
		return rule{op: opMetadata, meta: mm}, nil
	case *rbacv3.Principal_SourcedMetadata:
		mm, err := compileSourcedMetadata(field+".sourced_metadata", r.SourcedMetadata)
		if err != nil {
			return rule{}, err
		}
		return rule{op: opMetadata, meta: mm}, nil
	case *rbacv3.Principal_FilterState:
		return compileFilterState(field+".filter_state", r.FilterState)
	}
	return rule{}, fmt.Errorf("%s: no identifier set", field)
}

func compilePrincipalSet(field string, o op, s *rbacv3.Principal_Set, depth int) (rule, error) {
	if err := xdsfield.Check(s, field, "ids"); err != nil {
		return rule{}, err
	}
	if len(s.GetIds()) == 0 {
		return rule{}, fmt.Errorf("%s.ids: empty", field)
	}
	r := rule{op: o, kids: make([]rule, 0, len(s.GetIds()))}
	for i, p := range s.GetIds() {
		k, err := compilePrincipal(fmt.Sprintf("%s.ids[%d]", field, i), p, depth+1)
		if err != nil {
			return rule{}, err
		}
		r.kids = append(r.kids, k)
	}
	return r.simplified(), nil
}

// compilePathMatcher compiles an envoy.type.matcher.v3.PathMatcher.
func compilePathMatcher(field string, pm *matcherv3.PathMatcher) (*matcher.String, error) {
	if err := xdsfield.Check(pm, field, "path"); err != nil {
		return nil, err
	}
	sm, err := matcher.CompileString(field+".path", pm.GetPath(), matchOptions)
	if err != nil {
		return nil, err
	}
	return &sm, nil
}

func compileURITemplateExtension(field string, tc *corev3.TypedExtensionConfig) (*uriTemplate, error) {
	if err := xdsfield.Check(tc, field, "name", "typed_config"); err != nil {
		return nil, err
	}
	if tc.GetTypedConfig().GetTypeUrl() != uriTemplateType {
		return nil, xdsfield.Unsupported(field+".typed_config", "path matcher extension %q (only %s)", tc.GetTypedConfig().GetTypeUrl(), uriTemplateType)
	}
	var cfg uritemplatev3.UriTemplateMatchConfig
	if err := tc.GetTypedConfig().UnmarshalTo(&cfg); err != nil {
		return nil, fmt.Errorf("%s.typed_config: decoding: %w", field, err)
	}
	f := field + ".typed_config"
	if err := xdsfield.Check(&cfg, f, "path_template"); err != nil {
		return nil, err
	}
	if err := validateURITemplateConfig(f, cfg.GetPathTemplate()); err != nil {
		return nil, err
	}
	t, err := parseURITemplate(cfg.GetPathTemplate())
	if err != nil {
		return nil, fmt.Errorf("%s.path_template: %w", f, err)
	}
	return t, nil
}

// compileCIDR compiles an envoy.config.core.v3.CidrRange as Envoy's CidrRange::create does: the
// address must be an IP literal, a prefix length beyond the family's size is clamped to it, and
// host bits are cleared.
func compileCIDR(field string, c *corev3.CidrRange) (netip.Prefix, error) {
	if err := xdsfield.Check(c, field, "address_prefix", "prefix_len"); err != nil {
		return netip.Prefix{}, err
	}
	a, err := netip.ParseAddr(c.GetAddressPrefix())
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%s.address_prefix: %q is not an IP address", field, c.GetAddressPrefix())
	}
	bits := int(min(c.GetPrefixLen().GetValue(), uint32(a.BitLen())))
	return netip.PrefixFrom(a, bits).Masked(), nil
}

// compilePortRange checks an Int32Range as Envoy's PortRangeMatcher does.
func compilePortRange(field string, r *typev3.Int32Range) (lo, hi uint32, err error) {
	if err := xdsfield.Check(r, field, "start", "end"); err != nil {
		return 0, 0, err
	}
	s, e := r.GetStart(), r.GetEnd()
	switch {
	case s < 0 || s > 65536:
		return 0, 0, fmt.Errorf("%s.start: %d is out of bounds", field, s)
	case e < 0 || e > 65536:
		return 0, 0, fmt.Errorf("%s.end: %d is out of bounds", field, e)
	case s >= e:
		return 0, 0, fmt.Errorf("%s: start %d must be below end %d", field, s, e)
	}
	return uint32(s), uint32(e), nil
}

// compileSourcedMetadata accepts metadata from the DYNAMIC source (the same as a metadata
// rule); route metadata is not available to the evaluator.
func compileSourcedMetadata(field string, s *rbacv3.SourcedMetadata) (*metadataMatcher, error) {
	if err := xdsfield.Check(s, field, "metadata_matcher", "metadata_source"); err != nil {
		return nil, err
	}
	if s.GetMetadataSource() != rbacv3.MetadataSource_DYNAMIC {
		return nil, xdsfield.Unsupported(field+".metadata_source", "%s (only DYNAMIC)", s.GetMetadataSource())
	}
	return compileMetadataMatcher(field+".metadata_matcher", s.GetMetadataMatcher())
}

// compileFilterState compiles a FilterStateMatcher with a string_match: the object's string
// serialization must match (Envoy's FilterStateStringMatcher; no object or no string form is
// no match).
func compileFilterState(field string, fs *matcherv3.FilterStateMatcher) (rule, error) {
	if err := xdsfield.Check(fs, field, "key", "string_match"); err != nil {
		return rule{}, err
	}
	if fs.GetKey() == "" {
		return rule{}, fmt.Errorf("%s.key: empty", field)
	}
	if fs.GetStringMatch() == nil {
		return rule{}, fmt.Errorf("%s: no matcher set", field)
	}
	sm, err := matcher.CompileString(field+".string_match", fs.GetStringMatch(), matchOptions)
	if err != nil {
		return rule{}, err
	}
	return rule{op: opFilterState, key: fs.GetKey(), sm: &sm}, nil
}

// simplified returns an equivalent rule with fewer levels to walk: an and / or of one rule is
// that rule (Istio wraps every or_ids in a one-element and_ids), and not(not(x)) is x.
func (ru rule) simplified() rule {
	switch {
	case (ru.op == opAnd || ru.op == opOr) && len(ru.kids) == 1:
		return ru.kids[0]
	case ru.op == opNot && ru.kids[0].op == opNot:
		return ru.kids[0].kids[0]
	}
	return ru
}

// input is one evaluation's view: the connection, and the request for the HTTP filter (nil on
// the network filter, where Envoy matches headers against an empty map).
type input struct {
	c Connection
	r Request
	// The path without query and fragment, computed on first use; pathState 0: not yet,
	// 1: path (may be ""), 2: no :path at all.
	path      string
	pathState uint8
}

// urlPath returns the request path without query and fragment, ok=false when the request has
// no :path (the network filter, a CONNECT request).
func (in *input) urlPath() (string, bool) {
	if in.pathState == 0 {
		in.pathState = 2
		if in.r != nil {
			if p := in.r.Path(); p != "" {
				in.path, in.pathState = stripQueryAndFragment(p), 1
			}
		}
	}
	return in.path, in.pathState == 1
}

// match evaluates the rule with Envoy's matcher semantics.
func (ru *rule) match(in *input) bool {
	switch ru.op {
	case opAny:
		return true
	case opAnd:
		for i := range ru.kids {
			if !ru.kids[i].match(in) {
				return false
			}
		}
		return true
	case opOr:
		for i := range ru.kids {
			if ru.kids[i].match(in) {
				return true
			}
		}
		return false
	case opNot:
		return !ru.kids[0].match(in)
	case opHeader:
		v, ok := ru.hdr.value(in.r)
		return ru.hdr.Match(v, ok)
	case opURLPath:
		// Envoy: no :path header, no match (the network filter, a CONNECT request).
		p, ok := in.urlPath()
		return ok && ru.sm.Match(p)
	case opURITemplate:
		p, ok := in.urlPath()
		return ok && ru.tmpl.match(p)
	case opDestIP:
		return inPrefix(ru.prefix, in.c.DestinationIP())
	case opDestPort:
		return uint32(in.c.DestinationPort()) == ru.lo
	case opDestPortRange:
		p := uint32(in.c.DestinationPort())
		return ru.lo <= p && p < ru.hi
	case opMetadata:
		return ru.meta.match(in.c)
	case opSNI:
		return ru.sm.Match(in.c.RequestedServerName())
	case opAuthenticated:
		return matchAuthenticated(ru.sm, in.c.Peer())
	case opSourceIP, opDirectRemoteIP:
		return inPrefix(ru.prefix, in.c.DirectRemoteIP())
	case opRemoteIP:
		return inPrefix(ru.prefix, in.c.RemoteIP())
	case opFilterState:
		v, ok := in.c.FilterState(ru.key)
		return ok && ru.sm.Match(v)
	}
	return false
}

// inPrefix is Envoy's CidrRange::isInRange: an address of the other family never matches.
// Addresses are unmapped first, as Envoy's dual-stack listeners report IPv4 peers as IPv4.
func inPrefix(p netip.Prefix, a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	return p.Contains(a.Unmap().WithZone(""))
}

// matchAuthenticated is Envoy's AuthenticatedMatcher: no TLS, no match; no principal_name,
// any TLS peer; otherwise any URI SAN, then any DNS SAN, then the subject must match.
func matchAuthenticated(sm *matcher.String, p *Peer) bool {
	if p == nil {
		return false
	}
	if sm == nil {
		return true
	}
	for _, u := range p.URISANs {
		if sm.Match(u) {
			return true
		}
	}
	for _, d := range p.DNSSANs {
		if sm.Match(d) {
			return true
		}
	}
	return sm.Match(p.Subject)
}

// policyName quotes a policy name for a field path when it is not a plain identifier.
func policyField(path, name string) string {
	if name != "" && !strings.ContainsAny(name, "[]\". ") {
		return fmt.Sprintf("%s.policies[%s]", path, name)
	}
	return fmt.Sprintf("%s.policies[%q]", path, name)
}
