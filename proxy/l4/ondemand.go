package l4

import (
	"context"
	"time"
)

// DefaultDemandTimeout bounds how long a connection is held while the proxy demands its cluster
// (Envoy's on-demand CDS defaults to 5 s as well).
const DefaultDemandTimeout = 5 * time.Second

// ClusterDemander asks the control plane for a cluster the proxy does not hold (Envoy's
// on-demand CDS); *xdsclient.Client satisfies it. DemandCluster waits until the cluster is
// applied with its endpoints (found true), the control plane has none (found false), or ctx
// ends; concurrent calls for the same name share one demand.
type ClusterDemander interface {
	DemandCluster(ctx context.Context, name string) (found bool, err error)
}

// OnDemandEnv, when implemented by an Env, turns on on-demand clusters: ClusterDemander returns
// the demander, or nil when the proxy does not demand (the default). A connection whose cluster
// is unknown is then held (at most DemandTimeout) while the cluster is demanded, instead of
// being closed at once with response flag NR.
type OnDemandEnv interface {
	ClusterDemander() ClusterDemander
}

// initOnDemand reads the demander from the Env.
func (p *TCPProxy) initOnDemand() {
	if oe, ok := p.env.(OnDemandEnv); ok {
		p.demander = oe.ClusterDemander()
	}
	p.demandTimeout = DefaultDemandTimeout
}

// cluster returns the cluster name, demanding it first when it is unknown and on-demand
// clusters are on; nil when it stays unknown.
func (p *TCPProxy) cluster(ctx context.Context, name string) Upstream {
	up := p.env.Cluster(name)
	if up != nil || p.demander == nil {
		return up
	}
	dctx, cancel := context.WithTimeout(ctx, p.demandTimeout)
	defer cancel()
	found, err := p.demander.DemandCluster(dctx, name)
	switch {
	case err != nil:
		p.st.demandFailed.Inc()
		return nil
	case !found:
		p.st.demandNotFound.Inc()
		return nil
	}
	p.st.demandFound.Inc()
	return p.env.Cluster(name)
}
