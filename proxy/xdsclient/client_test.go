package xdsclient

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/strait-mesh/strait/internal/node"
	"github.com/strait-mesh/strait/internal/testenv"
	pclusterv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/cluster/v3"
	pcorev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
)

// recorder is a Handler that keeps the last accepted names per type and rejects clusters named
// "bad"; it subscribes EDS to every EDS cluster, as the proxy does.
type recorder struct {
	mu     sync.Mutex
	sets   map[string][]string
	client *Client
}

func (r *recorder) Apply(typeURL string, set map[string]*Resource) error {
	names := make([]string, 0, len(set))
	var eds []string
	for n, res := range set {
		if n == "bad" {
			return fmt.Errorf("cluster %q: field lb_policy: unsupported", n)
		}
		names = append(names, n)
		if c, ok := res.Message.(*pclusterv3.Cluster); ok && c.GetType() == pclusterv3.Cluster_EDS {
			eds = append(eds, n)
		}
	}
	sort.Strings(names)
	if typeURL == ClusterType {
		r.client.SetNames(EndpointType, eds)
	}
	r.mu.Lock()
	r.sets[typeURL] = names
	r.mu.Unlock()
	return nil
}

func (r *recorder) get(typeURL string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.sets[typeURL], ",")
}

// waitFor polls cond until it holds or 20s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, what, 20*time.Second, cond)
}

func snapshot(t *testing.T, version string, clusters ...string) *cachev3.Snapshot {
	t.Helper()
	var cs, es []types.Resource
	for _, n := range clusters {
		cs = append(cs, &clusterv3.Cluster{
			Name:                 n,
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
			EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{}}},
		})
		es = append(es, &endpointv3.ClusterLoadAssignment{ClusterName: n})
	}
	snap, err := cachev3.NewSnapshot(version, map[resource.Type][]types.Resource{
		resource.ClusterType:  cs,
		resource.EndpointType: es,
	})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

func testNode(t *testing.T) *pcorev3.Node {
	n, err := NodeInfo{Type: node.Sidecar, IP: "10.1.0.7", Name: "reviews-v1", Namespace: "default",
		Labels: map[string]string{"app": "reviews"}, ServiceAccount: "bookinfo-reviews"}.Node()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func runClient(t *testing.T, addr string) (*Client, *recorder) {
	t.Helper()
	rec := &recorder{sets: map[string][]string{}}
	c := startClient(t, Options{Address: addr, Handler: rec}, func(c *Client) { rec.client = c })
	return c, rec
}

// startClient runs a client with the test node and short backoffs until the test ends; setup
// runs before the client starts.
func startClient(t *testing.T, opts Options, setup func(*Client)) *Client {
	t.Helper()
	opts.Node = testNode(t)
	opts.BackoffBase, opts.BackoffMax = 20*time.Millisecond, 200*time.Millisecond
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	setup(c)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return c
}

func TestClientProtocols(t *testing.T) {
	for _, sotw := range []bool{false, true} {
		name := map[bool]string{false: "delta", true: "sotw"}[sotw]
		t.Run(name, func(t *testing.T) {
			cache := cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)
			nodeID := testNode(t).GetId()
			if err := cache.SetSnapshot(context.Background(), nodeID, snapshot(t, "1", "a", "b")); err != nil {
				t.Fatal(err)
			}
			ts := testenv.StartADS(t, testenv.ADSOptions{Cache: cache, SotWOnly: sotw})
			c, rec := runClient(t, ts.Addr())

			waitFor(t, "clusters a,b", func() bool { return rec.get(ClusterType) == "a,b" })
			waitFor(t, "endpoints a,b", func() bool { return rec.get(EndpointType) == "a,b" })
			if c.Protocol() != name {
				t.Fatalf("protocol = %q, want %q", c.Protocol(), name)
			}

			// An update the handler rejects is NACKed with the handler's error, and the accepted set stays.
			if err := cache.SetSnapshot(context.Background(), nodeID, snapshot(t, "2", "a", "bad")); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "nack", func() bool {
				for _, n := range ts.Nacks() {
					if strings.Contains(n, `cluster "bad": field lb_policy`) {
						return true
					}
				}
				return false
			})
			if got := rec.get(ClusterType); got != "a,b" {
				t.Fatalf("after NACK clusters = %q, want a,b", got)
			}

			// The next good update is accepted; endpoints follow the new cluster set.
			if err := cache.SetSnapshot(context.Background(), nodeID, snapshot(t, "3", "a", "c")); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "clusters a,c", func() bool { return rec.get(ClusterType) == "a,c" })
			waitFor(t, "endpoints a,c", func() bool { return strings.Contains(rec.get(EndpointType), "c") })

			// Outage: the server goes away; the accepted set stays; a new server resyncs.
			ts.Stop()
			waitFor(t, "disconnect", func() bool { return !c.Connected() })
			if got := rec.get(ClusterType); got != "a,c" {
				t.Fatalf("during outage clusters = %q, want a,c", got)
			}
			cache2 := cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)
			if err := cache2.SetSnapshot(context.Background(), nodeID, snapshot(t, "4", "d")); err != nil {
				t.Fatal(err)
			}
			testenv.StartADS(t, testenv.ADSOptions{Addr: ts.Addr(), Cache: cache2, SotWOnly: sotw})
			waitFor(t, "clusters d after reconnect", func() bool { return rec.get(ClusterType) == "d" })
			waitFor(t, "endpoints d after reconnect", func() bool { return rec.get(EndpointType) == "d" })
			if c.Stats().Nacks.Load() == 0 || c.Stats().Acks.Load() == 0 {
				t.Fatalf("stats: acks %d nacks %d", c.Stats().Acks.Load(), c.Stats().Nacks.Load())
			}
		})
	}
}

func TestNodeInfo(t *testing.T) {
	n := testNode(t)
	if n.GetId() != "sidecar~10.1.0.7~reviews-v1.default~default.svc.cluster.local" {
		t.Fatalf("id = %q", n.GetId())
	}
	md := n.GetMetadata().GetFields()
	if md[node.MetaNamespace].GetStringValue() != "default" ||
		md[node.MetaServiceAccount].GetStringValue() != "bookinfo-reviews" ||
		md[node.MetaLabels].GetStructValue().GetFields()["app"].GetStringValue() != "reviews" ||
		md[node.MetaInstanceIPs].GetStringValue() != "10.1.0.7" {
		t.Fatalf("metadata = %v", md)
	}
	if _, err := (NodeInfo{Type: "gateway", IP: "1.2.3.4", Name: "x", Namespace: "y"}).Node(); err == nil {
		t.Fatal("bad mode accepted")
	}
	if _, err := ParseLabels("a=b,c"); err == nil {
		t.Fatal("bad labels accepted")
	}
}
