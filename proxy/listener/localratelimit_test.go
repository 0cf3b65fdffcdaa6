package listener

import (
	"errors"
	"strings"
	"testing"
	"time"

	gnetlrlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/local_ratelimit/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/xdsfield"
	"github.com/strait-mesh/strait/proxy/xdspb"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	listenerv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/listener/v3"
	netlrlv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/local_ratelimit/v3"
	typev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/v3"
)

func lrlNetFilter(t testing.TB, c *netlrlv3.LocalRateLimit) *listenerv3.Filter {
	return &listenerv3.Filter{Name: "envoy.filters.network.local_ratelimit", ConfigType: &listenerv3.Filter_TypedConfig{
		TypedConfig: testenv.MustAny(t, c)}}
}

// TestNetworkLocalRateLimit: 3 connections per hour on a TCP chain; the 4th and later are closed
// at once and counted in local_rate_limit.<stat_prefix>.rate_limited.
func TestNetworkLocalRateLimit(t *testing.T) {
	env := newEnv()
	env.tcp["echo"] = tcpBackend(t, "ECHO")
	fc := tcpChain(t, "limited", "echo", nil)
	fc.Filters = append([]*listenerv3.Filter{lrlNetFilter(t, &netlrlv3.LocalRateLimit{StatPrefix: "tcp_rl",
		TokenBucket: &typev3.TokenBucket{MaxTokens: 3, TokensPerFill: wrapperspb.UInt32(3), FillInterval: durationpb.New(time.Hour)}})}, fc.Filters...)
	_, addr := start(t, &listenerv3.Listener{Name: "rl", FilterChains: []*listenerv3.FilterChain{fc}}, env)
	answered := 0
	for i := 0; i < 6; i++ {
		if readLine(t, nil, addr) == "ECHO" {
			answered++
		}
	}
	if answered != 3 {
		t.Errorf("%d of 6 connections served, want 3", answered)
	}
	if n := env.counter("local_rate_limit.tcp_rl.rate_limited"); n != 3 {
		t.Errorf("rate_limited = %d, want 3", n)
	}
}

// TestNetworkLocalRateLimitConfig checks refusals: share_key by name, a missing fill_interval,
// and a disabled runtime flag that lets every connection through.
func TestNetworkLocalRateLimitConfig(t *testing.T) {
	tb := &typev3.TokenBucket{MaxTokens: 1, FillInterval: durationpb.New(time.Hour)}
	compile := func(c *netlrlv3.LocalRateLimit) error {
		fc := tcpChain(t, "c", "echo", nil)
		fc.Filters = append([]*listenerv3.Filter{lrlNetFilter(t, c)}, fc.Filters...)
		_, err := Compile(&listenerv3.Listener{Name: "l", Address: sockAddr("127.0.0.1", 0), FilterChains: []*listenerv3.FilterChain{fc}}, newEnv())
		return err
	}
	var ue *xdsfield.UnsupportedError
	shared := xdspb.MustFrom[*netlrlv3.LocalRateLimit](&gnetlrlv3.LocalRateLimit{ShareKey: "k"}) // not read by strait-proxy
	shared.StatPrefix, shared.TokenBucket = "x", tb
	if err := compile(shared); !errors.As(err, &ue) || !strings.HasSuffix(ue.Field, "share_key") {
		t.Errorf("share_key: %v", err)
	}
	if err := compile(&netlrlv3.LocalRateLimit{StatPrefix: "x", TokenBucket: &typev3.TokenBucket{MaxTokens: 1}}); err == nil {
		t.Error("no fill_interval: accepted")
	}
	if err := compile(&netlrlv3.LocalRateLimit{StatPrefix: "x", TokenBucket: tb}); err != nil {
		t.Errorf("valid config: %v", err)
	}

	env := newEnv()
	env.tcp["echo"] = tcpBackend(t, "ECHO")
	fc := tcpChain(t, "off", "echo", nil)
	fc.Filters = append([]*listenerv3.Filter{lrlNetFilter(t, &netlrlv3.LocalRateLimit{StatPrefix: "off", TokenBucket: tb,
		RuntimeEnabled: &corev3.RuntimeFeatureFlag{DefaultValue: wrapperspb.Bool(false), RuntimeKey: "rl_enabled"}})}, fc.Filters...)
	_, addr := start(t, &listenerv3.Listener{Name: "off", FilterChains: []*listenerv3.FilterChain{fc}}, env)
	for i := 0; i < 3; i++ {
		if got := readLine(t, nil, addr); got != "ECHO" {
			t.Fatalf("disabled filter: connection %d got %q", i, got)
		}
	}
}
