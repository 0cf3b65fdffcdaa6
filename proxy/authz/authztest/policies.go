// Package authztest builds RBAC configurations shaped as istiod emits them, for the benchmarks
// and tests of the packages that evaluate them (proxy/authz, proxy/l7). Production code does not
// import it.
package authztest

import (
	"fmt"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// IstioPolicies returns n ALLOW policies shaped as Istio's builder emits them for "from
// principals / to methods + paths" rules: permissions and_rules{or_rules{:method},
// or_rules{url_path prefix}}, principals and_ids{or_ids{authenticated principal_name}}. Policy i
// admits GET and HEAD under /svcNNN/ (or /v2/svcNNN/) from Principal(i) or namespace team-NNN.
func IstioPolicies(n int) *rbacv3.RBAC {
	exact := func(s string) *matcherv3.StringMatcher {
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
	}
	method := func(m string) *rbacv3.Permission {
		return &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: &routev3.HeaderMatcher{
			Name: ":method", HeaderMatchSpecifier: &routev3.HeaderMatcher_ExactMatch{ExactMatch: m}}}}
	}
	prefix := func(p string) *rbacv3.Permission {
		return &rbacv3.Permission{Rule: &rbacv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{Rule: &matcherv3.PathMatcher_Path{
			Path: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: p}}}}}}
	}
	or := func(rs ...*rbacv3.Permission) *rbacv3.Permission {
		return &rbacv3.Permission{Rule: &rbacv3.Permission_OrRules{OrRules: &rbacv3.Permission_Set{Rules: rs}}}
	}
	r := &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW, Policies: map[string]*rbacv3.Policy{}}
	for i := 0; i < n; i++ {
		r.Policies[fmt.Sprintf("ns[default]-policy[svc-%03d]-rule[0]", i)] = &rbacv3.Policy{
			Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_AndRules{AndRules: &rbacv3.Permission_Set{Rules: []*rbacv3.Permission{
				or(method("GET"), method("HEAD")),
				or(prefix(fmt.Sprintf("/svc%03d/", i)), prefix(fmt.Sprintf("/v2/svc%03d/", i))),
			}}}}},
			Principals: []*rbacv3.Principal{{Identifier: &rbacv3.Principal_AndIds{AndIds: &rbacv3.Principal_Set{Ids: []*rbacv3.Principal{
				{Identifier: &rbacv3.Principal_OrIds{OrIds: &rbacv3.Principal_Set{Ids: []*rbacv3.Principal{
					{Identifier: &rbacv3.Principal_Authenticated_{Authenticated: &rbacv3.Principal_Authenticated{
						PrincipalName: exact(Principal(i))}}},
					{Identifier: &rbacv3.Principal_Authenticated_{Authenticated: &rbacv3.Principal_Authenticated{
						PrincipalName: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: fmt.Sprintf("spiffe://cluster.local/ns/team-%03d/", i)}}}}},
				}}}},
			}}}}},
		}
	}
	return r
}

// Principal is the SPIFFE ID policy i of IstioPolicies admits.
func Principal(i int) string {
	return fmt.Sprintf("spiffe://cluster.local/ns/default/sa/client-%03d", i)
}

// Path is a request path policy i of IstioPolicies admits.
func Path(i int) string { return fmt.Sprintf("/svc%03d/items/42?full=1", i) }
