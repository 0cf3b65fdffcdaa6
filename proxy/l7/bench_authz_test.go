package l7

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"

	"github.com/strait-mesh/strait/proxy/authz"
	"github.com/strait-mesh/strait/proxy/authz/authztest"
	"github.com/strait-mesh/strait/proxy/stats"
	"github.com/strait-mesh/strait/proxy/xdspb"
	prbacv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/rbac/v3"
	rbachttpv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
)

// BenchmarkHandlerAuthz is BenchmarkHandler with the filters of AuthorizationPolicy and
// RequestAuthentication in the chain, side by side: no filter; an RBAC filter of 0, 10 and 100
// Istio-shaped ALLOW policies where the request (from a mutual TLS peer) matches only the last,
// so every policy is tried; and the jwt_authn filter verifying an ES256 token before the 100
// policies. The difference to "none" is what authorization adds to a request.
func BenchmarkHandlerAuthz(b *testing.B) {
	signer := newJWTSigner(b)
	token := signer.token(b, nil)
	rbac := func(n int) *hcmv3.HttpFilter {
		return typedFilter("envoy.filters.http.rbac", &rbachttpv3.RBAC{Rules: xdspb.MustFrom[*prbacv3.RBAC](authztest.IstioPolicies(n))})
	}
	cases := []struct {
		name    string
		filters []*hcmv3.HttpFilter
		n       int
		jwt     bool
	}{
		{name: "none"},
		{name: "policies=0", filters: []*hcmv3.HttpFilter{rbac(0)}},
		{name: "policies=10", filters: []*hcmv3.HttpFilter{rbac(10)}, n: 10},
		{name: "policies=100", filters: []*hcmv3.HttpFilter{rbac(100)}, n: 100},
		{name: "jwt+policies=100", filters: []*hcmv3.HttpFilter{istioJWTFilter(signer.jwks), rbac(100)}, n: 100, jwt: true},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			env := &testEnv{clusters: map[string]Upstream{"c": cannedUpstream{}}}
			h, err := New(inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("c"))), c.filters...), env, Options{Stats: stats.NewStore()})
			if err != nil {
				b.Fatal(err)
			}
			last := max(c.n-1, 0)
			cs := &connState{}
			cs.info.TLS = true
			cs.info.authzPeer = &authz.Peer{URISANs: []string{authztest.Principal(last)}}
			ctx := context.WithValue(context.Background(), connInfoKey{}, cs)
			want := 200
			if c.name == "policies=0" {
				want = 403 // an ALLOW filter without policies admits nothing
			}
			url := "http://svc.test" + authztest.Path(last)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				r := httptest.NewRequest("GET", url, nil).WithContext(ctx)
				if c.jwt {
					r.Header.Set("Authorization", "Bearer "+token)
				}
				w := httptest.NewRecorder()
				h.serveHTTP(w, r)
				if w.Code != want {
					b.Fatal(fmt.Sprint(w.Code, " ", w.Body.String()))
				}
			}
		})
	}
}
