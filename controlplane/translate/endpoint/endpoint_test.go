package endpoint

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/registry"
)

func TestLocalityPriority(t *testing.T) {
	failover := []*networking.LocalityLoadBalancerSetting_Failover{{From: "us-east", To: "eu-west"}}
	for _, tc := range []struct {
		ep   string
		want uint32
	}{
		{"us-east/a/1", 0},
		{"us-east/a/2", 1},
		{"us-east/b", 2},
		{"eu-west/a", 3},
		{"ap-south/a", 4},
	} {
		if got := localityPriority("us-east/a/1", tc.ep, failover); got != tc.want {
			t.Errorf("priority of %s = %d, want %d", tc.ep, got, tc.want)
		}
	}
	if got := localityPriority("", "us-east/a", nil); got != 0 {
		t.Errorf("no proxy locality: priority %d, want 0", got)
	}
}

func TestBuildSubsetsAndPriorities(t *testing.T) {
	port := registry.Port{Name: "http", Number: 80}
	eps := []*registry.Endpoint{
		{Address: "10.0.0.1", Port: 80, ServicePortName: "http", Labels: map[string]string{"v": "1"}, Locality: "r1/z1", Healthy: true},
		{Address: "10.0.0.2", Port: 80, ServicePortName: "http", Labels: map[string]string{"v": "2"}, Locality: "r2/z1", Healthy: true},
		{Address: "10.0.0.3", Port: 81, ServicePortName: "other", Labels: map[string]string{"v": "1"}, Locality: "r1/z1", Healthy: true},
	}
	cla := Build("c", port, map[string]string{"v": "1"}, eps, Options{})
	if len(cla.Endpoints) != 1 || len(cla.Endpoints[0].LbEndpoints) != 1 {
		t.Fatalf("subset v1: %v", cla)
	}
	cla = Build("c", port, nil, eps, Options{
		ProxyLocality:    &corev3.Locality{Region: "r2", Zone: "z1"},
		Locality:         &networking.LocalityLoadBalancerSetting{},
		OutlierDetection: true,
	})
	if len(cla.Endpoints) != 2 || cla.Endpoints[0].Priority != 0 || cla.Endpoints[0].Locality.Region != "r2" || cla.Endpoints[1].Priority != 1 {
		t.Fatalf("failover priorities: %v", cla)
	}
	if err := cla.Validate(); err != nil {
		t.Fatal(err)
	}
	// Without outlier detection Istio does not fail over by locality: one priority.
	cla = Build("c", port, nil, eps, Options{ProxyLocality: &corev3.Locality{Region: "r2"}, Locality: &networking.LocalityLoadBalancerSetting{}})
	for _, l := range cla.Endpoints {
		if l.Priority != 0 {
			t.Fatalf("priority without outlier detection: %v", cla)
		}
	}
}
