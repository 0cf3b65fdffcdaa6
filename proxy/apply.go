package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/strait-mesh/strait/proxy/route"
	"github.com/strait-mesh/strait/proxy/stats"
	"github.com/strait-mesh/strait/proxy/upstream"
	"github.com/strait-mesh/strait/proxy/xdsclient"
)

// Apply implements xdsclient.Handler: it compiles the complete accepted-to-be set of one resource
// type into a new Runtime and publishes it. Any resource that fails to compile rejects the whole
// update (the error names every failing resource and the field); the current runtime stays.
// Apply is called from the xDS client goroutine only, so updates never race each other.
func (p *Proxy) Apply(typeURL string, set map[string]*xdsclient.Resource) error {
	p.applyMu.Lock()
	defer p.applyMu.Unlock()
	var err error
	switch typeURL {
	case xdsclient.ClusterType:
		err = p.applyClusters(set)
	case xdsclient.EndpointType:
		err = p.applyEndpoints(set)
	case xdsclient.ListenerType:
		err = p.applyListeners(set)
	case xdsclient.RouteType:
		err = p.applyRoutes(set)
	case xdsclient.SecretType:
		err = p.applySecrets(set)
	case xdsclient.ExtensionConfigType:
		err = p.applyNameTable(set)
	default:
		err = fmt.Errorf("unsupported resource type %s", typeURL)
	}
	prefix, short := statScope(typeURL)
	tags := []stats.Tag{{Name: "type", Value: short}}
	if err != nil {
		p.stats.Counter(prefix+".update_rejected", "envoy_xds_update_rejected", tags...).Inc()
		return err
	}
	p.stats.Counter(prefix+".update_success", "envoy_xds_update_success", tags...).Inc()
	p.updateGauges()
	return nil
}

// statScope returns the Envoy stat prefix of a type's updates (cluster_manager.cds,
// listener_manager.lds, ...) and the short type name.
func statScope(t string) (prefix, short string) {
	switch t {
	case xdsclient.ClusterType:
		return "cluster_manager.cds", "cds"
	case xdsclient.EndpointType:
		return "cluster_manager.eds", "eds"
	case xdsclient.ListenerType:
		return "listener_manager.lds", "lds"
	case xdsclient.RouteType:
		return "route_manager.rds", "rds"
	case xdsclient.SecretType:
		return "secret_manager.sds", "sds"
	case xdsclient.ExtensionConfigType:
		return "extension_config_discovery", "ecds"
	}
	return "xds.unknown", "unknown"
}

// updateGauges refreshes the manager gauges after an update.
func (p *Proxy) updateGauges() {
	rt := p.rt.Load()
	p.gauges.activeClusters.Set(int64(len(rt.Clusters)))
	p.lmu.Lock()
	p.gauges.listenersActive.Set(int64(len(p.listeners)))
	p.gauges.listenersWarming.Set(int64(len(p.warming)))
	p.lmu.Unlock()
}

// unchanged reports whether res is byte-identical to the resource accepted before.
func unchanged(prev, res *xdsclient.Resource) bool {
	return prev != nil && res != nil && prev.Any != nil && res.Any != nil &&
		bytes.Equal(prev.Any.GetValue(), res.Any.GetValue())
}

// sortedNames returns the map's keys in order, so error messages are stable.
func sortedNames[V any](set map[string]V) []string {
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (p *Proxy) applyClusters(set map[string]*xdsclient.Resource) error {
	old := p.rt.Load()
	next := make(map[string]*upstream.Cluster, len(set))
	var created []*upstream.Cluster
	var errs []error
	for _, name := range sortedNames(set) {
		res := set[name]
		c, ok := res.Message.(*clusterv3.Cluster)
		if !ok {
			errs = append(errs, fmt.Errorf("cluster %q: not a Cluster", name))
			continue
		}
		if prev := old.Clusters[name]; prev != nil && unchanged(old.Resources[xdsclient.ClusterType][name], res) {
			next[name] = prev
			continue
		}
		uc, err := upstream.Compile(c, p.deps)
		if err != nil {
			errs = append(errs, named("cluster", name, err))
			continue
		}
		created = append(created, uc)
		if isEDS(c) {
			if r := old.Resources[xdsclient.EndpointType][edsName(c)]; r != nil {
				if err := uc.SetEndpoints(r.Message.(*endpointv3.ClusterLoadAssignment)); err != nil {
					errs = append(errs, fmt.Errorf("cluster %q: endpoints %q: %w", name, edsName(c), err))
					continue
				}
			}
		}
		next[name] = uc
	}
	if len(errs) > 0 {
		for _, c := range created {
			c.Close()
		}
		return errors.Join(errs...)
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
	for _, name := range sortedNames(old.Clusters) {
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
		if unchanged(prevSet[en], res) {
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
	next := make(map[string]*route.Table, len(set))
	var errs []error
	for _, name := range sortedNames(set) {
		res := set[name]
		if prev := old.Routes[name]; prev != nil && unchanged(old.Resources[xdsclient.RouteType][name], res) {
			next[name] = prev
			continue
		}
		rc, ok := res.Message.(*routev3.RouteConfiguration)
		if !ok {
			errs = append(errs, fmt.Errorf("route configuration %q: not a RouteConfiguration", name))
			continue
		}
		t, err := route.Compile(rc)
		if err != nil {
			errs = append(errs, named("route configuration", name, err))
			continue
		}
		next[name] = t
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	rt := old.clone()
	rt.Routes = next
	rt.Resources[xdsclient.RouteType] = set
	p.publish(rt)
	p.activateWarm()
	return nil
}

func (p *Proxy) applySecrets(set map[string]*xdsclient.Resource) error {
	old := p.rt.Load()
	next := make(map[string]*tlsv3.Secret, len(set))
	var errs []error
	for _, name := range sortedNames(set) {
		s, ok := set[name].Message.(*tlsv3.Secret)
		if !ok {
			errs = append(errs, fmt.Errorf("secret %q: not a Secret", name))
			continue
		}
		if err := validateSecret(s); err != nil {
			errs = append(errs, fmt.Errorf("secret %q: %w", name, err))
			continue
		}
		next[name] = s
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	rt := old.clone()
	rt.Secrets = next
	rt.Resources[xdsclient.SecretType] = set
	p.publish(rt)
	return nil
}

// subscribeSecrets subscribes SDS to the secrets the current listeners and clusters name.
func (p *Proxy) subscribeSecrets(rt *Runtime) {
	names := map[string]bool{}
	live := map[*xdsclient.Resource]bool{}
	for _, t := range []string{xdsclient.ClusterType, xdsclient.ListenerType} {
		for _, res := range rt.Resources[t] {
			live[res] = true
			for n := range p.refsOf(res).secrets {
				names[n] = true
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

// named wraps a compile error with the resource's kind and name, unless the compiler already
// named it (so a NACK reads `listener "http": ...` once).
func named(kind, name string, err error) error {
	if strings.Contains(err.Error(), kind+" "+strconv.Quote(name)) {
		return err
	}
	return fmt.Errorf("%s %q: %w", kind, name, err)
}
