package translate

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/cespare/xxhash/v2"
	"google.golang.org/protobuf/proto"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/buildcache"
	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/registry"
	"github.com/strait-mesh/strait/controlplane/translate/authz"
	"github.com/strait-mesh/strait/controlplane/translate/cluster"
	"github.com/strait-mesh/strait/controlplane/translate/listener"
	"github.com/strait-mesh/strait/controlplane/translate/route"
	"github.com/strait-mesh/strait/internal/vocab"
)

// sidecarOutbound is the proxy-independent part of a sidecar's output: listeners and route
// configurations of its scope.
type sidecarOutbound struct {
	listeners *listenerList
	routes    []*routev3.RouteConfiguration
	routeRes  []types.Resource // the same, type-erased once
	err       error            // fatal
	reports   error            // per-object problems
	// parts are the table entries of the parts the listeners and routes are made of (route and
	// listener tables, VHDS splits): reusing the output keeps them.
	parts buildcache.Refs
}

// sidecar generates a sidecar's resources: outbound clusters/endpoints/listeners/routes of its
// Sidecar scope (shared), plus its inbound listeners and clusters (shared by proxies with the
// same inbound ports).
func (g *generator) sidecar(snap *mesh.Snapshot, p *Proxy) (Resources, error) {
	w := p.Workload()
	sc := snap.Scope(w)
	explicit := p.InterceptMode == "NONE"
	set := g.outboundClusters(snap, sc, w, false)
	g.report(p, set.errs)

	vss := sc.VirtualServices(snap)
	tel := g.telemetry(snap, p, false)
	key := shareKey{kind: "sidecar-out", scope: sc.Key, drSig: snap.DestinationRuleSignature(w), explicit: explicit,
		telemetry: tel.clientKey}
	if scopeUsesSourceLabels(snap, sc, vss) {
		key.labels = labelsKey(p.Labels)
	}
	out := sidecarOutSlot.Get(snap.Cache(), key, func() *sidecarOutbound {
		// Outbound listeners and routes read no endpoints: when nothing but endpoints changed
		// since the previous snapshot, they are the previous objects.
		out := g.c.sidecarOut.Get(snap.Version, key, snap.ConfigHash(), func() *sidecarOutbound {
			return g.sidecarOutbound(snap, sc, w, explicit, vss, tel, key)
		})
		out.parts.Keep(snap.Version)
		return out
	})
	if out.err != nil {
		return nil, out.err
	}
	g.report(p, out.reports)

	var sidecarSpec *networking.Sidecar
	if sc.Sidecar != nil {
		sidecarSpec = sc.Sidecar.Spec.(*networking.Sidecar)
		if sidecarSpec.GetOutboundTrafficPolicy().GetEgressProxy() != nil {
			g.report(p, fmt.Errorf("Sidecar %s/%s: outboundTrafficPolicy.egressProxy is not supported: unknown destinations are reached directly (PassthroughCluster)",
				sc.Sidecar.Namespace, sc.Sidecar.Name))
		}
	}
	inPorts, err := listener.InboundPorts(snap, sidecarSpec, listener.Instance{IPs: p.IPs, Explicit: explicit})
	if err != nil {
		return nil, err
	}
	sec := g.inboundSecurity(snap, w, p, inPorts)
	sec.Telemetry = tel.Server
	// The lists are carried over to the next snapshot with their parts: an endpoint-only change
	// leaves them the same objects.
	inKey := inboundKey(inPorts, sec) + "|tel=" + tel.serverKey
	// Every part is carried over to the next snapshot while its inputs are unchanged (an
	// endpoint-only change leaves them all), and so are the lists when all their parts are.
	lk := localKey{lds: out.listeners, explicit: explicit, inbound: inKey}
	listeners := proxyListsSlot.Get(snap.Cache(), lk, func() *localList {
		in := g.c.inboundParts.Get(snap.Version, inboundPartKey{kind: "lds", explicit: explicit, inbound: inKey}, 0, func() *localList {
			l, err := listener.BuildInbound(inPorts, explicit, sec)
			return &localList{list: appendAll(nil, l), err: err}
		})
		if in.err != nil {
			return in
		}
		lk.part = in
		return g.c.proxyLists.Get(snap.Version, lk, struct{}{}, func() *localList { return concatLists(out.listeners.res, in.list) })
	})
	if listeners.err != nil {
		return nil, listeners.err
	}
	ck := localKey{set: set, explicit: explicit, inbound: inKey}
	clusters := proxyListsSlot.Get(snap.Cache(), ck, func() *localList {
		in := g.c.inboundParts.Get(snap.Version, inboundPartKey{kind: "cds", explicit: explicit, inbound: inKey}, snap.MeshHash(), func() *localList {
			return g.inboundClusters(snap, inPorts, explicit)
		})
		if in.err != nil {
			return in
		}
		ck.part = in
		return g.c.proxyLists.Get(snap.Version, ck, struct{}{}, func() *localList { return concatLists(set.clusterRes, in.list) })
	})
	if clusters.err != nil {
		return nil, clusters.err
	}
	res := newResources()
	res[resource.ClusterType] = clusters.list
	res[resource.EndpointType] = g.loadAssignments(snap, set, p)
	res[resource.ListenerType] = listeners.list
	res[resource.RouteType] = out.routeRes
	if p.DNSCapture || p.WorkloadTable {
		ecds, err := g.extensionConfigs(snap, p, sc)
		if err != nil {
			return nil, err
		}
		res[resource.ExtensionConfigType] = ecds
	}
	return res, nil
}

// localKey identifies a sidecar's complete cluster list (by its outbound set) or listener list
// (by its outbound listener list, carried over while unchanged), with its interception mode and inbound ports (and, as a memo key,
// the inbound part). Proxies of one workload (and all proxies without inbound ports) share the
// lists, which the xDS server then recognizes without looking at their items.
type localKey struct {
	set      *outboundSet
	lds      *listenerList
	explicit bool
	inbound  string
	part     *localList
}

// inboundPartKey identifies the proxy-specific part of a sidecar's clusters ("cds": special and
// inbound clusters) or listeners ("lds": inbound listeners).
type inboundPartKey struct {
	kind     string
	explicit bool
	inbound  string
}

// localList is a list of resources, or the error that prevents it.
type localList struct {
	list []types.Resource
	err  error
}

// concatLists returns a new list of a's items followed by b's.
func concatLists(a, b []types.Resource) *localList {
	return &localList{list: append(append(make([]types.Resource, 0, len(a)+len(b)), a...), b...)}
}

// inboundKey renders inbound ports for localKey, with content hashes of their TLS and
// connection pool settings.
func inboundKey(ports []listener.InboundPort, sec listener.InboundSecurity) string {
	var b []byte
	for _, ip := range ports {
		b = fmt.Appendf(b, "%s|%d|%s|%s|%d|%s|%x|%x|%s;", ip.Port.Name, ip.Port.Number, ip.Port.Protocol,
			ip.Endpoint, ip.TargetPort, ip.Bind, protoHash(ip.TLS), protoHash(ip.ConnectionPool), ip.MTLS)
		for _, svc := range ip.Services { // the inbound cluster's istio.services metadata
			b = fmt.Appendf(b, "s=%s/%s,", svc.Namespace, svc.Hostname)
		}
	}
	b = fmt.Appendf(b, "passthrough=%s|td=%s", sec.Passthrough, strings.Join(sec.TrustDomains, ","))
	for _, f := range sec.HTTPFilters {
		b = fmt.Appendf(b, "|h%x", protoHash(f))
	}
	for _, f := range sec.NetworkFilters {
		b = fmt.Appendf(b, "|n%x", protoHash(f))
	}
	return string(b)
}

// authzKey caches a workload's authorization filters in the snapshot.
type authzKey struct{ namespace, labels string }

type authzResult struct {
	filters authz.Filters
	errs    []error
}

// authorization returns the authentication and authorization filters of the workload's
// RequestAuthentications and AuthorizationPolicies, built once per snapshot for each namespace
// and label set: CUSTOM (ext_authz), then jwt_authn, then the RBAC filters, as istiod orders them.
func (g *generator) authorization(snap *mesh.Snapshot, w mesh.Workload) *authzResult {
	return authzSlot.Get(snap.Cache(), authzKey{w.Namespace, labelsKey(w.Labels)}, func() *authzResult {
		res := &authzResult{}
		var jwt *hcmv3.HttpFilter
		if ras := authz.SelectRequestAuthentication(snap.Configs[config.RequestAuthentication], w.Namespace, w.Labels, snap.RootNamespace()); len(ras) > 0 {
			var errs []error
			jwt, errs = authz.BuildJWT(ras, g.opts.JWKS)
			res.errs = append(res.errs, errs...)
		}
		var f authz.Filters
		if sel := authz.Select(snap.Configs[config.AuthorizationPolicy], w.Namespace, w.Labels, snap.RootNamespace()); len(sel) > 0 {
			var errs []error
			f, errs = authz.Build(sel, authz.Options{RootNamespace: snap.RootNamespace(), TrustDomains: trustDomains(snap),
				Providers: snap.Mesh.GetExtensionProviders(), Services: snap.Services})
			res.errs = append(res.errs, errs...)
		}
		res.filters.HTTP = f.WithAuthn(jwt) // jwt_authn before the RBAC filters, which read its payload
		res.filters.TCP = f.TCP
		return res
	})
}

// inboundSecurity sets each inbound port's PeerAuthentication mode and returns the sidecar's
// inbound security. A proxy without a mesh identity (no label security.istio.io/tlsMode: istio:
// it runs no identity agent) cannot terminate mesh mTLS: PERMISSIVE is plaintext only for it,
// while STRICT keeps refusing plaintext (and is reported, since no client can then connect).
func (g *generator) inboundSecurity(snap *mesh.Snapshot, w mesh.Workload, p *Proxy, ports []listener.InboundPort) listener.InboundSecurity {
	identity := p.Labels[vocab.LabelTLSMode] == vocab.TLSModeIstio
	mode := func(port uint32) mesh.MTLSMode {
		m := snap.MTLS(w, port)
		if m == mesh.MTLSPermissive && !identity {
			return mesh.MTLSDisable
		}
		return m
	}
	strictWithout := false
	for i := range ports {
		ports[i].MTLS = mode(ports[i].Port.Number)
		strictWithout = strictWithout || (!identity && ports[i].MTLS == mesh.MTLSStrict && ports[i].TLS == nil)
	}
	if strictWithout {
		g.report(p, fmt.Errorf("proxy %s has no mesh identity (no %s=%s label: it runs without the identity agent) but PeerAuthentication is STRICT for its ports: mutual TLS to it cannot succeed",
			p.ID, vocab.LabelTLSMode, vocab.TLSModeIstio))
	}
	az := g.authorization(snap, w)
	for _, err := range az.errs {
		g.report(p, err)
	}
	return listener.InboundSecurity{Passthrough: mode(0), TrustDomains: trustDomains(snap),
		HTTPFilters: az.filters.HTTP, NetworkFilters: az.filters.TCP,
		PathNormalization: snap.Mesh.GetPathNormalization().GetNormalization(),
		AccessLog:         listener.AccessLogFromMesh(snap.Mesh)}
}

// trustDomains returns MeshConfig's trust domain (default cluster.local) and its aliases.
func trustDomains(snap *mesh.Snapshot) []string {
	td := snap.Mesh.GetTrustDomain()
	if td == "" {
		td = mesh.DefaultDomainSuffix
	}
	return append([]string{td}, snap.Mesh.GetTrustDomainAliases()...)
}

// protoHash returns a hash of a message's deterministic encoding (0 for nil).
func protoHash(m proto.Message) uint64 {
	if m == nil || !m.ProtoReflect().IsValid() {
		return 0
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		b = []byte(fmt.Sprint(m)) // text format: deterministic enough for a key
	}
	return xxhash.Sum64(b) | 1
}

// inboundClusters builds the special clusters (BlackHole, Passthrough, InboundPassthrough unless
// explicit) and the inbound clusters of a sidecar. Each is memoized on its own inputs, so the
// special clusters and an inbound cluster with the same port, application address and services
// are the same objects for every sidecar.
func (g *generator) inboundClusters(snap *mesh.Snapshot, inPorts []listener.InboundPort, explicit bool) *localList {
	special := g.c.specials.Get(snap.Version, explicit, snap.MeshHash(), func() []types.Resource {
		list := []types.Resource{cluster.BlackHoleCluster(snap.Mesh), cluster.PassthroughCluster(snap.Mesh)}
		if !explicit {
			list = append(list, cluster.InboundPassthroughCluster(snap.Mesh))
		}
		return list
	})
	clusters := make([]types.Resource, 0, len(inPorts)+len(special))
	clusters = append(clusters, special...)
	var errs []error
	for _, ip := range inPorts {
		key := inboundPartKey{kind: "cds-port", inbound: inboundKey([]listener.InboundPort{ip}, listener.InboundSecurity{})}
		res := g.c.inboundParts.Get(snap.Version, key, snap.MeshHash(), func() *localList {
			c, err := cluster.Inbound(ip.Port, ip.Endpoint, ip.TargetPort, ip.ConnectionPool, ip.Services, snap.Mesh)
			return &localList{list: []types.Resource{c}, err: err}
		})
		if res.err != nil {
			errs = append(errs, res.err)
			continue
		}
		clusters = append(clusters, res.list...)
	}
	if len(errs) > 0 {
		return &localList{err: errors.Join(errs...)}
	}
	return &localList{list: clusters}
}

// sidecarOutbound builds the outbound listeners and route configurations of a sidecar scope
// (share key key). Virtual hosts, VirtualService routes, service chains and address listeners
// whose inputs did not change since an earlier snapshot are the earlier objects (routeParts,
// listenerParts).
func (g *generator) sidecarOutbound(snap *mesh.Snapshot, sc *mesh.Scope, w mesh.Workload, explicit bool, vss []*config.Object, tel *telemetryResult, key shareKey) *sidecarOutbound {
	out := &sidecarOutbound{}
	parts, partsKey := g.newRouteParts(snap, sc, w, key.labels)
	lparts, lpartsKey := g.newListenerParts(snap, w, key, tel.clientKey)
	in := g.routeInputs(snap, sc, w, false, vss, nil)
	in.Parts = parts
	b, err := route.New(in)
	if err != nil {
		out.err = err
		return out
	}
	parts.b = b
	var reports []error
	tcpRoutes := func(svc *registry.Service, port registry.Port) ([]route.L4Route, error) {
		var rs []route.L4Route
		var err error
		if port.Protocol.IsTLS() {
			rs, err = b.TLSRoutes(svc.Hostname, port.Number, mesh.GatewayMesh)
		} else {
			rs, err = b.TCPRoutes(svc.Hostname, port.Number, mesh.GatewayMesh)
		}
		if err != nil {
			reports = append(reports, err) // the VirtualService is left out; rs holds the rest
		}
		return rs, nil
	}
	if t := lparts.carried(g.changes(snap)); t != nil {
		// Nothing the listeners read changed since the previous snapshot: the previous list.
		lparts.table = t
		out.listeners = t.list
		reports = append(reports, t.reports...)
	} else {
		listeners, err := listener.BuildOutbound(listener.Outbound{Snap: snap, Scope: sc, Workload: w, Explicit: explicit, Telemetry: tel.Client,
			TCPRoutes: tcpRoutes, Report: func(err error) { reports = append(reports, err) }, Parts: lparts})
		if err != nil {
			out.err = err
			return out
		}
		out.listeners = lparts.carryList(listeners)
		lparts.table.reports = slices.Clip(reports)
	}
	g.c.listenerParts.Put(snap.Version, lpartsKey, lparts.table.print, lparts.table)
	routes, err := outboundRoutes(b, httpRoutePorts(sc))
	if err != nil {
		reports = append(reports, err)
	}
	out.routes = routes
	g.c.routeParts.Put(snap.Version, partsKey, struct{}{}, parts.table)
	out.parts.List = []buildcache.Ref{g.c.routeParts.Ref(partsKey), g.c.listenerParts.Ref(lpartsKey)}
	for _, rc := range routes {
		// The VHDS split of these route configurations, from the virtual hosts' VHDS forms.
		g.c.vhdsSplits.Put(snap.Version, vhdsKey{rc}, struct{}{}, parts.split(rc))
		out.parts.List = append(out.parts.List, g.c.vhdsSplits.Ref(vhdsKey{rc}))
	}
	out.reports = errors.Join(reports...)
	out.routeRes = appendAll(nil, out.routes)
	return out
}
