package testenv

import (
	"context"
	"sync"
	"testing"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
)

// ADSOptions configure StartADS.
type ADSOptions struct {
	// Addr is the address to serve on; empty takes a free loopback port.
	Addr string
	// Cache holds what the server sends; nil makes an empty snapshot cache (ADS, by node ID).
	Cache cachev3.SnapshotCache
	// SotWOnly serves state-of-the-world ADS only: Delta answers Unimplemented.
	SotWOnly bool
	// GRPC are options of the gRPC server, e.g. its TLS credentials.
	GRPC []grpc.ServerOption
}

// ADS is a real go-control-plane ADS server, Delta and SotW, for tests of xDS clients. It counts
// the requests of each protocol and records the NACKs. Stop and Start (of the embedded
// GRPCServer) simulate a control-plane outage on the same address.
type ADS struct {
	*GRPCServer
	Cache cachev3.SnapshotCache

	mu          sync.Mutex
	nacks       []string
	delta, sotw int
}

// StartADS serves an ADS server until the test ends.
func StartADS(t testing.TB, o ADSOptions) *ADS {
	t.Helper()
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	if o.Cache == nil {
		o.Cache = cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)
	}
	a := &ADS{Cache: o.Cache}
	a.GRPCServer = ServeGRPC(t, o.Addr, func() *grpc.Server {
		srv := serverv3.NewServer(context.Background(), o.Cache, serverv3.CallbackFuncs{
			StreamRequestFunc: func(_ int64, r *discoveryv3.DiscoveryRequest) error {
				a.record(&a.sotw, r.GetErrorDetail().GetMessage())
				return nil
			},
			StreamDeltaRequestFunc: func(_ int64, r *discoveryv3.DeltaDiscoveryRequest) error {
				a.record(&a.delta, r.GetErrorDetail().GetMessage())
				return nil
			},
		})
		g := grpc.NewServer(o.GRPC...)
		if o.SotWOnly {
			discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, sotwOnly{s: srv})
		} else {
			discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, srv)
		}
		return g
	})
	return a
}

// sotwOnly exposes only StreamAggregatedResources.
type sotwOnly struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer
	s serverv3.Server
}

func (o sotwOnly) StreamAggregatedResources(st discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	return o.s.StreamAggregatedResources(st)
}

func (a *ADS) record(count *int, nack string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	*count++
	if nack != "" {
		a.nacks = append(a.nacks, nack)
	}
}

// Nacks returns the error details of the NACKs received so far.
func (a *ADS) Nacks() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.nacks...)
}

// Requests returns how many Delta and SotW requests the server received.
func (a *ADS) Requests() (delta, sotw int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.delta, a.sotw
}
