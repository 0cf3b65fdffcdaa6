/*
Package translate turns a mesh.Snapshot into Envoy v3 xDS resources for one proxy.

# Use

	snap := mesh.New(version, meshCfg, objects)           // registry + indexes, immutable
	gen := translate.New(translate.Options{Report: func(p *translate.Proxy, err error) { log(p, err) }})
	res, err := gen.Generate(snap, proxy)                 // CDS, EDS, LDS, RDS by type URL

Generate dispatches on the proxy: sidecars (node type "sidecar"), routers ("router", i.e.
gateways) and proxyless gRPC clients (GENERATOR=grpc). It returns an error only when nothing
sensible can be sent (the xDS server then keeps the proxy's last good resources). Problems with a
single object — a VirtualService field or DestinationRule policy that cannot be expressed — go to
Options.Report; that object's effect is left out (a service port whose DestinationRule cannot be
translated gets no clusters) and everything else is generated.

# Layout

	cluster/   CDS: outbound|PORT|SUBSET|HOST, inbound|PORT||, Passthrough/BlackHole/InboundPassthrough,
	           every DestinationRule traffic policy field; HashPolicy for routes
	endpoint/  EDS: load assignments per EDS cluster: subsets, localities, weights, failover priorities
	listener/  LDS: virtualOutbound (15001), virtualInbound (15006), explicit-mode listeners,
	           gateway listeners, proxyless API listeners
	route/     RDS (owned separately): route configurations, virtual hosts, VirtualService routes

# Sharing

Outbound clusters, endpoints, outbound listeners and route configurations depend on the proxy only
through its Sidecar scope (namespace and Sidecar), the workload-selecting DestinationRules that
apply to it, its locality (endpoints) and — only when a VirtualService matches on sourceLabels —
its labels. They are built once per snapshot for each such combination (a buildcache.Slot in mesh.Snapshot.Cache)
and shared: the returned resources are immutable. Outbound clusters and endpoints are shared
further: namespaces whose service and DestinationRule lookups give the same results
(mesh.Snapshot.NamespaceIndependent, or simply the same clusters per service port) share one set.
Inbound listeners and clusters are shared by proxies with the same inbound ports.

Output is also carried from one snapshot to the next (caches.go: buildcache.Tables with typed keys,
owned by Options.Caches): a service port's clusters, a
load assignment, a scope's listeners and routes and the assembled lists are the same objects as
before while the content hashes of their inputs are unchanged (mesh.Snapshot.ServiceHash,
EndpointsHash, ObjectHash, ConfigHash, MeshHash). An endpoint-only change rebuilds only the
changed service's load assignments; the xDS server then marshals nothing else and sends only
those.

# Not translated (reported, never silently dropped)

  - DestinationRule trafficPolicy.tunnel (HTTP CONNECT to an egress proxy), retryBudget.budgetInterval
    (Envoy has none), zoneAwareLbSetting.failover/failoverPriority, warmup with a policy other than
    ROUND_ROBIN/LEAST_REQUEST, tls and proxyProtocol for proxyless gRPC clients (they need
    certificate providers), LB policies gRPC lacks (RANDOM, PASSTHROUGH) for proxyless clients.
  - Gateway tls.mode AUTO_PASSTHROUGH (multi-network SNI clusters) and unix-socket binds.
  - Sidecar outboundTrafficPolicy.egressProxy (unknown traffic still goes to PassthroughCluster).
  - Without a DestinationRule, traffic is plaintext: automatic mTLS (transport socket matches on
    the tlsMode label) belongs to the security policies (PeerAuthentication).
*/
package translate
