package translate_test

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/strait-mesh/strait/controlplane/translate"
)

// TestVHDSEquivalent generates every golden case for a proxy with and without VHDS and checks
// that the VHDS output is the same configuration: clusters, endpoints and listeners equal, and
// each route configuration, with its VHDS virtual hosts merged back in (as strait-proxy's
// xdsclient and Envoy do) and renamed, equal to the one generated without VHDS.
func TestVHDSEquivalent(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*.input.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range inputs {
		t.Run(strings.TrimSuffix(filepath.Base(in), ".input.yaml"), func(t *testing.T) {
			snap, p := loadCase(t, in)
			if p.Proxyless {
				t.Skip("proxyless gRPC clients get no VHDS")
			}
			gen := func(vhds bool) translate.Resources {
				q := *p
				q.VHDS = vhds
				q.OnDemand = false // on-demand scoping is tested on its own (ondemand_test.go)
				res, err := translate.New(translate.Options{RateLimitService: goldenRateLimitService}).Generate(snap, &q)
				if err != nil {
					t.Fatal(err)
				}
				return res
			}
			plain, split := gen(false), gen(true)
			for _, typ := range []string{resource.ClusterType, resource.EndpointType, resource.ListenerType, resource.SecretType} {
				if !equalLists(plain[typ], split[typ]) {
					t.Errorf("%s differs with VHDS", typ)
				}
			}
			if len(plain[resource.VirtualHostType]) != 0 {
				t.Errorf("virtual hosts without VHDS: %d", len(plain[resource.VirtualHostType]))
			}
			for _, r := range split[resource.VirtualHostType] {
				if err := r.(*routev3.VirtualHost).Validate(); err != nil {
					t.Errorf("virtual host %s: %v", r.(*routev3.VirtualHost).GetName(), err)
				}
			}
			if len(plain[resource.RouteType]) != len(split[resource.RouteType]) {
				t.Fatalf("route configurations: %d with VHDS, %d without", len(split[resource.RouteType]), len(plain[resource.RouteType]))
			}
			for _, r := range split[resource.RouteType] {
				rc := r.(*routev3.RouteConfiguration)
				if err := rc.Validate(); err != nil {
					t.Errorf("route configuration %s: %v", rc.GetName(), err)
				}
				if rc.GetVhds() == nil || len(rc.GetVirtualHosts()) != 0 {
					t.Errorf("route configuration %s: vhds %v, %d inline virtual hosts", rc.GetName(), rc.GetVhds(), len(rc.GetVirtualHosts()))
				}
			}
			for i, merged := range mergeVHDS(t, split, true) {
				if want := plain[resource.RouteType][i]; !proto.Equal(merged, want) {
					t.Errorf("route configuration %s merged from VHDS:\n%v\nwant\n%v", merged.GetName(), merged, want)
				}
			}
		})
	}
}

// mergeVHDS returns the route configurations of res with their VHDS virtual hosts merged back in
// and vhds cleared, as strait-proxy's xdsclient hands them to the route compiler; rename strips
// the "<route configuration>/" prefix of the virtual hosts' names.
func mergeVHDS(t *testing.T, res translate.Resources, rename bool) []*routev3.RouteConfiguration {
	t.Helper()
	byRC := map[string][]*routev3.VirtualHost{}
	for _, r := range res[resource.VirtualHostType] {
		vh := r.(*routev3.VirtualHost)
		i := strings.LastIndexByte(vh.GetName(), '/')
		if i <= 0 {
			t.Fatalf("virtual host %q: not named <route configuration>/<virtual host>", vh.GetName())
		}
		if rename {
			vh = proto.Clone(vh).(*routev3.VirtualHost)
			vh.Name = vh.GetName()[i+1:]
		}
		byRC[r.(*routev3.VirtualHost).GetName()[:i]] = append(byRC[r.(*routev3.VirtualHost).GetName()[:i]], vh)
	}
	var out []*routev3.RouteConfiguration
	for _, r := range res[resource.RouteType] {
		rc := r.(*routev3.RouteConfiguration)
		if rc.GetVhds() != nil {
			rc = proto.Clone(rc).(*routev3.RouteConfiguration)
			rc.Vhds = nil
			rc.VirtualHosts = append(rc.VirtualHosts, byRC[rc.GetName()]...)
		}
		out = append(out, rc)
	}
	return out
}

func equalLists(a, b []types.Resource) bool {
	return slices.EqualFunc(a, b, func(x, y types.Resource) bool { return proto.Equal(x, y) })
}
