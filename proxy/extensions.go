package proxy

import (
	"fmt"
	"maps"

	"github.com/strait-mesh/strait/internal/nametable"
	"github.com/strait-mesh/strait/internal/node"
	"github.com/strait-mesh/strait/internal/workloadtable"
	"github.com/strait-mesh/strait/proxy/dns"
	"github.com/strait-mesh/strait/proxy/telemetry"
	"github.com/strait-mesh/strait/proxy/xdsclient"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
)

// extensionConfigNames are the ECDS resources the proxy asks for: the workload table (the peer
// labels of the standard metrics) and, with the DNS proxy on, the name table.
func (o *Options) extensionConfigNames() []string {
	if o.dnsEnabled() {
		return []string{nametable.Name, workloadtable.Name}
	}
	return []string{workloadtable.Name}
}

// withExtensionConfigs returns node info that asks the control plane for the workload table
// and, with the DNS proxy on, the name table (withDNSCapture).
func (o *Options) withExtensionConfigs(n xdsclient.NodeInfo) xdsclient.NodeInfo {
	if o.dnsEnabled() {
		n = withDNSCapture(n)
	}
	extra := maps.Clone(n.Extra)
	if extra == nil {
		extra = map[string]string{}
	}
	extra[node.MetaWorkloadTable] = "true"
	n.Extra = extra
	return n
}

// applyExtensionConfigs compiles the ECDS set: the DNS name table and the workload table, the
// only extension configs the proxy asks for. Any other resource is rejected, naming it. The
// workload table goes to the telemetry recorder, for requests recorded from then on; without
// one the peers are unknown again.
func (p *Proxy) applyExtensionConfigs(set map[string]*xdsclient.Resource) error {
	old := p.rt.Load()
	compiled := map[string]any{}
	if old.Names != nil {
		compiled[nametable.Name] = old.Names
	}
	if peers := p.telemetry.Peers(); peers != nil {
		compiled[workloadtable.Name] = peers
	}
	next, _, err := xdsclient.CompileSet("extension config", set, old.Resources[xdsclient.ExtensionConfigType], compiled,
		func(name string, tec *corev3.TypedExtensionConfig) (any, error) {
			switch name {
			case nametable.Name:
				t, err := nametable.Decode(tec.GetName(), tec.GetTypedConfig())
				if err != nil {
					return nil, err
				}
				return dns.Compile(t)
			case workloadtable.Name:
				t, err := workloadtable.Decode(tec.GetName(), tec.GetTypedConfig())
				if err != nil {
					return nil, err
				}
				return telemetry.CompilePeers(t, p.telemetry.Peers()), nil
			}
			return nil, fmt.Errorf("not supported (only %q, the DNS name table, and %q, the workload table)", nametable.Name, workloadtable.Name)
		})
	if err != nil {
		return err
	}
	rt := old.clone()
	rt.Names, _ = next[nametable.Name].(*dns.Table)
	rt.Resources[xdsclient.ExtensionConfigType] = set
	peers, _ := next[workloadtable.Name].(*telemetry.Peers)
	p.telemetry.SetPeers(peers)
	p.publish(rt)
	return nil
}
