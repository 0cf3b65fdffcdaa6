package xdsclient

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/strait-mesh/strait/internal/node"
	clusterv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/cluster/v3"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
	discoveryv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/service/discovery/v3"
)

// On-demand virtual hosts (Envoy's on-demand VHDS), the client side.
//
// On Delta streams the client subscribes to VirtualHost resources as a wildcard ("*"): the
// control plane sends the virtual hosts it scopes the proxy to: all of them, unless the client
// announced node.FeatureOnDemand (Options.OnDemand, set once the router calls Demand) and the
// control plane serves it on-demand configuration. Demand adds a name "<route config>/<authority>" to that subscription; the
// server answers with the virtual host that serves the authority, carrying the name in its
// aliases, or with the name in removed_resources (not found). Demands are kept for the life of
// the Client: after a reconnect every demand is subscribed again, and those already answered are
// listed in the node metadata (node.MetaDemanded) so that the server neither drops nor re-sends
// what the proxy holds.
//
// TCP traffic has no host to demand: its listener names the cluster. DemandCluster subscribes
// to the cluster by name on the Cluster type (Envoy's on-demand CDS); the answer is the cluster
// or its name in removed_resources.

// ErrOnDemandUnavailable is returned by Demand when the stream cannot demand virtual hosts: the
// server speaks state-of-the-world xDS only.
var ErrOnDemandUnavailable = errors.New("on-demand virtual hosts need a Delta xDS stream")

// demandKey identifies a demand: a VHDS name "<route config>/<authority>" (VirtualHostType) or
// a cluster name (ClusterType).
type demandKey struct{ typeURL, name string }

// demand is one demanded name and its answer.
type demand struct {
	key  demandKey
	done chan struct{} // closed when answered
	// Set before done is closed.
	found bool
	err   error
	// Owned by the Run goroutine: the resource that answered, while what it needs is awaited.
	target string
}

// Demand asks the control plane for the virtual host that serves authority (a request's
// :authority or Host, as received: host, host:port or a short name) in route configuration
// routeConfig, and waits until it is applied with the clusters it routes to and their
// endpoints (found true), or the control plane answered that no virtual host serves it (found
// false), or ctx ends (ctx's error). Concurrent and later calls for the same (route config,
// authority) share one subscription and its answer: an answered demand returns at once without
// a round trip. It may be called from any goroutine, but not from inside Handler.Apply (the
// answer is applied by the goroutine that calls Apply).
//
// What the HTTP router must do: when a request's host has no virtual host in its route
// configuration, or only the catch-all one (domain "*"), call Demand(ctx, routeConfig, host)
// before answering 404 (or using the catch-all), with ctx bounded by the time the request may be
// held. If found is true, route the request again on the route table the proxy holds now (the
// Handler has already been given the new route configuration); if false or on error, go on as
// for a miss. An answered demand costs a map lookup under a mutex. Each new name costs the
// control plane a generation of this proxy, so the names a proxy may demand are bounded
// (node.MaxDemanded, then an error): a router may prefer to demand only hosts that can be mesh
// hosts.
func (c *Client) Demand(ctx context.Context, routeConfig, authority string) (found bool, err error) {
	if routeConfig == "" || authority == "" || strings.Contains(authority, "/") {
		return false, fmt.Errorf("demanding %q in route configuration %q: want a route configuration and a host without '/'", authority, routeConfig)
	}
	return c.demand(ctx, demandKey{VirtualHostType, routeConfig + "/" + strings.ToLower(authority)})
}

// DemandCluster asks the control plane for cluster name and waits until it is applied with its
// endpoints (found true), or the control plane answered that it has no such cluster for this
// proxy (found false), or ctx ends; calls share answers as Demand's do.
//
// What the TCP proxy must do: when a connection's tcp_proxy names a cluster the proxy does not
// have (Envoy's response flag NR), call DemandCluster(ctx, cluster) before closing the
// connection, with ctx bounded by the time the connection may be held, and if found is true
// connect to the cluster the proxy holds now.
func (c *Client) DemandCluster(ctx context.Context, name string) (found bool, err error) {
	if name == "" {
		return false, errors.New("demanding a cluster: empty name")
	}
	return c.demand(ctx, demandKey{ClusterType, name})
}

// demand subscribes to k once and waits for its answer.
func (c *Client) demand(ctx context.Context, k demandKey) (bool, error) {
	if len(k.name) > node.MaxDemandName {
		return false, fmt.Errorf("demanding %q: name longer than %d bytes", k.name, node.MaxDemandName)
	}
	if c.Protocol() == "sotw" {
		return false, ErrOnDemandUnavailable
	}
	c.mu.Lock()
	d := c.demands[k]
	if d == nil {
		if len(c.demands) >= node.MaxDemanded {
			c.mu.Unlock()
			return false, fmt.Errorf("demanding %q: already %d demands", k.name, node.MaxDemanded)
		}
		d = &demand{key: k, done: make(chan struct{})}
		c.demands[k] = d
		c.mu.Unlock()
		c.signal()
	} else {
		c.mu.Unlock()
	}
	select {
	case <-d.done:
		return d.found, d.err
	case <-ctx.Done():
		return false, fmt.Errorf("demanding %q: %w", k.name, ctx.Err())
	}
}

// signal wakes the Run goroutine to send subscription changes.
func (c *Client) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// demandNames returns the names demanded of typeURL, sorted, and of those the answered ones.
func (c *Client) demandNames(typeURL string) (all, answered []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, d := range c.demands {
		if k.typeURL != typeURL {
			continue
		}
		all = append(all, k.name)
		if closed(d.done) {
			answered = append(answered, k.name)
		}
	}
	slices.Sort(all)
	slices.Sort(answered)
	return all, answered
}

// demandMeta are the demand types with the metadata key that lists their answered demands.
var demandMeta = []struct{ typeURL, key string }{
	{VirtualHostType, node.MetaDemanded}, {ClusterType, node.MetaDemandedClusters},
}

// streamNode returns the node for a new Delta stream: deltaNode with the answered demands in
// its metadata.
func (c *Client) streamNode() *corev3.Node {
	var n *corev3.Node
	for _, dm := range demandMeta {
		_, answered := c.demandNames(dm.typeURL)
		if len(answered) == 0 {
			continue
		}
		if n == nil {
			n = proto.Clone(c.deltaNode).(*corev3.Node)
			if n.Metadata == nil {
				n.Metadata = &structpb.Struct{}
			}
			if n.Metadata.Fields == nil {
				n.Metadata.Fields = map[string]*structpb.Value{}
			}
		}
		vals := make([]*structpb.Value, 0, len(answered))
		for _, name := range answered {
			vals = append(vals, structpb.NewStringValue(name))
		}
		n.Metadata.Fields[dm.key] = structpb.NewListValue(&structpb.ListValue{Values: vals})
	}
	if n == nil {
		return c.deltaNode
	}
	return n
}

// newDemands returns the names demanded of typeURL not yet subscribed on the stream, and marks
// them.
func (s *deltaStream) newDemands(typeURL string) []string {
	all, _ := s.c.demandNames(typeURL)
	var out []string
	for _, name := range all {
		if k := (demandKey{typeURL, name}); !s.demanded[k] {
			s.demanded[k] = true
			out = append(out, name)
		}
	}
	return out
}

// answerDemands records the answers a response of a demand type carries: a resource whose name
// or aliases hold a demanded name (found: then awaited until what it needs is applied), or a
// demanded name in removed_resources (not found). rejected is the error when the response was
// NACKed: its answers fail with it.
func (c *Client) answerDemands(resp *discoveryv3.DeltaDiscoveryResponse, rejected error) {
	t := resp.GetTypeUrl()
	c.mu.Lock()
	pending := make(map[string]*demand)
	for k, d := range c.demands {
		if k.typeURL == t && d.target == "" && !closed(d.done) {
			pending[k.name] = d
		}
	}
	c.mu.Unlock()
	if len(pending) == 0 {
		return
	}
	for _, r := range resp.GetResources() {
		for _, name := range append([]string{r.GetName()}, r.GetAliases()...) {
			if d := pending[name]; d != nil {
				if rejected != nil {
					c.finish(d, false, fmt.Errorf("%q for %q rejected: %w", r.GetName(), name, rejected))
					continue
				}
				d.target = r.GetName()
			}
		}
	}
	for _, name := range resp.GetRemovedResources() {
		if d := pending[name]; d != nil && d.target == "" {
			c.finish(d, false, nil)
		}
	}
}

// settleDemands finishes the found demands whose resource and what it needs (a virtual host's
// clusters, a cluster's endpoints) are all accepted. Called by the Run goroutine after every
// accepted update.
func (c *Client) settleDemands() {
	c.mu.Lock()
	var waiting []*demand
	for _, d := range c.demands {
		if d.target != "" && !closed(d.done) {
			waiting = append(waiting, d)
		}
	}
	c.mu.Unlock()
	for _, d := range waiting {
		r := c.accepted[d.key.typeURL][d.target]
		if r == nil {
			continue // removed meanwhile, or not accepted yet
		}
		ready := false
		switch m := r.Message.(type) {
		case *routev3.VirtualHost:
			ready = c.clustersReady(m)
		case *clusterv3.Cluster:
			ready = c.clusterReady(m.GetName())
		}
		if ready {
			c.finish(d, true, nil)
		}
	}
}

// clustersReady reports whether every cluster vh routes to is ready (clusterReady).
func (c *Client) clustersReady(vh *routev3.VirtualHost) bool {
	for _, rt := range vh.GetRoutes() {
		a := rt.GetRoute()
		if n := a.GetCluster(); n != "" && !c.clusterReady(n) {
			return false
		}
		for _, wc := range a.GetWeightedClusters().GetClusters() {
			if !c.clusterReady(wc.GetName()) {
				return false
			}
		}
	}
	return true
}

// clusterReady reports whether a cluster is accepted, with its endpoints when it takes them from
// EDS.
func (c *Client) clusterReady(name string) bool {
	r := c.accepted[ClusterType][name]
	if r == nil {
		return false
	}
	cl, ok := r.Message.(*clusterv3.Cluster)
	if !ok || cl.GetType() != clusterv3.Cluster_EDS {
		return true
	}
	svc := cl.GetEdsClusterConfig().GetServiceName()
	if svc == "" {
		svc = name
	}
	return c.accepted[EndpointType][svc] != nil
}

// failDemands ends every pending demand with err (the stream cannot demand).
func (c *Client) failDemands(err error) {
	c.mu.Lock()
	var pending []*demand
	for _, d := range c.demands {
		if !closed(d.done) {
			pending = append(pending, d)
		}
	}
	c.mu.Unlock()
	for _, d := range pending {
		c.finish(d, false, err)
	}
}

// finish answers a demand once.
func (c *Client) finish(d *demand, found bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if closed(d.done) {
		return
	}
	d.found, d.err, d.target = found, err, ""
	close(d.done)
}

func closed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
