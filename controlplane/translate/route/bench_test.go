package route_test

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/types/known/durationpb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/registry"
	"github.com/strait-mesh/strait/controlplane/translate/route"
)

// benchInputs is a mesh of 1,000 services with 3 HTTP ports each across 10 namespaces, and 200
// VirtualServices (header match, weighted subsets, retries, timeout) for the first 200 services.
func benchInputs() route.Inputs {
	in := route.Inputs{Proxy: route.Proxy{Namespace: "ns0", Labels: map[string]string{"app": "client"}}}
	for i := 0; i < 1000; i++ {
		ns := fmt.Sprintf("ns%d", i%10)
		in.Services = append(in.Services, &registry.Service{
			Hostname:  fmt.Sprintf("svc%04d.%s.svc.cluster.local", i, ns),
			Namespace: ns,
			Addresses: []string{fmt.Sprintf("10.96.%d.%d", i/250, i%250+1)},
			Ports: []registry.Port{
				{Name: "http", Number: 80, Protocol: registry.HTTP},
				{Name: "http2", Number: 8080, Protocol: registry.HTTP2},
				{Name: "grpc", Number: 9090, Protocol: registry.GRPC},
			},
		})
	}
	for i := 0; i < 200; i++ {
		ns := fmt.Sprintf("ns%d", i%10)
		host := fmt.Sprintf("svc%04d", i)
		in.VirtualServices = append(in.VirtualServices, &config.Object{
			Kind: config.VirtualService,
			Meta: config.Meta{Name: host, Namespace: ns},
			Spec: &networking.VirtualService{
				Hosts: []string{host},
				Http: []*networking.HTTPRoute{
					{
						Name: "canary",
						Match: []*networking.HTTPMatchRequest{{
							Headers: map[string]*networking.StringMatch{"x-canary": {MatchType: &networking.StringMatch_Exact{Exact: "1"}}},
							Uri:     &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{Prefix: "/api"}},
						}},
						Route:   []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: host, Subset: "v2"}}},
						Timeout: durationpb.New(5e9),
					},
					{
						Route: []*networking.HTTPRouteDestination{
							{Destination: &networking.Destination{Host: host, Subset: "v1"}, Weight: 90},
							{Destination: &networking.Destination{Host: host, Subset: "v2"}, Weight: 10},
						},
						Retries: &networking.HTTPRetry{Attempts: 3, RetryOn: "5xx,connect-failure"},
					},
				},
			},
		})
	}
	return in
}

// BenchmarkOutbound measures building all outbound route configurations (3 ports) of one sidecar
// for 1,000 services × 3 ports and 200 VirtualServices, including indexing the inputs.
func BenchmarkOutbound(b *testing.B) {
	in := benchInputs()
	b.ReportAllocs()
	for b.Loop() {
		bld, err := route.New(in)
		if err != nil {
			b.Fatal(err)
		}
		for _, p := range bld.OutboundPorts() {
			if _, err := bld.Outbound(p); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkOutboundPort measures one port's route configuration with a prepared Builder.
func BenchmarkOutboundPort(b *testing.B) {
	bld, err := route.New(benchInputs())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := bld.Outbound(80); err != nil {
			b.Fatal(err)
		}
	}
}

func TestBenchInputsValidate(t *testing.T) {
	bld, err := route.New(benchInputs())
	if err != nil {
		t.Fatal(err)
	}
	ports := bld.OutboundPorts()
	if len(ports) != 3 {
		t.Fatalf("ports = %v, want 3", ports)
	}
	for _, p := range ports {
		rc, err := bld.Outbound(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := rc.Validate(); err != nil {
			t.Fatalf("port %d: %v", p, err)
		}
		if got := len(rc.VirtualHosts); got != 1001 {
			t.Fatalf("port %d: %d virtual hosts, want 1001", p, got)
		}
	}
}
