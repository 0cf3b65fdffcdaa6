package route

import (
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/registry"
)

// Carrying parts of outbound route configurations over between Builders.
//
// A Builder is made per proxy scope and mesh snapshot, and a sidecar's outbound route
// configuration holds a virtual host per reachable service: at a thousand services, building
// and marshaling them all again for every config change costs far more than the change. With
// Inputs.Parts set, Outbound asks the caller for every virtual host and for every
// VirtualService's routes it needs, so that the caller can return what an earlier Builder built
// from the same inputs. Deciding "the same inputs" is the caller's: it fingerprints the content
// of what each part read (mesh snapshots and their content hashes are not this package's), and
// the route package says exactly what that is:
//
//   - MeshRoutes (one root VirtualService's HTTP routes on one port) read the VirtualService,
//     the proxy (namespace; labels when a match names sourceLabels), the mesh config, the
//     domain suffix and what MeshRoutes.Reads lists;
//   - a virtual host reads VirtualHostInputs: its name and domains, its routes (the
//     MeshRoutes, or for the default route the Service and the DestinationRule of its hostname,
//     listed in VirtualHostInputs.Reads) and the mesh config (default retry policy,
//     outboundTrafficPolicy for the "*" virtual host).

// Reads lists what translating a VirtualService's routes read besides the VirtualService itself,
// the proxy, the mesh config and the domain suffix. Every lookup the translation makes is
// recorded, whether it found something or not; names may repeat.
type Reads struct {
	// Services are hostnames looked up among the visible services (Builder.Service), e.g. for
	// the port of a destination that names none.
	Services []string
	// DestinationRules are hostnames whose DestinationRule was looked up (hash policies).
	DestinationRules []string
	// Delegates are the delegate VirtualServices looked up (Inputs.Delegate).
	Delegates []DelegateRef
}

// DelegateRef names a delegate VirtualService.
type DelegateRef struct{ Namespace, Name string }

// MeshRoutes is the translation of one root VirtualService's HTTP routes for the mesh gateway on
// one port of an outbound route configuration.
type MeshRoutes struct {
	// Routes are the Envoy routes, in order; nil when Err is set.
	Routes []*routev3.Route
	// Err is an *Error when the VirtualService cannot be translated: it is not applied on the
	// port, and the services it routes get default routes.
	Err error
	// Reads is what the translation read (see Reads).
	Reads Reads
	// Print is the caller's: Parts may record a fingerprint of the inputs here. The route
	// package never reads it.
	Print uint64
}

// VirtualHostInputs is what one virtual host of an outbound route configuration is built from.
type VirtualHostInputs struct {
	// Port is the route configuration's port.
	Port uint32
	// Name and Domains are the virtual host's.
	Name    string
	Domains []string
	// Service is the service the virtual host routes; nil for a VirtualService host that names
	// no service, and for the "*" virtual host.
	Service *registry.Service
	// Routes are the VirtualService routes of the virtual host; nil for the default route to
	// Service (and for the "*" virtual host, which reads only the mesh config).
	Routes *MeshRoutes
	// Reads lists the DestinationRule read by a default route (Service's hostname: its hash
	// policy); empty otherwise (Routes.Reads has the routes' own).
	Reads Reads
}

// Parts keeps parts of outbound route configurations between Builders (see Inputs.Parts). Each
// method returns build()'s result or one built earlier from inputs with the same content; the
// result must not be modified. Methods are called concurrently by Builders of different proxies.
type Parts interface {
	// MeshRoutes returns the routes of the root VirtualService vs on port.
	MeshRoutes(vs *config.Object, port uint32, build func() *MeshRoutes) *MeshRoutes
	// VirtualHost returns the virtual host built from in.
	VirtualHost(in *VirtualHostInputs, build func() *routev3.VirtualHost) *routev3.VirtualHost
}

// Service returns the visible service with the given hostname that wins for the proxy (the one
// in the proxy's namespace when several have the hostname), or nil: what the route translation
// finds when it looks a host up (Reads.Services).
func (b *Builder) Service(host string) *registry.Service { return b.byHost[host] }

// service looks host up among the visible services, recording the read.
func (c *routeCtx) service(host string) *registry.Service {
	if c.reads != nil {
		c.reads.Services = append(c.reads.Services, host)
	}
	return c.b.byHost[host]
}

// destinationRule returns the DestinationRule of host for the proxy (nil if none), recording
// the read. Callers check that Inputs.DestinationRule is set.
func (c *routeCtx) destinationRule(host string) *networking.DestinationRule {
	if c.reads != nil {
		c.reads.DestinationRules = append(c.reads.DestinationRules, host)
	}
	return c.b.in.DestinationRule(host)
}

// delegate looks up a delegate VirtualService, recording the read.
func (c *routeCtx) delegate(name, ns string) *config.Object {
	if c.reads != nil {
		c.reads.Delegates = append(c.reads.Delegates, DelegateRef{Namespace: ns, Name: name})
	}
	return c.b.lookupDelegate(name, ns)
}
