package proxy

import (
	"strings"
	"testing"

	"github.com/strait-mesh/strait/internal/nametable"
	"github.com/strait-mesh/strait/internal/node"
	"github.com/strait-mesh/strait/proxy/xdsclient"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
)

func TestApplyNameTable(t *testing.T) {
	p := newTestProxy(t)
	if p.Runtime().Names != nil {
		t.Fatal("a name table before any update")
	}
	tc, err := nametable.Encode(nametable.Table{
		"reviews.default.svc.cluster.local": {IPs: []string{"240.240.1.7"}, AltHosts: []string{"reviews"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	tec := &corev3.TypedExtensionConfig{Name: nametable.Name, TypedConfig: tc}
	if err := p.Apply(xdsclient.ExtensionConfigType, resources(t, tec)); err != nil {
		t.Fatal(err)
	}
	rt := p.Runtime()
	if v4, _, ok := rt.Names.Resolve("reviews"); !ok || len(v4) != 1 || v4[0].String() != "240.240.1.7" {
		t.Fatalf("reviews: %v %v", v4, ok)
	}
	if len(rt.Resources[xdsclient.ExtensionConfigType]) != 1 {
		t.Fatal("accepted ECDS set not recorded")
	}

	// A bad table or another extension config is rejected and the table in force stays.
	badTC, _ := nametable.Encode(nametable.Table{"x.example.com": {IPs: []string{"not-an-ip"}}})
	bad := &corev3.TypedExtensionConfig{Name: nametable.Name, TypedConfig: badTC}
	other := &corev3.TypedExtensionConfig{Name: "envoy.filters.http.wasm", TypedConfig: tec.GetTypedConfig()}
	for _, set := range []*corev3.TypedExtensionConfig{bad, other} {
		err := p.Apply(xdsclient.ExtensionConfigType, resources(t, set))
		if err == nil || !strings.Contains(err.Error(), set.GetName()) {
			t.Fatalf("applying %s: %v, want an error naming it", set.GetName(), err)
		}
	}
	if p.Runtime() != rt {
		t.Fatal("a rejected update changed the runtime")
	}
	// The table removed: no mesh names.
	if err := p.Apply(xdsclient.ExtensionConfigType, map[string]*xdsclient.Resource{}); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := p.Runtime().Names.Resolve("reviews"); ok {
		t.Fatal("reviews still resolves after the table was removed")
	}
}

func TestDNSCaptureMetadata(t *testing.T) {
	o := Options{DNSAddress: "127.0.0.1:0", Node: xdsclient.NodeInfo{Type: node.Sidecar}}
	if !o.dnsEnabled() {
		t.Fatal("sidecar with a DNS address: DNS off")
	}
	n := withDNSCapture(o.Node)
	if n.Extra[node.MetaDNSCapture] != "true" || o.Node.Extra != nil {
		t.Fatalf("extra %v (original %v)", n.Extra, o.Node.Extra)
	}
	o.Node.Type = node.Router
	if o.dnsEnabled() {
		t.Fatal("router: DNS on")
	}
}
