package authz

import (
	"fmt"
	"testing"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// istioPolicies returns n ALLOW policies shaped as Istio's builder emits them for
// "from principals / to methods + paths" rules: permissions and_rules{or_rules{:method},
// or_rules{url_path prefix}}, principals and_ids{or_ids{authenticated principal_name}}.
func istioPolicies(n int) *rbacv3.RBAC {
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
						PrincipalName: exact(fmt.Sprintf("spiffe://cluster.local/ns/default/sa/client-%03d", i))}}},
					{Identifier: &rbacv3.Principal_Authenticated_{Authenticated: &rbacv3.Principal_Authenticated{
						PrincipalName: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: fmt.Sprintf("spiffe://cluster.local/ns/team-%03d/", i)}}}}},
				}}}},
			}}}}},
		}
	}
	return r
}

// BenchmarkEvaluate evaluates a request that only the last policy (in Envoy's order) matches,
// so every policy is tried: the worst case for n Istio-shaped policies.
func BenchmarkEvaluate(b *testing.B) {
	for _, n := range []int{0, 10, 100} {
		b.Run(fmt.Sprintf("policies=%d", n), func(b *testing.B) {
			e, err := Compile(istioPolicies(n), "rules")
			if err != nil {
				b.Fatal(err)
			}
			r := baseReq()
			last := max(n-1, 0)
			r.path = fmt.Sprintf("/svc%03d/items/42?full=1", last)
			r.peer = &Peer{URISANs: []string{fmt.Sprintf("spiffe://cluster.local/ns/default/sa/client-%03d", last)}}
			want := n > 0
			for i := 0; i < 1000; i++ { // warm the caches, as a proxy in steady state has them
				e.Evaluate(r)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if d := e.Evaluate(r); d.Allowed != want {
					b.Fatalf("got %+v", d)
				}
			}
		})
	}
}

// BenchmarkEvaluateDenied evaluates a request no policy matches (every policy tried, none
// matching on the principal).
func BenchmarkEvaluateDenied(b *testing.B) {
	e, err := Compile(istioPolicies(100), "rules")
	if err != nil {
		b.Fatal(err)
	}
	r := baseReq()
	r.path = "/svc050/x"
	for i := 0; i < 1000; i++ {
		e.Evaluate(r)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if d := e.Evaluate(r); d.Allowed {
			b.Fatalf("got %+v", d)
		}
	}
}

func BenchmarkURITemplate(b *testing.B) {
	t, err := parseURITemplate("/api/*/{resource=*}/{method=**}.json")
	if err != nil {
		b.Fatal(err)
	}
	re, _ := templateRegex("/api/*/{resource=*}/{method=**}.json")
	const p = "/api/v1/books/42/reviews/latest.json"
	b.Run("matcher", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if !t.match(p) {
				b.Fatal("no match")
			}
		}
	})
	b.Run("envoy-regex", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if !re.MatchString(p) {
				b.Fatal("no match")
			}
		}
	})
}
