package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"github.com/strait-mesh/strait/internal/node"
	"github.com/strait-mesh/strait/proxy/xdsclient"
)

// clientHolder is the Handler of a real xdsclient: it subscribes to the route configurations
// and load assignments its listeners and clusters name, as strait-proxy does, and holds the
// accepted sets (what the proxy's configuration is built from).
type clientHolder struct {
	c    *xdsclient.Client
	mu   sync.Mutex
	sets map[string]map[string]*xdsclient.Resource
}

func (h *clientHolder) Apply(typeURL string, set map[string]*xdsclient.Resource) error {
	switch typeURL {
	case xdsclient.ListenerType:
		var rds []string
		for _, r := range set {
			for _, fc := range r.Message.(*listenerv3.Listener).GetFilterChains() {
				for _, f := range fc.GetFilters() {
					var hcm hcmv3.HttpConnectionManager
					if f.GetTypedConfig().MessageIs(&hcm) && f.GetTypedConfig().UnmarshalTo(&hcm) == nil && hcm.GetRds() != nil {
						rds = append(rds, hcm.GetRds().GetRouteConfigName())
					}
				}
			}
		}
		h.c.SetNames(xdsclient.RouteType, rds)
	case xdsclient.ClusterType:
		var eds []string
		for name, r := range set {
			if r.Message.(*clusterv3.Cluster).GetType() == clusterv3.Cluster_EDS {
				eds = append(eds, name)
			}
		}
		h.c.SetNames(xdsclient.EndpointType, eds)
	}
	h.mu.Lock()
	h.sets[typeURL] = set
	h.mu.Unlock()
	return nil
}

// measureClient runs strait-proxy's xDS client (one, in namespace ns-0) against the server until
// it holds its configuration (with -ondemand, after demanding the services through Demand, as
// the router would), and reports the heap that configuration takes in this process.
func measureClient(ctx context.Context, cfg options, addr string) error {
	runtime.GC()
	debug.FreeOSMemory()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	sim := newSimProxy(cfg.proxies, true, false) // a node like the simulated proxies'
	sim.demandServices(cfg.ondemand, cfg.services)
	ni := xdsclient.NodeInfo{Type: node.Sidecar, IP: "127.250.0.1", Name: "measured", Namespace: "ns-0",
		Extra: map[string]string{}}
	if cfg.ondemand > 0 {
		ni.Extra[node.MetaOnDemand] = "true"
	}
	n, err := ni.Node()
	if err != nil {
		return err
	}
	h := &clientHolder{sets: map[string]map[string]*xdsclient.Resource{}}
	c, err := xdsclient.New(xdsclient.Options{Address: addr, Node: n, Handler: h, OnDemand: cfg.ondemand > 0,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	h.c = c
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	for _, name := range sim.demanded {
		rc, host, _ := strings.Cut(name, "/")
		if found, err := c.Demand(ctx, rc, host); err != nil || !found {
			return fmt.Errorf("measured client: demanding %s: found %v, err %v", name, found, err)
		}
	}
	for { // synced: every type the proxy asks for answered, routes included
		h.mu.Lock()
		ok := len(h.sets[xdsclient.ClusterType]) > 0 && len(h.sets[xdsclient.ListenerType]) > 0 &&
			len(h.sets[xdsclient.RouteType]) > 0 && len(h.sets[xdsclient.EndpointType]) > 0
		h.mu.Unlock()
		if ok {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("measured client: not synced: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	time.Sleep(500 * time.Millisecond) // let the last responses (EDS after CDS) land
	runtime.GC()
	debug.FreeOSMemory()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	h.mu.Lock()
	counts := fmt.Sprintf("%d clusters, %d endpoint sets, %d listeners, %d route configurations",
		len(h.sets[xdsclient.ClusterType]), len(h.sets[xdsclient.EndpointType]), len(h.sets[xdsclient.ListenerType]),
		len(h.sets[xdsclient.RouteType]))
	h.mu.Unlock()
	fmt.Printf("strait-proxy's xDS client holding its configuration (%s): heap %.1f MiB\n",
		counts, (float64(after.HeapInuse)-float64(before.HeapInuse))/(1<<20))

	// The first request to a host the proxy never called: one Demand each, one at a time, for
	// hosts not demanded yet (a bounded number), timed until the virtual host, its clusters and
	// their endpoints are applied.
	var lat []time.Duration
	held := map[string]bool{}
	for _, name := range sim.demanded {
		held[name] = true
	}
	for i := 0; i < cfg.services && len(lat) < firstRequests; i++ {
		name := fmt.Sprintf("80/svc-%d.ns-%d.svc.cluster.local", i, i%20)
		if held[name] {
			continue
		}
		rc, host, _ := strings.Cut(name, "/")
		t0 := time.Now()
		found, err := c.Demand(ctx, rc, host)
		if err != nil || !found {
			return fmt.Errorf("measured client: demanding %s: found %v, err %v", name, found, err)
		}
		lat = append(lat, time.Since(t0))
	}
	if len(lat) > 0 {
		fmt.Printf("first request to a new host (Demand until its virtual host, cluster and endpoints are applied, %d hosts one at a time): p50 %s  p99 %s  max %s\n",
			len(lat), pct(lat, 50), pct(lat, 99), pct(lat, 100))
	}
	return nil
}

// firstRequests bounds the hosts measureClient demands one at a time.
const firstRequests = 100
