package listener

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/types/known/anypb"

	"github.com/strait-mesh/strait/proxy/telemetry"
)

// istioStatsNetFilter is Istio's stats network filter (istio.stats before a tcp_proxy). It has
// no per-connection stage: its configuration — the TCP metric overrides and
// tcp_reporting_duration — is handed to the chain's tcp_proxy (attachIstioStats), whose
// observer records the istio_tcp_* metrics with it. The proxy records those metrics for every
// tcp_proxy, with or without the filter (see l7.Handler.istioStatsFilter for the HTTP side).
// Overrides of HTTP metrics have nothing to change on a TCP connection; before an
// http_connection_manager the filter changes nothing (no TCP metrics are recorded there, as in
// Istio).
type istioStatsNetFilter struct {
	path string
	cfg  *telemetry.StatsConfig
}

func compileIstioStats(_ context.Context, a *anypb.Any, _ Env, path string) (netFilter, error) {
	c, err := telemetry.CompileStatsConfig(path+".typed_config", a)
	if err != nil {
		return nil, err
	}
	return istioStatsNetFilter{path: path, cfg: c}, nil
}

// onConnection implements netFilter: nothing to do on the connection.
func (istioStatsNetFilter) onConnection(*connState) bool { return true }

// attachIstioStats gives the chain's istio.stats configuration to its tcp_proxy. A chain has at
// most one istio.stats filter.
func attachIstioStats(c *chain) error {
	var found *istioStatsNetFilter
	for _, f := range c.filters {
		s, ok := f.(istioStatsNetFilter)
		if !ok {
			continue
		}
		if found != nil {
			return fmt.Errorf("%s: a second istio.stats filter (the first is %s)", s.path, found.path)
		}
		found = &s
	}
	if t, ok := c.term.(*tcpTerminal); ok && found != nil {
		t.p.SetIstioStats(found.cfg)
	}
	return nil
}
