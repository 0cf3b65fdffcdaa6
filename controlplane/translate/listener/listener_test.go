package listener

import (
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/registry"
)

func TestChainSetDropsDuplicateMatches(t *testing.T) {
	var cs chainSet
	a := &listenerv3.FilterChain{Name: "a", FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: u32(80)}}
	b := &listenerv3.FilterChain{Name: "b", FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: u32(80)}}
	c := &listenerv3.FilterChain{Name: "c", FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: u32(80), ServerNames: []string{"x"}}}
	if !cs.add(a) || cs.add(b) || !cs.add(c) {
		t.Fatal("duplicate detection")
	}
	if len(cs.chains) != 2 || cs.chains[0] != a || !cs.tls || cs.http {
		t.Fatalf("chains %v tls=%v http=%v", cs.chains, cs.tls, cs.http)
	}
}

func TestCIDRRanges(t *testing.T) {
	got := cidrRanges([]string{"10.0.0.1", "192.168.0.0/16", "2001:db8::1", "not-an-ip"})
	if len(got) != 3 || got[0].GetPrefixLen().GetValue() != 32 || got[1].GetPrefixLen().GetValue() != 16 || got[2].GetPrefixLen().GetValue() != 128 {
		t.Fatalf("cidrRanges = %v", got)
	}
}

func TestSidecarIngressDefaultEndpoints(t *testing.T) {
	ports, err := sidecarIngress([]*networking.IstioIngressListener{
		{Port: &networking.SidecarPort{Number: 80, Name: "http"}},
		{Port: &networking.SidecarPort{Number: 81, Protocol: "TCP", Name: "x"}, DefaultEndpoint: "0.0.0.0:9000"},
		{Port: &networking.SidecarPort{Number: 82, Name: "grpc"}, DefaultEndpoint: "unix:///run/app.sock", Bind: "10.0.0.5"},
		{Port: &networking.SidecarPort{Number: 83, Name: "http-b"}, Bind: "10.0.0.5", CaptureMode: networking.CaptureMode_NONE},
	}, nil, Instance{IPs: []string{"10.0.0.5"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		endpoint string
		target   uint32
		proto    registry.Protocol
		bind     string
	}{
		{"127.0.0.1", 80, registry.HTTP, ""},
		{"10.0.0.5", 9000, registry.TCP, ""},
		// A bind address on a captured proxy: the port's traffic arrives at virtualInbound.
		{"unix:///run/app.sock", 0, registry.GRPC, ""},
		{"127.0.0.1", 83, registry.HTTP, "10.0.0.5"},
	}
	for i, w := range want {
		p := ports[i]
		if p.Endpoint != w.endpoint || p.TargetPort != w.target || p.Port.Protocol != w.proto || p.Bind != w.bind {
			t.Errorf("ingress[%d] = %+v, want %+v", i, p, w)
		}
	}
	// Without interception, every ingress listener binds: at its bind address or the instance IP.
	explicit, err := sidecarIngress([]*networking.IstioIngressListener{
		{Port: &networking.SidecarPort{Number: 80, Name: "http"}},
		{Port: &networking.SidecarPort{Number: 81, Name: "http-b"}, Bind: "127.0.0.9"},
	}, nil, Instance{IPs: []string{"127.0.0.5"}, Explicit: true})
	if err != nil {
		t.Fatal(err)
	}
	if explicit[0].Bind != "127.0.0.5" || explicit[1].Bind != "127.0.0.9" {
		t.Errorf("explicit binds %q, %q; want 127.0.0.5, 127.0.0.9", explicit[0].Bind, explicit[1].Bind)
	}
	if _, err := sidecarIngress([]*networking.IstioIngressListener{{Port: &networking.SidecarPort{Number: 1}, DefaultEndpoint: "nonsense"}}, nil, Instance{}); err == nil {
		t.Error("bad defaultEndpoint: want an error")
	}
}

func TestGatewayErrors(t *testing.T) {
	gw := func(s *networking.Server) []*config.Object {
		return []*config.Object{{Kind: config.Gateway, Meta: config.Meta{Name: "gw", Namespace: "ns"},
			Spec: &networking.Gateway{Servers: []*networking.Server{s}}}}
	}
	for name, s := range map[string]*networking.Server{
		"tls.mode": {Port: &networking.Port{Number: 443, Protocol: "TLS", Name: "tls"}, Hosts: []string{"*"},
			Tls: &networking.ServerTLSSettings{Mode: networking.ServerTLSSettings_AUTO_PASSTHROUGH}},
		"credentialName": {Port: &networking.Port{Number: 443, Protocol: "HTTPS", Name: "https"}, Hosts: []string{"*"},
			Tls: &networking.ServerTLSSettings{Mode: networking.ServerTLSSettings_SIMPLE}},
		"protocol": {Port: &networking.Port{Number: 53, Protocol: "UDP", Name: "dns"}, Hosts: []string{"*"}},
		"bind":     {Port: &networking.Port{Number: 80, Protocol: "HTTP", Name: "http"}, Hosts: []string{"*"}, Bind: "unix:///x"},
	} {
		_, err := BuildGateway(Gateway{Gateways: gw(s)})
		if err == nil || !strings.Contains(err.Error(), "Gateway ns/gw: servers[0]") {
			t.Errorf("%s: error = %v, want one naming the gateway server", name, err)
		}
	}
}
