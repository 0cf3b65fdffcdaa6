package translate_test

import (
	"reflect"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/mesh/meshtest"
	"github.com/strait-mesh/strait/controlplane/registry"
	"github.com/strait-mesh/strait/controlplane/translate"
	"github.com/strait-mesh/strait/internal/nametable"
	"github.com/strait-mesh/strait/internal/node"
)

var nameTableConfig = meshtest.Object("ServiceEntry", "reviews", "default", `  hosts: [reviews.default.svc.cluster.local]
  ports: [{number: 9080, name: http}]
  resolution: STATIC
  workloadSelector: {labels: {app: reviews}}
`) + "---\n" + meshtest.Object("ServiceEntry", "ratings", "prod", `  hosts: [ratings.prod.svc.cluster.local]
  addresses: [10.96.0.11, "2001:db8::11", 10.97.0.0/16]
  ports: [{number: 9080, name: http}]
  resolution: STATIC
`) + "---\n" + meshtest.Object("ServiceEntry", "external", "default", `  hosts: [api.example.com, "*.wild.example.com"]
  ports: [{number: 443, name: tls}]
  resolution: DNS
`) + "---\n" + meshtest.Object("ServiceEntry", "passthrough", "default", `  hosts: [legacy.example.com]
  ports: [{number: 5432, name: tcp}]
  resolution: NONE
`)

func nameTableSnapshot(t *testing.T, version uint64) *mesh.Snapshot {
	t.Helper()
	return meshtest.Snapshot(t, "nametable", version, nil, nameTableConfig)
}

func nameTableProxy(dns bool) *translate.Proxy {
	id := node.NewID(node.Sidecar, "10.0.0.1", "productpage-1", "default")
	return &translate.Proxy{ID: id, Node: &corev3.Node{Id: id.String()}, Type: node.Sidecar, Namespace: "default",
		IPs: []string{"10.0.0.1"}, WorkloadName: "productpage-1", InterceptMode: "REDIRECT", DNSCapture: dns}
}

func TestNameTable(t *testing.T) {
	g := translate.New(translate.Options{})
	snap := nameTableSnapshot(t, 1)
	res, err := g.Generate(snap, nameTableProxy(true))
	if err != nil {
		t.Fatal(err)
	}
	list := res[resource.ExtensionConfigType]
	if len(list) != 1 {
		t.Fatalf("ECDS resources: %d, want the name table", len(list))
	}
	tec := list[0].(*corev3.TypedExtensionConfig)
	if err := tec.Validate(); err != nil {
		t.Fatal(err)
	}
	table, err := nametable.Decode(tec.GetName(), tec.GetTypedConfig())
	if err != nil {
		t.Fatal(err)
	}
	reviewsVIP := snap.Service("reviews.default.svc.cluster.local", "default").Addresses
	apiVIP := snap.Service("api.example.com", "default").Addresses
	if len(reviewsVIP) != 1 || !registry.AutoAllocated(reviewsVIP[0]) || len(apiVIP) != 1 || !registry.AutoAllocated(apiVIP[0]) {
		t.Fatalf("auto-allocated addresses: reviews %v, api %v", reviewsVIP, apiVIP)
	}
	want := nametable.Table{
		"reviews.default.svc.cluster.local": {IPs: reviewsVIP, AltHosts: []string{"reviews", "reviews.default", "reviews.default.svc"}},
		"ratings.prod.svc.cluster.local":    {IPs: []string{"10.96.0.11", "2001:db8::11"}, AltHosts: []string{"ratings.prod", "ratings.prod.svc"}},
		"api.example.com":                   {IPs: apiVIP},
	}
	if !reflect.DeepEqual(table, want) {
		t.Fatalf("name table:\n got %v\nwant %v", table, want)
	}

	// Without DNS capture there is no name table.
	res, err = g.Generate(snap, nameTableProxy(false))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := res[resource.ExtensionConfigType]; ok {
		t.Fatal("name table sent to a proxy without DNS_CAPTURE")
	}

	// The next snapshot with the same config carries the same resource over.
	res2, err := g.Generate(nameTableSnapshot(t, 2), nameTableProxy(true))
	if err != nil {
		t.Fatal(err)
	}
	if res2[resource.ExtensionConfigType][0] != list[0] {
		t.Fatal("unchanged config: the name table was rebuilt")
	}
	if !strings.HasPrefix(tec.GetTypedConfig().GetTypeUrl(), "type.googleapis.com/xds.type.v3.TypedStruct") {
		t.Fatalf("typed_config %s", tec.GetTypedConfig().GetTypeUrl())
	}
}
