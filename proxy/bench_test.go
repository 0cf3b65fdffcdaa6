package proxy

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/strait-mesh/strait/proxy/xdsclient"
	clusterv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/cluster/v3"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	endpointv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/endpoint/v3"
)

func benchClusters(b *testing.B, n int, suffix string) map[string]*xdsclient.Resource {
	ms := make([]proto.Message, n)
	for i := range ms {
		name := fmt.Sprintf("outbound|80||svc-%d.default.svc.cluster.local%s", i, suffix)
		ms[i] = &clusterv3.Cluster{
			Name:                 name,
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
			LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
				LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
					Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
						Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(10000 + i)},
					}}},
				}}}},
			}}},
		}
	}
	return resources(&testing.T{}, ms...)
}

// BenchmarkApplyClusters measures a CDS update of 1,000 clusters in which one cluster changed
// (the common case: unchanged clusters are reused, not recompiled).
func BenchmarkApplyClusters(b *testing.B) {
	p := newTestProxy(&testing.T{})
	base := benchClusters(b, 1000, "")
	if err := p.Apply(xdsclient.ClusterType, base); err != nil {
		b.Fatal(err)
	}
	alt := benchClusters(b, 1, "-x")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		set := make(map[string]*xdsclient.Resource, len(base)+1)
		for k, v := range base {
			set[k] = v
		}
		if i%2 == 0 {
			for k, v := range alt {
				set[k] = v
			}
		}
		if err := p.Apply(xdsclient.ClusterType, set); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEnvCluster is the per-request cost of resolving a cluster through the runtime.
func BenchmarkEnvCluster(b *testing.B) {
	p := newTestProxy(&testing.T{})
	if err := p.Apply(xdsclient.ClusterType, benchClusters(b, 1000, "")); err != nil {
		b.Fatal(err)
	}
	env := l7Env{p}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if env.Cluster("outbound|80||svc-500.default.svc.cluster.local") == nil {
			b.Fatal("missing")
		}
	}
}
