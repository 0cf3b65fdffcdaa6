package ratelimit

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	lrlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"

	"github.com/strait-mesh/strait/controlplane/config"
	proxyratelimit "github.com/strait-mesh/strait/proxy/ratelimit"
	"github.com/strait-mesh/strait/proxy/route"
	"github.com/strait-mesh/strait/proxy/xdspb"
	plrlv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/local_ratelimit/v3"
)

// load decodes and validates RateLimit documents.
func load(t *testing.T, docs string) []*config.Object {
	t.Helper()
	objs, errs := config.Load("rl.yaml", []byte(docs))
	if len(errs) > 0 {
		t.Fatal(errors.Join(errs...))
	}
	return objs
}

// compiled builds the filters of policies for port and compiles each with strait-proxy's own
// compiler, so that the test sees what the proxy does.
func compiled(t *testing.T, policies []*config.Object, port uint32) map[string]*route.LocalRateLimit {
	t.Helper()
	ch, err := Filters(policies, port, false)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*route.LocalRateLimit{}
	for _, f := range ch.Filters {
		c := &lrlv3.LocalRateLimit{}
		if err := f.GetTypedConfig().UnmarshalTo(c); err != nil {
			t.Fatal(err)
		}
		l, err := route.CompileLocalRateLimit(f.GetName(), xdspb.MustFrom[*plrlv3.LocalRateLimit](c), false)
		if err != nil {
			t.Fatalf("strait-proxy refuses %s: %v", f.GetName(), err)
		}
		out[strings.TrimPrefix(f.GetName(), FilterPrefix)] = l
	}
	return out
}

// allow decides one request as strait-proxy's filter does (enabled and enforced at 100%).
func allow(l *route.LocalRateLimit, method, target string, headers map[string]string) (bool, bool) {
	r := httptest.NewRequest(method, target, nil)
	for k, v := range headers {
		r.Header.Set(k, v)
	}
	var d proxyratelimit.Descriptors
	if l.NeedsDescriptors() {
		l.AppendDescriptors(&d, nil, route.HTTPRequest(r), &route.RequestInfo{}, "")
	}
	ok, b := l.Limiter.Allow(&d)
	return ok, b != nil
}

const rlPolicy = `apiVersion: extensions.strait.io/v1alpha1
kind: RateLimit
metadata: {name: pp, namespace: default}
spec:
  rules:
  - name: pages
    match:
      to:
      - operation: {paths: ["/productpage*"], methods: [GET]}
      - operation: {paths: ["*.html"], notMethods: [DELETE]}
      when:
      - key: request.headers[x-user]
        values: [jason]
      - key: request.headers[x-tier]
        notValues: [gold]
    limit: {requests: 2, per: 1h}
  - name: all
    limit: {requests: 3, per: 1h}
  - name: admin
    match:
      to: [{operation: {ports: ["9443"]}}]
    limit: {requests: 1, per: 1h}
`

// TestRuleMatching checks, through strait-proxy's compiler and limiter, that a rule counts the
// requests its match selects, once each, and lets the others through without a token or
// x-ratelimit-* headers.
func TestRuleMatching(t *testing.T) {
	fs := compiled(t, load(t, rlPolicy), 9080)
	if len(fs) != 2 || fs["default/pp/admin"] != nil {
		t.Fatalf("filters on port 9080: %v", fs)
	}
	pages := fs["default/pp/pages"]
	jason := map[string]string{"x-user": "jason"}
	for _, tc := range []struct {
		method, target string
		headers        map[string]string
	}{
		{"GET", "/productpage?u=1", map[string]string{"x-user": "bob"}},                 // other user
		{"POST", "/productpage", jason},                                                 // other method, not .html
		{"GET", "/other", jason},                                                        // other path
		{"GET", "/productpage", map[string]string{"x-user": "jason", "x-tier": "gold"}}, // notValues
		{"GET", "/x.html?a.b", nil},                                                     // no user
		{"DELETE", "/x.html", jason},                                                    // notMethods
	} {
		for i := 0; i < 3; i++ {
			if ok, hdrs := allow(pages, tc.method, tc.target, tc.headers); !ok || hdrs {
				t.Fatalf("%s %s %v: counted (allowed %v, headers %v)", tc.method, tc.target, tc.headers, ok, hdrs)
			}
		}
	}
	// GET /productpage.html matches both alternatives: it takes one token, not two.
	if ok, hdrs := allow(pages, "GET", "/productpage.html", jason); !ok || !hdrs {
		t.Fatalf("first counted request: allowed %v, headers %v", ok, hdrs)
	}
	if ok, _ := allow(pages, "PUT", "/a/b.html?x=1", jason); !ok {
		t.Fatal("second counted request refused")
	}
	if ok, _ := allow(pages, "GET", "/productpage", jason); ok {
		t.Fatal("third counted request allowed")
	}
	all := fs["default/pp/all"]
	for i := 0; i < 3; i++ {
		if ok, _ := allow(all, "GET", "/anything", nil); !ok {
			t.Fatalf("request %d refused by the match-all rule", i)
		}
	}
	if ok, _ := allow(all, "GET", "/anything", nil); ok {
		t.Fatal("fourth request allowed by the match-all rule")
	}
	if fs := compiled(t, load(t, rlPolicy), 9443); fs["default/pp/admin"] == nil || fs["default/pp/admin"].NeedsDescriptors() {
		t.Fatalf("port 9443: admin rule missing or not a plain token bucket: %v", fs)
	}
}

// TestSelect checks selection: the root namespace's and the workload namespace's RateLimits
// whose selector matches, the root namespace's first.
func TestSelect(t *testing.T) {
	objs := load(t, `apiVersion: extensions.strait.io/v1alpha1
kind: RateLimit
metadata: {name: b, namespace: default}
spec: {selector: {matchLabels: {app: a}}, rules: [{limit: {requests: 1, per: 1s}}]}
---
apiVersion: extensions.strait.io/v1alpha1
kind: RateLimit
metadata: {name: z, namespace: istio-system}
spec: {rules: [{limit: {requests: 1, per: 1s}}]}
---
apiVersion: extensions.strait.io/v1alpha1
kind: RateLimit
metadata: {name: other, namespace: default}
spec: {selector: {matchLabels: {app: other}}, rules: [{limit: {requests: 1, per: 1s}}]}
---
apiVersion: extensions.strait.io/v1alpha1
kind: RateLimit
metadata: {name: elsewhere, namespace: shop}
spec: {rules: [{limit: {requests: 1, per: 1s}}]}
`)
	got := Select(objs, "default", map[string]string{"app": "a"}, "istio-system")
	var names []string
	for _, o := range got {
		names = append(names, o.Namespace+"/"+o.Name)
	}
	if strings.Join(names, ",") != "istio-system/z,default/b" {
		t.Errorf("selected %v", names)
	}
}
