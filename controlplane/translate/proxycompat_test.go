package translate_test

import (
	"crypto/tls"
	"path/filepath"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/strait-mesh/strait/controlplane/translate"
	"github.com/strait-mesh/strait/controlplane/translate/envoyfilter/proxycheck"
	"github.com/strait-mesh/strait/proxy/stats"
	"github.com/strait-mesh/strait/proxy/upstream"
	"github.com/strait-mesh/strait/proxy/xdspb"
	pclusterv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/cluster/v3"
	pendpointv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/endpoint/v3"
	ptlsv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/transport_sockets/tls/v3"
)

// knownProxyGaps are features the control plane emits (for Envoy and gRPC) that strait-proxy
// does not implement yet; resources using them are expected to be rejected by its compilers.
var knownProxyGaps = []string{
	"api_listener: not supported", // proxyless gRPC listeners: for grpc-go, not strait-proxy
	"envoy.transport_sockets.upstream_proxy_protocol",
}

// TestProxyCompiles feeds every golden case's output to strait-proxy's compilers (clusters,
// endpoints, listeners, routes): what the control plane sends must be what the proxy accepts,
// apart from knownProxyGaps. DNS clusters are skipped (compiling them resolves names).
//
// A case whose header lists proxyPending (features the control plane emits for which
// strait-proxy's support is being written) must fail to compile, and only on those features:
// once the proxy accepts the case, the test fails until proxyPending is removed.
func TestProxyCompiles(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*.input.yaml")
	if err != nil {
		t.Fatal(err)
	}
	known := func(err error) bool {
		for _, g := range knownProxyGaps {
			if strings.Contains(err.Error(), g) {
				return true
			}
		}
		return false
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".input.yaml")
		t.Run(name, func(t *testing.T) {
			pending := caseHeader(t, in).ProxyPending
			var pendingErrs int
			known := func(err error) bool {
				for _, f := range pending {
					if strings.Contains(err.Error(), f) {
						pendingErrs++
						return true
					}
				}
				return known(err)
			}
			if len(pending) > 0 {
				defer func() {
					if pendingErrs == 0 {
						t.Errorf("strait-proxy now compiles this case: remove proxyPending %q from its header", pending)
					}
				}()
			}
			snap, p := loadCase(t, in)
			res, err := translate.New(translate.Options{RateLimitService: goldenRateLimitService}).Generate(snap, p)
			if err != nil {
				t.Fatal(err)
			}
			clusters := map[string]*upstream.Cluster{}
			deps := upstream.Deps{Stats: stats.NewStore(),
				ClientTLS: func(*ptlsv3.UpstreamTlsContext) (*tls.Config, error) { return &tls.Config{}, nil }}
			for _, r := range res[resource.ClusterType] {
				c := r.(*clusterv3.Cluster)
				if c.GetType() == clusterv3.Cluster_STRICT_DNS || c.GetType() == clusterv3.Cluster_LOGICAL_DNS {
					continue
				}
				cc, err := upstream.Compile(xdspb.MustFrom[*pclusterv3.Cluster](c), deps)
				if err != nil {
					if !known(err) {
						t.Errorf("cluster: %v", err)
					}
					continue
				}
				clusters[c.GetName()] = cc
				defer cc.Close()
			}
			for _, r := range res[resource.EndpointType] {
				cla := r.(*endpointv3.ClusterLoadAssignment)
				if c := clusters[cla.GetClusterName()]; c != nil {
					if err := c.SetEndpoints(xdspb.MustFrom[*pendpointv3.ClusterLoadAssignment](cla)); err != nil {
						t.Errorf("endpoints %s: %v", cla.GetClusterName(), err)
					}
				}
			}
			var check proxycheck.Checker                  // as the control plane checks EnvoyFilter results
			for _, rc := range mergeVHDS(t, res, false) { // as strait-proxy's xdsclient merges VHDS
				if err := check.RouteConfiguration(rc); err != nil && !known(err) {
					t.Errorf("route: %v", err)
				}
			}
			for _, r := range res[resource.ListenerType] {
				if err := check.Listener(r.(*listenerv3.Listener)); err != nil && !known(err) {
					t.Errorf("listener: %v", err)
				}
			}
		})
	}
}
