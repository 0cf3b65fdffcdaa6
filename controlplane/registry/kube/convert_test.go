package kube

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"

	networking "istio.io/api/networking/v1alpha3"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/registry"
)

func ptr[T any](v T) *T { return &v }

func service(name string, spec corev1.ServiceSpec) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}, Spec: spec}
}

func slice(name, svc string, family discoveryv1.AddressType, ports map[string]int32, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: family,
		Endpoints:   eps,
	}
	for n, p := range ports {
		s.Ports = append(s.Ports, discoveryv1.EndpointPort{Name: ptr(n), Port: ptr(p)})
	}
	return s
}

func endpoint(pod string, ready, terminating bool, addrs ...string) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: addrs, NodeName: ptr("node-1"),
		Conditions: discoveryv1.EndpointConditions{Ready: ptr(ready), Serving: ptr(ready || terminating), Terminating: ptr(terminating)},
		TargetRef:  &corev1.ObjectReference{Kind: "Pod", Name: pod}}
}

func pod(name, version, sa string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default",
		Labels: map[string]string{"app": "reviews", "version": version}},
		Spec: corev1.PodSpec{ServiceAccountName: sa}}
}

// TestConvert builds the registry from converted Services and checks hosts, addresses,
// protocols, ports and endpoints of ClusterIP (dual-stack), headless and ExternalName Services.
func TestConvert(t *testing.T) {
	in := Input{
		Services: []*corev1.Service{
			service("reviews", corev1.ServiceSpec{ClusterIP: "198.19.240.10", ClusterIPs: []string{"198.19.240.10", "fd00::a"},
				Ports: []corev1.ServicePort{
					{Name: "http", Port: 9080, TargetPort: intstr.FromString("web")},
					{Name: "grpc-api", Port: 9090, TargetPort: intstr.FromInt32(19090)},
					{Name: "metrics", Port: 9100, AppProtocol: ptr("kubernetes.io/h2c")},
					{Name: "web", Port: 8080, AppProtocol: ptr("grpc-web")},
					{Name: "tcp-db", Port: 5432},
					{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP},
					{Name: "other", Port: 7000},
				}}),
			service("db", corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Ports: []corev1.ServicePort{{Name: "tcp", Port: 5432}}}),
			service("ext", corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "api.example.com",
				Ports: []corev1.ServicePort{{Name: "https", Port: 443}}}),
		},
		EndpointSlices: []*discoveryv1.EndpointSlice{
			slice("reviews-v4", "reviews", discoveryv1.AddressTypeIPv4, map[string]int32{"http": 8000, "grpc-api": 19090},
				endpoint("reviews-v1", true, false, "10.0.0.1"),
				endpoint("reviews-v2", false, false, "10.0.0.2"), // not ready
				endpoint("reviews-v3", false, true, "10.0.0.3"),  // terminating
			),
			slice("reviews-v6", "reviews", discoveryv1.AddressTypeIPv6, map[string]int32{"http": 8000, "grpc-api": 19090},
				endpoint("reviews-v1", true, false, "fd00::1")),
			slice("db-1", "db", discoveryv1.AddressTypeIPv4, map[string]int32{"tcp": 5432},
				endpoint("db-0", true, false, "10.0.1.1")),
		},
		Nodes: []*corev1.Node{{ObjectMeta: metav1.ObjectMeta{Name: "node-1",
			Labels: map[string]string{LabelRegion: "eu-west1", LabelZone: "eu-west1-b"}}}},
		Pods: []*corev1.Pod{pod("reviews-v1", "v1", "bookinfo-reviews"), pod("reviews-v2", "v2", ""), pod("db-0", "v1", "")},
	}
	objs := Convert(in)
	if len(objs) != 3 || objs[0].Name != "service:db" || objs[2].Name != "service:reviews" {
		t.Fatalf("objects: %v", objs)
	}
	services, eps, errs := registry.Build(objs)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	byHost := map[string]*registry.Service{}
	for _, s := range services {
		byHost[s.Hostname] = s
	}

	r := byHost["reviews.default.svc.cluster.local"]
	if r == nil {
		t.Fatalf("no reviews service: %v", services)
	}
	if !reflect.DeepEqual(r.Addresses, []string{"198.19.240.10", "fd00::a"}) || r.Resolution != registry.ResolutionStatic || r.AutoAllocated {
		t.Errorf("reviews: addresses %v resolution %v", r.Addresses, r.Resolution)
	}
	wantProto := map[string]registry.Protocol{"http": registry.HTTP, "grpc-api": registry.GRPC, "metrics": registry.HTTP2,
		"web": registry.GRPCWeb, "tcp-db": registry.TCP, "dns": registry.UDP, "other": registry.Unsupported}
	for name, want := range wantProto {
		if p := r.PortByName(name); p == nil || p.Protocol != want {
			t.Errorf("port %s: %+v, want protocol %s", name, p, want)
		}
	}
	if p := r.PortByName("grpc-api"); p.TargetPort != 19090 {
		t.Errorf("numeric targetPort: %d", p.TargetPort)
	}
	var got []string
	for _, e := range eps[r.Key()] {
		if e.ServicePortName != "http" {
			continue
		}
		got = append(got, e.Address)
		if e.Port != 8000 || e.Labels["version"] != "v1" || e.ServiceAccount != "bookinfo-reviews" || !e.Healthy ||
			e.Locality != "eu-west1/eu-west1-b" {
			t.Errorf("endpoint %+v", e)
		}
	}
	if !reflect.DeepEqual(got, []string{"10.0.0.1", "fd00::1"}) {
		t.Errorf("reviews http endpoints %v, want the ready ones of both families", got)
	}

	db := byHost["db.default.svc.cluster.local"]
	if db == nil || db.Resolution != registry.ResolutionNone || len(db.Addresses) != 0 || len(eps[db.Key()]) != 1 ||
		eps[db.Key()][0].ServiceAccount != "default" {
		t.Errorf("headless: %+v %v", db, eps[db.Key()])
	}
	ext := byHost["ext.default.svc.cluster.local"]
	if ext == nil || ext.Resolution != registry.ResolutionDNS || !ext.MeshExternal || len(eps[ext.Key()]) != 1 ||
		eps[ext.Key()][0].Address != "api.example.com" || eps[ext.Key()][0].Port != 443 {
		t.Errorf("ExternalName: %+v %v", ext, eps[ext.Key()])
	}
}

// TestConvertDomainAndExportTo checks the configured domain and the exportTo annotation.
func TestConvertDomainAndExportTo(t *testing.T) {
	svc := service("a", corev1.ServiceSpec{ClusterIP: "198.19.240.1", Ports: []corev1.ServicePort{{Name: "http", Port: 80}}})
	svc.Annotations = map[string]string{AnnotationExportTo: ". , istio-system"}
	services, _, _ := registry.Build(Convert(Input{Services: []*corev1.Service{svc}, Domain: "example.internal"}))
	if len(services) != 1 || services[0].Hostname != "a.default.svc.example.internal" ||
		!reflect.DeepEqual(services[0].ExportTo, []string{".", "istio-system"}) {
		t.Fatalf("services %+v", services)
	}
}

func TestLocality(t *testing.T) {
	for _, c := range []struct {
		labels map[string]string
		want   string
	}{
		{nil, ""},
		{map[string]string{LabelZone: "z"}, ""},
		{map[string]string{LabelRegion: "r"}, "r"},
		{map[string]string{LabelRegion: "r", LabelZone: "z", LabelSubzone: "s"}, "r/z/s"},
	} {
		if got := Locality(c.labels); got != c.want {
			t.Errorf("Locality(%v) = %q, want %q", c.labels, got, c.want)
		}
	}
}

func workloadEntry(name, ns string, we *networking.WorkloadEntry) *config.Object {
	return &config.Object{Kind: config.WorkloadEntry, Meta: config.Meta{Name: name, Namespace: ns}, Spec: we}
}

// TestConvertSelectsWorkloadEntries checks Istio's cross-registry selection: a Service's selector
// selects the WorkloadEntries of its namespace, a named targetPort resolved through their ports
// map (no endpoint on that port without it), a numeric one overridden by the port named as the
// service port; and a Pod lacking a named target port has no endpoint on that port.
func TestConvertSelectsWorkloadEntries(t *testing.T) {
	svc := service("reviews", corev1.ServiceSpec{ClusterIP: "198.19.240.10", Selector: map[string]string{"app": "reviews"},
		Ports: []corev1.ServicePort{
			{Name: "http", Port: 9080, TargetPort: intstr.FromString("web")},
			{Name: "grpc", Port: 9090, TargetPort: intstr.FromInt32(19090)},
			{Name: "tcp-admin", Port: 9999, TargetPort: intstr.FromString("admin")},
		}})
	objs := Convert(Input{
		Services: []*corev1.Service{svc},
		// The EndpointSlice controller resolves no "admin" port for reviews-v1: its slice lacks it.
		EndpointSlices: []*discoveryv1.EndpointSlice{
			slice("reviews-a", "reviews", discoveryv1.AddressTypeIPv4, map[string]int32{"http": 8000, "grpc": 19090},
				endpoint("reviews-v1", true, false, "10.0.0.1")),
			slice("reviews-b", "reviews", discoveryv1.AddressTypeIPv4, map[string]int32{"http": 8000, "grpc": 19090, "tcp-admin": 8999},
				endpoint("reviews-v2", true, false, "10.0.0.2")),
		},
		Pods: []*corev1.Pod{pod("reviews-v1", "v1", ""), pod("reviews-v2", "v2", "")},
	})
	objs = append(objs,
		workloadEntry("vm-1", "default", &networking.WorkloadEntry{Address: "10.1.0.1",
			Labels: map[string]string{"app": "reviews", "version": "vm"}, Ports: map[string]uint32{"web": 7000, "grpc": 7090},
			Network: "vm-net", ServiceAccount: "vm"}),
		workloadEntry("vm-2", "default", &networking.WorkloadEntry{Address: "10.1.0.2", Labels: map[string]string{"app": "reviews"}}),
		workloadEntry("other-app", "default", &networking.WorkloadEntry{Address: "10.1.0.3", Labels: map[string]string{"app": "db"}}),
		workloadEntry("other-ns", "other", &networking.WorkloadEntry{Address: "10.1.0.4", Labels: map[string]string{"app": "reviews"}}),
	)
	services, eps, errs := registry.Build(objs)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if len(services) != 1 || !reflect.DeepEqual(services[0].Selector, map[string]string{"app": "reviews"}) {
		t.Fatalf("services %+v", services)
	}
	var got []string
	for _, e := range eps[services[0].Key()] {
		got = append(got, fmt.Sprintf("%s %s:%d %s", e.ServicePortName, e.Address, e.Port, e.Network))
	}
	sort.Strings(got)
	want := []string{
		"grpc 10.0.0.1:19090 ", "grpc 10.0.0.2:19090 ",
		"grpc 10.1.0.1:7090 vm-net", // the WorkloadEntry's port named as the service port
		"grpc 10.1.0.2:19090 ",      // the numeric target port
		"http 10.0.0.1:8000 ", "http 10.0.0.2:8000 ",
		"http 10.1.0.1:7000 vm-net", // the named target port through the ports map; vm-2 has none
		"tcp-admin 10.0.0.2:8999 ",  // only the Pod whose slice has the port
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("endpoints:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// Without a selector (endpoints managed by hand) and for ExternalName, nothing is selected.
	for _, spec := range []corev1.ServiceSpec{
		{ClusterIP: "198.19.240.11", Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(80)}}},
		{Type: corev1.ServiceTypeExternalName, ExternalName: "api.example.com", Selector: map[string]string{"app": "reviews"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("web")}}},
	} {
		objs := append(Convert(Input{Services: []*corev1.Service{service("manual", spec)}}), workloadEntry("vm-1", "default",
			&networking.WorkloadEntry{Address: "10.1.0.1", Labels: map[string]string{"app": "reviews"}}))
		services, eps, _ := registry.Build(objs)
		for _, e := range eps[services[0].Key()] {
			if e.Address == "10.1.0.1" {
				t.Errorf("%s: selected the WorkloadEntry: %+v", spec.Type, e)
			}
		}
	}
}

// TestConvertNetwork checks an endpoint's network: its Pod's label, else the default (the system
// namespace's label).
func TestConvertNetwork(t *testing.T) {
	p2 := pod("reviews-v2", "v2", "")
	p2.Labels[LabelNetwork] = "net-2"
	in := Input{
		Services: []*corev1.Service{service("reviews", corev1.ServiceSpec{ClusterIP: "198.19.240.10",
			Ports: []corev1.ServicePort{{Name: "http", Port: 9080}}})},
		EndpointSlices: []*discoveryv1.EndpointSlice{slice("reviews-a", "reviews", discoveryv1.AddressTypeIPv4, map[string]int32{"http": 9080},
			endpoint("reviews-v1", true, false, "10.0.0.1"), endpoint("reviews-v2", true, false, "10.0.0.2"))},
		Pods: []*corev1.Pod{pod("reviews-v1", "v1", ""), p2},
	}
	for _, def := range []string{"", "net-1"} {
		in.Network = def
		eps := Convert(in)[0].Spec.(*networking.ServiceEntry).GetEndpoints()
		if len(eps) != 2 || eps[0].GetNetwork() != def || eps[1].GetNetwork() != "net-2" {
			t.Errorf("default %q: endpoints %v", def, eps)
		}
	}
}
