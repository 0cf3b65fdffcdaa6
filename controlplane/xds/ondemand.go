package xds

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/strait-mesh/strait/controlplane/translate"
	"github.com/strait-mesh/strait/internal/node"
)

// On-demand virtual hosts (Envoy's on-demand VHDS), the server side.
//
// A proxy demands the configuration of a host by subscribing, on its Delta stream's VirtualHost
// type, to "<route config>/<authority>" (the request's :authority as it came: host, host:port,
// a short name). The name joins the proxy's demanded set, which persists while the proxy is
// connected, and the proxy is generated again at once from the current mesh snapshot with it
// (translate's ondemand.go scopes an on-demand proxy's virtual hosts, clusters and endpoints to
// that set). The answer, in a VirtualHost response, is the virtual host that serves the
// authority with the demanded name in the Resource's aliases, or the name in
// removed_resources when no virtual host serves it (Envoy's not-found). The clusters and
// endpoints it needs reach the proxy before it, in the usual make-before-break order (order.go).
//
// Correctness does not depend on timing: a generation uses the newest snapshot and the demanded
// set as they are when it runs, both only grow, and a generation is skipped only when neither
// changed since the last one; answers are computed from what the stream is served (the view),
// when a response of the type is built. A demand answered not-found stays subscribed: when a
// later snapshot has a virtual host for it, the proxy gets it, with the alias.
//
// Clusters are demanded the same way, by name on the Cluster type (Envoy's on-demand CDS, for
// TCP traffic, whose listener names its cluster): the answer is the cluster (re-sent if the
// stream holds it) or its name in removed_resources.
//
// Reconnects: the proxy lists the demands it saw answered in its node metadata
// (node.MetaDemanded, node.MetaDemandedClusters), so the new stream's first generation already
// holds them (nothing it has is removed and, with its initial resource versions, nothing is
// re-sent), and those names are not answered again; it re-subscribes them all.

// demandTypes are the types on which a subscription by name is a demand, with the metadata key
// listing a reconnecting proxy's answered demands of the type.
var demandTypes = map[string]string{resource.VirtualHostType: node.MetaDemanded, resource.ClusterType: node.MetaDemandedClusters}

// scopeOnDemand decides whether proxy p (node n) is served on-demand configuration and seeds its
// demanded set from its metadata (ParseProxy validated both).
func (s *Server) scopeOnDemand(p *translate.Proxy, n *corev3.Node) {
	md := n.GetMetadata().GetFields()
	capable := p.VHDS && slices.Contains(n.GetClientFeatures(), node.FeatureOnDemand)
	switch strings.ToLower(stringField(md, node.MetaOnDemand)) {
	case "true":
		p.OnDemand = capable
		if !capable {
			s.log.Warn("proxy asks for on-demand configuration but cannot demand hosts (no Delta xDS with VHDS and "+
				node.FeatureOnDemand+"): it gets the complete configuration", "proxy", n.GetId())
		}
	case "false":
		p.OnDemand = false
	default:
		p.OnDemand = capable && s.opts.OnDemand
	}
}

// parseDemanded validates the on-demand metadata of a node and returns its demanded names per
// type, sorted and without duplicates.
func parseDemanded(n *corev3.Node) (map[string][]string, error) {
	md := n.GetMetadata().GetFields()
	switch v := strings.ToLower(stringField(md, node.MetaOnDemand)); v {
	case "", "true", "false":
	default:
		return nil, fmt.Errorf("metadata %s=%q: want true or false", node.MetaOnDemand, v)
	}
	var out map[string][]string
	for typeURL, key := range demandTypes {
		val, ok := md[key]
		if !ok {
			continue
		}
		list := val.GetListValue()
		if list == nil {
			return nil, fmt.Errorf("metadata %s: want a list of strings", key)
		}
		if len(list.GetValues()) > node.MaxDemanded {
			return nil, fmt.Errorf("metadata %s: %d names, at most %d", key, len(list.GetValues()), node.MaxDemanded)
		}
		names := make([]string, 0, len(list.GetValues()))
		for i, v := range list.GetValues() {
			name := v.GetStringValue()
			if err := checkDemandName(typeURL, name); err != nil {
				return nil, fmt.Errorf("metadata %s[%d]: %w", key, i, err)
			}
			names = append(names, name)
		}
		slices.Sort(names)
		if out == nil {
			out = map[string][]string{}
		}
		out[typeURL] = slices.Compact(names)
	}
	return out, nil
}

// checkDemandName accepts a demanded name of at most node.MaxDemandName bytes: for virtual
// hosts "<route config>/<authority>", for clusters any non-empty name.
func checkDemandName(typeURL, name string) error {
	if len(name) > node.MaxDemandName {
		return fmt.Errorf("name of %d bytes, at most %d", len(name), node.MaxDemandName)
	}
	if typeURL == resource.ClusterType {
		if name == "" {
			return errors.New("empty cluster name")
		}
		return nil
	}
	if _, _, ok := translate.SplitDemand(name); !ok {
		return fmt.Errorf("%q: want <route config>/<authority>", name)
	}
	return nil
}

// seedDemands makes the demands a new proxy listed in its metadata (answered on an earlier
// stream) its demanded set, and tells the cache that their answers are held. Called with
// s.connMu held, before the proxy's first generation.
func (s *Server) seedDemands(p *proxyState) {
	if len(p.proxy.Demanded)+len(p.proxy.DemandedClusters) == 0 {
		return
	}
	seeded := map[string][]string{resource.VirtualHostType: p.proxy.Demanded, resource.ClusterType: p.proxy.DemandedClusters}
	for typeURL, names := range seeded {
		for _, name := range names {
			setIn(&p.demanded, typeURL, name, true)
		}
	}
	s.cache.answered(p.key, seeded)
}

// withDemands returns a copy of p with its demanded sets.
func withDemands(p *translate.Proxy, demanded map[string]map[string]bool) *translate.Proxy {
	gp := *p
	gp.Demanded = sortedKeys(demanded[resource.VirtualHostType])
	gp.DemandedClusters = sortedKeys(demanded[resource.ClusterType])
	return &gp
}

// demand adds the names a stream subscribed on a demand type (demandTypes) to its proxy's
// demanded set and, when the set grew, generates the proxy again before the type's new watch
// opens. The wildcard "*" is not a demand. A malformed name ends the stream with
// INVALID_ARGUMENT, and so does a set that would exceed node.MaxDemanded.
func (s *Server) demand(ctx context.Context, key streamKey, typeURL string, names []string) error {
	s.connMu.Lock()
	st := s.streams[key]
	s.connMu.Unlock()
	if st == nil {
		return nil
	}
	p := st.proxy
	var added []string
	for _, name := range names {
		if name == "*" {
			continue
		}
		if err := checkDemandName(typeURL, name); err != nil {
			return status.Errorf(codes.InvalidArgument, "%s subscription: %v", shortType(typeURL), err)
		}
		added = append(added, name)
	}
	if len(added) == 0 {
		return nil
	}
	p.genMu.Lock()
	set := p.demanded[typeURL]
	grew := false
	for _, name := range added {
		if set[name] {
			continue
		}
		if len(set) >= node.MaxDemanded {
			p.genMu.Unlock()
			return status.Errorf(codes.InvalidArgument, "%s subscription: more than %d demanded names", shortType(typeURL), node.MaxDemanded)
		}
		if set == nil {
			set = make(map[string]bool)
			if p.demanded == nil {
				p.demanded = make(map[string]map[string]bool)
			}
			p.demanded[typeURL] = set
		}
		set[name] = true
		grew = true
	}
	if grew {
		p.genProxy = withDemands(p.genProxy, p.demanded)
		p.demands++
	}
	p.genMu.Unlock()
	if !grew {
		return nil
	}
	s.mu.Lock()
	snap := s.current
	s.mu.Unlock()
	if snap != nil {
		s.sem <- struct{}{}
		s.pushProxy(ctx, p, snap, time.Time{})
		<-s.sem
	}
	return nil
}

// resolveDemands returns the answers to a proxy's demands in its generated resources: per type,
// each demanded name's target ("" when nothing serves it).
func resolveDemands(p *translate.Proxy, res translate.Resources) map[string]map[string]string {
	out := map[string]map[string]string{}
	if p.VHDS && len(p.Demanded) > 0 {
		out[resource.VirtualHostType] = translate.ResolveDemands(res[resource.VirtualHostType], p.Demanded)
	}
	if len(p.DemandedClusters) > 0 {
		have := make(map[string]bool, len(res[resource.ClusterType]))
		for _, r := range res[resource.ClusterType] {
			have[cache.GetResourceName(r)] = true
		}
		m := make(map[string]string, len(p.DemandedClusters))
		for _, name := range p.DemandedClusters {
			if have[name] {
				m[name] = name
			} else {
				m[name] = ""
			}
		}
		out[resource.ClusterType] = m
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// answered marks the demands, per type, whose answers the node's proxy already holds (from an
// earlier stream): they are not answered again.
func (c *snapshotCache) answered(id string, demanded map[string][]string) {
	n := c.node(id)
	n.mu.Lock()
	defer n.mu.Unlock()
	for typeURL, names := range demanded {
		for _, name := range names {
			setIn(&n.aliasHeld, typeURL, name, true)
		}
	}
}

// setIn sets m[typeURL][name], creating the maps.
func setIn[V any](m *map[string]map[string]V, typeURL, name string, v V) {
	if *m == nil {
		*m = make(map[string]map[string]V)
	}
	if (*m)[typeURL] == nil {
		(*m)[typeURL] = make(map[string]V)
	}
	(*m)[typeURL][name] = v
}

// aliasAnswer is one demanded name answered in a response: the resource that serves it, or ""
// for not-found.
type aliasAnswer struct{ name, target string }

// answerDemands adds the answers to demanded names of typeURL that are due to a response of the
// set the stream is served: the target resource (re-sent when the stream holds it already), with
// the name in its aliases when it is not the target's own, or the name in removed. A name whose
// target the view does not hold yet (a transition still serves the previous set) waits. It
// returns the new lists and the answers to record once the response is sent. Called with n.mu
// held; changed may be shared and is not modified.
func (n *nodeCache) answerDemands(typeURL string, set *typeSet, changed []*discovery.Resource, removed []string) ([]*discovery.Resource, []string, []aliasAnswer) {
	targets := n.snap.answers[typeURL]
	if len(targets) == 0 {
		return changed, removed, nil
	}
	var answers []aliasAnswer
	byTarget := map[string][]string{}
	for _, name := range sortedKeys(targets) {
		target := targets[name]
		if target != "" && set.wire[target] == nil {
			continue // not served yet
		}
		if prev, ok := n.aliasSent[typeURL][name]; ok && prev == target {
			continue
		}
		answers = append(answers, aliasAnswer{name, target})
		if n.aliasHeld[typeURL][name] {
			continue // the proxy holds the answer from an earlier stream
		}
		if target == "" {
			removed = append(slices.Clip(removed), name)
			continue
		}
		byTarget[target] = append(byTarget[target], name)
	}
	if len(byTarget) == 0 {
		return changed, removed, answers
	}
	out := make([]*discovery.Resource, 0, len(changed)+len(byTarget))
	for _, r := range changed {
		if names, ok := byTarget[r.GetName()]; ok {
			r = withAliases(r, names)
			delete(byTarget, r.GetName())
		}
		out = append(out, r)
	}
	for _, target := range sortedKeys(byTarget) {
		out = append(out, withAliases(set.wire[target], byTarget[target]))
	}
	slices.SortFunc(out, byName)
	return out, removed, answers
}

// withAliases returns a copy of r (shared, never modified) with names other than its own in its
// aliases.
func withAliases(r *discovery.Resource, names []string) *discovery.Resource {
	aliases := slices.Clip(r.GetAliases())
	for _, name := range names {
		if name != r.GetName() {
			aliases = append(aliases, name)
		}
	}
	return &discovery.Resource{Name: r.GetName(), Version: r.GetVersion(), Resource: r.GetResource(),
		Aliases: aliases, Ttl: r.GetTtl(), CacheControl: r.GetCacheControl(), Metadata: r.GetMetadata()}
}

// recordAnswers notes the answers a response of typeURL carried. Called with n.mu held.
func (n *nodeCache) recordAnswers(typeURL string, answers []aliasAnswer) {
	for _, a := range answers {
		setIn(&n.aliasSent, typeURL, a.name, a.target)
		delete(n.aliasHeld[typeURL], a.name)
	}
}
