package xds

import (
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/strait-mesh/strait/controlplane/buildcache"
	"github.com/strait-mesh/strait/controlplane/translate"
)

// deltaConn is a synchronous Delta ADS stream for step-by-step protocol tests.
type deltaConn struct {
	t  *testing.T
	st discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
}

func openDelta(t *testing.T, addr string) *deltaConn {
	t.Helper()
	ads, ctx, _ := dialADS(t, addr, 30*time.Second)
	st, err := ads.DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &deltaConn{t: t, st: st}
}

func (c *deltaConn) send(req *discovery.DeltaDiscoveryRequest) {
	c.t.Helper()
	if err := c.st.Send(req); err != nil {
		c.t.Fatal(err)
	}
}

// next receives responses, ACKing each, until one of type typ arrives; it returns its resource
// names and removals.
func (c *deltaConn) next(typ string) (names, removed []string) {
	c.t.Helper()
	for {
		resp, err := c.st.Recv()
		if err != nil {
			c.t.Fatal(err)
		}
		c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()})
		if resp.GetTypeUrl() != typ {
			continue
		}
		for _, r := range resp.GetResources() {
			names = append(names, r.GetName())
		}
		return names, resp.GetRemovedResources()
	}
}

// startDeltaAB serves services a and b (namespace default) and opens a delta stream; it returns
// the stream and the names of a's and b's clusters.
func startDeltaAB(t *testing.T) (e *testEnv, c *deltaConn, ca, cb string) {
	t.Helper()
	e = newEnv(t, Options{})
	e.mesh.add("a", "default", nil).add("b", "default", nil)
	e.srv.Update(e.mesh.snapshot())
	return e, openDelta(t, e.addr), clusterName(host("a", "default")), clusterName(host("b", "default"))
}

// want receives the next response of type typ (as next does) and fails the test unless it holds
// exactly the resources named want; what says after which step.
func (c *deltaConn) want(typ, what string, want ...string) {
	c.t.Helper()
	if names, _ := c.next(typ); !sameNames(names, want...) {
		c.t.Fatalf("%s %s = %v, want %v", shortType(typ), what, names, want)
	}
}

// wantRemoved receives the next response of type typ and fails the test unless it holds no
// resources and removes exactly removed.
func (c *deltaConn) wantRemoved(typ, what string, removed ...string) {
	c.t.Helper()
	if names, got := c.next(typ); len(names) != 0 || !sameNames(got, removed...) {
		c.t.Fatalf("%s %s = %v removed %v, want none removed %v", shortType(typ), what, names, got, removed)
	}
}

// TestDeltaNamedSubscriptions follows how Envoy asks for endpoints: by cluster name, subscribing
// and unsubscribing as clusters come and go.
func TestDeltaNamedSubscriptions(t *testing.T) {
	e, c, ca, cb := startDeltaAB(t)
	c.send(&discovery.DeltaDiscoveryRequest{Node: testNode(sidecarID("127.0.0.10", "p-1", "default"), nil), TypeUrl: resource.ClusterType})
	c.want(resource.ClusterType, "at first", ca, cb)
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNamesSubscribe: []string{ca}})
	c.want(resource.EndpointType, "after subscribing a", ca)
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNamesSubscribe: []string{cb}})
	c.want(resource.EndpointType, "after subscribing b", cb)
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNamesUnsubscribe: []string{ca}})

	// Endpoints of both change: only the still-subscribed b is sent.
	e.mesh.endpoint("a", "default", "127.0.0.2").endpoint("b", "default", "127.0.0.3")
	e.srv.Update(e.mesh.snapshot())
	c.want(resource.EndpointType, "after a change to a and b", cb)
	// b is removed from the mesh: its cluster and endpoints go away.
	e.mesh.remove("b", "default")
	e.srv.Update(e.mesh.snapshot())
	c.wantRemoved(resource.ClusterType, "after removing b", cb)
	c.wantRemoved(resource.EndpointType, "after removing b", cb)
}

func sameNames(got []string, want ...string) bool {
	g, w := slices.Clone(got), slices.Clone(want)
	slices.Sort(g)
	slices.Sort(w)
	return slices.Equal(g, w)
}

func testCluster(name string, timeout time.Duration) *clusterv3.Cluster {
	return &clusterv3.Cluster{Name: name, ConnectTimeout: durationpb.New(timeout),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}}
}

func TestInternerSharesEqualOutput(t *testing.T) {
	in := newInterner(buildcache.New())
	a, b := testCluster("a", time.Second), testCluster("b", time.Second)
	// Equal content from different objects and in a different order yields one shared set.
	s1, err := in.snapshot(translate.Resources{resource.ClusterType: {a, b}})
	if err != nil {
		t.Fatal(err)
	}
	s2, err := in.snapshot(translate.Resources{resource.ClusterType: {testCluster("b", time.Second), testCluster("a", time.Second)}})
	if err != nil {
		t.Fatal(err)
	}
	if s1.set(resource.ClusterType) != s2.set(resource.ClusterType) {
		t.Errorf("equal outputs were not shared")
	}
	for _, typ := range coreTypes {
		if s1.set(typ) == nil {
			t.Errorf("%s missing from the snapshot", shortType(typ))
		}
	}
	// A change of content changes the version.
	s3, err := in.snapshot(translate.Resources{resource.ClusterType: {a, testCluster("b", 2*time.Second)}})
	if err != nil {
		t.Fatal(err)
	}
	if s3.version(resource.ClusterType) == s1.version(resource.ClusterType) {
		t.Errorf("changed content kept version %s", s1.version(resource.ClusterType))
	}
	d := s3.set(resource.ClusterType).diffFrom(s1.set(resource.ClusterType))
	if len(d.changed) != 1 || d.changed[0].GetName() != "b" || len(d.removed) != 0 {
		t.Errorf("diff = %v removed %v", d.changed, d.removed)
	}
}

func TestInternerRejectsBadOutput(t *testing.T) {
	for name, res := range map[string]translate.Resources{
		"duplicate":  {resource.ClusterType: {testCluster("a", time.Second), testCluster("a", 2*time.Second)}},
		"invalid":    {resource.ClusterType: {testCluster("a", -time.Second)}},
		"wrong type": {resource.ListenerType: {testCluster("a", time.Second)}},
		"nil":        {resource.ClusterType: {nil}},
		"unknown":    {"type.googleapis.com/unknown": {testCluster("a", time.Second)}},
	} {
		if _, err := newInterner(buildcache.New()).snapshot(res); err == nil {
			t.Errorf("%s: no error", name)
		} else if !strings.Contains(err.Error(), "a") && name != "nil" {
			t.Errorf("%s: error %q does not name the resource", name, err)
		}
	}
}

// TestDeltaWildcardPlaceholders follows a wildcard stream (which holds a placeholder instead of a
// copy of what it was sent) through subscription changes that edit what the server thinks it
// holds: a name unsubscribed while wildcard is re-sent, a removal still reaches it afterwards, and
// a named stream that unsubscribes and resubscribes gets the resource again.
func TestDeltaWildcardPlaceholders(t *testing.T) {
	e, c, ca, cb := startDeltaAB(t)
	c.send(&discovery.DeltaDiscoveryRequest{Node: testNode(sidecarID("127.0.0.11", "p-2", "default"), nil), TypeUrl: resource.ClusterType,
		ResourceNamesSubscribe: []string{"*", ca}})
	c.want(resource.ClusterType, "at first", ca, cb)
	// Unsubscribing a name while wildcard asks the server to say whether it still exists.
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType, ResourceNamesUnsubscribe: []string{ca}})
	c.want(resource.ClusterType, "after unsubscribing a while wildcard", ca)
	// A push after the subscription change: a removal is still sent.
	e.mesh.remove("b", "default")
	e.srv.Update(e.mesh.snapshot())
	c.wantRemoved(resource.ClusterType, "after removing b", cb)

	// A named EDS subscription: unsubscribe and subscribe again.
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNamesSubscribe: []string{ca}})
	c.want(resource.EndpointType, "after subscribing a", ca)
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNamesUnsubscribe: []string{ca}})
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNamesSubscribe: []string{ca}})
	c.want(resource.EndpointType, "after subscribing a again", ca)
}
