package authz

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	rbacnetv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	"google.golang.org/protobuf/encoding/protojson"
	security "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"

	"github.com/strait-mesh/strait/controlplane/config"
)

func policy(ns, name string, age int, ap *security.AuthorizationPolicy) *config.Object {
	return &config.Object{Kind: config.AuthorizationPolicy, Spec: ap, Meta: config.Meta{Namespace: ns, Name: name,
		CreationTimestamp: time.Date(2026, 1, 1, 0, 0, age, 0, time.UTC)}}
}

func TestSelect(t *testing.T) {
	sel := func(l map[string]string) *typev1beta1.WorkloadSelector {
		return &typev1beta1.WorkloadSelector{MatchLabels: l}
	}
	all := []*config.Object{
		policy("foo", "ns-wide", 3, &security.AuthorizationPolicy{}),
		policy("foo", "mine", 2, &security.AuthorizationPolicy{Selector: sel(map[string]string{"app": "a"})}),
		policy("foo", "theirs", 1, &security.AuthorizationPolicy{Selector: sel(map[string]string{"app": "b"})}),
		policy("istio-system", "mesh", 9, &security.AuthorizationPolicy{}),
		policy("istio-system", "mesh-a", 8, &security.AuthorizationPolicy{Selector: sel(map[string]string{"app": "a"})}),
		policy("bar", "other-ns", 0, &security.AuthorizationPolicy{}),
		policy("foo", "gateway", 0, &security.AuthorizationPolicy{TargetRefs: []*typev1beta1.PolicyTargetReference{{Kind: "Gateway", Name: "gw"}}}),
	}
	var got []string
	for _, o := range Select(all, "foo", map[string]string{"app": "a"}, "istio-system") {
		got = append(got, o.Namespace+"/"+o.Name)
	}
	want := "istio-system/mesh-a istio-system/mesh foo/mine foo/ns-wide"
	if strings.Join(got, " ") != want {
		t.Errorf("Select = %v, want %s", got, want)
	}
}

// rules returns the RBAC of the i-th HTTP (or TCP) filter as JSON, for compact assertions.
func filterJSON(t *testing.T, f Filters, tcp bool, i int) string {
	t.Helper()
	var b []byte
	var err error
	if tcp {
		var c rbacnetv3.RBAC
		if err := f.TCP[i].GetTypedConfig().UnmarshalTo(&c); err != nil {
			t.Fatal(err)
		}
		b, err = protojson.Marshal(&c)
	} else {
		var c rbachttpv3.RBAC
		if err := f.HTTP[i].GetTypedConfig().UnmarshalTo(&c); err != nil {
			t.Fatal(err)
		}
		b, err = protojson.Marshal(&c)
	}
	if err != nil {
		t.Fatal(err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, b); err != nil { // protojson's spacing is not stable
		t.Fatal(err)
	}
	return compact.String()
}

func TestBuildSemantics(t *testing.T) {
	o := Options{RootNamespace: "istio-system", TrustDomains: []string{"td1", "cluster.local", "some-td"}}
	for _, tc := range []struct {
		name     string
		ap       *security.AuthorizationPolicy
		dryRun   bool
		tcp      bool
		contains []string
		absent   []string
	}{
		{name: "ALLOW without rules allows nothing",
			ap:       &security.AuthorizationPolicy{},
			contains: []string{`"ns[foo]-policy[p]-rule[0]":{"permissions":[{"notRule":{"any":true}}],"principals":[{"notId":{"any":true}}]}`}},
		{name: "an empty rule allows everything",
			ap:       &security.AuthorizationPolicy{Rules: []*security.Rule{{}}},
			contains: []string{`"permissions":[{"andRules":{"rules":[{"any":true}]}}],"principals":[{"andIds":{"ids":[{"any":true}]}}]`}},
		{name: "principals over the trust domain bundle, wildcards",
			ap: &security.AuthorizationPolicy{Rules: []*security.Rule{{From: []*security.Rule_From{{Source: &security.Source{
				Principals: []string{"cluster.local/ns/a/sa/b", "*", "prefix-*", "other.td/ns/x/sa/y"}}}}}}},
			contains: []string{`"exact":"spiffe://td1/ns/a/sa/b"`, `"exact":"spiffe://cluster.local/ns/a/sa/b"`, `"exact":"spiffe://some-td/ns/a/sa/b"`,
				`"regex":".+"`, `"prefix":"spiffe://prefix-"`, `"exact":"spiffe://other.td/ns/x/sa/y"`}},
		{name: "request principals split at the last slash",
			ap: &security.AuthorizationPolicy{Rules: []*security.Rule{{From: []*security.Rule_From{{Source: &security.Source{
				RequestPrincipals: []string{"https://example.com/iss/sub-*"}}}}}}},
			contains: []string{`{"key":"iss"}],"value":{"stringMatch":{"exact":"https://example.com/iss"}}`, `{"key":"sub"}],"value":{"stringMatch":{"prefix":"sub-"}}`}},
		{name: "nested claims",
			ap: &security.AuthorizationPolicy{Rules: []*security.Rule{{When: []*security.Condition{{
				Key: "request.auth.claims[realm][roles]", Values: []string{"admin"}}}}}},
			contains: []string{`"path":[{"key":"payload"},{"key":"realm"},{"key":"roles"}]`, `"listMatch":{"oneOf":{"stringMatch":{"exact":"admin"}}}`}},
		{name: "dry run goes to shadow rules",
			ap: &security.AuthorizationPolicy{Action: security.AuthorizationPolicy_DENY, Rules: []*security.Rule{{}}}, dryRun: true,
			contains: []string{`{"shadowRules":{"action":"DENY"`, `"shadowRulesStatPrefix":"istio_dry_run_deny_"`}, absent: []string{`{"rules":{"policies"`}},
		{name: "TCP: an ALLOW rule with an HTTP-only field is dropped",
			ap: &security.AuthorizationPolicy{Rules: []*security.Rule{{To: []*security.Rule_To{{Operation: &security.Operation{
				Methods: []string{"GET"}, Ports: []string{"80"}}}}}}}, tcp: true,
			contains: []string{`"statPrefix":"tcp."`}, absent: []string{"rule[0]", "destinationPort"}},
		{name: "TCP: a DENY rule loses only its HTTP-only values",
			ap: &security.AuthorizationPolicy{Action: security.AuthorizationPolicy_DENY, Rules: []*security.Rule{{
				From: []*security.Rule_From{{Source: &security.Source{Namespaces: []string{"ns-1"}, RequestPrincipals: []string{"*"}}}},
				To:   []*security.Rule_To{{Operation: &security.Operation{Methods: []string{"GET"}, Ports: []string{"80"}}}}}}}, tcp: true,
			contains: []string{`"action":"DENY"`, `"destinationPort":80`, `"regex":".*/ns/ns-1/.*"`}, absent: []string{":method", "payload"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obj := policy("foo", "p", 0, tc.ap)
			if tc.dryRun {
				obj.Annotations = map[string]string{"istio.io/dry-run": "true"}
			}
			f, errs := Build([]*config.Object{obj}, o)
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			got := filterJSON(t, f, tc.tcp, 0)
			for _, s := range tc.contains {
				if !strings.Contains(got, s) {
					t.Errorf("missing %s in\n%s", s, got)
				}
			}
			for _, s := range tc.absent {
				if strings.Contains(got, s) {
					t.Errorf("unexpected %s in\n%s", s, got)
				}
			}
		})
	}
}

// TestFilterOrder checks istiod's evaluation order: CUSTOM (shadow RBAC, ext_authz), then the
// JWT filter (WithAuthn), then AUDIT, DENY and ALLOW RBAC filters; on TCP chains the same
// without the JWT filter.
func TestFilterOrder(t *testing.T) {
	allow := policy("foo", "a", 0, &security.AuthorizationPolicy{Rules: []*security.Rule{{}}})
	deny := policy("foo", "d", 1, &security.AuthorizationPolicy{Action: security.AuthorizationPolicy_DENY, Rules: []*security.Rule{{}}})
	audit := policy("foo", "l", 2, &security.AuthorizationPolicy{Action: security.AuthorizationPolicy_AUDIT, Rules: []*security.Rule{{}}})
	custom := customPolicy("foo", "c", 3, "grpc", &security.Rule{})
	f, errs := Build([]*config.Object{allow, deny, audit, custom}, extAuthzOptions())
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	jwt := &hcmv3.HttpFilter{Name: "envoy.filters.http.jwt_authn"}
	describe := func(name string, rules, shadow *rbacv3.RBAC) string {
		switch {
		case rules != nil:
			return name + ":" + rules.GetAction().String()
		case shadow != nil:
			return name + ":shadow-" + shadow.GetAction().String()
		}
		return name
	}
	var http []string
	for _, h := range f.WithAuthn(jwt) {
		var c rbachttpv3.RBAC
		if h.GetTypedConfig() != nil && h.GetTypedConfig().MessageIs(&c) {
			if err := h.GetTypedConfig().UnmarshalTo(&c); err != nil {
				t.Fatal(err)
			}
			http = append(http, describe(h.GetName(), c.GetRules(), c.GetShadowRules()))
			continue
		}
		http = append(http, h.GetName())
	}
	want := "envoy.filters.http.rbac:shadow-DENY envoy.filters.http.ext_authz envoy.filters.http.jwt_authn " +
		"envoy.filters.http.rbac:LOG envoy.filters.http.rbac:DENY envoy.filters.http.rbac:ALLOW"
	if strings.Join(http, " ") != want {
		t.Errorf("HTTP filters\n%s\nwant\n%s", strings.Join(http, " "), want)
	}
	var tcp []string
	for _, n := range f.TCP {
		var c rbacnetv3.RBAC
		if n.GetTypedConfig().MessageIs(&c) {
			if err := n.GetTypedConfig().UnmarshalTo(&c); err != nil {
				t.Fatal(err)
			}
			tcp = append(tcp, describe(n.GetName(), c.GetRules(), c.GetShadowRules()))
			continue
		}
		tcp = append(tcp, n.GetName())
	}
	want = "envoy.filters.network.rbac:shadow-DENY envoy.filters.network.ext_authz " +
		"envoy.filters.network.rbac:LOG envoy.filters.network.rbac:DENY envoy.filters.network.rbac:ALLOW"
	if strings.Join(tcp, " ") != want {
		t.Errorf("TCP filters\n%s\nwant\n%s", strings.Join(tcp, " "), want)
	}
	// Without CUSTOM policies or a JWT filter the RBAC filters are unchanged.
	f, _ = Build([]*config.Object{allow}, Options{})
	if got := f.WithAuthn(nil); len(got) != 1 || got[0] != f.HTTP[0] {
		t.Errorf("WithAuthn(nil) = %v", got)
	}
}
