package xdsclient

import (
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	clusterv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/cluster/v3"
	discoveryv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/service/discovery/v3"
)

// FuzzDecode feeds arbitrary bytes as the body of a received resource (bare or wrapped in a
// discovery Resource envelope): decode must return an error or a named resource, never panic.
func FuzzDecode(f *testing.F) {
	c, _ := proto.Marshal(&clusterv3.Cluster{Name: "outbound|80||a.default.svc.cluster.local"})
	f.Add(c, false)
	f.Add(c, true)
	f.Add([]byte{0x0a, 0xff, 0xff}, false)
	f.Add([]byte{}, true)
	f.Fuzz(func(t *testing.T, body []byte, envelope bool) {
		a := &anypb.Any{TypeUrl: ClusterType, Value: body}
		if envelope {
			env, err := proto.Marshal(&discoveryv3.Resource{Resource: a})
			if err != nil {
				return
			}
			a = &anypb.Any{TypeUrl: "type.googleapis.com/envoy.service.discovery.v3.Resource", Value: env}
		}
		name, m, _, err := decode(ClusterType, a)
		if err == nil && (m == nil || name != m.(*clusterv3.Cluster).GetName()) {
			t.Fatalf("decode returned %q for %v", name, m)
		}
	})
}
