// Package tracing is strait-proxy's implementation of the HTTP connection manager's tracing
// (envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.Tracing)
// with Envoy's OpenTelemetry (envoy.tracers.opentelemetry) and Zipkin (envoy.tracers.zipkin)
// tracers, as Istio configures them.
//
// Compile turns the configuration into a *Tracer; any field or provider it does not implement is
// an *xdsfield.UnsupportedError naming it, so the listener update is NACKed. The connection
// manager (proxy/l7) then, per request:
//
//   - Sample: Envoy's sampling decision (x-request-id trace reason, x-client-trace-id with
//     client_sampling, x-envoy-force-trace from internal requests, random_sampling on the
//     request id, overall_sampling), packed back into the x-request-id UUID;
//   - Start: the connection manager's span, child of the context the request carries (W3C
//     traceparent/tracestate for OpenTelemetry; B3 single or multiple headers for Zipkin) or
//     the root of a new trace when it carries none or a malformed one;
//   - Span.Inject: the context for the upstream request (traceparent/tracestate; B3 multiple
//     headers, which is what Envoy's Zipkin tracer writes);
//   - Span.Finish: the span is queued for export.
//
// Export happens off the request path: each tracer has a bounded queue (a full queue drops the
// span and counts tracing.<tracer>.spans_dropped) drained by a goroutine that sends batches of
// min_flush_spans (5) or what is queued every flush interval (5 s), as OTLP over gRPC
// (TraceService/Export), OTLP over HTTP (protobuf POST, /v1/traces by default) or Zipkin v2 JSON.
// The collector is reached through a cluster of the proxy (Deps.Cluster). The goroutine exits
// after an idle interval, so a replaced configuration leaves nothing running.
package tracing
