package selection

import (
	"strings"
	"testing"
	"time"

	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"

	"github.com/strait-mesh/strait/controlplane/config"
)

func obj(ns, name string, age int, labels map[string]string) *config.Object {
	ap := &security.AuthorizationPolicy{}
	if labels != nil {
		ap.Selector = &typev1beta1.WorkloadSelector{MatchLabels: labels}
	}
	return &config.Object{Kind: config.AuthorizationPolicy, Spec: ap, Meta: config.Meta{Namespace: ns, Name: name,
		CreationTimestamp: time.Date(2026, 1, 1, 0, 0, age, 0, time.UTC)}}
}

// policies reads AuthorizationPolicy selectors; other specs are not candidates.
var policies = Kind{Selector: func(o *config.Object) (map[string]string, bool) {
	ap, ok := o.Spec.(*security.AuthorizationPolicy)
	return ap.GetSelector().GetMatchLabels(), ok
}}

func names(objs []*config.Object) string {
	var s []string
	for _, o := range objs {
		s = append(s, o.Namespace+"/"+o.Name)
	}
	return strings.Join(s, " ")
}

func TestSelect(t *testing.T) {
	a := map[string]string{"app": "a"}
	all := []*config.Object{
		obj("foo", "ns-wide", 3, nil),
		obj("foo", "mine", 2, a),
		obj("foo", "theirs", 1, map[string]string{"app": "b"}),
		obj("foo", "same-age-b", 5, nil),
		obj("foo", "same-age-a", 5, nil),
		obj("istio-system", "mesh", 9, nil),
		obj("istio-system", "mesh-a", 8, a),
		obj("bar", "other-ns", 0, nil),
		{Kind: config.EnvoyFilter, Spec: &networking.EnvoyFilter{}, Meta: config.Meta{Namespace: "foo", Name: "other-kind"}},
	}
	got := names(Select(all, "foo", map[string]string{"app": "a", "v": "1"}, "istio-system", policies))
	want := "istio-system/mesh-a istio-system/mesh foo/mine foo/ns-wide foo/same-age-a foo/same-age-b"
	if got != want {
		t.Errorf("Select = %s, want %s", got, want)
	}
	if got := names(Select(all, "istio-system", a, "istio-system", policies)); got != "istio-system/mesh-a istio-system/mesh" {
		t.Errorf("Select in the root namespace = %s", got)
	}
	if got := Select(nil, "foo", a, "istio-system", policies); got != nil {
		t.Errorf("Select(nil) = %v, want nil", got)
	}
}

func TestSelectPriority(t *testing.T) {
	all := []*config.Object{
		obj("foo", "old", 1, nil),
		obj("foo", "new-low", 2, nil),
		obj("istio-system", "mesh-high", 3, nil),
	}
	prio := map[string]int32{"old": 10, "new-low": -5, "mesh-high": 100}
	k := policies
	k.Priority = func(o *config.Object) int32 { return prio[o.Name] }
	// The root namespace's still come first; priority orders within a namespace before age.
	if got, want := names(Select(all, "foo", nil, "istio-system", k)), "istio-system/mesh-high foo/new-low foo/old"; got != want {
		t.Errorf("Select = %s, want %s", got, want)
	}
}

func TestMatches(t *testing.T) {
	for _, tc := range []struct {
		sel, labels map[string]string
		want        bool
	}{
		{nil, nil, true},
		{nil, map[string]string{"app": "a"}, true},
		{map[string]string{"app": "a"}, map[string]string{"app": "a", "v": "1"}, true},
		{map[string]string{"app": "a", "v": "2"}, map[string]string{"app": "a", "v": "1"}, false},
		{map[string]string{"app": "a"}, nil, false},
		// An empty value requires the label, as in Kubernetes.
		{map[string]string{"app": ""}, map[string]string{"v": "1"}, false},
		{map[string]string{"app": ""}, map[string]string{"app": ""}, true},
	} {
		if got := Matches(tc.sel, tc.labels); got != tc.want {
			t.Errorf("Matches(%v, %v) = %v, want %v", tc.sel, tc.labels, got, tc.want)
		}
	}
}
