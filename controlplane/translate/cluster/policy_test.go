package cluster

import (
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/registry"
)

func TestEffectivePolicy(t *testing.T) {
	rr := &networking.LoadBalancerSettings{LbPolicy: &networking.LoadBalancerSettings_Simple{Simple: networking.LoadBalancerSettings_ROUND_ROBIN}}
	random := &networking.LoadBalancerSettings{LbPolicy: &networking.LoadBalancerSettings_Simple{Simple: networking.LoadBalancerSettings_RANDOM}}
	least := &networking.LoadBalancerSettings{LbPolicy: &networking.LoadBalancerSettings_Simple{Simple: networking.LoadBalancerSettings_LEAST_REQUEST}}
	tls := &networking.ClientTLSSettings{Mode: networking.ClientTLSSettings_ISTIO_MUTUAL}
	dr := &networking.DestinationRule{
		TrafficPolicy: &networking.TrafficPolicy{
			LoadBalancer: rr,
			Tls:          tls,
			PortLevelSettings: []*networking.TrafficPolicy_PortTrafficPolicy{
				{Port: &networking.PortSelector{Number: 9090}, LoadBalancer: random},
			},
		},
		Subsets: []*networking.Subset{{Name: "v2", TrafficPolicy: &networking.TrafficPolicy{
			PortLevelSettings: []*networking.TrafficPolicy_PortTrafficPolicy{
				{Port: &networking.PortSelector{Number: 8080}, LoadBalancer: least},
			},
		}}},
	}
	for _, tc := range []struct {
		name   string
		subset *networking.Subset
		port   uint32
		want   *networking.LoadBalancerSettings
	}{
		{"top level", nil, 8080, rr},
		{"port level", nil, 9090, random},
		{"subset inherits port level", dr.Subsets[0], 9090, random},
		{"subset port level wins", dr.Subsets[0], 8080, least},
	} {
		got := EffectivePolicy(dr, tc.subset, tc.port)
		if got.GetLoadBalancer() != tc.want {
			t.Errorf("%s: load balancer = %v, want %v", tc.name, got.GetLoadBalancer(), tc.want)
		}
		if got.GetTls() != tls {
			t.Errorf("%s: tls not inherited", tc.name)
		}
		if len(got.GetPortLevelSettings()) != 0 {
			t.Errorf("%s: port level settings left in the result", tc.name)
		}
	}
	if EffectivePolicy(nil, nil, 80) != nil {
		t.Error("no DestinationRule: want nil policy")
	}
}

func TestOutboundClusterTypes(t *testing.T) {
	port := registry.Port{Name: "http", Number: 80, Protocol: registry.HTTP}
	for _, tc := range []struct {
		res       registry.Resolution
		proxyless bool
		want      clusterv3.Cluster_DiscoveryType
		none      bool
	}{
		{registry.ResolutionStatic, false, clusterv3.Cluster_EDS, false},
		{registry.ResolutionDNS, false, clusterv3.Cluster_STRICT_DNS, false},
		{registry.ResolutionDNSRoundRobin, false, clusterv3.Cluster_LOGICAL_DNS, false},
		{registry.ResolutionNone, false, clusterv3.Cluster_ORIGINAL_DST, false},
		{registry.ResolutionDNS, true, clusterv3.Cluster_LOGICAL_DNS, false},
		{registry.ResolutionNone, true, 0, true},
	} {
		svc := &registry.Service{Hostname: "a.example.com", Ports: []registry.Port{port}, Resolution: tc.res}
		eps := []*registry.Endpoint{{Address: "a.example.com", Port: 80, ServicePortName: "http"}}
		cs, err := Outbound(svc, port, eps, nil, Options{Proxyless: tc.proxyless})
		if err != nil {
			t.Fatal(err)
		}
		if tc.none {
			if len(cs) != 0 {
				t.Errorf("resolution %d proxyless: want no cluster, got %d", tc.res, len(cs))
			}
			continue
		}
		if len(cs) != 1 || cs[0].GetType() != tc.want {
			t.Errorf("resolution %d proxyless=%v: got %v, want type %v", tc.res, tc.proxyless, cs, tc.want)
			continue
		}
		if err := cs[0].Validate(); err != nil {
			t.Errorf("resolution %d: Validate: %v", tc.res, err)
		}
	}
}

func TestUnsupportedFields(t *testing.T) {
	svc := &registry.Service{Hostname: "a.example.com", Resolution: registry.ResolutionStatic}
	port := registry.Port{Name: "http", Number: 80, Protocol: registry.HTTP}
	for name, tp := range map[string]*networking.TrafficPolicy{
		"trafficPolicy.tunnel": {Tunnel: &networking.TrafficPolicy_TunnelSettings{Protocol: "CONNECT", TargetHost: "x", TargetPort: 1}},
		"trafficPolicy.loadBalancer.warmup": {LoadBalancer: &networking.LoadBalancerSettings{
			LbPolicy: &networking.LoadBalancerSettings_Simple{Simple: networking.LoadBalancerSettings_RANDOM},
			Warmup:   &networking.WarmupConfiguration{Duration: durationProto(10)}}},
		"trafficPolicy.tls": {Tls: &networking.ClientTLSSettings{Mode: networking.ClientTLSSettings_MUTUAL}},
	} {
		r := &Rule{Namespace: "ns", Name: "dr", Spec: &networking.DestinationRule{TrafficPolicy: tp}}
		_, err := Outbound(svc, port, nil, r, Options{})
		pe, ok := err.(*PolicyError)
		if !ok || pe.Field != name || pe.Name != "dr" {
			t.Errorf("%s: error = %v, want a PolicyError for the field", name, err)
		}
	}
}

func durationProto(sec int64) *durationpb.Duration { return &durationpb.Duration{Seconds: sec} }
