package listener

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	ratelimitconfv3 "github.com/envoyproxy/go-control-plane/envoy/config/ratelimit/v3"
	commonrlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlnetv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/ratelimit/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/ratelimit"
	"github.com/strait-mesh/strait/proxy/xdsfield"
	listenerv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/listener/v3"
)

const rlsCluster = "outbound|8081||ratelimit.default.svc.cluster.local"

// netGlobalRateLimit is the filter as an EnvoyFilter inserts it before a tcp_proxy: domain tcp,
// one static descriptor, the rate limit service's mesh cluster.
func netGlobalRateLimit(failureModeDeny bool) *rlnetv3.RateLimit {
	return &rlnetv3.RateLimit{
		StatPrefix: "tcp_global", Domain: "tcp", FailureModeDeny: failureModeDeny, Timeout: durationpb.New(10 * time.Second),
		Descriptors: []*commonrlv3.RateLimitDescriptor{{Entries: []*commonrlv3.RateLimitDescriptor_Entry{
			{Key: "generic_key", Value: "backend"}, {Key: "port", Value: "9000"}}}},
		RateLimitService: &ratelimitconfv3.RateLimitServiceConfig{
			GrpcService: &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{
				ClusterName: rlsCluster}}},
			TransportApiVersion: corev3.ApiVersion_V3,
		},
	}
}

// netGlobalChain is a chain of the network global rate limit filter c and a tcp_proxy to backend.
func netGlobalChain(t *testing.T, c *rlnetv3.RateLimit) *listenerv3.FilterChain {
	return &listenerv3.FilterChain{Name: "tcp", Filters: []*listenerv3.Filter{
		{Name: "envoy.filters.network.ratelimit", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: testenv.MustAny(t, c)}},
		{Name: "envoy.filters.network.tcp_proxy", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: testenv.MustAny(t,
			&tcpv3.TcpProxy{StatPrefix: "tcp", ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: backendCluster}})}},
	}}
}

const netRLStats = "ratelimit.tcp_global."

// TestNetworkGlobalRateLimit: straitd's in-memory rate limit service allows 3 connections a day
// for the filter's descriptor; of 6 connections 3 are served and 3 closed before reaching the
// backend, with Envoy's ratelimit.<stat_prefix>.* statistics.
func TestNetworkGlobalRateLimit(t *testing.T) {
	rlsAddr := testenv.InMemoryRateLimitService(t, `domain: tcp
descriptors:
  - key: generic_key
    value: backend
    descriptors:
      - key: port
        value: "9000"
        rate_limit: {unit: day, requests_per_unit: 3}
`)
	be := newRecordingBackend(t)
	env := newAuthzEnv(rlsCluster, rlsAddr).addTCP(backendCluster, be.addr)
	_, addr := start(t, &listenerv3.Listener{Name: "l", FilterChains: []*listenerv3.FilterChain{netGlobalChain(t, netGlobalRateLimit(false))}}, env)

	served := 0
	for i := 0; i < 6; i++ {
		if got, _ := exchange(t, "", addr, "hello"); got == "hello" {
			served++
		}
	}
	if served != 3 || be.conns.Load() != 3 {
		t.Errorf("6 connections: %d served, the backend saw %d; want 3 and 3", served, be.conns.Load())
	}
	waitFor(t, "the checks' end", func() bool { return env.active(netRLStats) == 0 })
	for name, want := range map[string]uint64{"total": 6, "ok": 3, "over_limit": 3, "cx_closed": 3, "error": 0, "failure_mode_allowed": 0} {
		if got := env.value(netRLStats + name); got != want {
			t.Errorf("%s%s = %d, want %d", netRLStats, name, got, want)
		}
	}
}

// blockingRLS answers OK with metadata once release is closed, recording the requests.
type blockingRLS struct {
	rlsv3.UnimplementedRateLimitServiceServer
	release chan struct{}
	mu      sync.Mutex
	reqs    []*rlsv3.RateLimitRequest
}

func (s *blockingRLS) ShouldRateLimit(ctx context.Context, r *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	s.mu.Lock()
	s.reqs = append(s.reqs, r)
	s.mu.Unlock()
	select {
	case <-s.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK, DynamicMetadata: &structpb.Struct{
		Fields: map[string]*structpb.Value{"tier": structpb.NewStringValue("gold")}}}, nil
}

func (s *blockingRLS) requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.reqs)
}

// TestNetworkGlobalRateLimitHoldsData: the connection's bytes reach no upstream while the call
// runs (the backend sees no connection at all); once the service answers OK they are forwarded.
// The request carries the domain and the static descriptor; the reply's dynamic_metadata goes
// to the connection's envoy.filters.network.ratelimit namespace.
func TestNetworkGlobalRateLimitHoldsData(t *testing.T) {
	rls := &blockingRLS{release: make(chan struct{})}
	be := newRecordingBackend(t)
	env := newAuthzEnv(rlsCluster, testenv.RateLimitServer(t, rls)).addTCP(backendCluster, be.addr)
	_, addr := start(t, &listenerv3.Listener{Name: "l", FilterChains: []*listenerv3.FilterChain{netGlobalChain(t, netGlobalRateLimit(true))}}, env)

	type result struct {
		got string
		err error
	}
	done := make(chan result, 1)
	go func() {
		got, err := exchange(t, "", addr, "early bytes")
		done <- result{got, err}
	}()
	waitFor(t, "the call", func() bool { return rls.requests() == 1 })
	if be.conns.Load() != 0 || env.active(netRLStats) != 1 {
		t.Errorf("during the call: the backend saw %d connections, active %d", be.conns.Load(), env.active(netRLStats))
	}
	close(rls.release)
	if r := <-done; r.got != "early bytes" || r.err != nil {
		t.Fatalf("after OK: got %q, %v", r.got, r.err)
	}
	want := &rlsv3.RateLimitRequest{Domain: "tcp", Descriptors: netGlobalRateLimit(true).Descriptors}
	if got := rls.reqs[0]; !proto.Equal(got, want) {
		t.Errorf("request %v, want %v", got, want)
	}

	// The metadata, on the filter itself.
	f, err := compileNetworkGlobalRateLimit(context.Background(), testenv.MustAny(t, netGlobalRateLimit(true)), env, "f")
	if err != nil {
		t.Fatal(err)
	}
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	cs := newConnState(server, &ConnInfo{})
	if !f.onConnection(cs) {
		t.Fatal("OK closed the connection")
	}
	if md := cs.md.get(ratelimit.NetworkGlobalFilterName); md.GetFields()["tier"].GetStringValue() != "gold" {
		t.Errorf("dynamic metadata %v", md)
	}
}

// TestNetworkGlobalRateLimitServiceDown: the service unreachable closes the connection with
// failure_mode_deny (cx_closed, nothing reaches the backend) and lets it through otherwise
// (failure_mode_allowed).
func TestNetworkGlobalRateLimitServiceDown(t *testing.T) {
	ln := testenv.Listen(t, "127.0.0.1:0")
	down := ln.Addr().String()
	ln.Close()
	for _, deny := range []bool{false, true} {
		be := newRecordingBackend(t)
		env := newAuthzEnv(rlsCluster, down).addTCP(backendCluster, be.addr)
		_, addr := start(t, &listenerv3.Listener{Name: "l", FilterChains: []*listenerv3.FilterChain{netGlobalChain(t, netGlobalRateLimit(deny))}}, env)
		got, _ := exchange(t, "", addr, "hello")
		waitFor(t, "the call's end", func() bool { return env.value(netRLStats+"error") == 1 && env.active(netRLStats) == 0 })
		if deny {
			if got != "" || be.conns.Load() != 0 || env.value(netRLStats+"cx_closed") != 1 || env.value(netRLStats+"failure_mode_allowed") != 0 {
				t.Errorf("failure_mode_deny: got %q, backend connections %d, cx_closed %d", got, be.conns.Load(), env.value(netRLStats+"cx_closed"))
			}
			continue
		}
		if got != "hello" || env.value(netRLStats+"failure_mode_allowed") != 1 || env.value(netRLStats+"cx_closed") != 0 {
			t.Errorf("failure_mode_deny false: got %q, failure_mode_allowed %d", got, env.value(netRLStats+"failure_mode_allowed"))
		}
	}
}

// TestNetworkGlobalRateLimitConfig: fields strait-proxy does not implement are NACKed by name,
// bad values refused naming the field.
func TestNetworkGlobalRateLimitConfig(t *testing.T) {
	compile := func(mut func(c *rlnetv3.RateLimit)) error {
		c := netGlobalRateLimit(false)
		mut(c)
		_, err := Compile(&listenerv3.Listener{Name: "l", Address: sockAddr("127.0.0.1", 0),
			FilterChains: []*listenerv3.FilterChain{netGlobalChain(t, c)}}, newEnv())
		return err
	}
	if err := compile(func(*rlnetv3.RateLimit) {}); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	unsupported := map[string]func(c *rlnetv3.RateLimit){
		"descriptors[0].limit": func(c *rlnetv3.RateLimit) {
			c.Descriptors[0].Limit = &commonrlv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 1}
		},
		"descriptors[0].hits_addend": func(c *rlnetv3.RateLimit) { c.Descriptors[0].HitsAddend = wrapperspb.UInt64(2) },
		"grpc_service.timeout":       func(c *rlnetv3.RateLimit) { c.RateLimitService.GrpcService.Timeout = durationpb.New(time.Second) },
	}
	for field, mut := range unsupported {
		var ue *xdsfield.UnsupportedError
		if err := compile(mut); !errors.As(err, &ue) || !strings.HasSuffix(ue.Field, field) {
			t.Errorf("%s: %v, want it refused by name", field, err)
		}
	}
	refused := map[string]func(c *rlnetv3.RateLimit){
		"stat_prefix: empty":                     func(c *rlnetv3.RateLimit) { c.StatPrefix = "" },
		"domain: empty":                          func(c *rlnetv3.RateLimit) { c.Domain = "" },
		"descriptors: at least one":              func(c *rlnetv3.RateLimit) { c.Descriptors = nil },
		"descriptors[0].entries[1].value: empty": func(c *rlnetv3.RateLimit) { c.Descriptors[0].Entries[1].Value = "" },
		"substitution formatting is not supported yet": func(c *rlnetv3.RateLimit) {
			c.Descriptors[0].Entries[1].Value = "%DOWNSTREAM_REMOTE_ADDRESS%"
		},
		"rate_limit_service: missing":                func(c *rlnetv3.RateLimit) { c.RateLimitService = nil },
		"transport_api_version: V2 is not supported": func(c *rlnetv3.RateLimit) { c.RateLimitService.TransportApiVersion = corev3.ApiVersion_V2 },
		"envoy_grpc.cluster_name: empty":             func(c *rlnetv3.RateLimit) { c.RateLimitService.GrpcService.GetEnvoyGrpc().ClusterName = "" },
		"typed_config.timeout: negative":             func(c *rlnetv3.RateLimit) { c.Timeout = durationpb.New(-time.Second) },
	}
	for want, mut := range refused {
		if err := compile(mut); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v", want, err)
		}
	}
}
