// Package attributes is Envoy's attribute vocabulary (request.*, response.*, source.*,
// destination.*, connection.*, upstream.*, xds.*, metadata) over a finished request or TCP
// connection (Record), and the CEL expressions written against it: an access log's
// extension_filter (envoy.access_loggers.extension_filters.cel) and the dimensions of Istio's
// istio.stats filter.
//
// Compile parses and type-checks an expression once per configuration, with limits on its size,
// nesting and node count, and refuses an attribute this proxy does not provide (an Envoy
// attribute such as xds.node or connection.tls_version) by name, rather than letting it be
// silently absent. A Program evaluates against a *Record through an activation that resolves
// names on demand: nothing is built per request beyond the values the expression reads, and
// evaluation stops at a cost limit.
//
// Absent values follow Envoy: reading an attribute that has no value (response.code of a TCP
// connection, a request header that was not sent) is an evaluation error, so a filter does not
// match and a dimension is not set; `'x' in request.headers` and has(response.code) test presence without error.
package attributes
