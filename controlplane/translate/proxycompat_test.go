package translate_test

import (
	"context"
	"crypto/tls"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/strait-mesh/strait/controlplane/translate"
	"github.com/strait-mesh/strait/proxy/l4"
	"github.com/strait-mesh/strait/proxy/l7"
	"github.com/strait-mesh/strait/proxy/listener"
	proute "github.com/strait-mesh/strait/proxy/route"
	"github.com/strait-mesh/strait/proxy/stats"
	"github.com/strait-mesh/strait/proxy/upstream"
)

// knownProxyGaps are features the control plane emits (for Envoy and gRPC) that strait-proxy
// does not implement yet; resources using them are expected to be rejected by its compilers.
var knownProxyGaps = []string{
	"api_listener: not supported", // proxyless gRPC listeners: for grpc-go, not strait-proxy
	"envoy.transport_sockets.upstream_proxy_protocol",
}

// compatEnv is the smallest environment strait-proxy's listener compiler needs.
type compatEnv struct{ st *stats.Store }

func (e compatEnv) Secret(string) *tlsv3.Secret               { return nil }
func (e compatEnv) HTTP() l7.Env                              { return e }
func (e compatEnv) HTTPOptions() l7.Options                   { return l7.Options{} }
func (e compatEnv) TCP() l4.Env                               { return compatL4{e} }
func (e compatEnv) Stats() *stats.Store                       { return e.st }
func (e compatEnv) Handoff(netip.AddrPort) *listener.Listener { return nil }
func (e compatEnv) Route(string) *proute.Table                { return nil }
func (e compatEnv) Cluster(string) l7.Upstream                { return nil }
func (e compatEnv) WithOriginalDst(ctx context.Context, _ netip.AddrPort) context.Context {
	return ctx
}

type compatL4 struct{ compatEnv }

func (compatL4) Cluster(string) l4.Upstream { return nil }

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
				ClientTLS: func(*tlsv3.UpstreamTlsContext) (*tls.Config, error) { return &tls.Config{}, nil }}
			for _, r := range res[resource.ClusterType] {
				c := r.(*clusterv3.Cluster)
				if c.GetType() == clusterv3.Cluster_STRICT_DNS || c.GetType() == clusterv3.Cluster_LOGICAL_DNS {
					continue
				}
				cc, err := upstream.Compile(c, deps)
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
					if err := c.SetEndpoints(cla); err != nil {
						t.Errorf("endpoints %s: %v", cla.GetClusterName(), err)
					}
				}
			}
			for _, r := range res[resource.RouteType] {
				if _, err := proute.Compile(r.(*routev3.RouteConfiguration)); err != nil && !known(err) {
					t.Errorf("route: %v", err)
				}
			}
			for _, r := range res[resource.ListenerType] {
				if _, err := listener.Compile(r.(*listenerv3.Listener), compatEnv{st: stats.NewStore()}); err != nil && !known(err) {
					t.Errorf("listener: %v", err)
				}
			}
		})
	}
}
