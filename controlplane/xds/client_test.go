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
	cc     *grpc.ClientConn
	cancel context.CancelFunc
	sotw   discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	dstr   discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	reject string
	done   chan error

	mu    sync.Mutex
	types map[string]*typeState
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
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &adsClient{t: t, delta: delta, cc: cc, cancel: cancel, reject: reject, done: make(chan error, 1),
		types: make(map[string]*typeState)}
	for _, typ := range allTypes {
		c.types[typ] = &typeState{resources: map[string]string{}}
	}
	ads := discovery.NewAggregatedDiscoveryServiceClient(cc)
	if delta {
		if c.dstr, err = ads.DeltaAggregatedResources(ctx); err != nil {
			t.Fatal(err)
		}
		for i, typ := range allTypes {
			req := &discovery.DeltaDiscoveryRequest{TypeUrl: typ}
			if i == 0 {
				req.Node = n
			}
			if err := c.dstr.Send(req); err != nil && err != io.EOF { // EOF: the status comes from Recv
				t.Fatal(err)
			}
		}
		go c.deltaLoop()
	} else {
		if c.sotw, err = ads.StreamAggregatedResources(ctx); err != nil {
			t.Fatal(err)
		}
		for i, typ := range allTypes {
			req := &discovery.DiscoveryRequest{TypeUrl: typ}
			if i == 0 {
				req.Node = n
			}
			if err := c.sotw.Send(req); err != nil && err != io.EOF { // EOF: the status comes from Recv
				t.Fatal(err)
			}
		}
		go c.sotwLoop()
	}
	t.Cleanup(c.close)
	return c
}

func (c *adsClient) close() {
	c.cancel()
	_ = c.cc.Close()
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

func (c *adsClient) sotwLoop() {
	for {
		resp, err := c.sotw.Recv()
		if err != nil {
			c.done <- err
			return
		}
		names := make([]string, 0, len(resp.GetResources()))
		for _, a := range resp.GetResources() {
			m, err := anypb.UnmarshalNew(a, protoUnmarshalOptions)
			if err != nil {
				c.done <- err
				return
			}
			names = append(names, cache.GetResourceName(m))
		}
		typ := resp.GetTypeUrl()
		rejectErr := c.rejects(typ, names)
		c.mu.Lock()
		ts := c.types[typ]
		ts.responses++
		if rejectErr == nil {
			ts.version = resp.GetVersionInfo()
			ts.resources = map[string]string{}
			for _, n := range names {
				ts.resources[n] = ""
			}
		} else {
			ts.nacks++
		}
		req := &discovery.DiscoveryRequest{TypeUrl: typ, VersionInfo: ts.version, ResponseNonce: resp.GetNonce()}
		c.mu.Unlock()
		if rejectErr != nil {
			req.ErrorDetail = &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: rejectErr.Error()}
		}
		if err := c.sotw.Send(req); err != nil {
			c.done <- err
			return
		}
	}
}

func (c *adsClient) deltaLoop() {
	for {
		resp, err := c.dstr.Recv()
		if err != nil {
			c.done <- err
			return
		}
		names := make([]string, 0, len(resp.GetResources()))
		for _, r := range resp.GetResources() {
			names = append(names, r.GetName())
		}
		typ := resp.GetTypeUrl()
		rejectErr := c.rejects(typ, names)
		c.mu.Lock()
		ts := c.types[typ]
		ts.responses++
		if rejectErr == nil {
			ts.version = resp.GetSystemVersionInfo()
			for _, r := range resp.GetResources() {
				ts.resources[r.GetName()] = r.GetVersion()
			}
			for _, n := range resp.GetRemovedResources() {
				delete(ts.resources, n)
			}
		} else {
			ts.nacks++
		}
		c.mu.Unlock()
		req := &discovery.DeltaDiscoveryRequest{TypeUrl: typ, ResponseNonce: resp.GetNonce()}
		if rejectErr != nil {
			req.ErrorDetail = &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: rejectErr.Error()}
		}
		if err := c.dstr.Send(req); err != nil {
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
