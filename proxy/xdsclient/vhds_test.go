package xdsclient

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/route"
	proutev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
)

// routeRecorder compiles the route configurations it is handed, as the proxy does, and keeps the
// virtual host names of each accepted one.
type routeRecorder struct {
	mu     sync.Mutex
	routes map[string][]string
	vhds   bool // a handed route configuration still had vhds
}

func (r *routeRecorder) Apply(typeURL string, set map[string]*Resource) error {
	if typeURL != RouteType {
		return nil
	}
	got := map[string][]string{}
	vhds := false
	for name, res := range set {
		rc := res.Message.(*proutev3.RouteConfiguration)
		if _, err := route.Compile(rc); err != nil {
			return err
		}
		vhds = vhds || rc.GetVhds() != nil
		for _, vh := range rc.GetVirtualHosts() {
			got[name] = append(got[name], vh.GetName())
		}
	}
	r.mu.Lock()
	r.routes, r.vhds = got, r.vhds || vhds
	r.mu.Unlock()
	return nil
}

func (r *routeRecorder) get(name string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.routes[name], ",")
}

func vhdsRouteConfig(name string) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{Name: name, Vhds: &routev3.Vhds{ConfigSource: &corev3.ConfigSource{
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}}}
}

// vhost returns VHDS virtual host rc/name for domain, routed to a cluster of its name.
func vhost(rc, name, domain string) *routev3.VirtualHost {
	return &routev3.VirtualHost{Name: rc + "/" + name, Domains: []string{domain}, Routes: []*routev3.Route{{
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: name}}}}}}
}

func vhdsSnapshot(t *testing.T, version string, vhosts ...*routev3.VirtualHost) *cachev3.Snapshot {
	t.Helper()
	var vs []types.Resource
	for _, v := range vhosts {
		vs = append(vs, v)
	}
	snap, err := cachev3.NewSnapshot(version, map[resource.Type][]types.Resource{
		resource.RouteType:       {vhdsRouteConfig("80")},
		resource.VirtualHostType: vs,
	})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

func runRouteClient(t *testing.T, addr string, sotw bool) (*Client, *routeRecorder) {
	t.Helper()
	rec := &routeRecorder{}
	c := startClient(t, Options{Address: addr, Handler: rec, ForceSotW: sotw}, func(c *Client) { c.SetNames(RouteType, []string{"80"}) })
	return c, rec
}

// TestVHDS: virtual hosts delivered by VHDS reach the handler inside their route configuration,
// under their own names (the "80/" resource-name prefix removed);
// a VHDS update the route compiler rejects is NACKed as VHDS and changes nothing; removals apply.
func TestVHDS(t *testing.T) {
	cache := cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)
	nodeID := testNode(t).GetId()
	set := func(s *cachev3.Snapshot) {
		t.Helper()
		if err := cache.SetSnapshot(context.Background(), nodeID, s); err != nil {
			t.Fatal(err)
		}
	}
	set(vhdsSnapshot(t, "1", vhost("80", "a", "a.example"), vhost("80", "b", "b.example"), vhost("9080", "x", "x.example")))
	ts := testenv.StartADS(t, testenv.ADSOptions{Cache: cache})
	_, rec := runRouteClient(t, ts.Addr(), false)
	waitFor(t, "route configuration 80 with virtual hosts a, b", func() bool { return rec.get("80") == "a,b" })

	// Two virtual hosts claiming one domain: the route compiler refuses the merged configuration.
	set(vhdsSnapshot(t, "2", vhost("80", "a", "a.example"), vhost("80", "b", "b.example"), vhost("80", "c", "a.example")))
	waitFor(t, "VHDS NACK", func() bool {
		return slices.ContainsFunc(ts.Nacks(), func(n string) bool { return strings.Contains(n, `domain "a.example" is already used`) })
	})
	if got := rec.get("80"); got != "a,b" {
		t.Fatalf("after the NACK: %q, want a,b", got)
	}

	set(vhdsSnapshot(t, "3", vhost("80", "c", "c.example")))
	waitFor(t, "virtual hosts a, b removed, c added", func() bool { return rec.get("80") == "c" })
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.vhds {
		t.Fatal("the handler was handed a route configuration with vhds")
	}
}

// TestVHDSRefusedOnSotW: VHDS is Delta only, so a route configuration with vhds is NACKed on a
// state-of-the-world stream, naming the field.
func TestVHDSRefusedOnSotW(t *testing.T) {
	cache := cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)
	if err := cache.SetSnapshot(context.Background(), testNode(t).GetId(), vhdsSnapshot(t, "1", vhost("80", "a", "a.example"))); err != nil {
		t.Fatal(err)
	}
	ts := testenv.StartADS(t, testenv.ADSOptions{Cache: cache, SotWOnly: true})
	runRouteClient(t, ts.Addr(), true)
	waitFor(t, "RDS NACK naming vhds", func() bool {
		return slices.ContainsFunc(ts.Nacks(), func(n string) bool {
			return strings.Contains(n, "route_configuration.vhds") && strings.Contains(n, "Delta xDS only")
		})
	})
}

// TestVHDSNames: a VHDS resource name without a route configuration part is refused.
func TestVHDSNames(t *testing.T) {
	c, err := New(Options{Address: "127.0.0.1:1", Handler: &routeRecorder{}})
	if err != nil {
		t.Fatal(err)
	}
	c.protocol.Store("delta")
	for _, name := range []string{"a", "/a", "80/"} {
		err := c.apply(VirtualHostType, map[string]*Resource{name: {Name: name, Message: vhost("", "", "a")}})
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("virtual host %q", name)) {
			t.Errorf("%q: got %v", name, err)
		}
	}
}
