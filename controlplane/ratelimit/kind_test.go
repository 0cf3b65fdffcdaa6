package ratelimit

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	commonrlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"

	"github.com/strait-mesh/strait/controlplane/config"
	trl "github.com/strait-mesh/strait/controlplane/translate/ratelimit"
	proxyratelimit "github.com/strait-mesh/strait/proxy/ratelimit"
	"github.com/strait-mesh/strait/proxy/route"
	"github.com/strait-mesh/strait/proxy/xdspb"
	proutev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
	prlhttpv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/ratelimit/v3"
)

// kindPolicies are RateLimits with Global rules: "api" counts GET /api/* on any port or
// /admin on port 9443 (two to entries, so that its descriptor is as long on every port), "all"
// every request; the Local rule is not the service's.
const kindPolicies = `apiVersion: extensions.strait.io/v1alpha1
kind: RateLimit
metadata: {name: shop, namespace: default}
spec:
  rules:
  - name: api
    scope: Global
    match:
      to:
      - operation: {paths: ["/api/*"], methods: [GET]}
      - operation: {ports: ["9443"], paths: ["/admin"]}
    limit: {requests: 3, per: 1m}
  - name: all
    scope: Global
    limit: {requests: 5, per: 1s}
  - name: local
    limit: {requests: 1, per: 1s}
`

func loadKind(t *testing.T, docs string) []*config.Object {
	t.Helper()
	objs, errs := config.Load("rl.yaml", []byte(docs))
	if len(errs) > 0 {
		t.Fatal(errors.Join(errs...))
	}
	return objs
}

// proxySide is what strait-proxy does with the translation of policies for a connection
// manager on port: the filters' stages and the compiled route table whose one route forwards
// to cluster "backend".
type proxySide struct {
	stages []uint32
	table  *route.Table
}

func newProxySide(t *testing.T, policies []*config.Object, port uint32) proxySide {
	t.Helper()
	ch, err := trl.Filters(policies, port, true)
	if err != nil {
		t.Fatal(err)
	}
	var ps proxySide
	for _, f := range ch.Filters {
		c := &rlhttpv3.RateLimit{}
		if f.GetTypedConfig().MessageIs(c) {
			if err := f.GetTypedConfig().UnmarshalTo(c); err != nil {
				t.Fatal(err)
			}
			g, err := proxyratelimit.CompileGlobal(f.GetName(), xdspb.MustFrom[*prlhttpv3.RateLimit](c))
			if err != nil {
				t.Fatalf("strait-proxy refuses %s: %v", f.GetName(), err)
			}
			if g.Domain != Domain {
				t.Fatalf("%s: domain %q", f.GetName(), g.Domain)
			}
			ps.stages = append(ps.stages, g.Stage)
		}
	}
	rc := trl.RouteConfiguration(&routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{{
		Name: "vh", Domains: []string{"*"}, Routes: []*routev3.Route{{
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "backend"}}},
		}},
	}}}, ch.RateLimits)
	if ps.table, err = route.Compile(xdspb.MustFrom[*proutev3.RouteConfiguration](rc)); err != nil {
		t.Fatalf("strait-proxy refuses the route configuration: %v", err)
	}
	return ps
}

// check sends one request through the proxy side's filters, in order, to s: it returns the
// first code that is not OK, and the descriptors sent.
func (ps proxySide) check(t *testing.T, s *Service, method, target string) (rlsv3.RateLimitResponse_Code, []string) {
	t.Helper()
	return ps.send(t, s, httptest.NewRequest(method, target, nil), netip.AddrPort{})
}

// send is check for request r from the downstream address remote.
func (ps proxySide) send(t *testing.T, s *Service, r *http.Request, remote netip.AddrPort) (rlsv3.RateLimitResponse_Code, []string) {
	t.Helper()
	method, target := r.Method, r.URL.Path
	rt := ps.table.Match(route.HTTPRequest(r))
	if rt == nil {
		t.Fatalf("%s %s: no route", method, target)
	}
	var sent []string
	for _, stage := range ps.stages {
		var d proxyratelimit.Descriptors
		rt.AppendRateLimitDescriptors(&d, stage, route.VhOverride, route.HTTPRequest(r), &route.RequestInfo{Remote: remote}, "backend")
		if d.Len() == 0 {
			continue
		}
		req := &rlsv3.RateLimitRequest{Domain: Domain}
		for i := range d.Len() {
			desc := &commonrlv3.RateLimitDescriptor{}
			for _, e := range d.At(i) {
				desc.Entries = append(desc.Entries, &commonrlv3.RateLimitDescriptor_Entry{Key: e.Key, Value: e.Value})
			}
			req.Descriptors = append(req.Descriptors, desc)
		}
		sent = append(sent, d.String())
		resp, err := s.ShouldRateLimit(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetOverallCode() != rlsv3.RateLimitResponse_OK {
			return resp.GetOverallCode(), sent
		}
	}
	return rlsv3.RateLimitResponse_OK, sent
}

// TestRateLimitKindShared checks, through strait-proxy's compilers, that the descriptors the
// Global rules' filters send are the ones the service counts: each rule's budget is shared by
// every connection manager (two proxies, or two ports with different to entries), requests the
// rule does not match are neither sent nor counted, and the Local rule is not the service's.
func TestRateLimitKindShared(t *testing.T) {
	s, clk := newService(t, "", 0)
	clk.t = time.Unix(1_700_000_040, 0) // 0 s into a minute window of "api"
	policies := loadKind(t, kindPolicies)
	if err := s.SetRateLimits(policies); err != nil {
		t.Fatal(err)
	}
	a, b := newProxySide(t, policies, 8080), newProxySide(t, policies, 9443)
	if len(a.stages) != 2 || a.stages[0] != 1 || a.stages[1] != 2 {
		t.Fatalf("stages %v, want [1 2]", a.stages)
	}
	// Requests "api" does not count: only "all" sees them (5 per second).
	for i, tc := range []struct{ side proxySide }{{a}, {b}} {
		code, sent := tc.side.check(t, s, "POST", "/api/x")
		if code != rlsv3.RateLimitResponse_OK || len(sent) != 1 || sent[0] != "[ratelimit_rule=default/shop/all, ratelimit_match=1]" {
			t.Fatalf("side %d: POST /api/x: %v %v", i, code, sent)
		}
	}
	clk.t = clk.t.Add(time.Second) // a new window for "all"
	// "api": 3 per minute across both sides; /admin counts on 9443 only.
	want := []rlsv3.RateLimitResponse_Code{rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OVER_LIMIT}
	sides := []proxySide{a, b, b, a}
	targets := []string{"/api/1", "/admin", "/api/2", "/api/3"}
	for i := range want {
		code, sent := sides[i].check(t, s, "GET", targets[i])
		if code != want[i] {
			t.Fatalf("request %d (GET %s): %v, want %v (sent %v)", i, targets[i], code, want[i], sent)
		}
		if !strings.HasPrefix(sent[0], "[ratelimit_rule=default/shop/api, ratelimit_match=1, ratelimit_match=1]") {
			t.Fatalf("request %d: sent %v", i, sent)
		}
	}
	if _, sent := a.check(t, s, "GET", "/admin"); len(sent) != 1 {
		t.Fatalf("GET /admin on 8080: sent %v, want only the \"all\" rule's", sent)
	}
}

// TestRateLimitKindGlobalBy checks a Global rule with by through strait-proxy's compilers: each
// client address and x-user value has its own budget of 2 per minute, and the requests of a
// client without x-user share the budget of its address.
func TestRateLimitKindGlobalBy(t *testing.T) {
	s, clk := newService(t, "", 0)
	clk.t = time.Unix(1_700_000_040, 0)
	policies := loadKind(t, `apiVersion: extensions.strait.io/v1alpha1
kind: RateLimit
metadata: {name: shop, namespace: default}
spec:
  rules:
  - name: per-client
    scope: Global
    by: [remote.ip, "request.headers[x-user]"]
    limit: {requests: 2, per: 1m}
`)
	if err := s.SetRateLimits(policies); err != nil {
		t.Fatal(err)
	}
	ps := newProxySide(t, policies, 8080)
	for _, c := range []struct{ ip, user, sent string }{
		{"10.0.0.1", "a", "[ratelimit_rule=default/shop/per-client, ratelimit_match=1, remote_address=10.0.0.1, request.headers[x-user]=a]"},
		{"10.0.0.1", "b", ""},
		{"10.0.0.2", "a", ""},
		{"10.0.0.1", "", "[ratelimit_rule=default/shop/per-client, ratelimit_match=1, remote_address=10.0.0.1]"},
		{"10.0.0.2", "", ""},
	} {
		remote := netip.AddrPortFrom(netip.MustParseAddr(c.ip), 40000)
		for i, want := range []rlsv3.RateLimitResponse_Code{rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OVER_LIMIT} {
			r := httptest.NewRequest("GET", "/", nil)
			if c.user != "" {
				r.Header.Set("X-User", c.user)
			}
			code, sent := ps.send(t, s, r, remote)
			if code != want {
				t.Fatalf("%s, x-user %q, request %d: %v, want %v (sent %v)", c.ip, c.user, i, code, want, sent)
			}
			if c.sent != "" && (len(sent) != 1 || sent[0] != c.sent) {
				t.Fatalf("%s, x-user %q: sent %v, want %s", c.ip, c.user, sent, c.sent)
			}
		}
	}
}

// TestRateLimitKindConfig checks the service's configuration from RateLimits: the file's
// domains stay, a file's document for Domain is ignored, a changed limit keeps its counter,
// and a removed rule no longer limits.
func TestRateLimitKindConfig(t *testing.T) {
	s, _ := newService(t, "domain: "+Domain+"\ndescriptors: [{key: ratelimit_rule, rate_limit: {unit: second, requests_per_unit: 0}}]\n---\n"+
		"domain: other\ndescriptors: [{key: PATH, rate_limit: {unit: minute, requests_per_unit: 1}}]\n", 0)
	other := func() rlsv3.RateLimitResponse_Code { return ask(t, s, "other", desc("PATH", "/")).GetOverallCode() }
	rule := func() rlsv3.RateLimitResponse_Code {
		return ask(t, s, Domain, desc(trl.RuleKey, "default/shop/all", trl.MatchKey, "1")).GetOverallCode()
	}
	if err := s.SetRateLimits(loadKind(t, kindPolicies)); err != nil {
		t.Fatal(err)
	}
	if other() != rlsv3.RateLimitResponse_OK || other() != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Error("the file's domain other no longer limits")
	}
	for i := range 5 {
		if c := rule(); c != rlsv3.RateLimitResponse_OK {
			t.Fatalf("request %d of 5: %v", i, c)
		}
	}
	if c := rule(); c != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("request 6 of 5: %v", c)
	}
	// 7 per second now: the window's 6 hits count.
	if err := s.SetRateLimits(loadKind(t, strings.Replace(kindPolicies, "requests: 5", "requests: 7", 1))); err != nil {
		t.Fatal(err)
	}
	if c := rule(); c != rlsv3.RateLimitResponse_OK {
		t.Fatalf("hit 7 of 7: %v", c)
	}
	if c := rule(); c != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("hit 8 of 7: %v", c)
	}
	if err := s.SetRateLimits(nil); err != nil {
		t.Fatal(err)
	}
	if c := rule(); c != rlsv3.RateLimitResponse_OK {
		t.Fatalf("removed rule: %v", c)
	}
}

// TestRulesConfigErrors checks that a rule the service cannot count is left out and named,
// and the others apply.
func TestRulesConfigErrors(t *testing.T) {
	c, err := RulesConfig([]trl.GlobalRule{
		{ID: "a/b/0", Width: 1, Requests: 1, Per: 10 * time.Second},
		{ID: "a/b/1", Width: 1, Requests: 1, Per: time.Minute},
		{ID: "a/b/1", Width: 1, Requests: 1, Per: time.Minute},
		{ID: "a/b/2", Width: MaxEntries, Requests: 1, Per: time.Minute},
	})
	for _, want := range []string{"a/b/0: per 10s", "a/b/1: configured twice", "a/b/2: 16 match and 0 by entries"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want it to contain %q", err, want)
		}
	}
	if c.find(Domain, []entry{{trl.RuleKey, "a/b/1"}, {trl.MatchKey, "1"}}) == nil {
		t.Error("the valid rule a/b/1 has no limit")
	}
}
