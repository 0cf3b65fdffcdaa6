// Package attributes is Envoy's attribute vocabulary (request.*, response.*, source.*,
// destination.*, connection.*, upstream.*, xds.*, metadata) over a finished request or TCP
// connection (Record), and the CEL expressions written against it: an access log's
// extension_filter (envoy.access_loggers.extension_filters.cel) and the dimensions of Istio's
// istio.stats filter.
//
// The CEL implementation is this package's own (cel*.go), so that strait-proxy does not link
// cel-go, whose package initialisation alone cost every proxy 2.5 MiB of idle RSS and 6.5 MB
// of binary (docs/performance.md, "CEL without cel-go"; it also evaluates a typical filter in
// 1.9k instructions with no allocation, against cel-go's 13.6k and 14): a lexer and recursive-descent parser of CEL's grammar (langdef "Syntax": every literal
// form, comments, reserved words), the macros has, all, exists, exists_one, map and filter, a
// checker (names, overloads of the standard functions, result types) and a tree-walking evaluator
// with CEL's values (int, uint, double, bool, string, bytes, null, list, map, duration,
// timestamp), errors as values, commutative && and ||, heterogeneous equality and cross-type
// numeric ordering. The standard functions implemented are size, contains, startsWith,
// endsWith, matches (RE2), the int/uint/double/string/bytes/bool/duration/timestamp/dyn
// conversions and the timestamp and duration getters. What it does not implement (type values
// and type(), message construction, protobuf messages, extension libraries such as strings'
// split) is refused at Compile by name. The differential tests hold it to cel-go's results.
//
// Compile parses and type-checks an expression once per configuration, with limits on its size,
// nesting and node count, compiles constant regular expressions (a bad one is a configuration
// error), folds constants, and refuses an attribute this proxy does not provide (an Envoy
// attribute such as xds.node or connection.tls_version) by name, rather than letting it be
// silently absent. A Program evaluates against a *Record through a pooled activation that
// resolves attributes on demand: a typical filter allocates nothing, and evaluation stops at a
// cost limit.
//
// Absent values follow Envoy: reading an attribute that has no value (response.code of a TCP
// connection, a request header that was not sent) is an evaluation error, so a filter does not
// match and a dimension is not set; `'x' in request.headers` and has(response.code) test presence without error.
package attributes
