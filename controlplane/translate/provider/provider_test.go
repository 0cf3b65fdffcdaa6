package provider

import (
	"strings"
	"testing"

	"github.com/strait-mesh/strait/controlplane/registry"
)

func TestLookupService(t *testing.T) {
	services := []*registry.Service{
		{Hostname: "ext-authz.foo.svc.cluster.local", Namespace: "foo"},
		{Hostname: "twice.example.com", Namespace: "bar"},
		{Hostname: "twice.example.com", Namespace: "baz"},
	}
	for _, tc := range []struct{ service, host, err string }{
		{"ext-authz.foo.svc.cluster.local", "ext-authz.foo.svc.cluster.local", ""},
		{"foo/ext-authz.foo.svc.cluster.local", "ext-authz.foo.svc.cluster.local", ""},
		{"bar/ext-authz.foo.svc.cluster.local", "", "not in the service registry"},
		{"baz/twice.example.com", "twice.example.com", ""},
		{"twice.example.com", "", "several namespaces (bar, baz)"},
		{"ext-authz", "", "not in the service registry"}, // short names are not expanded
		{"", "", "service is required"},
	} {
		host, err := LookupService(tc.service, services)
		if host != tc.host || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("LookupService(%q) = %q, %v; want %q, %q", tc.service, host, err, tc.host, tc.err)
		}
	}
	host, cluster, err := Cluster("foo/ext-authz.foo.svc.cluster.local", 9411, services)
	if err != nil || host != "ext-authz.foo.svc.cluster.local" || cluster != "outbound|9411||ext-authz.foo.svc.cluster.local" {
		t.Errorf("Cluster = %q, %q, %v", host, cluster, err)
	}
	if _, _, err := Cluster("ext-authz.foo.svc.cluster.local", 0, services); err == nil {
		t.Error("port 0 accepted")
	}
}
