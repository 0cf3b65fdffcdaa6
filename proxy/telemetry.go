package proxy

import "github.com/strait-mesh/strait/proxy/telemetry"

// newTelemetry creates the recorder of Istio's standard metrics for the proxy's workload,
// rendered on the admin's /stats/prometheus with the other statistics. The SPIFFE ID used
// where no connection certificate says it is the agent's identity, when there is an agent.
func (p *Proxy) newTelemetry() *telemetry.Recorder {
	n := p.opts.Node
	o := telemetry.Options{
		Local: telemetry.NodeWorkload(n.Name, n.Namespace, n.ClusterID, n.Labels, n.Extra),
		Stats: p.stats,
	}
	if a := p.agent; a != nil {
		o.LocalPrincipal = a.Identity
	}
	return telemetry.New(o)
}
