package route

import (
	"errors"
	"fmt"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	meshconfig "istio.io/api/mesh/v1alpha1"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/registry"
)

// DefaultDomainSuffix is the cluster DNS domain used when Inputs.DomainSuffix is empty.
const DefaultDomainSuffix = "cluster.local"

// MeshGateway is the reserved gateway name that selects sidecars in VirtualService.gateways.
const MeshGateway = "mesh"

// Proxy is what route generation needs to know about the proxy the routes are for.
type Proxy struct {
	// Namespace is the proxy's namespace: it decides which short host names are valid domains and
	// is compared with HTTPMatchRequest.sourceNamespace.
	Namespace string
	// Labels are the workload's labels, compared with sourceLabels of VirtualService matches.
	Labels map[string]string
	// Router is true for gateways (ingress/egress routers). It is informational: callers use
	// Gateway/GatewayTLS for routers and Outbound for sidecars.
	Router bool
}

// DestinationRuleLookup returns the DestinationRule that applies to hostname for the proxy (after
// exportTo and workloadSelector), or nil. hostname is a fully qualified service hostname.
type DestinationRuleLookup func(hostname string) *networking.DestinationRule

// DelegateLookup returns the VirtualService named name in namespace, or nil if there is none (or
// it is not exported to the root VirtualService's namespace). It is used to resolve
// HTTPRoute.delegate.
type DelegateLookup func(name, namespace string) *config.Object

// Inputs is everything route generation reads for one proxy. The caller owns the values; the
// package never modifies them.
type Inputs struct {
	Proxy Proxy
	// Mesh is the mesh configuration; nil means Istio's defaults (ALLOW_ANY).
	Mesh *meshconfig.MeshConfig
	// DomainSuffix is the cluster DNS domain, "cluster.local" if empty.
	DomainSuffix string
	// Services are the services visible to the proxy (after exportTo and Sidecar egress scoping),
	// in a stable order (hostname, then namespace). When a hostname repeats, the service in the
	// proxy's namespace wins, else the first.
	Services []*registry.Service
	// VirtualServices are the VirtualServices visible to the proxy, oldest first (Istio's
	// precedence when two claim the same host). Objects must hold a *networking.VirtualService;
	// delegate VirtualServices (no hosts) may be included and are skipped as roots.
	VirtualServices []*config.Object
	// Gateways are, for a router, the Gateway objects whose selector selects the proxy.
	Gateways []*config.Object
	// DestinationRule finds a host's DestinationRule, for hash policies; nil means none.
	DestinationRule DestinationRuleLookup
	// Delegate resolves delegate VirtualServices; nil means none can be resolved.
	Delegate DelegateLookup
	// Reaches reports whether the proxy may reach svc on port (Sidecar egress scoping narrows a
	// service to some of its ports, e.g. mesh.Scope.Reaches); nil means every port of every
	// service in Services. Outbound gives a service a virtual host only on reachable ports.
	Reaches func(svc *registry.Service, port uint32) bool
	// Parts, when set, lets the caller reuse virtual hosts and VirtualService routes that
	// earlier Builders built from the same inputs (see Parts); nil builds everything.
	Parts Parts
}

// Error reports a VirtualService (or Gateway) that could not be translated, and what was left out.
type Error struct {
	Kind      config.Kind
	Namespace string
	Name      string
	// Field is the path of the offending field, e.g. "http[0].fault.delay.exponentialDelay".
	Field string
	Msg   string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s %s/%s: %s: %s", e.Kind, e.Namespace, e.Name, e.Field, e.Msg)
}

// fieldErr is an error at a field path inside one object; the object is added by the caller.
type fieldErr struct {
	field string
	msg   string
}

func (e *fieldErr) Error() string { return e.field + ": " + e.msg }

func errf(field, format string, args ...any) error {
	return &fieldErr{field: field, msg: fmt.Sprintf(format, args...)}
}

// atField prefixes the field path of a fieldErr (or wraps another error with the path).
func atField(prefix string, err error) error {
	if err == nil {
		return nil
	}
	var fe *fieldErr
	if errors.As(err, &fe) {
		f := fe.field
		if f != "" && !strings.HasPrefix(f, "[") {
			f = "." + f
		}
		return &fieldErr{field: prefix + f, msg: fe.msg}
	}
	return &fieldErr{field: prefix, msg: err.Error()}
}

// objectErr turns a field error into an *Error about obj, with what happened to it.
func objectErr(obj *config.Object, err error, consequence string) *Error {
	e := &Error{Kind: obj.Kind, Namespace: obj.Namespace, Name: obj.Name}
	var fe *fieldErr
	if errors.As(err, &fe) {
		e.Field, e.Msg = fe.field, fe.msg
	} else {
		e.Msg = err.Error()
	}
	if consequence != "" {
		e.Msg += " (" + consequence + ")"
	}
	return e
}

// Builder generates route configurations for one proxy from fixed Inputs. Create it with New; it
// indexes services and VirtualServices once so that per-port calls are cheap. A Builder is
// immutable after New and safe for concurrent use.
type Builder struct {
	in     Inputs
	suffix string
	// byHost maps a service hostname to the service that wins for this proxy.
	byHost map[string]*registry.Service
	// services is in.Services without hostname duplicates, in input order.
	services []*registry.Service
	// vs are the root VirtualServices with their resolved hosts, in input order.
	vs []*virtualService
	// exact indexes vs by their hosts (each list in input order); wildcards are those of vs
	// with a wildcard host, in input order.
	exact     map[string][]*virtualService
	wildcards []*virtualService
	// meshVS maps a service to the VirtualService bound to the mesh that routes it (see
	// selectVirtualService).
	meshVS map[*registry.Service]*virtualService
	// bases are the services' domains without port (see domainBases).
	bases map[*registry.Service][]string
	// defaultRetry is the retry policy of routes without retries (the mesh's
	// defaultHttpRetryPolicy, else Istio's); shared by those routes, like zeroTimeout.
	defaultRetry *routev3.RetryPolicy
	// defaultRetryHashed is defaultRetry for routes with a hash policy.
	defaultRetryHashed *routev3.RetryPolicy
	zeroTimeout        *durationpb.Duration
	previousHosts      []*routev3.RetryPolicy_RetryHostPredicate
	matchAll           *routev3.RouteMatch // prefix "/"
}

// virtualService is a root VirtualService with hosts resolved to FQDNs.
type virtualService struct {
	obj   *config.Object
	spec  *networking.VirtualService
	hosts []string // resolved, in spec order
	// gateways resolved to "mesh" or "namespace/name"; empty spec means ["mesh"].
	gateways []string
	// extraHosts are the hosts that match no visible service, in spec order.
	extraHosts []string
	// servicePorts are the HTTP ports of the visible services the hosts name or match.
	servicePorts map[uint32]bool
}

// New indexes in for route generation. It returns an error if an object in in.VirtualServices
// does not hold a *networking.VirtualService, or if the mesh's defaultHttpRetryPolicy cannot be
// translated.
func New(in Inputs) (*Builder, error) {
	b := &Builder{in: in, suffix: in.DomainSuffix, byHost: make(map[string]*registry.Service, len(in.Services)), zeroTimeout: durationpb.New(0),
		matchAll: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}}
	if b.suffix == "" {
		b.suffix = DefaultDomainSuffix
	}
	b.previousHosts = []*routev3.RetryPolicy_RetryHostPredicate{previousHosts()}
	b.defaultRetry = b.newRetryPolicy()
	b.defaultRetryHashed = b.newRetryPolicy()
	b.defaultRetryHashed.RetryHostPredicate = nil
	if def := in.Mesh.GetDefaultHttpRetryPolicy(); def != nil {
		c := &routeCtx{b: b}
		var err error
		if b.defaultRetry, err = c.convertRetry(def, false); err != nil {
			return nil, fmt.Errorf("mesh config defaultHttpRetryPolicy: %w", err)
		}
		if b.defaultRetryHashed, err = c.convertRetry(def, true); err != nil {
			return nil, fmt.Errorf("mesh config defaultHttpRetryPolicy: %w", err)
		}
	}
	for _, s := range in.Services {
		prev, ok := b.byHost[s.Hostname]
		if !ok {
			b.byHost[s.Hostname] = s
			b.services = append(b.services, s)
			continue
		}
		if prev.Namespace != in.Proxy.Namespace && s.Namespace == in.Proxy.Namespace {
			b.byHost[s.Hostname] = s
			for i := range b.services {
				if b.services[i] == prev {
					b.services[i] = s
				}
			}
		}
	}
	for _, obj := range in.VirtualServices {
		spec, ok := obj.Spec.(*networking.VirtualService)
		if !ok {
			return nil, fmt.Errorf("indexing virtual services: %s/%s holds %T, want *VirtualService", obj.Namespace, obj.Name, obj.Spec)
		}
		if len(spec.Hosts) == 0 {
			continue // a delegate: reached only through a root's HTTPRoute.delegate
		}
		v := &virtualService{obj: obj, spec: spec}
		for _, h := range spec.Hosts {
			v.hosts = append(v.hosts, b.resolveHost(h, obj.Namespace))
		}
		v.gateways = resolveGateways(spec.Gateways, obj.Namespace)
		v.servicePorts = map[uint32]bool{}
		for _, h := range v.hosts {
			matched := false
			for _, svc := range b.servicesMatching(h) {
				matched = true
				for _, p := range svc.Ports {
					if isHTTPPort(p) {
						v.servicePorts[p.Number] = true
					}
				}
			}
			if !matched {
				v.extraHosts = append(v.extraHosts, h)
			}
		}
		b.vs = append(b.vs, v)
	}
	b.exact = make(map[string][]*virtualService, len(b.vs))
	for _, v := range b.vs {
		wild := false
		for _, h := range v.hosts {
			wild = wild || h != "" && h[0] == '*'
			if l := b.exact[h]; len(l) == 0 || l[len(l)-1] != v {
				b.exact[h] = append(l, v) // wildcards too: a service's hostname may be one
			}
		}
		if wild {
			b.wildcards = append(b.wildcards, v)
		}
	}
	b.meshVS = make(map[*registry.Service]*virtualService)
	b.bases = make(map[*registry.Service][]string, len(b.services))
	for _, svc := range b.services {
		b.bases[svc] = domainBases(svc, in.Proxy.Namespace, b.suffix)
		if v := b.selectVirtualService(svc.Hostname, MeshGateway); v != nil {
			b.meshVS[svc] = v
		}
	}
	return b, nil
}

// servicesMatching returns the visible services a VirtualService host names (exactly) or
// matches (wildcard).
func (b *Builder) servicesMatching(h string) []*registry.Service {
	if h == "" || h[0] != '*' {
		if svc := b.byHost[h]; svc != nil {
			return []*registry.Service{svc}
		}
		return nil
	}
	var out []*registry.Service
	for _, svc := range b.services {
		if hostMatches(h, svc.Hostname) {
			out = append(out, svc)
		}
	}
	return out
}

// selectVirtualService returns the VirtualService bound to gateway that routes host: the oldest
// one naming host exactly, else the one whose wildcard host matching host is the most specific
// (the oldest among equals), as Istio decides. nil if none.
func (b *Builder) selectVirtualService(host, gateway string) *virtualService {
	for _, v := range b.exact[host] {
		if contains(v.gateways, gateway) {
			return v // the oldest exact match; exact names beat wildcards
		}
	}
	var wildcard *virtualService
	wildLen := 0
	for _, v := range b.wildcards {
		if !contains(v.gateways, gateway) {
			continue
		}
		for _, h := range v.hosts {
			if h != "" && h[0] == '*' && hostMatches(h, host) && len(h) > wildLen {
				wildcard, wildLen = v, len(h)
			}
		}
	}
	return wildcard
}

// resolveHost expands a short name ("reviews") written in namespace ns to its FQDN; names with a
// dot and "*" are already qualified, as in Istio.
func (b *Builder) resolveHost(h, ns string) string {
	if h == "*" || strings.Contains(h, ".") {
		return h
	}
	return h + "." + ns + ".svc." + b.suffix
}

// resolveGateways qualifies gateway names with the VirtualService namespace; empty means mesh.
func resolveGateways(gws []string, ns string) []string {
	if len(gws) == 0 {
		return []string{MeshGateway}
	}
	out := make([]string, 0, len(gws))
	for _, g := range gws {
		if g == MeshGateway || strings.Contains(g, "/") {
			out = append(out, g)
			continue
		}
		out = append(out, ns+"/"+g)
	}
	return out
}
