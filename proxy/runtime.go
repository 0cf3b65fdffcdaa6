package proxy

import (
	"context"
	"net/netip"

	"github.com/strait-mesh/strait/proxy/dns"
	"github.com/strait-mesh/strait/proxy/l4"
	"github.com/strait-mesh/strait/proxy/l7"
	"github.com/strait-mesh/strait/proxy/route"
	"github.com/strait-mesh/strait/proxy/upstream"
	"github.com/strait-mesh/strait/proxy/xdsclient"
	tlsv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/transport_sockets/tls/v3"
)

// Runtime is one immutable generation of compiled configuration. The proxy publishes it through an
// atomic pointer; readers load the pointer once and use that generation to the end of their work,
// so an in-flight request finishes on the config it began with. A Runtime is never modified after
// it is published: every update builds a new one (sharing unchanged compiled objects).
type Runtime struct {
	// Generation counts published runtimes, starting at 1.
	Generation uint64
	// Clusters are the compiled CDS clusters by name.
	Clusters map[string]*upstream.Cluster
	// Routes are the compiled RDS route tables by name.
	Routes map[string]*route.Table
	// Secrets are the SDS secrets by name.
	Secrets map[string]*tlsv3.Secret
	// Names is the compiled DNS name table (nil until the control plane sends one).
	Names *dns.Table
	// Resources are the accepted xDS resources per type URL, as received (for config dumps and
	// change detection).
	Resources map[string]map[string]*xdsclient.Resource

	// snap identifies this runtime to the HTTP connection managers (l7.SnapshotEnv), which
	// keep the route tables and clusters they found in it.
	snap *l7.Snapshot
}

// clone returns a shallow copy whose maps may be replaced (not modified) by the caller.
func (r *Runtime) clone() *Runtime {
	n := *r
	n.Generation++
	n.snap = new(l7.Snapshot)
	n.Resources = make(map[string]map[string]*xdsclient.Resource, len(r.Resources))
	for t, set := range r.Resources {
		n.Resources[t] = set
	}
	return &n
}

func emptyRuntime() *Runtime {
	r := &Runtime{
		Clusters:  map[string]*upstream.Cluster{},
		Routes:    map[string]*route.Table{},
		Secrets:   map[string]*tlsv3.Secret{},
		Resources: map[string]map[string]*xdsclient.Resource{},
		snap:      new(l7.Snapshot),
	}
	for _, t := range xdsclient.Types {
		r.Resources[t] = map[string]*xdsclient.Resource{}
	}
	return r
}

// Runtime returns the current configuration generation. It never returns nil.
func (p *Proxy) Runtime() *Runtime { return p.rt.Load() }

// Secret implements tlsx.Secrets: the identity agent's "default" and "ROOTCA" when the proxy
// runs one (nil until its first certificate), every other name from the current runtime's SDS
// secrets. It is called during TLS handshakes: one or two atomic loads.
func (p *Proxy) Secret(name string) *tlsv3.Secret {
	if p.agentOwned(name) {
		return p.agent.Secret(name)
	}
	return p.rt.Load().Secrets[name]
}

// Route implements l7.Env: the current RDS route table of that name, nil when unknown.
func (p *Proxy) Route(name string) *route.Table { return p.rt.Load().Routes[name] }

// l7Env adapts the proxy to l7.Env (whose Cluster returns an l7.Upstream).
type l7Env struct{ *Proxy }

// Cluster returns the current cluster of that name, or nil (not a typed nil) when unknown.
func (e l7Env) Cluster(name string) l7.Upstream {
	if c := e.rt.Load().Clusters[name]; c != nil {
		return c
	}
	return nil
}

// l4Env adapts the proxy to l4.Env (whose Cluster returns an l4.Upstream).
type l4Env struct{ *Proxy }

// Cluster returns the current cluster of that name, or nil (not a typed nil) when unknown.
func (e l4Env) Cluster(name string) l4.Upstream {
	if c := e.rt.Load().Clusters[name]; c != nil {
		return c
	}
	return nil
}

// Snapshot implements l7.SnapshotEnv: Route and Cluster answer from the current runtime, a
// new one for every change.
func (e l7Env) Snapshot() *l7.Snapshot { return e.rt.Load().snap }

// Demander implements l7.OnDemandEnv: the xDS client when on-demand configuration is on, else
// nil.
func (e l7Env) Demander() l7.Demander {
	if !e.opts.OnDemand || e.client == nil {
		return nil
	}
	return e.client
}

// ClusterDemander implements l4.OnDemandEnv: the xDS client when on-demand configuration is
// on, else nil.
func (e l4Env) ClusterDemander() l4.ClusterDemander {
	if !e.opts.OnDemand || e.client == nil {
		return nil
	}
	return e.client
}

var (
	_ l7.Env         = l7Env{}
	_ l7.OnDemandEnv = l7Env{}
	_ l7.SnapshotEnv = l7Env{}
	_ l4.Env         = l4Env{}
	_ l4.OnDemandEnv = l4Env{}
)

// WithOriginalDst implements l4.Env: it attaches a connection's original destination for
// ORIGINAL_DST clusters.
func (p *Proxy) WithOriginalDst(ctx context.Context, dst netip.AddrPort) context.Context {
	return upstream.WithOriginalDst(ctx, dst)
}
