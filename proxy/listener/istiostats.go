package listener

import (
	"context"

	"google.golang.org/protobuf/types/known/anypb"

	"github.com/strait-mesh/strait/proxy/telemetry"
)

// istioStatsNetFilter is Istio's stats network filter (istio.stats before a tcp_proxy). The
// proxy records the istio_tcp_* metrics of every tcp_proxy with or without it (see
// l7.Handler.istioStatsFilter for the HTTP side); its configuration is compiled so that what
// strait-proxy does not implement for TCP — an override that changes a TCP metric, custom
// metrics, reporting intervals — is refused by name. An override of an HTTP metric has nothing
// to change on a TCP connection.
type istioStatsNetFilter struct{}

func compileIstioStats(_ context.Context, a *anypb.Any, _ Env, path string) (netFilter, error) {
	if _, err := telemetry.CompileStatsConfig(path+".typed_config", a); err != nil {
		return nil, err
	}
	return istioStatsNetFilter{}, nil
}

// onConnection implements netFilter: nothing to do on the connection.
func (istioStatsNetFilter) onConnection(*connState) bool { return true }
