package translate

import (
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/strait-mesh/strait/controlplane/buildcache"
	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/translate/envoyfilter"
	"github.com/strait-mesh/strait/controlplane/translate/envoyfilter/proxycheck"
	"github.com/strait-mesh/strait/internal/node"
)

// Options configure the generator.
type Options struct {
	// DomainSuffix is the cluster DNS domain; "cluster.local" when empty.
	DomainSuffix string
	// Report receives problems with single objects (a VirtualService field or DestinationRule
	// policy that cannot be translated). The object's effect is left out and generation goes on;
	// nil discards the reports. It may be called concurrently.
	Report func(p *Proxy, err error)
	// JWKS returns the key set of a RequestAuthentication jwksUri as the control plane fetched
	// it (package jwks); nil: jwksUri rules get keys that verify no token.
	JWKS func(uri string) (string, error)
	// EnvoyFilterCheck says whether strait-proxy accepts a resource an EnvoyFilter patched;
	// nil: strait-proxy's own compilers (envoyfilter/proxycheck).
	EnvoyFilterCheck envoyfilter.Checker
	// RateLimitService is the address (host:port) at which proxies reach straitd's rate limit
	// service, for RateLimits' Global rules (cluster vocab.RateLimitServiceCluster); "" when
	// the service is off, and a Global rule is then reported and not applied.
	RateLimitService string
	// Caches owns the generator's caches of output carried across snapshots (and their
	// metrics); nil: a new buildcache.Owner of the generator's own.
	Caches *buildcache.Owner
}

// New returns the Generator that assembles CDS, EDS, LDS and RDS for sidecars, routers
// (gateways) and proxyless gRPC clients, and for routers SDS: the Secrets their credentialNames
// name (secrets.go).
//
// Output that does not depend on the individual proxy (outbound clusters, endpoints, outbound
// listeners and route configurations of one Sidecar scope) is built once per snapshot and shared
// by every proxy with the same scope: resources returned by Generate may be shared between
// proxies and must be treated as immutable.
func New(opts Options) Generator {
	if opts.DomainSuffix == "" {
		opts.DomainSuffix = mesh.DefaultDomainSuffix
	}
	if opts.Caches == nil {
		opts.Caches = buildcache.New()
	}
	return &generator{opts: opts, c: newTables(opts.Caches), check: proxycheck.Checker{}}
}

type generator struct {
	opts  Options
	c     *tables             // output carried over between snapshots
	snaps snapshots           // the newest two snapshots seen, for their change set
	check envoyfilter.Checker // when opts.EnvoyFilterCheck is nil
}

var _ Generator = (*generator)(nil)

// Workload returns the proxy as the mesh indexes see it.
func (p *Proxy) Workload() mesh.Workload {
	return mesh.Workload{Namespace: p.Namespace, Labels: p.Labels}
}

// Generate implements Generator.
func (g *generator) Generate(snap *mesh.Snapshot, p *Proxy) (Resources, error) {
	var (
		res Resources
		err error
	)
	g.c.owner.Advance(snap.Version) // a newer snapshot starts a new generation of every table
	switch {
	case p.Proxyless:
		res, err = g.proxyless(snap, p)
	case p.Type == node.Router:
		res, err = g.router(snap, p)
	case p.Type == node.Sidecar || p.Type == "":
		res, err = g.sidecar(snap, p)
	default:
		return nil, fmt.Errorf("generating for %s: proxy type %q is not supported", p.ID, p.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("generating for %s: %w", p.ID, err)
	}
	if !p.Proxyless {
		res = g.rateLimits(snap, p, res)
		res = g.envoyFilters(snap, p, res)
		if p.VHDS {
			res = g.virtualHosts(snap, res)
			res = g.onDemand(snap, p, res)
		}
	}
	return res, nil
}

func (g *generator) report(p *Proxy, err error) {
	if err != nil && g.opts.Report != nil {
		g.opts.Report(p, err)
	}
}

// newResources returns an empty resource map with every type present, so that an empty list is
// sent (and removes stale resources) rather than nothing.
func newResources() Resources {
	return Resources{
		resource.ClusterType:  nil,
		resource.EndpointType: nil,
		resource.ListenerType: nil,
		resource.RouteType:    nil,
	}
}

// labelsKey renders labels deterministically, for cache keys.
func labelsKey(l map[string]string) string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(l[k])
		b.WriteByte(',')
	}
	return b.String()
}

func appendAll[T types.Resource](dst []types.Resource, src []T) []types.Resource {
	for _, r := range src {
		dst = append(dst, r)
	}
	return dst
}

// snapshots remembers the newest two snapshots translated, so that the newest one's change set
// (mesh.ChangeSet) is computed against its predecessor once.
type snapshots struct {
	mu         sync.Mutex
	last, prev *mesh.Snapshot
}

// changes returns what changed since the snapshot translated before snap, or nil when unknown
// (the first snapshot, or snap is no longer the newest).
func (g *generator) changes(snap *mesh.Snapshot) *mesh.ChangeSet {
	s := &g.snaps
	s.mu.Lock()
	if s.last == nil || snap.Version > s.last.Version {
		s.prev, s.last = s.last, snap
	}
	prev := s.prev
	if s.last != snap {
		prev = nil
	}
	s.mu.Unlock()
	return snap.ChangesSince(prev)
}
