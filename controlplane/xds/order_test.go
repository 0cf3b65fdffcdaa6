package xds

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/strait-mesh/strait/internal/node"
)

// event is one response as a client applies it: for SotW the full state, for Delta the changes.
type event struct {
	typeURL string
	names   []string // resources held after the response (clusters, load assignments) or routed to (routes)
	ack     func()
}

// orderClient is a raw ADS stream (SotW or Delta) that tracks what it holds per type and leaves
// ACKing to the test.
type orderClient struct {
	t    *testing.T
	recv func() event
	held map[string]map[string]bool // Delta: resources held per type
}

func (c *orderClient) next() event { c.t.Helper(); return c.recv() }

// routeClusters returns the clusters virtual hosts route to.
func routeClusters(vhosts []*routev3.VirtualHost) []string {
	var out []string
	for _, vh := range vhosts {
		for _, r := range vh.GetRoutes() {
			out = append(out, r.GetRoute().GetCluster())
		}
	}
	return out
}

// resourceNames unpacks resources and returns their names; for routes (RDS, VHDS) it returns,
// per resource name, the clusters it routes to instead.
func resourceNames(t *testing.T, typeURL string, anys []*anypb.Any) (names []string, routes map[string][]string) {
	t.Helper()
	routes = map[string][]string{}
	for _, a := range anys {
		switch typeURL {
		case resource.ClusterType:
			var c clusterv3.Cluster
			if err := a.UnmarshalTo(&c); err != nil {
				t.Fatal(err)
			}
			names = append(names, c.GetName())
		case resource.EndpointType:
			var cla endpointv3.ClusterLoadAssignment
			if err := a.UnmarshalTo(&cla); err != nil {
				t.Fatal(err)
			}
			names = append(names, cla.GetClusterName())
		case resource.RouteType:
			var rc routev3.RouteConfiguration
			if err := a.UnmarshalTo(&rc); err != nil {
				t.Fatal(err)
			}
			routes[rc.GetName()] = routeClusters(rc.GetVirtualHosts())
		case resource.VirtualHostType:
			var vh routev3.VirtualHost
			if err := a.UnmarshalTo(&vh); err != nil {
				t.Fatal(err)
			}
			routes[vh.GetName()] = routeClusters([]*routev3.VirtualHost{&vh})
		}
	}
	return names, routes
}

// openOrderClient opens a raw stream that subscribes to the ordered types; with vhds (Delta only)
// it announces node.FeatureVHDS and subscribes to virtual hosts too.
func openOrderClient(t *testing.T, addr, id string, delta, vhds bool) *orderClient {
	t.Helper()
	ads, ctx, _ := dialADS(t, addr, 30*time.Second)
	c := &orderClient{t: t, held: map[string]map[string]bool{}}
	st := openStream(ctx, t, ads, delta)
	n := testNode(id, nil)
	subscribe := classicTypes
	if vhds {
		n.ClientFeatures = []string{node.FeatureVHDS}
		subscribe = orderedTypes
	}
	for _, typ := range subscribe {
		if err := st.send(typ, n, "", "", nil); err != nil {
			t.Fatal(err)
		}
	}
	routesHeld := map[string]map[string][]string{} // per route type: resource → clusters
	c.recv = func() event {
		r, err := st.recv()
		if err != nil {
			t.Fatal(err)
		}
		names, routes := resourceNames(t, r.typ, r.resources)
		if r.typ == resource.RouteType || r.typ == resource.VirtualHostType {
			held := routesHeld[r.typ]
			if held == nil || !delta { // SotW: the response is the full state
				held = map[string][]string{}
				routesHeld[r.typ] = held
			}
			maps.Copy(held, routes)
			for _, name := range r.removed {
				delete(held, name)
			}
			names = nil
			for _, cs := range held {
				names = append(names, cs...)
			}
			slices.Sort(names)
		} else if delta { // the client holds what it was sent until it is removed
			held := c.held[r.typ]
			if held == nil {
				held = map[string]bool{}
				c.held[r.typ] = held
			}
			for _, name := range names {
				held[name] = true
			}
			for _, name := range r.removed {
				delete(held, name)
			}
			names = keys(held)
		}
		return event{typeURL: r.typ, names: names, ack: func() {
			if err := st.send(r.typ, nil, r.version, r.nonce, nil); err != nil {
				t.Fatal(err)
			}
		}}
	}
	return c
}

// classicTypes are the ordered types a client without VHDS subscribes to.
var classicTypes = []string{resource.ClusterType, resource.EndpointType, resource.ListenerType, resource.RouteType}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// checkRoutes fails when a route names a cluster the client does not hold (with its endpoints).
func checkRoutes(t *testing.T, step string, held map[string][]string) {
	t.Helper()
	for _, c := range routed(held) {
		if !slices.Contains(held[resource.ClusterType], c) || !slices.Contains(held[resource.EndpointType], c) {
			t.Errorf("%s: a route names %s, but the client holds clusters %v and endpoints %v", step, c,
				held[resource.ClusterType], held[resource.EndpointType])
		}
	}
}

// routed returns the clusters the held routes name, through RDS or VHDS.
func routed(held map[string][]string) []string {
	return slices.Concat(held[resource.RouteType], held[resource.VirtualHostType])
}

// TestUpdateOrderMakeBeforeBreak checks Envoy's ADS ordering over SotW and Delta: when a change
// adds a cluster and removes another, the client never holds a route to a cluster (or endpoints)
// it does not have, even when its CDS ACK is late (the CDS watch is not open when the change is
// pushed, while the RDS watch is).
func TestUpdateOrderMakeBeforeBreak(t *testing.T) {
	for _, tc := range []struct{ delta, vhds bool }{{false, false}, {true, false}, {true, true}} {
		delta := tc.delta
		t.Run(fmt.Sprintf("delta=%v,vhds=%v", tc.delta, tc.vhds), func(t *testing.T) {
			e := newEnv(t, Options{Debounce: -1})
			e.mesh.add("a", "default", nil).add("b", "default", nil)
			e.srv.Update(e.mesh.snapshot())
			id := sidecarID("127.0.0.20", "p-order", "default")
			c := openOrderClient(t, e.addr, id, delta, tc.vhds)
			held := map[string][]string{}
			apply := func(step string, ev event) {
				held[ev.typeURL] = ev.names
				checkRoutes(t, step, held)
			}
			initial := classicTypes
			if tc.vhds {
				initial = orderedTypes
			}
			for range initial { // initial state
				ev := c.next()
				apply("initial", ev)
				ev.ack()
			}
			waitFor(t, "initial sync", func() bool { return e.allSynced(id) })

			// Remove b, add c; everything ACKed at once.
			e.mesh.remove("b", "default").add("c", "default", nil)
			e.srv.Update(e.mesh.snapshot())
			ca, cc := clusterName(host("a", "default")), clusterName(host("c", "default"))
			for !sameNames(held[resource.ClusterType], ca, cc) || !sameNames(held[resource.EndpointType], ca, cc) ||
				!sameNames(routed(held), ca, cc) {
				ev := c.next()
				apply("b→c", ev)
				ev.ack()
			}

			// Add d, but hold the ACK of the CDS response: the RDS watch is open, the CDS one is
			// not, when the next change (add e) is pushed.
			rounds := e.srv.rounds.Load()
			e.mesh.add("d", "default", nil)
			e.srv.Update(e.mesh.snapshot())
			var heldAck func()
			cd, ce := clusterName(host("d", "default")), clusterName(host("e", "default"))
			for !sameNames(routed(held), ca, cc, cd) {
				ev := c.next()
				apply("+d", ev)
				if ev.typeURL == resource.ClusterType && heldAck == nil {
					heldAck = ev.ack
					continue
				}
				ev.ack()
			}
			waitFor(t, "push of +d", func() bool { return e.srv.rounds.Load() > rounds })
			rounds = e.srv.rounds.Load()
			e.mesh.add("e", "default", nil)
			e.srv.Update(e.mesh.snapshot())
			waitFor(t, "push of +e", func() bool { return e.srv.rounds.Load() > rounds })
			heldAck()
			for !sameNames(routed(held), ca, cc, cd, ce) || !slices.Contains(held[resource.ClusterType], ce) {
				ev := c.next()
				apply("+e with a late CDS ACK", ev)
				ev.ack()
			}
		})
	}
}
