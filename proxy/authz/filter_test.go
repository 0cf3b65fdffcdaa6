package authz

import (
	"testing"

	httprbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/strait-mesh/strait/proxy/xdspb"
	phttprbacv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/rbac/v3"
	pmatcherv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/matcher/v3"
)

// TestShadowMetadataStruct checks the dynamic metadata of Istio's CUSTOM action: a shadow ALLOW
// engine whose matched policy names the ext_authz provider, under shadow_rules_stat_prefix.
func TestShadowMetadataStruct(t *testing.T) {
	var cfg httprbacv3.RBAC
	if err := protojson.Unmarshal([]byte(`{
	  "shadowRules":{"action":"ALLOW","policies":{"istio-ext-authz-ns[foo]-policy[bar]-rule[0]":{
	    "permissions":[{"urlPath":{"path":{"prefix":"/secure"}}}],"principals":[{"any":true}]}}},
	  "shadowRulesStatPrefix":"istio_ext_authz_"}`), &cfg); err != nil {
		t.Fatal(err)
	}
	f, err := CompileHTTPFilter(xdspb.MustFrom[*phttprbacv3.RBAC](&cfg), "inbound_0.0.0.0_8080", "typed_config")
	if err != nil {
		t.Fatal(err)
	}
	if f.Stats.ShadowAllowed != "http.inbound_0.0.0.0_8080.rbac.istio_ext_authz_shadow_allowed" {
		t.Errorf("shadow stat %q", f.Stats.ShadowAllowed)
	}
	r := baseReq()
	r.path = "/secure/x"
	res := f.Check(r)
	if !res.Allowed() || !res.HasShadow {
		t.Fatalf("result %+v", res)
	}
	got := f.ShadowMetadataStruct(res.Shadow).GetFields()
	if len(got) != 2 || got["istio_ext_authz_shadow_engine_result"].GetStringValue() != "allowed" ||
		got["istio_ext_authz_shadow_effective_policy_id"].GetStringValue() != "istio-ext-authz-ns[foo]-policy[bar]-rule[0]" {
		t.Errorf("matched: %v", got)
	}
	r.path = "/public"
	res = f.Check(r)
	got = f.ShadowMetadataStruct(res.Shadow).GetFields()
	if !res.Allowed() || len(got) != 1 || got["istio_ext_authz_shadow_engine_result"].GetStringValue() != "denied" {
		t.Errorf("not matched: %+v %v", res, got)
	}
	// Each call returns a Struct of its own: the stream merges into the first one it gets.
	a, b := f.ShadowMetadataStruct(res.Shadow), f.ShadowMetadataStruct(res.Shadow)
	a.Fields["x"] = structpb.NewBoolValue(true)
	if _, shared := b.Fields["x"]; shared {
		t.Error("ShadowMetadataStruct returned a shared map")
	}
}

func TestMetadataMatcher(t *testing.T) {
	m := &matcherv3.MetadataMatcher{
		Filter: "envoy.filters.http.rbac",
		Path: []*matcherv3.MetadataMatcher_PathSegment{
			{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: "a"}},
			{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: "b"}},
		},
		Value: &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "istio-ext-authz"}}}},
	}
	mm, err := CompileMetadataMatcher("filter_enabled_metadata", xdspb.MustFrom[*pmatcherv3.MetadataMatcher](m))
	if err != nil {
		t.Fatal(err)
	}
	md := func(v *structpb.Value) func(string) *structpb.Struct {
		return func(ns string) *structpb.Struct {
			if ns != "envoy.filters.http.rbac" || v == nil {
				return nil
			}
			return &structpb.Struct{Fields: map[string]*structpb.Value{"a": v}}
		}
	}
	nested := func(s string) *structpb.Value {
		return structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{"b": structpb.NewStringValue(s)}})
	}
	for name, tc := range map[string]struct {
		v    *structpb.Value
		want bool
	}{
		"match":          {nested("istio-ext-authz-x"), true},
		"other value":    {nested("other"), false},
		"no namespace":   {nil, false},
		"not a struct":   {structpb.NewStringValue("istio-ext-authz"), false},
		"missing leaf":   {structpb.NewStructValue(&structpb.Struct{}), false},
		"number at leaf": {structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{"b": structpb.NewNumberValue(1)}}), false},
	} {
		if got := mm.Match(md(tc.v)); got != tc.want {
			t.Errorf("%s: got %v, want %v", name, got, tc.want)
		}
	}
	m.Invert = true
	if mm, err = CompileMetadataMatcher("f", xdspb.MustFrom[*pmatcherv3.MetadataMatcher](m)); err != nil || !mm.Match(md(nil)) || mm.Match(md(nested("istio-ext-authz"))) {
		t.Errorf("inverted: %v", err)
	}
	if _, err := CompileMetadataMatcher("f", xdspb.MustFrom[*pmatcherv3.MetadataMatcher](&matcherv3.MetadataMatcher{Filter: "x"})); err == nil {
		t.Error("a matcher without path compiled")
	}
}
