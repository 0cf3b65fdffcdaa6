package xds

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
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
// Reconnects: the proxy lists the demands it saw answered in its node metadata
// (node.MetaDemanded), so the new stream's first generation already holds them (nothing it has
// is removed and, with its initial resource versions, nothing is re-sent), and those names are
// not answered again; it re-subscribes them all on the VirtualHost type.

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

// parseDemanded validates the on-demand metadata of a node and returns its demanded names,
// sorted and without duplicates.
func parseDemanded(n *corev3.Node) ([]string, error) {
	md := n.GetMetadata().GetFields()
	switch v := strings.ToLower(stringField(md, node.MetaOnDemand)); v {
	case "", "true", "false":
	default:
		return nil, fmt.Errorf("metadata %s=%q: want true or false", node.MetaOnDemand, v)
	}
	val, ok := md[node.MetaDemanded]
	if !ok {
		return nil, nil
	}
	list := val.GetListValue()
	if list == nil {
		return nil, fmt.Errorf("metadata %s: want a list of strings", node.MetaDemanded)
	}
	if len(list.GetValues()) > node.MaxDemanded {
		return nil, fmt.Errorf("metadata %s: %d names, at most %d", node.MetaDemanded, len(list.GetValues()), node.MaxDemanded)
	}
	out := make([]string, 0, len(list.GetValues()))
	for i, v := range list.GetValues() {
		name := v.GetStringValue()
		if err := checkDemandName(name); err != nil {
			return nil, fmt.Errorf("metadata %s[%d]: %w", node.MetaDemanded, i, err)
		}
		out = append(out, name)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// checkDemandName accepts "<route config>/<authority>" of at most node.MaxDemandName bytes.
func checkDemandName(name string) error {
	if len(name) > node.MaxDemandName {
		return fmt.Errorf("name of %d bytes, at most %d", len(name), node.MaxDemandName)
	}
	if _, _, ok := translate.SplitDemand(name); !ok {
		return fmt.Errorf("%q: want <route config>/<authority>", name)
	}
	return nil
}

// demand adds the names a stream subscribed on the VirtualHost type to its proxy's demanded set
// and, when the set grew, generates the proxy again before its new VirtualHost watch opens. The
// wildcard "*" is not a demand. Names that are not of the on-demand form end the stream with
// INVALID_ARGUMENT, and so does a set that would exceed node.MaxDemanded.
func (s *Server) demand(ctx context.Context, key streamKey, names []string) error {
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
		if err := checkDemandName(name); err != nil {
			return status.Errorf(codes.InvalidArgument, "virtual host subscription: %v", err)
		}
		added = append(added, name)
	}
	if len(added) == 0 {
		return nil
	}
	p.genMu.Lock()
	grew := false
	for _, name := range added {
		if p.demanded[name] {
			continue
		}
		if len(p.demanded) >= node.MaxDemanded {
			p.genMu.Unlock()
			return status.Errorf(codes.InvalidArgument, "virtual host subscription: more than %d demanded hosts", node.MaxDemanded)
		}
		if p.demanded == nil {
			p.demanded = make(map[string]bool)
		}
		p.demanded[name] = true
		grew = true
	}
	if grew {
		gp := *p.genProxy
		gp.Demanded = sortedKeys(p.demanded)
		p.genProxy = &gp
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

// answered marks on-demand names whose answer the node's proxy already holds (from an earlier
// stream): they are not answered again.
func (c *snapshotCache) answered(id string, names []string) {
	n := c.node(id)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.aliasHeld == nil {
		n.aliasHeld = make(map[string]bool, len(names))
	}
	for _, name := range names {
		n.aliasHeld[name] = true
	}
}

// aliasAnswer is one on-demand name answered in a response: the virtual host that serves it,
// or "" for not-found.
type aliasAnswer struct{ name, target string }

// answerDemands adds the answers to on-demand names that are due to a VirtualHost response of
// the set the stream is served: the target virtual host with the name in its aliases (re-sent
// when the stream holds it already), or the name in removed. A name whose target the view does
// not hold yet (a transition still serves the previous set) waits. It returns the new lists and
// the answers to record once the response is sent. Called with n.mu held; changed may be shared
// and is not modified.
func (n *nodeCache) answerDemands(set *typeSet, changed []*discovery.Resource, removed []string) ([]*discovery.Resource, []string, []aliasAnswer) {
	aliases := n.snap.aliases
	if len(aliases) == 0 {
		return changed, removed, nil
	}
	var answers []aliasAnswer
	byTarget := map[string][]string{}
	for _, name := range sortedKeys(aliases) {
		target := aliases[name]
		if target != "" && set.wire[target] == nil {
			continue // not served yet
		}
		if prev, ok := n.aliasSent[name]; ok && prev == target {
			continue
		}
		answers = append(answers, aliasAnswer{name, target})
		if n.aliasHeld[name] {
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

// withAliases returns a copy of r (shared, never modified) with names in its aliases.
func withAliases(r *discovery.Resource, names []string) *discovery.Resource {
	return &discovery.Resource{Name: r.GetName(), Version: r.GetVersion(), Resource: r.GetResource(),
		Aliases: append(slices.Clip(r.GetAliases()), names...), Ttl: r.GetTtl(), CacheControl: r.GetCacheControl(),
		Metadata: r.GetMetadata()}
}

// recordAnswers notes the answers a response carried. Called with n.mu held.
func (n *nodeCache) recordAnswers(answers []aliasAnswer) {
	if len(answers) == 0 {
		return
	}
	if n.aliasSent == nil {
		n.aliasSent = make(map[string]string, len(answers))
	}
	for _, a := range answers {
		n.aliasSent[a.name] = a.target
		delete(n.aliasHeld, a.name)
	}
}
