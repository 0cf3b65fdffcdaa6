package translate_test

import (
	"reflect"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	meshconfig "istio.io/api/mesh/v1alpha1"

	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/mesh/meshtest"
	"github.com/strait-mesh/strait/controlplane/translate"
	"github.com/strait-mesh/strait/internal/nametable"
	"github.com/strait-mesh/strait/internal/node"
	"github.com/strait-mesh/strait/internal/workloadtable"
)

var workloadTableConfig = meshtest.Object("WorkloadEntry", "reviews-v1-a", "default", `  address: 10.0.0.7
  serviceAccount: reviews
  labels: {app: reviews, version: v1, security.istio.io/tlsMode: istio, topology.istio.io/cluster: east}
`) + "---\n" + meshtest.Object("WorkloadEntry", "reviews-v2-pod", "default", `  address: "2001:db8::8"
  serviceAccount: reviews
  labels: {app: reviews, service.istio.io/workload-name: reviews-v2, app.kubernetes.io/version: "2.0", service.istio.io/canonical-name: reviews-cs}
`) + "---\n" + meshtest.Object("WorkloadEntry", "by-dns", "shop", `  address: vm.example.com
  serviceAccount: vm
`) + "---\n" + `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: vms-10.0.1.9
  namespace: shop
  annotations: {istio.io/autoRegistrationGroup: vms}
spec:
  address: 10.0.1.9
  serviceAccount: vm
  labels: {app: vm, security.istio.io/tlsMode: istio}
` + "---\n" + meshtest.Object("ServiceEntry", "db", "data", `  hosts: [db.data.svc.cluster.local]
  ports: [{number: 5432, name: tcp}]
  resolution: STATIC
  endpoints:
  - {address: 10.0.2.1, serviceAccount: db, labels: {app: db}}
  - {address: 10.0.2.1, serviceAccount: db, labels: {app: db}}
`) + "---\n" + meshtest.Object("ServiceEntry", "reviews", "default", `  hosts: [reviews.default.svc.cluster.local]
  ports: [{number: 9080, name: http}]
  resolution: STATIC
  workloadSelector: {labels: {app: reviews}}
`)

func workloadTableSnapshot(t *testing.T, version uint64, extra ...string) *mesh.Snapshot {
	t.Helper()
	return meshtest.Snapshot(t, "workloadtable", version, &meshconfig.MeshConfig{TrustDomain: "example.org", TrustDomainAliases: []string{"old.example.org"}},
		append([]string{workloadTableConfig}, extra...)...)
}

func workloadTableProxy(typ node.Type, dns, table bool) *translate.Proxy {
	id := node.NewID(typ, "10.0.0.1", "productpage-1", "default")
	return &translate.Proxy{ID: id, Node: &corev3.Node{Id: id.String()}, Type: typ, Namespace: "default",
		IPs: []string{"10.0.0.1"}, WorkloadName: "productpage-1", InterceptMode: "REDIRECT", DNSCapture: dns, WorkloadTable: table}
}

func decodeWorkloadTable(t *testing.T, res translate.Resources) workloadtable.Table {
	t.Helper()
	for _, r := range res[resource.ExtensionConfigType] {
		tec := r.(*corev3.TypedExtensionConfig)
		if tec.GetName() != workloadtable.Name {
			continue
		}
		if err := tec.Validate(); err != nil {
			t.Fatal(err)
		}
		table, err := workloadtable.Decode(tec.GetName(), tec.GetTypedConfig())
		if err != nil {
			t.Fatal(err)
		}
		return table
	}
	t.Fatalf("no workload table in %v", res[resource.ExtensionConfigType])
	return workloadtable.Table{}
}

func TestWorkloadTable(t *testing.T) {
	g := translate.New(translate.Options{})
	snap := workloadTableSnapshot(t, 1)
	res, err := g.Generate(snap, workloadTableProxy(node.Sidecar, false, true))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(res[resource.ExtensionConfigType]); n != 1 {
		t.Fatalf("ECDS resources: %d, want the workload table", n)
	}
	want := workloadtable.Table{TrustDomains: []string{"example.org", "old.example.org"}, Workloads: []workloadtable.Workload{
		// Inline endpoints have no workload name; the duplicate is listed once.
		{Namespace: "data", ServiceAccount: "db", Addresses: []string{"10.0.2.1"}, App: "db", CanonicalService: "db", CanonicalRevision: "latest"},
		{Name: "reviews-v1-a", Namespace: "default", ServiceAccount: "reviews", Addresses: []string{"10.0.0.7"}, App: "reviews", Version: "v1",
			CanonicalService: "reviews", CanonicalRevision: "v1", Cluster: "east", Sidecar: true},
		{Name: "reviews-v2", Namespace: "default", ServiceAccount: "reviews", Addresses: []string{"2001:db8::8"}, App: "reviews",
			CanonicalService: "reviews-cs", CanonicalRevision: "2.0"},
		// A hostname is no peer address; the identity still names the workload.
		{Name: "by-dns", Namespace: "shop", ServiceAccount: "vm", CanonicalService: "by-dns", CanonicalRevision: "latest"},
		// An auto-registered entry is its WorkloadGroup's workload.
		{Name: "vms", Namespace: "shop", ServiceAccount: "vm", Addresses: []string{"10.0.1.9"}, App: "vm", CanonicalService: "vm",
			CanonicalRevision: "latest", Sidecar: true},
	}}
	if got := decodeWorkloadTable(t, res); !reflect.DeepEqual(got, want) {
		t.Fatalf("workload table:\n got %+v\nwant %+v", got, want)
	}

	// Every proxy shares the one table: a gateway, and a sidecar that also captures DNS (both
	// tables in its ECDS list).
	gw, err := g.Generate(snap, workloadTableProxy(node.Router, false, true))
	if err != nil {
		t.Fatal(err)
	}
	if gw[resource.ExtensionConfigType][0] != res[resource.ExtensionConfigType][0] {
		t.Error("the gateway got another workload table object")
	}
	both, err := g.Generate(snap, workloadTableProxy(node.Sidecar, true, true))
	if err != nil {
		t.Fatal(err)
	}
	if l := both[resource.ExtensionConfigType]; len(l) != 2 || l[0].(*corev3.TypedExtensionConfig).GetName() != nametable.Name || l[1] != res[resource.ExtensionConfigType][0] {
		t.Errorf("DNS and workload table: %v", l)
	}
	again, _ := g.Generate(snap, workloadTableProxy(node.Sidecar, true, true))
	if &again[resource.ExtensionConfigType][0] != &both[resource.ExtensionConfigType][0] {
		t.Error("the combined ECDS list is not shared")
	}

	// A proxy that does not ask gets none.
	res, err = g.Generate(snap, workloadTableProxy(node.Sidecar, false, false))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := res[resource.ExtensionConfigType]; ok {
		t.Fatal("workload table sent to a proxy without WORKLOAD_TABLE")
	}

	// The next snapshot with the same workloads carries the same resource over; a new workload
	// makes a new one.
	first := gw[resource.ExtensionConfigType][0]
	res2, err := g.Generate(workloadTableSnapshot(t, 2), workloadTableProxy(node.Sidecar, false, true))
	if err != nil {
		t.Fatal(err)
	}
	if res2[resource.ExtensionConfigType][0] != first {
		t.Fatal("unchanged workloads: the table was rebuilt")
	}
	res3, err := g.Generate(workloadTableSnapshot(t, 3, meshtest.Object("WorkloadEntry", "new", "shop", "  address: 10.0.1.10\n")),
		workloadTableProxy(node.Sidecar, false, true))
	if err != nil {
		t.Fatal(err)
	}
	if res3[resource.ExtensionConfigType][0] == first || len(decodeWorkloadTable(t, res3).Workloads) != len(want.Workloads)+1 {
		t.Fatal("a new WorkloadEntry did not change the table")
	}
}
