package authz

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	uritemplatev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/path/match/uri_template/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/strait-mesh/strait/proxy/xdspb"
	prbacv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/rbac/v3"
)

// gen draws choices from fuzz bytes; once they run out every choice is 0.
type gen struct{ b []byte }

func (g *gen) n(k int) int {
	if len(g.b) == 0 {
		return 0
	}
	c := int(g.b[0])
	g.b = g.b[1:]
	return c % k
}

func (g *gen) pick(s ...string) string { return s[g.n(len(s))] }

var (
	fuzzMethods = []string{"GET", "POST", "get", "DELETE", ""}
	fuzzPaths   = []string{"/", "/api/v1/books", "/api/v1/books?x=1", "/API/admin#f", "/books/42/reviews", "/a//b", "/x.mpd", "", "/%2e%2e/a"}
	fuzzHosts   = []string{"books.default.svc.cluster.local", "BOOKS.example.com", ""}
	fuzzIDs     = []string{"spiffe://cluster.local/ns/default/sa/sleep", "spiffe://cluster.local/ns/prod/sa/web", "books.example.com", "CN=client"}
	fuzzAddrs   = []string{"10.1.0.9", "10.2.3.4", "203.0.113.5", "2001:db8::5", "::ffff:10.1.0.9"}
	fuzzStrs    = []string{"a", "b", "a,b", "GET", "/api", "readers", ""}
	fuzzTmpls   = []string{"/**", "/api/*/books", "/books/*/reviews", "/**.mpd", "/{x}/**", "/"}
)

func (g *gen) stringMatcher(vals []string) *matcherv3.StringMatcher {
	v := g.pick(vals...)
	if v == "" {
		v = "x"
	}
	ic := g.n(2) == 1
	switch g.n(6) {
	case 0:
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: v}, IgnoreCase: ic}
	case 1:
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: v[:1+g.n(len(v))]}, IgnoreCase: ic}
	case 2:
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: v[g.n(len(v)):]}, IgnoreCase: ic}
	case 3:
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Contains{Contains: v[g.n(len(v)):]}, IgnoreCase: ic}
	case 4:
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: g.pick(".*", ".+", ".*/ns/default/.*", "[a-z]+")}}}
	}
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: ""}}
}

func (g *gen) header() *routev3.HeaderMatcher {
	h := &routev3.HeaderMatcher{Name: g.pick(":method", ":authority", ":path", "x-a", "X-A", "host"),
		InvertMatch: g.n(4) == 0, TreatMissingHeaderAsEmpty: g.n(4) == 0}
	switch g.n(4) {
	case 0:
		h.HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: g.n(2) == 0}
	case 1:
		h.HeaderMatchSpecifier = &routev3.HeaderMatcher_ExactMatch{ExactMatch: g.pick(append(fuzzMethods, fuzzStrs...)...)}
	case 2:
		h.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: g.stringMatcher(append(fuzzHosts, fuzzStrs...))}
	}
	return h
}

func (g *gen) cidr() *corev3.CidrRange {
	a := netip.MustParseAddr(g.pick(fuzzAddrs...))
	return &corev3.CidrRange{AddressPrefix: a.String(), PrefixLen: wrapperspb.UInt32(uint32(g.n(a.BitLen() + 8)))}
}

func (g *gen) metadata() *matcherv3.MetadataMatcher {
	one := &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_StringMatch{StringMatch: g.stringMatcher(fuzzStrs)}}
	v := one
	switch g.n(3) {
	case 0:
		v = &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_ListMatch{ListMatch: &matcherv3.ListMatcher{MatchPattern: &matcherv3.ListMatcher_OneOf{OneOf: one}}}}
	case 1:
		v = &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_PresentMatch{PresentMatch: true}}
	}
	return &matcherv3.MetadataMatcher{Filter: "f", Path: []*matcherv3.MetadataMatcher_PathSegment{
		{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: g.pick("groups", "sub", "none")}}}, Value: v, Invert: g.n(4) == 0}
}

func (g *gen) permission(depth int) *rbacv3.Permission {
	k := g.n(12)
	if depth > 4 && k < 3 {
		k = 3
	}
	switch k {
	case 0, 1:
		var rules []*rbacv3.Permission
		for i := 0; i <= g.n(3); i++ {
			rules = append(rules, g.permission(depth+1))
		}
		if k == 0 {
			return &rbacv3.Permission{Rule: &rbacv3.Permission_AndRules{AndRules: &rbacv3.Permission_Set{Rules: rules}}}
		}
		return &rbacv3.Permission{Rule: &rbacv3.Permission_OrRules{OrRules: &rbacv3.Permission_Set{Rules: rules}}}
	case 2:
		return &rbacv3.Permission{Rule: &rbacv3.Permission_NotRule{NotRule: g.permission(depth + 1)}}
	case 3:
		return &rbacv3.Permission{Rule: &rbacv3.Permission_Any{Any: true}}
	case 4:
		return &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: g.header()}}
	case 5:
		return &rbacv3.Permission{Rule: &rbacv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{Rule: &matcherv3.PathMatcher_Path{Path: g.stringMatcher(fuzzPaths)}}}}
	case 6:
		a, _ := anypb.New(&uritemplatev3.UriTemplateMatchConfig{PathTemplate: g.pick(fuzzTmpls...)})
		return &rbacv3.Permission{Rule: &rbacv3.Permission_UriTemplate{UriTemplate: &corev3.TypedExtensionConfig{Name: "t", TypedConfig: a}}}
	case 7:
		return &rbacv3.Permission{Rule: &rbacv3.Permission_DestinationIp{DestinationIp: g.cidr()}}
	case 8:
		return &rbacv3.Permission{Rule: &rbacv3.Permission_DestinationPort{DestinationPort: []uint32{80, 9080, 0}[g.n(3)]}}
	case 9:
		s := int32(g.n(3) * 4000)
		return &rbacv3.Permission{Rule: &rbacv3.Permission_DestinationPortRange{DestinationPortRange: &typev3.Int32Range{Start: s, End: s + 1 + int32(g.n(9000))}}}
	case 10:
		return &rbacv3.Permission{Rule: &rbacv3.Permission_Metadata{Metadata: g.metadata()}}
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_RequestedServerName{RequestedServerName: g.stringMatcher(fuzzHosts)}}
}

func (g *gen) principal(depth int) *rbacv3.Principal {
	k := g.n(11)
	if depth > 4 && k < 3 {
		k = 3
	}
	switch k {
	case 0, 1:
		var ids []*rbacv3.Principal
		for i := 0; i <= g.n(3); i++ {
			ids = append(ids, g.principal(depth+1))
		}
		if k == 0 {
			return &rbacv3.Principal{Identifier: &rbacv3.Principal_AndIds{AndIds: &rbacv3.Principal_Set{Ids: ids}}}
		}
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_OrIds{OrIds: &rbacv3.Principal_Set{Ids: ids}}}
	case 2:
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_NotId{NotId: g.principal(depth + 1)}}
	case 3:
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_Any{Any: true}}
	case 4:
		a := &rbacv3.Principal_Authenticated{}
		if g.n(4) != 0 {
			a.PrincipalName = g.stringMatcher(fuzzIDs)
		}
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_Authenticated_{Authenticated: a}}
	case 5:
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_RemoteIp{RemoteIp: g.cidr()}}
	case 6:
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_DirectRemoteIp{DirectRemoteIp: g.cidr()}}
	case 7:
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_SourceIp{SourceIp: g.cidr()}}
	case 8:
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_Header{Header: g.header()}}
	case 9:
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_Metadata{Metadata: g.metadata()}}
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_FilterState{FilterState: &matcherv3.FilterStateMatcher{
		Key: "io.istio.peer_principal", Matcher: &matcherv3.FilterStateMatcher_StringMatch{StringMatch: g.stringMatcher(fuzzIDs)}}}}
}

func (g *gen) rbac(action rbacv3.RBAC_Action) *rbacv3.RBAC {
	r := &rbacv3.RBAC{Action: action, Policies: map[string]*rbacv3.Policy{}}
	for i := 0; i < g.n(4); i++ {
		p := &rbacv3.Policy{}
		for j := 0; j <= g.n(2); j++ {
			p.Permissions = append(p.Permissions, g.permission(0))
		}
		for j := 0; j <= g.n(2); j++ {
			p.Principals = append(p.Principals, g.principal(0))
		}
		r.Policies[fmt.Sprintf("p%d", g.n(8))] = p
	}
	return r
}

func (g *gen) request() *fakeReq {
	r := &fakeReq{
		method: g.pick(fuzzMethods...), path: g.pick(fuzzPaths...), host: g.pick(fuzzHosts...), scheme: "http",
		headers: map[string][]string{},
		dstIP:   netip.MustParseAddr(g.pick(fuzzAddrs...)), dstPort: uint16(g.n(3) * 4540),
		direct: netip.MustParseAddr(g.pick(fuzzAddrs...)), remote: netip.MustParseAddr(g.pick(fuzzAddrs...)),
		sni: g.pick(fuzzHosts...),
	}
	switch g.n(3) {
	case 1:
		r.headers["x-a"] = []string{g.pick(fuzzStrs...)}
	case 2:
		r.headers["x-a"] = []string{g.pick(fuzzStrs...), g.pick(fuzzStrs...)}
	}
	switch g.n(3) {
	case 1:
		r.peer = &Peer{}
	case 2:
		r.peer = &Peer{URISANs: []string{g.pick(fuzzIDs...)}, DNSSANs: []string{g.pick(fuzzIDs...)}, Subject: g.pick(fuzzIDs...)}
	}
	if g.n(2) == 1 {
		s, _ := structpb.NewStruct(map[string]any{"groups": []any{g.pick(fuzzStrs...), g.pick(fuzzStrs...)}, "sub": g.pick(fuzzStrs...)})
		r.meta = map[string]*structpb.Struct{"f": s}
	}
	if g.n(2) == 1 {
		r.fs = map[string]string{"io.istio.peer_principal": g.pick(fuzzIDs...)}
	}
	return r
}

// FuzzEvaluate builds random RBAC policies and requests from the input and checks: no panic;
// ALLOW and DENY engines over the same policies decide opposite ways on the same matched
// policy; LOG allows everything; and the compiled engine agrees with refPolicy, a direct
// interpretation of the protos.
func FuzzEvaluate(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("\x03\x00\x00\x04\x01\x04\x02\x03\x07\x05\x00\x00\x01"))
	f.Add([]byte("seed: an Istio-shaped policy with principals, paths and methods"))
	f.Add([]byte{1, 1, 0, 0, 2, 5, 1, 1, 4, 4, 4, 0, 2, 7, 3, 9, 9, 1, 0, 4, 2, 2, 1, 1, 1, 3, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		g := &gen{b: data}
		rules := g.rbac(rbacv3.RBAC_ALLOW)
		allow, err := Compile(xdspb.MustFrom[*prbacv3.RBAC](rules), "rules")
		if err != nil {
			return // e.g. a random regex too large; compile errors are tested elsewhere
		}
		rules.Action = rbacv3.RBAC_DENY
		deny, err := Compile(xdspb.MustFrom[*prbacv3.RBAC](rules), "rules")
		if err != nil {
			t.Fatalf("DENY compile failed where ALLOW did not: %v", err)
		}
		rules.Action = rbacv3.RBAC_LOG
		logEngine, err := Compile(xdspb.MustFrom[*prbacv3.RBAC](rules), "rules")
		if err != nil {
			t.Fatalf("LOG compile failed where ALLOW did not: %v", err)
		}
		for i := 0; i < 4; i++ {
			r := g.request()
			for _, l4 := range []bool{false, true} {
				var a, d, lg Decision
				if l4 {
					a, d, lg = allow.EvaluateConnection(r), deny.EvaluateConnection(r), logEngine.EvaluateConnection(r)
				} else {
					a, d, lg = allow.Evaluate(r), deny.Evaluate(r), logEngine.Evaluate(r)
				}
				if a.Allowed == d.Allowed || a.Policy != d.Policy || a.Matched != d.Matched || a.Matched != a.Allowed {
					t.Fatalf("ALLOW %+v and DENY %+v disagree on %+v", a, d, r)
				}
				if !lg.Allowed || lg.Policy != a.Policy {
					t.Fatalf("LOG %+v, ALLOW %+v", lg, a)
				}
				want := ""
				for _, name := range allow.Policies() {
					if refPolicy(rules.Policies[name], r, l4) {
						want = name
						break
					}
				}
				if a.Policy != want {
					t.Fatalf("engine matched %q, reference %q, on %+v (l4=%v) with %v", a.Policy, want, r, l4, rules)
				}
			}
		}
	})
}

// The reference interpretation: straightforward, slow, written against the protos.

func refPolicy(p *rbacv3.Policy, r *fakeReq, l4 bool) bool {
	perm, princ := false, false
	for _, x := range p.Permissions {
		perm = perm || refPermission(x, r, l4)
	}
	for _, x := range p.Principals {
		princ = princ || refPrincipal(x, r, l4)
	}
	return perm && princ
}

func refPermission(p *rbacv3.Permission, r *fakeReq, l4 bool) bool {
	switch x := p.Rule.(type) {
	case *rbacv3.Permission_AndRules:
		for _, k := range x.AndRules.Rules {
			if !refPermission(k, r, l4) {
				return false
			}
		}
		return true
	case *rbacv3.Permission_OrRules:
		for _, k := range x.OrRules.Rules {
			if refPermission(k, r, l4) {
				return true
			}
		}
		return false
	case *rbacv3.Permission_NotRule:
		return !refPermission(x.NotRule, r, l4)
	case *rbacv3.Permission_Any:
		return true
	case *rbacv3.Permission_Header:
		return refHeader(x.Header, r, l4)
	case *rbacv3.Permission_UrlPath:
		if l4 || r.path == "" {
			return false
		}
		p, _, _ := strings.Cut(r.path, "?")
		p, _, _ = strings.Cut(p, "#")
		return refString(x.UrlPath.GetPath(), p)
	case *rbacv3.Permission_UriTemplate:
		var cfg uritemplatev3.UriTemplateMatchConfig
		_ = x.UriTemplate.TypedConfig.UnmarshalTo(&cfg)
		re, _ := templateRegex(cfg.PathTemplate)
		return !l4 && re.MatchString(stripQueryAndFragment(r.path))
	case *rbacv3.Permission_DestinationIp:
		return refCIDR(x.DestinationIp, r.dstIP)
	case *rbacv3.Permission_DestinationPort:
		return uint32(r.dstPort) == x.DestinationPort
	case *rbacv3.Permission_DestinationPortRange:
		return int32(r.dstPort) >= x.DestinationPortRange.Start && int32(r.dstPort) < x.DestinationPortRange.End
	case *rbacv3.Permission_Metadata:
		return refMetadata(x.Metadata, r)
	case *rbacv3.Permission_RequestedServerName:
		return refString(x.RequestedServerName, r.sni)
	}
	panic(fmt.Sprintf("reference: unexpected permission %T", p.Rule))
}

func refPrincipal(p *rbacv3.Principal, r *fakeReq, l4 bool) bool {
	switch x := p.Identifier.(type) {
	case *rbacv3.Principal_AndIds:
		for _, k := range x.AndIds.Ids {
			if !refPrincipal(k, r, l4) {
				return false
			}
		}
		return true
	case *rbacv3.Principal_OrIds:
		for _, k := range x.OrIds.Ids {
			if refPrincipal(k, r, l4) {
				return true
			}
		}
		return false
	case *rbacv3.Principal_NotId:
		return !refPrincipal(x.NotId, r, l4)
	case *rbacv3.Principal_Any:
		return true
	case *rbacv3.Principal_Authenticated_:
		if r.peer == nil {
			return false
		}
		sm := x.Authenticated.PrincipalName
		if sm == nil {
			return true
		}
		for _, s := range append(append(append([]string{}, r.peer.URISANs...), r.peer.DNSSANs...), r.peer.Subject) {
			if refString(sm, s) {
				return true
			}
		}
		return false
	case *rbacv3.Principal_RemoteIp:
		return refCIDR(x.RemoteIp, r.remote)
	case *rbacv3.Principal_DirectRemoteIp:
		return refCIDR(x.DirectRemoteIp, r.direct)
	case *rbacv3.Principal_SourceIp:
		return refCIDR(x.SourceIp, r.direct)
	case *rbacv3.Principal_Header:
		return refHeader(x.Header, r, l4)
	case *rbacv3.Principal_Metadata:
		return refMetadata(x.Metadata, r)
	case *rbacv3.Principal_FilterState:
		v, ok := r.fs[x.FilterState.Key]
		return ok && refString(x.FilterState.GetStringMatch(), v)
	}
	panic(fmt.Sprintf("reference: unexpected principal %T", p.Identifier))
}

func refString(m *matcherv3.StringMatcher, v string) bool {
	if m.IgnoreCase {
		v = strings.ToLower(v)
	}
	lower := func(s string) string {
		if m.IgnoreCase {
			return strings.ToLower(s)
		}
		return s
	}
	switch p := m.MatchPattern.(type) {
	case *matcherv3.StringMatcher_Exact:
		return v == lower(p.Exact)
	case *matcherv3.StringMatcher_Prefix:
		return strings.HasPrefix(v, lower(p.Prefix))
	case *matcherv3.StringMatcher_Suffix:
		return strings.HasSuffix(v, lower(p.Suffix))
	case *matcherv3.StringMatcher_Contains:
		return strings.Contains(v, lower(p.Contains))
	case *matcherv3.StringMatcher_SafeRegex:
		return regexp.MustCompile("^(?:" + p.SafeRegex.Regex + ")$").MatchString(v)
	}
	panic("reference: unexpected string matcher")
}

func refHeader(h *routev3.HeaderMatcher, r *fakeReq, l4 bool) bool {
	var v string
	ok := false
	if !l4 {
		switch strings.ToLower(h.Name) {
		case ":method":
			v = r.method
			ok = v != ""
		case ":authority", "host":
			v = r.host
			ok = v != ""
		case ":path":
			v = r.path
			ok = v != ""
		default:
			vs := r.headers[strings.ToLower(h.Name)]
			v, ok = strings.Join(vs, ","), len(vs) > 0
		}
	}
	if !ok {
		if !h.TreatMissingHeaderAsEmpty {
			switch pm := h.HeaderMatchSpecifier.(type) {
			case *routev3.HeaderMatcher_PresentMatch:
				return pm.PresentMatch == h.InvertMatch
			case nil: // no specifier: present_match true
				return h.InvertMatch
			}
			return false
		}
		v = ""
	}
	var m bool
	switch s := h.HeaderMatchSpecifier.(type) {
	case *routev3.HeaderMatcher_PresentMatch:
		m = s.PresentMatch
	case *routev3.HeaderMatcher_ExactMatch:
		m = s.ExactMatch == "" || v == s.ExactMatch
	case *routev3.HeaderMatcher_StringMatch:
		m = refString(s.StringMatch, v)
	case nil:
		m = true
	default:
		panic("reference: unexpected header matcher")
	}
	return m != h.InvertMatch
}

func refCIDR(c *corev3.CidrRange, a netip.Addr) bool {
	pa := netip.MustParseAddr(c.AddressPrefix)
	bits := int(c.GetPrefixLen().GetValue())
	if bits > pa.BitLen() {
		bits = pa.BitLen()
	}
	a = a.Unmap()
	if !a.IsValid() || a.Is4() != pa.Is4() {
		return false
	}
	return netip.PrefixFrom(pa, bits).Masked().Contains(a)
}

func refMetadata(m *matcherv3.MetadataMatcher, r *fakeReq) bool {
	var v *structpb.Value
	if s := r.meta[m.Filter]; s != nil {
		v = s.Fields[m.Path[0].GetKey()]
	}
	var res bool
	switch p := m.Value.MatchPattern.(type) {
	case *matcherv3.ValueMatcher_StringMatch:
		sv, ok := v.GetKind().(*structpb.Value_StringValue)
		res = ok && refString(p.StringMatch, sv.StringValue)
	case *matcherv3.ValueMatcher_PresentMatch:
		res = p.PresentMatch && v != nil && v.Kind != nil
	case *matcherv3.ValueMatcher_ListMatch:
		for _, e := range v.GetListValue().GetValues() {
			sv, ok := e.GetKind().(*structpb.Value_StringValue)
			if ok && refString(p.ListMatch.GetOneOf().GetStringMatch(), sv.StringValue) {
				res = true
			}
		}
	}
	return res != m.Invert
}
