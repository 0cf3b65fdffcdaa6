package proxy

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/strait-mesh/strait/proxy/route"
	"github.com/strait-mesh/strait/proxy/stats"
	"github.com/strait-mesh/strait/proxy/upstream"
	"github.com/strait-mesh/strait/proxy/xdsclient"
	clusterv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/cluster/v3"
	endpointv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/endpoint/v3"
	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
	tlsv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/transport_sockets/tls/v3"
)

// Apply implements xdsclient.Handler: it compiles the complete accepted-to-be set of one resource
// type into a new Runtime and publishes it. Any resource that fails to compile rejects the whole
// update (the error names every failing resource and the field); the current runtime stays.
// Apply is called from the xDS client goroutine only, so updates never race each other.
func (p *Proxy) Apply(typeURL string, set map[string]*xdsclient.Resource) error {
	p.applyMu.Lock()
	defer p.applyMu.Unlock()
	a, ok := appliers[typeURL]
	if !ok {
		a = applier{prefix: "xds.unknown", short: "unknown", apply: func(*Proxy, map[string]*xdsclient.Resource) error {
			return fmt.Errorf("unsupported resource type %s", typeURL)
		}}
	}
	tags := []stats.Tag{{Name: "type", Value: a.short}}
	if err := a.apply(p, set); err != nil {
		p.stats.Counter(a.prefix+".update_rejected", "envoy_xds_update_rejected", tags...).Inc()
		return err
	}
	p.stats.Counter(a.prefix+".update_success", "envoy_xds_update_success", tags...).Inc()
	p.updateGauges()
	p.trim.Kick()
	return nil
}

// applier is how one xDS type is applied: its Envoy stat prefix (cluster_manager.cds, ...), its
// short name and the step that compiles and publishes a set of it.
type applier struct {
	prefix, short string
	apply         func(p *Proxy, set map[string]*xdsclient.Resource) error
}

var appliers = map[string]applier{
	xdsclient.ClusterType:         {"cluster_manager.cds", "cds", (*Proxy).applyClusters},
	xdsclient.EndpointType:        {"cluster_manager.eds", "eds", (*Proxy).applyEndpoints},
	xdsclient.ListenerType:        {"listener_manager.lds", "lds", (*Proxy).applyListeners},
	xdsclient.RouteType:           {"route_manager.rds", "rds", (*Proxy).applyRoutes},
	xdsclient.SecretType:          {"secret_manager.sds", "sds", (*Proxy).applySecrets},
	xdsclient.ExtensionConfigType: {"extension_config_discovery", "ecds", (*Proxy).applyExtensionConfigs},
}

// updateGauges refreshes the manager gauges after an update.
func (p *Proxy) updateGauges() {
	rt := p.rt.Load()
	p.gauges.activeClusters.Set(int64(len(rt.Clusters)))
}

func (p *Proxy) applyClusters(set map[string]*xdsclient.Resource) error {
	old := p.rt.Load()
	next, created, err := xdsclient.CompileSet("cluster", set, old.Resources[xdsclient.ClusterType], old.Clusters,
		func(_ string, c *clusterv3.Cluster) (*upstream.Cluster, error) {
			uc, err := upstream.Compile(c, p.deps)
			if err != nil || !isEDS(c) {
				return uc, err
			}
			if r := old.Resources[xdsclient.EndpointType][edsName(c)]; r != nil {
				if err := uc.SetEndpoints(r.Message.(*endpointv3.ClusterLoadAssignment)); err != nil {
					uc.Close()
					return nil, fmt.Errorf("endpoints %q: %w", edsName(c), err)
				}
			}
			return uc, nil
		})
	if err != nil {
		for _, c := range created {
			c.Close()
		}
		return err
	}
	rt := old.clone()
	rt.Clusters = next
	rt.Resources[xdsclient.ClusterType] = set
	p.publish(rt)
	for name, c := range old.Clusters {
		if next[name] != c {
			p.retireCluster(c)
		}
	}
	var eds []string
	for _, res := range set {
		if c := res.Message.(*clusterv3.Cluster); isEDS(c) {
			eds = append(eds, edsName(c))
		}
	}
	p.client.SetNames(xdsclient.EndpointType, eds)
	p.subscribeSecrets(rt)
	p.markReceived(xdsclient.ClusterType)
	return nil
}

// retireCluster closes a removed or replaced cluster once requests that picked it have had the
// drain period to finish.
func (p *Proxy) retireCluster(c *upstream.Cluster) {
	p.retire(func() { c.Close() })
}

func (p *Proxy) applyEndpoints(set map[string]*xdsclient.Resource) error {
	old := p.rt.Load()
	prevSet := old.Resources[xdsclient.EndpointType]
	var errs []error
	type job struct {
		c   *upstream.Cluster
		cla *endpointv3.ClusterLoadAssignment
	}
	var jobs []job
	for _, name := range slices.Sorted(maps.Keys(old.Clusters)) {
		c := old.Resources[xdsclient.ClusterType][name].Message.(*clusterv3.Cluster)
		if !isEDS(c) {
			continue
		}
		en := edsName(c)
		res := set[en]
		if res == nil {
			if prevSet[en] != nil {
				// The server removed the assignment: the cluster has no endpoints now.
				jobs = append(jobs, job{old.Clusters[name], &endpointv3.ClusterLoadAssignment{ClusterName: en}})
			}
			continue
		}
		if res.SameBytes(prevSet[en]) {
			continue
		}
		cla, ok := res.Message.(*endpointv3.ClusterLoadAssignment)
		if !ok {
			errs = append(errs, fmt.Errorf("endpoints %q: not a ClusterLoadAssignment", en))
			continue
		}
		jobs = append(jobs, job{old.Clusters[name], cla})
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	for _, j := range jobs {
		if err := j.c.SetEndpoints(j.cla); err != nil {
			errs = append(errs, fmt.Errorf("endpoints %q (cluster %q): %w", j.cla.GetClusterName(), j.c.Name(), err))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	rt := old.clone()
	rt.Resources[xdsclient.EndpointType] = set
	p.publish(rt)
	return nil
}

func (p *Proxy) applyRoutes(set map[string]*xdsclient.Resource) error {
	old := p.rt.Load()
	next, _, err := xdsclient.CompileSet("route configuration", set, old.Resources[xdsclient.RouteType], old.Routes,
		func(_ string, rc *routev3.RouteConfiguration) (*route.Table, error) { return route.Compile(rc) })
	if err != nil {
		return err
	}
	rt := old.clone()
	rt.Routes = next
	rt.Resources[xdsclient.RouteType] = set
	p.publish(rt)
	p.lds.ActivateWarm()
	return nil
}

func (p *Proxy) applySecrets(set map[string]*xdsclient.Resource) error {
	old := p.rt.Load()
	next, _, err := xdsclient.CompileSet("secret", set, old.Resources[xdsclient.SecretType], old.Secrets,
		func(_ string, s *tlsv3.Secret) (*tlsv3.Secret, error) { return s, validateSecret(s) })
	if err != nil {
		return err
	}
	rt := old.clone()
	rt.Secrets = next
	rt.Resources[xdsclient.SecretType] = set
	p.publish(rt)
	return nil
}

// subscribeSecrets subscribes SDS to the secrets the current listeners and clusters name, except
// those the identity agent serves.
func (p *Proxy) subscribeSecrets(rt *Runtime) {
	names := map[string]bool{}
	live := map[*xdsclient.Resource]bool{}
	for _, t := range []string{xdsclient.ClusterType, xdsclient.ListenerType} {
		for _, res := range rt.Resources[t] {
			live[res] = true
			for n := range p.refsOf(res).secrets {
				if !p.agentOwned(n) {
					names[n] = true
				}
			}
		}
	}
	for res := range p.refCache {
		if !live[res] {
			delete(p.refCache, res)
		}
	}
	p.client.SetNames(xdsclient.SecretType, sortedKeys(names))
}

// subscribeRoutes subscribes RDS to the route configurations the listeners name.
func (p *Proxy) subscribeRoutes(listeners map[string]*xdsclient.Resource) {
	names := map[string]bool{}
	for _, res := range listeners {
		for n := range p.refsOf(res).routes {
			names[n] = true
		}
	}
	p.client.SetNames(xdsclient.RouteType, sortedKeys(names))
}

// refsOf returns a resource's references, walking it once: accepted resources are immutable
// and unchanged ones are carried over between updates, so the cache is keyed by pointer.
// Called with applyMu held.
func (p *Proxy) refsOf(res *xdsclient.Resource) refs {
	if r, ok := p.refCache[res]; ok {
		return r
	}
	r := newRefs()
	r.collect(res.Message)
	p.refCache[res] = r
	return r
}
