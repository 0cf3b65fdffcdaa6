package proxy

import (
	"slices"
	"strings"
	"testing"

	"github.com/strait-mesh/strait/internal/nametable"
	"github.com/strait-mesh/strait/internal/node"
	"github.com/strait-mesh/strait/internal/workloadtable"
	"github.com/strait-mesh/strait/proxy/xdsclient"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
)

func TestApplyWorkloadTable(t *testing.T) {
	p := newTestProxy(t)
	if p.telemetry.Peers() != nil {
		t.Fatal("a workload table before any update")
	}
	table := workloadtable.Table{TrustDomains: []string{"cluster.local"}, Workloads: []workloadtable.Workload{
		{Name: "reviews-v1", Namespace: "default", ServiceAccount: "reviews", Addresses: []string{"10.0.0.7"}, App: "reviews"}}}
	wtc, err := workloadtable.Encode(table)
	if err != nil {
		t.Fatal(err)
	}
	wt := &corev3.TypedExtensionConfig{Name: workloadtable.Name, TypedConfig: wtc}
	ntc, err := nametable.Encode(nametable.Table{"reviews.default.svc.cluster.local": {IPs: []string{"240.240.1.7"}}})
	if err != nil {
		t.Fatal(err)
	}
	names := &corev3.TypedExtensionConfig{Name: nametable.Name, TypedConfig: ntc}
	if err := p.Apply(xdsclient.ExtensionConfigType, resources(t, wt, names)); err != nil {
		t.Fatal(err)
	}
	peers := p.telemetry.Peers()
	if peers.Len() != 1 || p.Runtime().Names == nil {
		t.Fatalf("workload table %d entries, name table %v", peers.Len(), p.Runtime().Names)
	}

	// The same bytes again keep the compiled table; a bad table is rejected,
	// naming it, and the one in force stays.
	if err := p.Apply(xdsclient.ExtensionConfigType, resources(t, wt, names)); err != nil || p.telemetry.Peers() != peers {
		t.Fatalf("same table: %v, recompiled %v", err, p.telemetry.Peers() != peers)
	}
	badTC, _ := workloadtable.Encode(workloadtable.Table{Workloads: []workloadtable.Workload{{Addresses: []string{"not-an-ip"}}}})
	bad := &corev3.TypedExtensionConfig{Name: workloadtable.Name, TypedConfig: badTC}
	if err := p.Apply(xdsclient.ExtensionConfigType, resources(t, bad)); err == nil || !strings.Contains(err.Error(), workloadtable.Name) {
		t.Fatalf("bad table: %v, want an error naming it", err)
	}
	if p.telemetry.Peers() != peers {
		t.Fatal("a rejected update changed the workload table")
	}

	// The table removed: peers unknown again.
	if err := p.Apply(xdsclient.ExtensionConfigType, map[string]*xdsclient.Resource{}); err != nil {
		t.Fatal(err)
	}
	if p.telemetry.Peers() != nil {
		t.Fatal("workload table still in force after its removal")
	}
}

func TestWorkloadTableSubscription(t *testing.T) {
	o := Options{Node: xdsclient.NodeInfo{Type: node.Router}}
	if n := o.withExtensionConfigs(o.Node); n.Extra[node.MetaWorkloadTable] != "true" || n.Extra[node.MetaDNSCapture] != "" || o.Node.Extra != nil {
		t.Fatalf("router metadata %v (original %v)", n.Extra, o.Node.Extra)
	}
	if got := o.extensionConfigNames(); !slices.Equal(got, []string{workloadtable.Name}) {
		t.Errorf("router ECDS names %v", got)
	}
	o = Options{DNSAddress: "127.0.0.1:0", Node: xdsclient.NodeInfo{Type: node.Sidecar}}
	if n := o.withExtensionConfigs(o.Node); n.Extra[node.MetaWorkloadTable] != "true" || n.Extra[node.MetaDNSCapture] != "true" {
		t.Fatalf("sidecar metadata %v", n.Extra)
	}
	if got := o.extensionConfigNames(); !slices.Equal(got, []string{nametable.Name, workloadtable.Name}) {
		t.Errorf("sidecar ECDS names %v", got)
	}
}
