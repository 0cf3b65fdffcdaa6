// Package route compiles an Envoy v3 RouteConfiguration into an immutable Table that matches
// HTTP requests to routes with Envoy's semantics: virtual hosts chosen by domain (exact, longest
// suffix wildcard, longest prefix wildcard, then "*"; the port is part of the host unless
// ignore_port_in_host_matching), routes tried in order by path (prefix, path,
// path_separated_prefix, safe_regex; case_sensitive), header, query-parameter, gRPC and
// runtime-fraction matchers, and compiled actions (cluster, weighted clusters, cluster_header,
// rewrites, redirects, direct responses, header operations, timeouts, retries, hashing,
// mirroring and per-filter configuration for the fault and CORS filters).
//
// A Table is safe for concurrent use and never changes after Compile; the proxy swaps whole
// tables. Table.Match does not allocate for lower-case hosts and single-valued headers.
// Fields or typed configs the proxy does not implement make Compile fail with an
// *UnsupportedError naming the field, so the update is NACKed.
//
// Regular expressions are RE2 (Go's regexp) with a program size limit (max_program_size, or
// DefaultMaxProgramSize). ignore_case folds ASCII only, as Envoy does. There is no runtime
// layer: runtime_key fields never override the configured default values.
package route
