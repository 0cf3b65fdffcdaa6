package l7

import (
	"context"
	"net/netip"
	"time"

	"github.com/strait-mesh/strait/proxy/route"
	"github.com/strait-mesh/strait/proxy/stats"
)

// On-demand configuration (Envoy's on-demand VHDS and CDS): a proxy served only the virtual hosts
// and clusters it asked for holds a request whose host has no virtual host of its own in the
// route configuration (none, or only the catch-all of domain "*") while it asks the control
// plane for one, then routes it on the route table it holds then. Likewise a route whose
// cluster the proxy does not have holds the request while it asks for the cluster. On no answer
// (not found, an error, or DemandTimeout) the request goes on as a miss does without on-demand
// configuration: the catch-all virtual host, 404 NR, or 503 NC.
//
// Only hosts that can name a mesh service are demanded: a DNS-style name (letters, digits, '-',
// '_' and '.', with at least one letter), with or without a port. IP literals are not: traffic to
// an address reaches the catch-all as before (a service's virtual host by its address is not
// demanded), so that a workload calling many addresses neither exhausts the proxy's bounded
// demands (node.MaxDemanded) nor makes the control plane generate its configuration once per
// address.

// DefaultDemandTimeout bounds how long a request or connection is held while the proxy demands
// configuration (Envoy's on-demand filters default to 5 s as well).
const DefaultDemandTimeout = 5 * time.Second

// Demander asks the control plane for configuration the proxy does not hold;
// *xdsclient.Client satisfies it. Both calls wait until the answer is applied (found true),
// the control plane has none (found false), or ctx ends; concurrent calls for the same name
// share one demand.
type Demander interface {
	Demand(ctx context.Context, routeConfig, authority string) (found bool, err error)
	DemandCluster(ctx context.Context, name string) (found bool, err error)
}

// OnDemandEnv, when implemented by an Env, turns on on-demand configuration: Demander returns
// the demander, or nil when the proxy does not demand (the default).
type OnDemandEnv interface {
	Demander() Demander
}

// onDemand is a Handler's on-demand state, set once by New.
type onDemand struct {
	d       Demander      // nil: off
	timeout time.Duration // how long a request may be held
	st      *onDemandStats
}

// onDemandStats count demands by outcome, under the connection manager's stat prefix (strait's
// own names: Envoy's on-demand filter has no equivalent counters).
type onDemandStats struct {
	found, notFound, failed *stats.Counter
}

// initOnDemand reads the demander from the Env and registers the counters.
func (h *Handler) initOnDemand() {
	oe, ok := h.env.(OnDemandEnv)
	if !ok {
		return
	}
	d := oe.Demander()
	if d == nil {
		return
	}
	h.od.d = d
	h.od.timeout = h.opts.DemandTimeout
	if h.od.timeout <= 0 {
		h.od.timeout = DefaultDemandTimeout
	}
	tag := stats.Tag{Name: "envoy_http_conn_manager_prefix", Value: h.statPrefix}
	c := func(n string) *stats.Counter {
		return h.opts.Stats.Counter("http."+h.statPrefix+".on_demand."+n, "strait_http_on_demand_"+n, tag)
	}
	h.od.st = &onDemandStats{found: c("found"), notFound: c("not_found"), failed: c("failed")}
}

// match returns the route for s on s.Table. With on-demand configuration on, a host without a
// virtual host of its own is demanded first and matched on the route table held after the
// answer (s.Table updated).
func (h *Handler) match(s *Stream) *route.Route {
	vh := h.virtualHost(s)
	if h.od.d != nil {
		vh = h.demandVirtualHost(s, vh)
	}
	if vh == nil {
		return nil
	}
	return vh.Match(s)
}

// demandVirtualHost is match's on-demand part, with vh the virtual host found without it: an
// unknown authority (none, or the catch-all) is demanded from the control plane first, and the
// virtual host is looked up again in the table that brings. Out of match's common path, where
// on-demand configuration is off.
//
//go:noinline
func (h *Handler) demandVirtualHost(s *Stream, vh *route.VirtualHost) *route.VirtualHost {
	if h.rdsName != "" && (vh == nil || vh == s.Table.CatchAll()) && demandable(s.authority) {
		if h.hold(s, func(ctx context.Context) (bool, error) {
			return h.od.d.Demand(ctx, h.rdsName, s.authority)
		}) {
			if t := h.routeTable(); t != s.Table {
				s.Table = t
				if t != nil && s.external {
					s.dropInternalOnly()
				}
			}
			vh = s.Table.VirtualHost(s.authority)
		}
	}
	return vh
}

// cluster returns the cluster s.Cluster, demanding it first when the proxy does not have it and
// on-demand configuration is on; nil when it stays unknown.
func (h *Handler) cluster(s *Stream) Upstream {
	up := h.envCluster(s)
	if up != nil || h.od.d == nil {
		return up
	}
	if h.hold(s, func(ctx context.Context) (bool, error) { return h.od.d.DemandCluster(ctx, s.Cluster) }) {
		up = h.env.Cluster(s.Cluster)
	}
	return up
}

// hold runs demand with the request's context bounded by the demand timeout and reports whether
// it found what it asked for.
func (h *Handler) hold(s *Stream, demand func(context.Context) (bool, error)) bool {
	ctx, cancel := context.WithTimeout(s.Context(), h.od.timeout)
	defer cancel()
	found, err := demand(ctx)
	switch {
	case err != nil:
		h.od.st.failed.Inc()
		if h.log != nil {
			h.log.Debug("on-demand configuration failed", "authority", s.authority, "cluster", s.Cluster, "error", err)
		}
	case found:
		h.od.st.found.Inc()
	default:
		h.od.st.notFound.Inc()
	}
	return found && err == nil
}

// demandable reports whether authority (host or host:port) can name a mesh service: a DNS-style
// name with at least one letter, not an IP literal.
func demandable(authority string) bool {
	host := route.StripPort(authority)
	if host == "" || len(host) > 253 {
		return false
	}
	if host[0] == '[' {
		return false // an IPv6 literal
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return false
	}
	if host != authority && !validPort(authority[len(host)+1:]) {
		return false
	}
	letter := false
	for i := 0; i < len(host); i++ {
		switch c := host[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
			letter = true
		case '0' <= c && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return letter
}

// validPort reports whether p is a decimal port number.
func validPort(p string) bool {
	if p == "" || len(p) > 5 {
		return false
	}
	n := 0
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
		n = n*10 + int(p[i]-'0')
	}
	return n <= 65535
}
