package translate_test

import (
	"fmt"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/mesh/meshtest"
	"github.com/strait-mesh/strait/controlplane/translate"
	"github.com/strait-mesh/strait/controlplane/xds"
	"github.com/strait-mesh/strait/internal/testenv"
)

var greeterService = meshtest.Object("ServiceEntry", "greeter", "default", `  hosts: [greeter.default.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{number: 50051, name: grpc}]
  resolution: STATIC
  endpoints:
  - {address: 127.0.0.1, ports: {grpc: %d}, labels: {version: v1}}
  - {address: 127.0.0.1, ports: {grpc: %d}, labels: {version: v2}}
`)

var greeterV2Only = "\n---\n" + meshtest.Object("DestinationRule", "greeter", "default", `  host: greeter
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
`) + "---\n" + meshtest.Object("VirtualService", "greeter", "default", `  hosts: [greeter]
  http:
  - route:
    - {destination: {host: greeter, subset: v1}, weight: 0}
    - {destination: {host: greeter, subset: v2}, weight: 100}
`)

// TestProxylessGRPC runs a stock grpc-go client through the xds:/// resolver against Strait's
// ADS server and translation: calls round-robin across two real gRPC servers, then, after a
// DestinationRule and a VirtualService sending 100% to subset v2 are applied, every call goes to
// the v2 server.
func TestProxylessGRPC(t *testing.T) {
	v1, _ := testenv.GRPCBackend(t)
	v2, _ := testenv.GRPCBackend(t)
	port := func(addr string) int {
		_, p, _ := net.SplitHostPort(addr)
		var n int
		fmt.Sscan(p, &n)
		return n
	}
	snapshot := func(version uint64, yaml string) *mesh.Snapshot {
		return meshtest.Snapshot(t, "e2e", version, config.DefaultMeshConfig(), yaml)
	}
	base := fmt.Sprintf(greeterService, port(v1), port(v2))

	// The control plane: Strait's xDS server with the translate generator.
	srv, err := xds.New(xds.Options{Generator: translate.New(translate.Options{Report: func(_ *translate.Proxy, err error) {
		t.Errorf("translation report: %v", err)
	}}), Debounce: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	srv.Update(snapshot(1, base))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	srv.Register(gs)
	go gs.Serve(lis)
	defer gs.Stop()

	client := testenv.NewProxylessClient(t, lis.Addr().String(), "xds:///greeter.default.svc.cluster.local:50051")
	try := client.Calls
	call := func(n int) map[string]int {
		seen, err := try(n)
		if err != nil {
			t.Fatal(err)
		}
		return seen
	}

	// gRPC's round robin picks among READY subchannels only, and the second backend's
	// subchannel may still be connecting when the first calls go out: wait (bounded) until both
	// backends have answered, then require the split.
	readyBy := time.Now().Add(10 * time.Second)
	for {
		s := call(4)
		if s[v1] > 0 && s[v2] > 0 {
			break
		}
		if time.Now().After(readyBy) {
			t.Fatalf("round robin: only %v answered within 10s, want both %s and %s", s, v1, v2)
		}
		time.Sleep(20 * time.Millisecond)
	}
	seen := call(20)
	if seen[v1] < 5 || seen[v2] < 5 || seen[v1]+seen[v2] != 20 {
		t.Fatalf("round robin: calls per backend = %v, want both %s and %s", seen, v1, v2)
	}
	t.Logf("round robin: %v", seen)

	srv.Update(snapshot(2, base+greeterV2Only))
	// The client applies the new route asynchronously: wait (bounded) until calls reach v2
	// only, then require every call to go there. While the new route's clusters are still
	// arriving, gRPC may fail a call with "unknown cluster selected for RPC"; that is tolerated
	// during the transition only.
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, err := try(10)
		if err == nil && s[v1] == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the shift to v2, calls still reach v1 (%v) or fail (%v)", s, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	seen = call(30)
	if seen[v2] != 30 {
		t.Fatalf("after the shift to v2: calls per backend = %v, want all 30 on %s", seen, v2)
	}
	t.Logf("after shift: %v", seen)
}
