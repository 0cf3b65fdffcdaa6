// Package xdsclient is strait-proxy's Aggregated Discovery Service client. It holds one ADS stream
// to the control plane, incremental (Delta) when the server supports it and state-of-the-world
// (SotW) when the server answers Unimplemented, keeps the complete set of accepted resources per
// type, and hands every update to a Handler. A Handler error is sent back as a NACK with
// error_detail and the previous accepted set stays in force; otherwise the update is ACKed.
//
// The client never forgets accepted config when the connection drops: it reconnects with
// full-jitter exponential backoff, honouring a server's retry hint (backoff.go), and, on the new stream, tells the server what it already has
// (initial_resource_versions in Delta, version_info in SotW) so the server can resync.
package xdsclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/strait-mesh/strait/internal/grpclite"
	"github.com/strait-mesh/strait/internal/node"
	"github.com/strait-mesh/strait/internal/vocab"
	"github.com/strait-mesh/strait/proxy/xdspb"
	// The resource types are linked in (registering in xdspb.Types) so that Any bodies decode.
	_ "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/cluster/v3"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	_ "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/endpoint/v3"
	_ "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/listener/v3"
	_ "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
	_ "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/service/discovery/v3"
)

// Resource type URLs the client subscribes to, in the order Envoy requests them: clusters before
// their endpoints, listeners before their routes, then secrets and extension configs.
const (
	ClusterType  = vocab.ClusterType
	EndpointType = vocab.EndpointType
	ListenerType = vocab.ListenerType
	RouteType    = vocab.RouteType
	// VirtualHostType (VHDS) carries virtual hosts of route configurations that have `vhds`;
	// the client merges them into those route configurations (vhds.go), Delta streams only.
	VirtualHostType = vocab.VirtualHostType
	SecretType      = vocab.SecretType
	// ExtensionConfigType (ECDS) carries the DNS name table (internal/nametable) and the
	// workload table (internal/workloadtable); it is requested by name.
	ExtensionConfigType = vocab.ExtensionConfigType
)

// Types lists the subscribed type URLs in request order.
var Types = []string{ClusterType, EndpointType, ListenerType, RouteType, VirtualHostType, SecretType, ExtensionConfigType}

// wildcardTypes are subscribed to everything; the others by name (see Client.SetNames).
func isWildcard(typeURL string) bool {
	return typeURL == ClusterType || typeURL == ListenerType || typeURL == VirtualHostType
}

// Resource is one accepted xDS resource.
type Resource struct {
	Name    string
	Version string        // Delta: the resource version; SotW: the response's version_info
	Message proto.Message // decoded resource (e.g. *clusterv3.Cluster)
	Any     *anypb.Any    // as received, for config dumps
	Updated time.Time     // when this version was accepted
}

// Handler receives updates. Apply is called from the client's single goroutine, one call at a
// time, with the complete set of resources of typeURL as it would be after the update (name →
// resource). Returning nil accepts the set (ACK); returning an error rejects it (NACK, the error
// text becomes error_detail) and the client keeps the previous set. The map is owned by the
// handler after the call; the Resources in it must not be modified.
type Handler interface {
	Apply(typeURL string, resources map[string]*Resource) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(typeURL string, resources map[string]*Resource) error

// Apply calls f.
func (f HandlerFunc) Apply(typeURL string, resources map[string]*Resource) error {
	return f(typeURL, resources)
}

// Options configures a Client.
type Options struct {
	Address string       // control-plane address, host:port
	Node    *corev3.Node // sent on the first request of each stream
	Handler Handler
	Logger  *slog.Logger
	// TLS, when set, makes the connection TLS (ALPN h2) with this configuration: the control
	// plane's roots and server name, and for mutual TLS the client certificate (read per
	// handshake through GetClientCertificate, so a renewed one applies on the next reconnect).
	// Nil: plaintext HTTP/2 (h2c), as Istio's port 15010.
	TLS *tls.Config
	// BackoffBase and BackoffMax bound the full-jitter exponential reconnect delay
	// (defaults 200ms and 15s; backoff.go). BackoffMax also caps a server's retry hint.
	BackoffBase, BackoffMax time.Duration
	// ForceSotW disables the Delta attempt.
	ForceSotW bool
	// OnDemand announces node.FeatureOnDemand on Delta streams: the control plane may then send
	// only the virtual hosts, clusters and endpoints the proxy demands. Set it only when the HTTP
	// router calls Client.Demand on a route-table miss and the TCP proxy calls
	// Client.DemandCluster on an unknown cluster (ondemand.go); both work without it, against the
	// complete configuration.
	OnDemand bool
	// OnConnection, if set, is called with true when a stream opens and false when it ends.
	OnConnection func(up bool)
}

// Client is an ADS client. Create it with New and start it with Run.
type Client struct {
	opts Options
	log  *slog.Logger

	mu    sync.Mutex
	names map[string]map[string]bool // desired names per non-wildcard type
	wake  chan struct{}              // signalled (non-blocking) when names change
	// demands are the on-demand virtual hosts asked for, by VHDS name (ondemand.go).
	demands map[demandKey]*demand

	// deltaNode is opts.Node with node.FeatureVHDS (and node.FeatureOnDemand with
	// Options.OnDemand), sent on Delta streams (with the answered demands in its metadata, see
	// streamNode).
	deltaNode *corev3.Node

	// owned by the Run goroutine
	accepted map[string]map[string]*Resource
	versions map[string]string // SotW: last accepted version_info per type
	routes   routeSet          // route configurations as the Handler accepted them (vhds.go)

	connected atomic.Bool
	protocol  atomic.Value // "delta" or "sotw"
	stats     Stats
}

// Stats counts protocol events; all fields are updated atomically.
type Stats struct {
	Connects, Disconnects, Updates, Acks, Nacks atomic.Uint64
}

// New returns a client; it does not connect until Run.
func New(opts Options) (*Client, error) {
	if opts.Address == "" {
		return nil, errors.New("creating xds client: no address")
	}
	if opts.Handler == nil {
		return nil, errors.New("creating xds client: no handler")
	}
	if opts.Node == nil {
		opts.Node = &corev3.Node{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.BackoffBase <= 0 {
		opts.BackoffBase = 200 * time.Millisecond
	}
	if opts.BackoffMax <= 0 {
		opts.BackoffMax = 15 * time.Second
	}
	c := &Client{
		opts:     opts,
		log:      opts.Logger.With("component", "xds"),
		names:    map[string]map[string]bool{},
		demands:  map[demandKey]*demand{},
		wake:     make(chan struct{}, 1),
		accepted: map[string]map[string]*Resource{},
		versions: map[string]string{},
	}
	for _, t := range Types {
		c.accepted[t] = map[string]*Resource{}
		if !isWildcard(t) {
			c.names[t] = map[string]bool{}
		}
	}
	c.deltaNode = proto.Clone(opts.Node).(*corev3.Node)
	features := []string{node.FeatureVHDS}
	if opts.OnDemand {
		features = append(features, node.FeatureOnDemand)
	}
	for _, f := range features {
		if !slices.Contains(c.deltaNode.ClientFeatures, f) {
			c.deltaNode.ClientFeatures = append(c.deltaNode.ClientFeatures, f)
		}
	}
	c.protocol.Store("")
	return c, nil
}

// SetNames sets the resource names subscribed for a non-wildcard type (EDS, RDS, SDS). It may be
// called from any goroutine, including from inside Handler.Apply; the new subscription is sent
// after the current update is acknowledged.
func (c *Client) SetNames(typeURL string, names []string) {
	if isWildcard(typeURL) {
		return
	}
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	c.mu.Lock()
	same := len(want) == len(c.names[typeURL])
	if same {
		for n := range want {
			if !c.names[typeURL][n] {
				same = false
				break
			}
		}
	}
	if !same {
		c.names[typeURL] = want
	}
	c.mu.Unlock()
	if !same {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

// desired returns a copy of the subscribed names of a non-wildcard type, sorted.
func (c *Client) desired(typeURL string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.names[typeURL]))
	for n := range c.names[typeURL] {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Connected reports whether a stream is currently established.
func (c *Client) Connected() bool { return c.connected.Load() }

// Protocol returns "delta" or "sotw" for the current or last stream, "" before the first.
func (c *Client) Protocol() string { return c.protocol.Load().(string) }

// Stats returns the client's counters.
func (c *Client) Stats() *Stats { return &c.stats }

// errUnimplemented signals that the server has no Delta ADS.
var errUnimplemented = errors.New("delta ads unimplemented")

// Run connects and keeps the stream up until ctx is done, reconnecting with jittered exponential
// backoff. It returns ctx.Err().
func (c *Client) Run(ctx context.Context) error {
	// One HTTP/2 connection carries the streams; grpclite opens it when a stream starts and
	// again after it broke, so reconnects follow the stream schedule below.
	conn, err := grpclite.Dial(c.opts.Address, grpclite.Options{TLS: c.opts.TLS, UserAgent: "strait-proxy"})
	if err != nil {
		return fmt.Errorf("dialing xds server %s: %w", c.opts.Address, err)
	}
	defer conn.Close()
	sotw := c.opts.ForceSotW
	backoff := Backoff{Base: c.opts.BackoffBase, Max: c.opts.BackoffMax}
	for {
		var got bool
		var err error
		if sotw {
			got, err = c.runSotW(ctx, conn)
		} else {
			got, err = c.runDelta(ctx, conn)
			if errors.Is(err, errUnimplemented) {
				c.log.Info("server has no delta ADS, falling back to state of the world")
				sotw = true
				continue
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wait := backoff.Next(err, got) // backoff.go
		c.log.Warn("xds stream ended; serving last accepted config", "error", err, "retry_in", wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// decode unpacks one Any of the expected type, unwrapping discovery.Resource envelopes.
func decode(typeURL string, a *anypb.Any) (string, proto.Message, *anypb.Any, error) {
	if a == nil {
		return "", nil, nil, errors.New("empty resource")
	}
	if a.GetTypeUrl() == vocab.ResourceType {
		var env discoveryv3.Resource
		if err := a.UnmarshalTo(&env); err != nil {
			return "", nil, nil, fmt.Errorf("decoding resource envelope: %w", err)
		}
		a = env.GetResource()
		if a == nil {
			return "", nil, nil, errors.New("resource envelope without resource")
		}
	}
	if a.GetTypeUrl() != typeURL {
		return "", nil, nil, fmt.Errorf("resource of type %s in a %s response", a.GetTypeUrl(), typeURL)
	}
	m, err := anypb.UnmarshalNew(a, proto.UnmarshalOptions{Resolver: xdspb.Resolver})
	if err != nil {
		return "", nil, nil, fmt.Errorf("decoding %s: %w", typeURL, err)
	}
	return resourceName(m), m, a, nil
}

// resourceName returns the xDS name of a decoded resource.
func resourceName(m proto.Message) string {
	type named interface{ GetName() string }
	type clusterNamed interface{ GetClusterName() string }
	switch v := m.(type) {
	case clusterNamed: // ClusterLoadAssignment
		return v.GetClusterName()
	case named:
		return v.GetName()
	}
	return ""
}

// copySet returns a shallow copy of an accepted set.
func copySet(m map[string]*Resource) map[string]*Resource {
	out := make(map[string]*Resource, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// apply offers a candidate set to the handler and records it when accepted. Route
// configurations and virtual hosts reach the handler merged (vhds.go).
func (c *Client) apply(typeURL string, next map[string]*Resource) error {
	c.stats.Updates.Add(1)
	var err error
	switch typeURL {
	case RouteType:
		err = c.applyRoutes(typeURL, next, c.accepted[VirtualHostType])
	case VirtualHostType:
		err = c.applyRoutes(typeURL, c.accepted[RouteType], next)
	default:
		err = c.opts.Handler.Apply(typeURL, copySet(next))
	}
	if err != nil {
		c.stats.Nacks.Add(1)
		return err
	}
	c.stats.Acks.Add(1)
	c.accepted[typeURL] = next
	return nil
}

// Accepted returns a copy of the accepted set of a type. It is safe only from inside
// Handler.Apply or after Run returned; the proxy keeps its own copy for concurrent readers.
func (c *Client) Accepted(typeURL string) map[string]*Resource { return copySet(c.accepted[typeURL]) }

func (c *Client) markConnected(protocol string) {
	c.connected.Store(true)
	c.protocol.Store(protocol)
	c.stats.Connects.Add(1)
	c.log.Info("xds stream open", "protocol", protocol, "address", c.opts.Address)
	if c.opts.OnConnection != nil {
		c.opts.OnConnection(true)
	}
}

func (c *Client) markDisconnected() {
	c.connected.Store(false)
	c.stats.Disconnects.Add(1)
	if c.opts.OnConnection != nil {
		c.opts.OnConnection(false)
	}
}

// sameAny reports whether a resource's serialized body is unchanged.
func sameAny(old *Resource, a *anypb.Any) bool {
	return old.Any.GetTypeUrl() == a.GetTypeUrl() && bytes.Equal(old.Any.GetValue(), a.GetValue())
}

// Node returns the node sent to the control plane.
func (c *Client) Node() *corev3.Node { return c.opts.Node }
