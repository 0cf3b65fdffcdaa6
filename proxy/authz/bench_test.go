package authz

import (
	"fmt"
	"testing"

	"github.com/strait-mesh/strait/proxy/authz/authztest"
	"github.com/strait-mesh/strait/proxy/xdspb"
	prbacv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/rbac/v3"
)

// BenchmarkEvaluate evaluates a request that only the last policy (in Envoy's order) matches,
// so every policy is tried: the worst case for n Istio-shaped policies.
func BenchmarkEvaluate(b *testing.B) {
	for _, n := range []int{0, 10, 100} {
		b.Run(fmt.Sprintf("policies=%d", n), func(b *testing.B) {
			e, err := Compile(xdspb.MustFrom[*prbacv3.RBAC](authztest.IstioPolicies(n)), "rules")
			if err != nil {
				b.Fatal(err)
			}
			r := baseReq()
			last := max(n-1, 0)
			r.path = authztest.Path(last)
			r.peer = &Peer{URISANs: []string{authztest.Principal(last)}}
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
	e, err := Compile(xdspb.MustFrom[*prbacv3.RBAC](authztest.IstioPolicies(100)), "rules")
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
