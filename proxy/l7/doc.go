// Package l7 is strait-proxy's HTTP connection manager (Envoy's
// envoy.filters.network.http_connection_manager): it serves downstream HTTP/1.1, h2 (ALPN) and
// h2c (prior knowledge) connections, routes each request with a compiled route.Table, runs the
// HTTP filter pipeline and forwards to upstream clusters, streaming bodies in both directions,
// with Envoy's header handling, local replies, response flags, retries, timeouts and mirroring.
//
// A Handler is compiled once per HttpConnectionManager config and is immutable; it is safe for
// concurrent use by many connections. Route tables reached through RDS are looked up through
// Env on every request (the proxy core answers from its atomically swapped runtime), so route
// updates apply to new requests without rebuilding the Handler.
//
// # Request path
//
//	ServeConn ─► net/http server (HTTP/1.1, h2, h2c) ─► serveHTTP:
//	  admit (HTTP/1.0, header count/size → 431, underscores, path normalization)
//	  decorateRequest (host port stripping, x-forwarded-for/-proto, x-envoy-internal,
//	                   x-envoy-* sanitizing, x-request-id, x-forwarded-client-cert)
//	  route match, cluster choice
//	  pipeline: the configured filters in config order (fault, cors), then the router
//	  router: direct response | redirect | forward (timeouts, retries, mirror, upgrade tunnel)
//
// The pipeline is assembled in one place, buildPipeline, from Filters (func(StreamHandler)
// StreamHandler). Every request ends with a RequestInfo (status, response flags, attempts,
// bytes) passed to Options.OnComplete and counted in http.<stat_prefix>.* statistics.
//
// # Differences from Envoy
//
//   - previous_hosts retry predicate: the load balancer API has no exclusion list; retries of
//     hash-balanced requests use a perturbed hash, other policies move on by themselves.
//   - The request body is kept for retries and mirroring only up to MaxReplayBytes (64 KiB).
//   - Mirrors are sent once the primary attempt has ended (answered or failed), and only when
//     the request body was read completely within the replay buffer.
//   - WebSocket over HTTP/2 (extended CONNECT) and CONNECT tunnels are not supported.
//   - No runtime layer: runtime keys never override configured defaults.
//   - Unsupported HttpConnectionManager fields and HTTP filters not
//     marked is_optional are compile errors naming them.
package l7
