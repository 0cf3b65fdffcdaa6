package upstream

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/xdspb"
	clusterv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/cluster/v3"
	endpointv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/endpoint/v3"
	// Register the typed configs the control plane may put in clusters (in xdspb.Types).
	_ "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/outlier_detection_monitors/consecutive_errors/v3"
	_ "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/transport_sockets/proxy_protocol/v3"
	_ "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/transport_sockets/raw_buffer/v3"
	_ "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/upstreams/http/v3"
)

// TestCompilesControlPlaneOutput compiles every cluster (and its endpoints) in straitd's golden
// xDS files: what the control plane emits must be accepted by the proxy.
func TestCompilesControlPlaneOutput(t *testing.T) {
	files := testenv.ControlPlaneGoldens(t)
	n := 0
	for _, gf := range files {
		f, raw := gf.Name, gf.YAML
		var doc struct {
			Clusters  []any `json:"clusters"`
			Endpoints []any `json:"endpoints"`
		}
		if err := yaml.Unmarshal(raw, &doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		clas := map[string]*endpointv3.ClusterLoadAssignment{}
		// decode decodes one resource of the file (a YAML value) into m.
		decode := func(what string, v any, m proto.Message) {
			t.Helper()
			js, _ := yaml.Marshal(v)
			js, _ = yaml.YAMLToJSON(js)
			if err := (protojson.UnmarshalOptions{Resolver: xdspb.Resolver}).Unmarshal(js, m); err != nil {
				t.Fatalf("%s: decoding %s: %v", f, what, err)
			}
		}
		for _, e := range doc.Endpoints {
			cla := &endpointv3.ClusterLoadAssignment{}
			decode("endpoints", e, cla)
			clas[cla.GetClusterName()] = cla
		}
		for _, c := range doc.Clusters {
			cl := &clusterv3.Cluster{}
			decode("cluster", c, cl)
			deps := tlsDeps()
			deps.Resolver = offlineResolver // no DNS traffic off the machine from tests
			compiled, err := Compile(cl, deps)
			if err != nil {
				if known(err) {
					t.Logf("%s: skipped (needs files of a mesh host): %v", f, err)
					continue
				}
				t.Errorf("%s: %v", f, err)
				continue
			}
			n++
			if cla := clas[cl.GetEdsClusterConfig().GetServiceName()]; cla != nil && cl.GetType() == clusterv3.Cluster_EDS {
				if err := compiled.SetEndpoints(cla); err != nil {
					t.Errorf("%s: cluster %s: endpoints: %v", f, cl.GetName(), err)
				}
			}
			compiled.Close()
		}
	}
	t.Logf("compiled %d clusters from %d golden files", n, len(files))
}

// known reports errors that are expected here: certificate files that exist only on a mesh host.
func known(err error) bool {
	for _, s := range []string{"no such file or directory"} {
		if strings.Contains(err.Error(), s) {
			return true
		}
	}
	return false
}

// offlineResolver fails every lookup locally.
var offlineResolver = &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
	return nil, errors.New("DNS is disabled in this test")
}}
