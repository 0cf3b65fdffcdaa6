package testenv

import (
	"testing"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"

	rlservice "github.com/strait-mesh/strait/controlplane/ratelimit"
)

// RateLimitServer serves s as a real envoy.service.ratelimit.v3 RateLimitService (grpc-go) on
// a free loopback port until the test ends, and returns its address.
func RateLimitServer(t testing.TB, s rlsv3.RateLimitServiceServer) string {
	t.Helper()
	return ServeGRPC(t, "127.0.0.1:0", func() *grpc.Server {
		gs := grpc.NewServer()
		rlsv3.RegisterRateLimitServiceServer(gs, s)
		return gs
	}).Addr()
}

// InMemoryRateLimitService serves straitd's in-memory rate limit service with config (Envoy
// ratelimit's YAML format) on a free loopback port until the test ends, and returns its address.
func InMemoryRateLimitService(t testing.TB, config string) string {
	t.Helper()
	cfg, err := rlservice.ParseConfig([]byte(config))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := rlservice.New(rlservice.Options{})
	if err != nil {
		t.Fatal(err)
	}
	svc.SetConfig(cfg)
	return RateLimitServer(t, svc)
}
