package listener

import (
	"strings"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/l4"
	"github.com/strait-mesh/strait/proxy/telemetry"
	listenerv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/listener/v3"
	xdstypev3 "github.com/strait-mesh/strait/proxy/xdspb/xds/type/v3"
)

// istioStatsFilterConfig is the istio.stats network filter with a PluginConfig given as
// JSON-like values, in an xds TypedStruct.
func istioStatsFilterConfig(t testing.TB, cfg map[string]any) *listenerv3.Filter {
	return &listenerv3.Filter{Name: "istio.stats", ConfigType: &listenerv3.Filter_TypedConfig{
		TypedConfig: testenv.MustAny(t, &xdstypev3.TypedStruct{TypeUrl: telemetry.TypeStatsPluginConfig, Value: testenv.MustStruct(t, cfg)})}}
}

// statsEnv is a testEnv whose tcp_proxy observer reports the istio.stats configuration each
// opened connection carries.
type statsEnv struct {
	*testEnv
	opened chan *telemetry.StatsConfig
}

func (e statsEnv) TCP() l4.Env { return statsObserver{tcpEnv{e.testEnv}, e.opened} }

type statsObserver struct {
	tcpEnv
	opened chan *telemetry.StatsConfig
}

func (o statsObserver) TCPOpened(r *l4.Record) { o.opened <- r.IstioStats }
func (o statsObserver) TCPClosed(*l4.Record)   {}

// TestIstioStatsNetworkFilter: istio.stats before a tcp_proxy is accepted, with HTTP and TCP
// metric overrides and tcp_reporting_duration; connections pass and the tcp_proxy's observer
// sees the filter's configuration on each connection. A second istio.stats filter is refused.
func TestIstioStatsNetworkFilter(t *testing.T) {
	env := statsEnv{newEnv(), make(chan *telemetry.StatsConfig, 1)}
	env.tcp["echo"] = tcpBackend(t, "ECHO")
	fc := tcpChain(t, "stats", "echo", nil)
	fc.Filters = append([]*listenerv3.Filter{istioStatsFilterConfig(t, map[string]any{
		"tcp_reporting_duration": "2s",
		"metrics": []any{
			map[string]any{"name": "requests_total", "tags_to_remove": []any{"request_protocol"}},
			map[string]any{"name": "tcp_sent_bytes_total", "tags_to_remove": []any{"request_protocol"}},
		}})}, fc.Filters...)
	_, addr := start(t, &listenerv3.Listener{Name: "stats", FilterChains: []*listenerv3.FilterChain{fc}}, env)
	if got := readLine(t, nil, addr); got != "ECHO" {
		t.Fatalf("got %q through istio.stats and tcp_proxy", got)
	}
	select {
	case c := <-env.opened:
		if c == nil || c.TCPReportingDuration != 2*time.Second || c.TCPOverrides == nil {
			t.Errorf("the tcp_proxy's connection carries istio.stats %+v", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no connection opened")
	}

	fc = tcpChain(t, "c", "echo", nil)
	stats := istioStatsFilterConfig(t, map[string]any{})
	fc.Filters = append([]*listenerv3.Filter{stats, stats}, fc.Filters...)
	_, err := Compile(&listenerv3.Listener{Name: "l", Address: sockAddr("127.0.0.1", 0), FilterChains: []*listenerv3.FilterChain{fc}}, newEnv())
	if err == nil || !strings.Contains(err.Error(), "filters[1]: a second istio.stats filter") {
		t.Errorf("two istio.stats filters: %v", err)
	}
}
