package mesh_test

import (
	"testing"

	meshconfig "istio.io/api/mesh/v1alpha1"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/mesh/meshtest"
)

var fixture = meshtest.Object("ServiceEntry", "reviews", "default", `  hosts: [reviews.default.svc.cluster.local]
  ports: [{number: 9080, name: http}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.1, labels: {version: v1}}]
`) + "---\n" + meshtest.Object("ServiceEntry", "private", "team-a", `  hosts: [private.team-a.svc.cluster.local]
  exportTo: ["."]
  ports: [{number: 80, name: http}, {number: 9000, name: tcp}]
  resolution: STATIC
  endpoints: [{address: 10.0.1.1}]
`) + "---\n" + meshtest.Object("ServiceEntry", "ext", "team-b", `  hosts: [api.example.com]
  exportTo: [team-a, team-b]
  location: MESH_EXTERNAL
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
`) + "---\n" + meshtest.Object("DestinationRule", "reviews-root", "istio-system", `  host: "*.svc.cluster.local"
  subsets: [{name: root}]
`) + "---\n" + meshtest.Object("DestinationRule", "reviews-svc", "default", `  host: reviews
  subsets: [{name: v1, labels: {version: v1}}]
`) + "---\n" + meshtest.Object("DestinationRule", "reviews-svc2", "default", `  host: reviews.default.svc.cluster.local
  subsets: [{name: v2, labels: {version: v2}}, {name: v1, labels: {version: other}}]
`) + "---\n" + meshtest.Object("DestinationRule", "reviews-local", "team-a", `  host: reviews.default.svc.cluster.local
  exportTo: ["."]
  subsets: [{name: local}]
`) + "---\n" + meshtest.Object("DestinationRule", "reviews-selected", "team-a", `  host: reviews.default.svc.cluster.local
  workloadSelector: {matchLabels: {app: special}}
  subsets: [{name: selected}]
`) + "---\n" + meshtest.Object("Sidecar", "default", "team-a", `  egress:
  - hosts: ["./*", "team-b/*"]
`) + "---\n" + meshtest.Object("Sidecar", "narrow", "team-a", `  workloadSelector: {labels: {app: narrow}}
  egress:
  - port: {number: 9000, name: tcp, protocol: TCP}
    hosts: ["./*"]
`) + "---\n" + meshtest.Object("Sidecar", "default", "istio-system", `  egress:
  - hosts: ["./*", "istio-system/*"]
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
`) + "---\n" + meshtest.Object("VirtualService", "reviews", "default", `  hosts: [reviews]
  http: [{route: [{destination: {host: reviews}}]}]
`) + "---\n" + meshtest.Object("VirtualService", "gw-only", "default", `  hosts: ["*"]
  gateways: [ingress, other/gw, mesh]
  exportTo: ["."]
  http: [{route: [{destination: {host: reviews}}]}]
`) + "---\n" + meshtest.Object("Gateway", "ingress", "default", `  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
`)

func snapshot(t *testing.T) *mesh.Snapshot {
	t.Helper()
	return meshtest.Snapshot(t, "fixture", 1, &meshconfig.MeshConfig{}, fixture)
}

func TestServiceVisibility(t *testing.T) {
	s := snapshot(t)
	for _, tc := range []struct {
		host, ns string
		want     bool
	}{
		{"reviews.default.svc.cluster.local", "anything", true},
		{"private.team-a.svc.cluster.local", "team-a", true},
		{"private.team-a.svc.cluster.local", "default", false},
		{"api.example.com", "team-a", true},
		{"api.example.com", "default", false},
	} {
		if got := s.Service(tc.host, tc.ns) != nil; got != tc.want {
			t.Errorf("Service(%s, %s) visible = %v, want %v", tc.host, tc.ns, got, tc.want)
		}
	}
}

func hosts(sc *mesh.Scope) []string {
	var out []string
	for _, s := range sc.Services {
		out = append(out, s.Hostname)
	}
	return out
}

func TestScope(t *testing.T) {
	s := snapshot(t)
	for _, tc := range []struct {
		name         string
		w            mesh.Workload
		want         []string
		registryOnly bool
	}{
		{"namespace default sidecar", mesh.Workload{Namespace: "team-a"}, []string{"api.example.com", "private.team-a.svc.cluster.local"}, false},
		{"selected sidecar, port 9000", mesh.Workload{Namespace: "team-a", Labels: map[string]string{"app": "narrow"}}, []string{"private.team-a.svc.cluster.local"}, false},
		{"root sidecar", mesh.Workload{Namespace: "default"}, []string{"reviews.default.svc.cluster.local"}, true},
		{"root sidecar: . is the proxy namespace", mesh.Workload{Namespace: "team-b"}, []string{"api.example.com"}, true},
		{"root namespace itself", mesh.Workload{Namespace: "istio-system"}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc := s.Scope(tc.w)
			got := hosts(sc)
			if len(got) != len(tc.want) {
				t.Fatalf("services = %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("services = %v, want %v", got, tc.want)
				}
			}
			if sc.RegistryOnly != tc.registryOnly {
				t.Errorf("RegistryOnly = %v", sc.RegistryOnly)
			}
		})
	}
	narrow := s.Scope(mesh.Workload{Namespace: "team-a", Labels: map[string]string{"app": "narrow"}})
	svc := narrow.Services[0]
	if narrow.Reaches(svc, 80) || !narrow.Reaches(svc, 9000) {
		t.Errorf("port-restricted egress: reaches 80=%v 9000=%v", narrow.Reaches(svc, 80), narrow.Reaches(svc, 9000))
	}
	if s.Scope(mesh.Workload{Namespace: "default"}) != s.Scope(mesh.Workload{Namespace: "default", Labels: map[string]string{"x": "y"}}) {
		t.Error("scope not shared between proxies with the same sidecar")
	}
}

func TestDestinationRulePrecedence(t *testing.T) {
	s := snapshot(t)
	const reviews = "reviews.default.svc.cluster.local"
	for _, tc := range []struct {
		name    string
		w       mesh.Workload
		host    string
		subsets []string
	}{
		{"service namespace, merged", mesh.Workload{Namespace: "default"}, reviews, []string{"v1", "v2"}},
		{"proxy namespace first", mesh.Workload{Namespace: "team-a"}, reviews, []string{"local"}},
		{"workload selector", mesh.Workload{Namespace: "team-a", Labels: map[string]string{"app": "special"}}, reviews, []string{"selected"}},
		{"service namespace from elsewhere", mesh.Workload{Namespace: "team-b"}, reviews, []string{"v1", "v2"}},
		{"root namespace wildcard", mesh.Workload{Namespace: "team-b"}, "x.y.svc.cluster.local", []string{"root"}},
		{"none", mesh.Workload{Namespace: "team-b"}, "api.example.com", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := s.DestinationRule(tc.w, tc.host)
			var got []string
			if o != nil {
				for _, ss := range o.Spec.(*networking.DestinationRule).GetSubsets() {
					got = append(got, ss.GetName())
				}
			}
			if len(got) != len(tc.subsets) {
				t.Fatalf("subsets = %v, want %v", got, tc.subsets)
			}
			for i := range got {
				if got[i] != tc.subsets[i] {
					t.Fatalf("subsets = %v, want %v", got, tc.subsets)
				}
			}
		})
	}
}

func TestVirtualServicesAndGateways(t *testing.T) {
	s := snapshot(t)
	names := func(gw, ns string) (out []string) {
		for _, o := range s.VirtualServices(ns, gw) {
			out = append(out, o.Name)
		}
		return out
	}
	if got := names("mesh", "default"); len(got) != 2 {
		t.Errorf("mesh VS in default = %v", got)
	}
	if got := names("mesh", "team-a"); len(got) != 1 || got[0] != "reviews" {
		t.Errorf("mesh VS in team-a = %v (gw-only is exported to default only)", got)
	}
	if got := names("default/ingress", "default"); len(got) != 1 || got[0] != "gw-only" {
		t.Errorf("default/ingress VS = %v", got)
	}
	if got := names("other/gw", "default"); len(got) != 1 {
		t.Errorf("other/gw VS = %v", got)
	}
	if g := s.Gateways(mesh.Workload{Namespace: "istio-system", Labels: map[string]string{"istio": "ingressgateway"}}); len(g) != 1 {
		t.Errorf("gateways = %d", len(g))
	}
	if g := s.Gateways(mesh.Workload{Namespace: "istio-system", Labels: map[string]string{"istio": "egress"}}); len(g) != 0 {
		t.Errorf("gateways for egress = %d", len(g))
	}
	sc := s.Scope(mesh.Workload{Namespace: "team-a"})
	if vs := sc.VirtualServices(s); len(vs) != 0 {
		t.Errorf("team-a scope VS = %d, want 0 (reviews is in default, not admitted)", len(vs))
	}
}
