package translate_test

import (
	"reflect"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/strait-mesh/strait/controlplane/translate"
	"github.com/strait-mesh/strait/internal/node"
	"github.com/strait-mesh/strait/internal/workloadtable"
)

// connectedProxy is a connected proxy of namespace ns with labels and instance IPs; identity
// "" is a plaintext (unauthenticated) stream, else the service account its certificate proved.
func connectedProxy(typ node.Type, name, ns, sa string, labels map[string]string, ips ...string) *translate.Proxy {
	id := node.NewID(typ, ips[0], name+"-abc", ns)
	n := &corev3.Node{Id: id.String(), Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{
		node.MetaClusterID: structpb.NewStringValue("Kubernetes")}}}
	p := &translate.Proxy{ID: id, Node: n, Type: typ, Namespace: ns, Labels: labels, ServiceAccount: sa, IPs: ips,
		WorkloadName: name, WorkloadTable: true}
	if sa != "" {
		p.Identity = "spiffe://example.org/ns/" + ns + "/sa/" + sa
	}
	return p
}

var ingressLabels = map[string]string{"app": "istio-ingressgateway", "istio": "ingressgateway"}

// TestConnectedWorkloads: authenticated gateways and sidecars are listed with their labels and
// Istio's fallbacks; plaintext proxies and proxyless clients are not; a proxy whose strings the
// proxies would refuse is left out with an error.
func TestConnectedWorkloads(t *testing.T) {
	gw := connectedProxy(node.Router, "istio-ingressgateway", "istio-system", "istio-ingressgateway-service-account", ingressLabels, "10.0.9.1")
	sc := connectedProxy(node.Sidecar, "ratings-v1", "default", "ratings",
		map[string]string{"app": "ratings", "version": "v1", "security.istio.io/tlsMode": "istio", "topology.istio.io/cluster": "west"},
		"10.0.3.1", "::ffff:10.0.3.1", "0.0.0.0", "fd00::3")
	plain := connectedProxy(node.Sidecar, "spoof", "default", "", map[string]string{"app": "reviews"}, "10.0.0.7")
	grpcClient := connectedProxy(node.Sidecar, "grpc", "default", "grpc", nil, "10.0.4.1")
	grpcClient.Proxyless = true
	long := connectedProxy(node.Router, "long", "default", "long", map[string]string{"app": strings.Repeat("a", 254)}, "10.0.5.1")
	routerTLSMode := connectedProxy(node.Router, "egress", "istio-system", "egress", map[string]string{"security.istio.io/tlsMode": "istio"}, "10.0.9.2")

	got, errs := translate.ConnectedWorkloads([]*translate.Proxy{sc, plain, gw, grpcClient, long, routerTLSMode, nil})
	want := []workloadtable.Workload{
		{Name: "ratings-v1", Namespace: "default", ServiceAccount: "ratings", Addresses: []string{"10.0.3.1", "fd00::3"},
			App: "ratings", Version: "v1", CanonicalService: "ratings", CanonicalRevision: "v1", Cluster: "west", Sidecar: true},
		// A gateway is never a plaintext-labelled peer, whatever its labels say.
		{Name: "egress", Namespace: "istio-system", ServiceAccount: "egress", Addresses: []string{"10.0.9.2"},
			CanonicalService: "egress", CanonicalRevision: "latest", Cluster: "Kubernetes"},
		{Name: "istio-ingressgateway", Namespace: "istio-system", ServiceAccount: "istio-ingressgateway-service-account",
			Addresses: []string{"10.0.9.1"}, App: "istio-ingressgateway", CanonicalService: "istio-ingressgateway",
			CanonicalRevision: "latest", Cluster: "Kubernetes"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("entries:\n got %+v\nwant %+v", got, want)
	}
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "app: 254 bytes, at most 253") {
		t.Errorf("errors = %v, want one naming app's length", errs)
	}
	// The order of the proxies does not matter.
	again, _ := translate.ConnectedWorkloads([]*translate.Proxy{routerTLSMode, gw, sc})
	if !reflect.DeepEqual(again, want) {
		t.Errorf("reordered:\n got %+v\nwant %+v", again, want)
	}
}

// TestWorkloadTableConnectedProxies: the table lists the connected proxies attached to the
// snapshot after the registry's workloads; a proxy the registry lists (its identity at its
// address) is not listed twice; an address the registry or another identity holds is removed;
// a disconnected proxy leaves the table; unchanged entries keep the shared resource.
func TestWorkloadTableConnectedProxies(t *testing.T) {
	g := translate.New(translate.Options{})
	px := workloadTableProxy(node.Sidecar, false, true)
	gw := connectedProxy(node.Router, "istio-ingressgateway", "istio-system", "ingress", ingressLabels, "10.0.9.1")
	// The sidecar of the WorkloadEntry reviews-v1-a: registered, not listed again.
	registered := connectedProxy(node.Sidecar, "reviews-v1", "default", "reviews", map[string]string{"app": "reviews"}, "10.0.0.7")
	// Claims the address of reviews-v1-a (another identity) and one another proxy claims too.
	thief := connectedProxy(node.Sidecar, "thief", "default", "thief", nil, "10.0.0.7", "10.0.8.8", "10.0.8.1")
	rival := connectedProxy(node.Sidecar, "rival", "default", "rival", nil, "10.0.8.8")
	plain := connectedProxy(node.Router, "plain-gw", "istio-system", "", ingressLabels, "10.0.9.9")

	table := func(version uint64, ps ...*translate.Proxy) (workloadtable.Table, *corev3.TypedExtensionConfig) {
		t.Helper()
		snap := workloadTableSnapshot(t, version)
		ws, _ := translate.ConnectedWorkloads(ps)
		translate.AttachConnectedWorkloads(snap, ws)
		res, err := g.Generate(snap, px)
		if err != nil {
			t.Fatal(err)
		}
		return decodeWorkloadTable(t, res), res[resource.ExtensionConfigType][0].(*corev3.TypedExtensionConfig)
	}
	base, _ := table(1)
	got, _ := table(2, gw, registered, thief, rival, plain)
	find := func(tb workloadtable.Table, ns, name string) *workloadtable.Workload {
		for i := range tb.Workloads {
			if w := &tb.Workloads[i]; w.Namespace == ns && w.Name == name {
				return w
			}
		}
		return nil
	}
	if n, want := len(got.Workloads), len(base.Workloads)+3; n != want {
		t.Errorf("workloads: %d, want %d (the registry's, the gateway, thief and rival): %+v", n, want, got.Workloads)
	}
	if w := find(got, "istio-system", "istio-ingressgateway"); w == nil || w.App != "istio-ingressgateway" ||
		w.ServiceAccount != "ingress" || !reflect.DeepEqual(w.Addresses, []string{"10.0.9.1"}) {
		t.Errorf("gateway entry: %+v", w)
	}
	if w := find(got, "default", "reviews-v1"); w != nil {
		t.Errorf("a registered proxy is listed again: %+v", w)
	}
	if w := find(got, "default", "thief"); w == nil || !reflect.DeepEqual(w.Addresses, []string{"10.0.8.1"}) {
		t.Errorf("thief keeps only its uncontested address: %+v", w)
	}
	if w := find(got, "default", "rival"); w == nil || w.Addresses != nil {
		t.Errorf("rival loses the contested address: %+v", w)
	}
	if w := find(got, "istio-system", "plain-gw"); w != nil {
		t.Errorf("a plaintext proxy is listed: %+v", w)
	}

	// Disconnected: the gateway leaves the table.
	gone, _ := table(3, registered, thief, rival)
	if w := find(gone, "istio-system", "istio-ingressgateway"); w != nil {
		t.Errorf("a disconnected gateway is still listed: %+v", w)
	}
	// Only a plaintext proxy left: the table of the registry alone.
	if got, _ := table(4, plain); !reflect.DeepEqual(got, base) {
		t.Errorf("table without authenticated proxies:\n got %+v\nwant %+v", got, base)
	}
	// The same connected proxies in the next snapshot: the very same resource (memoized), so
	// the xDS server sends nothing.
	_, r5 := table(5, registered, thief)
	if _, r6 := table(6, thief, registered); r5 != r6 {
		t.Error("unchanged connected proxies make a new resource")
	}
}
