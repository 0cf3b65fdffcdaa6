// Package route generates Envoy v3 route configurations (RDS) from Istio VirtualServices, with
// Istio's semantics and resource names:
//
//   - outbound per-port route configs for sidecars ("9080"), one virtual host per service;
//   - gateway route configs for routers ("http.8080");
//   - the inbound route config of the 15006 HTTP filter chains ("inbound|9080||");
//   - proxyless gRPC route configs ("reviews.default.svc.cluster.local:9080");
//   - TCP and TLS VirtualService routes as filter chain matches plus tcp_proxy configs, for the
//     listener generator.
//
// The package reads only its Inputs: the caller (the top-level generator) selects the services,
// VirtualServices, Gateways and DestinationRules that apply to one proxy. Build a Builder once per
// proxy and snapshot with New and call its methods for every port; a Builder is immutable and safe
// for concurrent use.
//
// A VirtualService field that cannot be expressed in Envoy's (or gRPC's) route model is never
// ignored: the method returns an error naming the object and the field, and the VirtualService is
// left out of the result (see Error).
//
// # Using it
//
//	b, err := route.New(route.Inputs{...}) // once per proxy and snapshot
//	rc, err := b.Outbound(9080)             // "9080"; err lists VirtualServices left out
//	rc, err = b.Gateway(8080)               // "http.8080" (routers)
//	rc, err = b.GatewayTLS(gw, server)      // "https.443.https.gw.ns" (routers)
//	rc, err = b.Proxyless("echo.default.svc.cluster.local:7070")
//	rc = route.Inbound(9080)                // "inbound|9080||"
//	l4, err := b.TCPRoutes(host, port, route.MeshGateway)
//
// Per-route fault injection and CORS are typed_per_filter_config under FaultFilterName and
// CORSFilterName: the listener generator installs those HTTP filters. Hash policies come from the
// host's DestinationRule (HashPolicy, also used by the cluster generator's ring_hash/maglev
// choice).
package route
