package registry_test

import (
	"strings"
	"testing"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/mesh/meshtest"
	"github.com/strait-mesh/strait/controlplane/registry"
)

func TestSelectProtocol(t *testing.T) {
	for _, tc := range []struct {
		name, proto, app string
		want             registry.Protocol
	}{
		{"http", "", "", registry.HTTP},
		{"http-foo", "", "", registry.HTTP},
		{"HTTP2", "", "", registry.HTTP2},
		{"grpc-api", "", "", registry.GRPC},
		{"grpc-web", "", "", registry.GRPCWeb},
		{"grpc-web-x", "", "", registry.GRPCWeb},
		{"tcp-db", "", "", registry.TCP},
		{"tls", "", "", registry.TLS},
		{"https-x", "", "", registry.HTTPS},
		{"mongo", "", "", registry.Mongo},
		{"redis", "", "", registry.Redis},
		{"mysql", "", "", registry.MySQL},
		{"udp-dns", "", "", registry.UDP},
		{"web", "", "", registry.Unsupported},
		{"", "", "", registry.Unsupported},
		{"web", "", "kubernetes.io/h2c", registry.HTTP2},
		{"web", "", "kubernetes.io/ws", registry.HTTP},
		{"web", "", "grpc", registry.GRPC},
		{"http", "TCP", "", registry.TCP},
		{"tcp", "", "http", registry.HTTP},
	} {
		if got := registry.SelectProtocol(tc.name, tc.proto, tc.app); got != tc.want {
			t.Errorf("SelectProtocol(%q, %q, %q) = %s, want %s", tc.name, tc.proto, tc.app, got, tc.want)
		}
	}
}

func TestBuild(t *testing.T) {
	objs, err := meshtest.Decode("test", []byte(meshtest.Object("ServiceEntry", "vm", "apps", `  hosts: [vm.apps.svc.cluster.local, vm-alias.example.com]
  addresses: [240.0.0.1]
  ports: [{number: 8080, name: http, targetPort: 9090}, {number: 5432, name: tcp-db}]
  resolution: STATIC
  workloadSelector: {labels: {app: vm}}
  subjectAltNames: [spiffe://cluster.local/ns/apps/sa/vm]
`)+"---\n"+`apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-1, namespace: apps}
spec: {address: 10.1.0.1, labels: {app: vm, version: v1}, locality: us/east/a, weight: 3, serviceAccount: vm, ports: {tcp-db: 6543}}
`+"---\n"+`apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: other, namespace: apps}
spec: {address: 10.1.0.2, labels: {app: other}}
`+"---\n"+`apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-elsewhere, namespace: other}
spec: {address: 10.1.0.3, labels: {app: vm}}
`+"---\n"+meshtest.Object("ServiceEntry", "ext", "apps", `  hosts: [api.example.com]
  location: MESH_EXTERNAL
  ports: [{number: 443, name: https}]
  resolution: DNS
`)))
	if err != nil {
		t.Fatal(err)
	}
	svcs, eps, errs := registry.Build(objs)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if len(svcs) != 3 {
		t.Fatalf("got %d services, want 3", len(svcs))
	}
	api := svcs[0]
	if api.Hostname != "api.example.com" || !api.MeshExternal || api.Resolution != registry.ResolutionDNS || api.Ports[0].Protocol != registry.HTTPS {
		t.Errorf("api.example.com: %+v", api)
	}
	if e := eps[api.Key()]; len(e) != 1 || e[0].Address != "api.example.com" || e[0].Port != 443 {
		t.Errorf("DNS endpoints = %+v", e)
	}
	vm := svcs[2]
	if vm.Hostname != "vm.apps.svc.cluster.local" || vm.Selector["app"] != "vm" || len(vm.SubjectAltNames) != 1 {
		t.Errorf("vm: %+v", vm)
	}
	e := eps[vm.Key()]
	if len(e) != 2 {
		t.Fatalf("vm endpoints = %d, want 2 (one workload x two ports)", len(e))
	}
	if e[0].Port != 9090 || e[1].Port != 6543 || e[0].Weight != 3 || e[0].Locality != "us/east/a" || e[0].ServiceAccount != "vm" {
		t.Errorf("vm endpoints: %+v %+v", e[0], e[1])
	}
	if len(eps[svcs[1].Key()]) != 2 {
		t.Errorf("alias host endpoints = %d", len(eps[svcs[1].Key()]))
	}
}

// TestBuildKubernetesAnnotations checks that only the Kubernetes registry's objects (named
// "service:...") select WorkloadEntries by their annotation, and that a malformed one is
// reported.
func TestBuildKubernetesAnnotations(t *testing.T) {
	se := func(name, selector string) *config.Object {
		return &config.Object{Kind: config.ServiceEntry, Meta: config.Meta{Name: name, Namespace: "apps",
			Annotations: map[string]string{registry.AnnotationServiceSelector: selector}},
			Spec: &networking.ServiceEntry{Hosts: []string{name + ".example.com"}, Resolution: networking.ServiceEntry_STATIC,
				Ports: []*networking.ServicePort{{Number: 80, Name: "http"}}}}
	}
	we := &config.Object{Kind: config.WorkloadEntry, Meta: config.Meta{Name: "vm", Namespace: "apps"},
		Spec: &networking.WorkloadEntry{Address: "10.1.0.1", Labels: map[string]string{"app": "vm"}}}
	svcs, eps, errs := registry.Build([]*config.Object{se("user", `{"app":"vm"}`), se(registry.KubernetesServicePrefix+"kube", `{"app":"vm"}`), we})
	if len(errs) > 0 || len(svcs) != 2 {
		t.Fatalf("services %v, errors %v", svcs, errs)
	}
	for _, s := range svcs {
		n := len(eps[s.Key()])
		if want := map[string]int{"user.example.com": 0, "service:kube.example.com": 1}[s.Hostname]; n != want {
			t.Errorf("%s: %d endpoints, want %d", s.Hostname, n, want)
		}
	}
	_, _, errs = registry.Build([]*config.Object{se(registry.KubernetesServicePrefix+"bad", `app=vm`)})
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), registry.AnnotationServiceSelector) {
		t.Errorf("errors %v, want one naming the annotation", errs)
	}
}
