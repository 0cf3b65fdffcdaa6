package xds

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/strait-mesh/strait/internal/node"
)

func TestParseProxy(t *testing.T) {
	labels := structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{"app": structpb.NewStringValue("vm")}})
	n := &corev3.Node{Id: "sidecar~10.1.0.7~vm-1.prod~prod.svc.cluster.local", Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{
		node.MetaNamespace:      structpb.NewStringValue("prod"),
		node.MetaLabels:         labels,
		node.MetaServiceAccount: structpb.NewStringValue("vm-sa"),
		node.MetaInstanceIPs:    structpb.NewStringValue("127.0.0.7, ::1"),
		node.MetaWorkloadGroup:  structpb.NewStringValue("vms"),
		node.MetaInterceptMode:  structpb.NewStringValue("none"),
		node.MetaGenerator:      structpb.NewStringValue("grpc"),
		node.MetaDNSCapture:     structpb.NewStringValue("true"),
	}}}
	p, err := ParseProxy(n)
	if err != nil {
		t.Fatal(err)
	}
	if p.Type != node.Sidecar || p.Namespace != "prod" || p.ID.Name != "vm-1" || p.Labels["app"] != "vm" ||
		p.ServiceAccount != "vm-sa" || strings.Join(p.IPs, ",") != "127.0.0.7,::1" || p.WorkloadGroup != "vms" ||
		p.InterceptMode != "NONE" || !p.Proxyless || p.WorkloadName != "vm-1" || p.Node != n || !p.DNSCapture {
		t.Errorf("ParseProxy = %+v", p)
	}

	// Defaults: IP from the node id, REDIRECT interception.
	p, err = ParseProxy(&corev3.Node{Id: "router~127.0.0.9~gw-1.istio-system~istio-system.svc.cluster.local"})
	if err != nil {
		t.Fatal(err)
	}
	if p.Type != node.Router || strings.Join(p.IPs, ",") != "127.0.0.9" || p.InterceptMode != "REDIRECT" || p.Proxyless || p.DNSCapture {
		t.Errorf("defaults = %+v", p)
	}

	for name, c := range map[string]struct {
		n    *corev3.Node
		want string
	}{
		"nil":                {nil, "missing node id"},
		"empty id":           {&corev3.Node{}, "missing node id"},
		"parts":              {&corev3.Node{Id: "sidecar~1.2.3.4"}, "want 4 parts"},
		"type":               {&corev3.Node{Id: "bogus~1.2.3.4~a.b~b.svc.cluster.local"}, "unknown proxy type"},
		"ip":                 {&corev3.Node{Id: "sidecar~not-an-ip~a.b~b.svc.cluster.local"}, "ip part"},
		"namespace":          {withMeta("sidecar~1.2.3.4~a.b~b.svc.cluster.local", node.MetaNamespace, structpb.NewStringValue("c")), "does not match"},
		"instance ips":       {withMeta("sidecar~1.2.3.4~a.b~b.svc.cluster.local", node.MetaInstanceIPs, structpb.NewStringValue("1.2.3")), node.MetaInstanceIPs},
		"intercept mode":     {withMeta("sidecar~1.2.3.4~a.b~b.svc.cluster.local", node.MetaInterceptMode, structpb.NewStringValue("magic")), node.MetaInterceptMode},
		"stats address host": {withMeta("sidecar~1.2.3.4~a.b~b.svc.cluster.local", node.MetaStatsAddress, structpb.NewStringValue("metrics.example:15090")), node.MetaStatsAddress},
		"stats address port": {withMeta("sidecar~1.2.3.4~a.b~b.svc.cluster.local", node.MetaStatsAddress, structpb.NewStringValue("1.2.3.4:0")), node.MetaStatsAddress},
		"admin address":      {withMeta("sidecar~1.2.3.4~a.b~b.svc.cluster.local", node.MetaAdminAddress, structpb.NewStringValue("15000")), node.MetaAdminAddress},
		"label value": {withMeta("sidecar~1.2.3.4~a.b~b.svc.cluster.local", node.MetaLabels,
			structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{"n": structpb.NewNumberValue(1)}})), "LABELS.n"},
	} {
		if _, err := ParseProxy(c.n); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want it to contain %q", name, err, c.want)
		}
	}
}

func withMeta(id, key string, v *structpb.Value) *corev3.Node {
	return &corev3.Node{Id: id, Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{key: v}}}
}

func TestProxyAddress(t *testing.T) {
	for addr, want := range map[string]string{
		"":                "",
		"127.0.0.1:15000": "127.0.0.1:15000",
		"0.0.0.0:15090":   "10.1.0.7:15090",
		":15090":          "10.1.0.7:15090",
		"[::]:15090":      "10.1.0.7:15090",
		"[::1]:15000":     "[::1]:15000",
	} {
		n := withMeta("sidecar~10.1.0.7~a.b~b.svc.cluster.local", node.MetaStatsAddress, structpb.NewStringValue(addr))
		p, err := ParseProxy(n)
		if err != nil {
			t.Fatalf("%q: %v", addr, err)
		}
		if got := proxyAddress(p, node.MetaStatsAddress); got != want {
			t.Errorf("proxyAddress(%q) = %q, want %q", addr, got, want)
		}
	}
}
