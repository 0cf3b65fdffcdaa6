package xdsclient

import (
	"context"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/strait-mesh/strait/internal/testenv"
)

// TestExtensionConfigByName: ECDS (the DNS name table) is requested only by name, and only once
// the handler names a resource, over Delta and SotW.
func TestExtensionConfigByName(t *testing.T) {
	for _, sotw := range []bool{false, true} {
		t.Run(map[bool]string{false: "delta", true: "sotw"}[sotw], func(t *testing.T) {
			body, err := anypb.New(&structpb.Struct{})
			if err != nil {
				t.Fatal(err)
			}
			ecds := []types.Resource{&corev3.TypedExtensionConfig{Name: "strait.nametable", TypedConfig: body}}
			if !sotw {
				// go-control-plane's ADS snapshot cache answers a SotW request only when it
				// names every resource of the type; Delta shows that others are not sent.
				ecds = append(ecds, &corev3.TypedExtensionConfig{Name: "other", TypedConfig: body})
			}
			snap, err := cachev3.NewSnapshot("1", map[resource.Type][]types.Resource{
				resource.ClusterType: {&clusterv3.Cluster{Name: "a",
					ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}}},
				resource.ExtensionConfigType: ecds,
			})
			if err != nil {
				t.Fatal(err)
			}
			cache := cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)
			if err := cache.SetSnapshot(context.Background(), testNode(t).GetId(), snap); err != nil {
				t.Fatal(err)
			}
			ts := testenv.StartADS(t, testenv.ADSOptions{Cache: cache, SotWOnly: sotw})
			c, rec := runClient(t, ts.Addr())
			waitFor(t, "clusters", func() bool { return rec.get(ClusterType) == "a" })
			if got := rec.get(ExtensionConfigType); got != "" {
				t.Fatalf("extension configs %q before any was named", got)
			}
			c.SetNames(ExtensionConfigType, []string{"strait.nametable"})
			waitFor(t, "the named extension config", func() bool { return rec.get(ExtensionConfigType) == "strait.nametable" })
		})
	}
}
