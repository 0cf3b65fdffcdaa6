package testenv

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	xdsgrpc "google.golang.org/grpc/xds"
)

// GRPCBackend starts a real gRPC server (the standard health service) on a loopback port and
// returns its address and port; it is stopped at test cleanup.
func GRPCBackend(t testing.TB) (addr string, port int) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	healthpb.RegisterHealthServer(s, health.NewServer())
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return lis.Addr().String(), lis.Addr().(*net.TCPAddr).Port
}

// ProxylessClient is a stock grpc-go client that resolves an xds:/// target through an ADS server,
// as a proxyless gRPC workload in namespace "default" does.
type ProxylessClient struct {
	client healthpb.HealthClient
}

// NewProxylessClient bootstraps grpc-go's xDS resolver against the ADS server at xdsAddr and
// dials target (e.g. "xds:///greeter.default.svc.cluster.local:50051"). The connection is closed
// at test cleanup.
func NewProxylessClient(t testing.TB, xdsAddr, target string) *ProxylessClient {
	t.Helper()
	bootstrap := fmt.Sprintf(`{
	  "xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
	  "node": {"id": "sidecar~127.0.0.1~grpc-client.default~default.svc.cluster.local",
	           "metadata": {"GENERATOR": "grpc", "NAMESPACE": "default"}}
	}`, xdsAddr)
	resolver, err := xdsgrpc.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(resolver))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &ProxylessClient{client: healthpb.NewHealthClient(conn)}
}

// Calls makes n health checks and counts the backend address each reached. It stops at the first
// failed call, returning the counts so far and the error.
func (c *ProxylessClient) Calls(n int) (map[string]int, error) {
	seen := map[string]int{}
	for i := 0; i < n; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var p peer.Peer
		_, err := c.client.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p), grpc.WaitForReady(true))
		cancel()
		if err != nil {
			return seen, fmt.Errorf("call %d: %w", i, err)
		}
		seen[p.Addr.String()]++
	}
	return seen, nil
}
