package listener

import (
	"strings"
	"testing"

	xdstypev3 "github.com/cncf/xds/go/xds/type/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/telemetry"
)

func istioStatsFilterConfig(t testing.TB, cfg map[string]any) *listenerv3.Filter {
	v, err := structpb.NewStruct(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &listenerv3.Filter{Name: "istio.stats", ConfigType: &listenerv3.Filter_TypedConfig{
		TypedConfig: testenv.MustAny(t, &xdstypev3.TypedStruct{TypeUrl: telemetry.TypeStatsPluginConfig, Value: v})}}
}

// TestIstioStatsNetworkFilter: istio.stats before a tcp_proxy is accepted (with HTTP metric
// overrides, which do not concern TCP) and connections pass; an override of a TCP metric is
// refused by name.
func TestIstioStatsNetworkFilter(t *testing.T) {
	env := newEnv()
	env.tcp["echo"] = tcpBackend(t, "ECHO")
	fc := tcpChain(t, "stats", "echo", nil)
	fc.Filters = append([]*listenerv3.Filter{istioStatsFilterConfig(t, map[string]any{
		"metrics": []any{map[string]any{"name": "requests_total", "tags_to_remove": []any{"request_protocol"}}}})}, fc.Filters...)
	_, addr := start(t, &listenerv3.Listener{Name: "stats", FilterChains: []*listenerv3.FilterChain{fc}}, env)
	if got := readLine(t, nil, addr); got != "ECHO" {
		t.Fatalf("got %q through istio.stats and tcp_proxy", got)
	}

	fc = tcpChain(t, "c", "echo", nil)
	fc.Filters = append([]*listenerv3.Filter{istioStatsFilterConfig(t, map[string]any{
		"metrics": []any{map[string]any{"name": "tcp_sent_bytes_total", "tags_to_remove": []any{"request_protocol"}}}})}, fc.Filters...)
	_, err := Compile(&listenerv3.Listener{Name: "l", Address: sockAddr("127.0.0.1", 0), FilterChains: []*listenerv3.FilterChain{fc}}, newEnv())
	if err == nil || !strings.Contains(err.Error(), "filters[0].typed_config.metrics[0].name: not supported") {
		t.Errorf("a TCP metric override: %v", err)
	}
}
