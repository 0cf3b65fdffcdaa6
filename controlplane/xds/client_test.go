package xds

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/strait-mesh/strait/internal/node"
	"github.com/strait-mesh/strait/internal/testenv"
)

// allTypes are the types the test client subscribes to, in Envoy's order.
var allTypes = []string{resource.ClusterType, resource.EndpointType, resource.ListenerType, resource.RouteType}

// startServer runs srv on a loopback gRPC listener and returns its address.
func startServer(t *testing.T, srv *Server) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	srv.Register(g)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(func() { g.Stop(); srv.Close() })
	return lis.Addr().String()
}

// typeState is what the test client holds for one type.
type typeState struct {
	version   string            // last accepted version (SotW) or system version (Delta)
	resources map[string]string // accepted resources: name → version (Delta) or "" (SotW)
	responses int               // responses received
	nacks     int               // responses rejected
}

// adsClient is a minimal ADS client speaking real gRPC through the generated Envoy stubs. It
// subscribes to all four core types with wildcard subscriptions, ACKs what it receives, and NACKs
// responses containing a resource whose name has the reject substring.
type adsClient struct {
	t      *testing.T
	delta  bool
	close  func() // ends the stream and the connection
	stream adsStream
	reject string
	done   chan error

	mu    sync.Mutex
	types map[string]*typeState
}

// adsStream is a SotW or a Delta ADS stream, as the test client uses either.
type adsStream interface {
	// send sends a request for typ: a subscription (with the node on the stream's first), or the
	// ACK (nack nil) or NACK of the response with nonce. version is the last accepted (SotW only).
	send(typ string, n *corev3.Node, version, nonce string, nack error) error
	recv() (adsResponse, error)
}

// adsResponse is one response as the test clients see it.
type adsResponse struct {
	typ, nonce string
	version    string       // version_info (SotW) or system_version_info (Delta)
	resources  []*anypb.Any // the resources in it
	names      []string     // their names
	versions   []string     // Delta: their versions
	replace    bool         // SotW: the resources replace all those held
	removed    []string     // Delta: the resources it removes
}

// apply records the accepted response r in ts.
func (r adsResponse) apply(ts *typeState) {
	ts.version = r.version
	if r.replace {
		ts.resources = map[string]string{}
	}
	for i, n := range r.names {
		ts.resources[n] = ""
		if r.versions != nil {
			ts.resources[n] = r.versions[i]
		}
	}
	for _, n := range r.removed {
		delete(ts.resources, n)
	}
}

// errorDetail is a NACK's error_detail (nil for an ACK).
func errorDetail(nack error) *rpcstatus.Status {
	if nack == nil {
		return nil
	}
	return &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: nack.Error()}
}

type sotwClientStream struct {
	discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient
}

func (s sotwClientStream) send(typ string, n *corev3.Node, version, nonce string, nack error) error {
	return s.Send(&discovery.DiscoveryRequest{TypeUrl: typ, Node: n, VersionInfo: version, ResponseNonce: nonce, ErrorDetail: errorDetail(nack)})
}

func (s sotwClientStream) recv() (adsResponse, error) {
	resp, err := s.Recv()
	r := adsResponse{typ: resp.GetTypeUrl(), nonce: resp.GetNonce(), version: resp.GetVersionInfo(), resources: resp.GetResources(), replace: true}
	for _, a := range r.resources {
		m, err := anypb.UnmarshalNew(a, protoUnmarshalOptions)
		if err != nil {
			return adsResponse{}, err
		}
		r.names = append(r.names, cache.GetResourceName(m))
	}
	return r, err
}

type deltaClientStream struct {
	discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
}

func (s deltaClientStream) send(typ string, n *corev3.Node, _, nonce string, nack error) error {
	return s.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: typ, Node: n, ResponseNonce: nonce, ErrorDetail: errorDetail(nack)})
}

func (s deltaClientStream) recv() (adsResponse, error) {
	resp, err := s.Recv()
	r := adsResponse{typ: resp.GetTypeUrl(), nonce: resp.GetNonce(), version: resp.GetSystemVersionInfo(), removed: resp.GetRemovedResources()}
	for _, res := range resp.GetResources() {
		r.resources = append(r.resources, res.GetResource())
		r.names = append(r.names, res.GetName())
		r.versions = append(r.versions, res.GetVersion())
	}
	return r, err
}

// dialADS connects to the ADS server at addr. The streams opened with ctx end when closeConn is
// called, at the end of the test, or after life (0: no limit).
func dialADS(t *testing.T, addr string, life time.Duration) (ads discovery.AggregatedDiscoveryServiceClient, ctx context.Context, closeConn func()) {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	var cancel context.CancelFunc
	if life > 0 {
		ctx, cancel = context.WithTimeout(context.Background(), life)
	} else {
		ctx, cancel = context.WithCancel(context.Background())
	}
	closeConn = func() { cancel(); _ = cc.Close() }
	t.Cleanup(closeConn)
	return discovery.NewAggregatedDiscoveryServiceClient(cc), ctx, closeConn
}

// openStream opens a Delta or a SotW ADS stream.
func openStream(ctx context.Context, t *testing.T, ads discovery.AggregatedDiscoveryServiceClient, delta bool) adsStream {
	t.Helper()
	if delta {
		s, err := ads.DeltaAggregatedResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return deltaClientStream{s}
	}
	s, err := ads.StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return sotwClientStream{s}
}

// testNode builds a node with the given ID and metadata strings.
func testNode(id string, meta map[string]string) *corev3.Node {
	fields := map[string]*structpb.Value{}
	for k, v := range meta {
		fields[k] = structpb.NewStringValue(v)
	}
	return &corev3.Node{Id: id, Metadata: &structpb.Struct{Fields: fields}}
}

func sidecarID(ip, name, ns string) string {
	return node.NewID(node.Sidecar, ip, name, ns).String()
}

// dial connects a client; it fails the test only for dial errors, stream errors are in done.
func dial(t *testing.T, addr string, delta bool, n *corev3.Node, reject string) *adsClient {
	t.Helper()
	ads, ctx, closeConn := dialADS(t, addr, 0)
	c := &adsClient{t: t, delta: delta, close: closeConn, reject: reject, done: make(chan error, 1),
		types: make(map[string]*typeState)}
	for _, typ := range allTypes {
		c.types[typ] = &typeState{resources: map[string]string{}}
	}
	c.stream = openStream(ctx, t, ads, delta)
	for i, typ := range allTypes {
		var first *corev3.Node
		if i == 0 {
			first = n
		}
		if err := c.stream.send(typ, first, "", "", nil); err != nil && err != io.EOF { // EOF: the status comes from Recv
			t.Fatal(err)
		}
	}
	go c.loop()
	return c
}

// rejects returns the NACK error for a CDS response naming a rejected resource.
func (c *adsClient) rejects(typ string, names []string) error {
	if c.reject == "" || typ != resource.ClusterType {
		return nil
	}
	for _, n := range names {
		if strings.Contains(n, c.reject) {
			return fmt.Errorf("resource %q: unsupported field", n)
		}
	}
	return nil
}

// loop receives responses and ACKs or NACKs each until the stream ends.
func (c *adsClient) loop() {
	for {
		r, err := c.stream.recv()
		if err != nil {
			c.done <- err
			return
		}
		rejectErr := c.rejects(r.typ, r.names)
		c.mu.Lock()
		ts := c.types[r.typ]
		ts.responses++
		if rejectErr == nil {
			r.apply(ts)
		} else {
			ts.nacks++
		}
		version := ts.version
		c.mu.Unlock()
		if err := c.stream.send(r.typ, nil, version, r.nonce, rejectErr); err != nil {
			c.done <- err
			return
		}
	}
}

// state returns a copy of the client's state for one type.
func (c *adsClient) state(typ string) typeState {
	c.mu.Lock()
	defer c.mu.Unlock()
	ts := *c.types[typ]
	ts.resources = make(map[string]string, len(c.types[typ].resources))
	for k, v := range c.types[typ].resources {
		ts.resources[k] = v
	}
	return ts
}

// has reports whether the client holds exactly the named resources of a type.
func (c *adsClient) has(typ string, names ...string) bool {
	ts := c.state(typ)
	if len(ts.resources) != len(names) {
		return false
	}
	for _, n := range names {
		if _, ok := ts.resources[n]; !ok {
			return false
		}
	}
	return true
}

// streamErr returns the stream's terminal error, waiting up to the deadline.
func (c *adsClient) streamErr(d time.Duration) error {
	select {
	case err := <-c.done:
		if err == io.EOF {
			return nil
		}
		return err
	case <-time.After(d):
		return nil
	}
}

// waitFor polls cond until it holds or 15s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, what, 15*time.Second, cond)
}
